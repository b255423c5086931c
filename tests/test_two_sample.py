"""Tests of ntdh_jax.info.two_sample: unbiased MMD² and the held-out k-NN
lower bound on total variation.

References are independent float64 NumPy loops: a double loop over pairs
for MMD²_u (Gretton et al. 2012, Eq. 3) and its median heuristic, and a
loop over held-out points with a stable argsort for the k-NN vote; the
exact TV of two unit-variance Gaussians, 2Φ(μ/2) − 1, for the bound.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntdh_jax
from ntdh_jax import info


def gaussians(n, m, d, shift, seed):
  """x ~ N(0, I) ``f32[n, d]``, y ~ N(shift · 1, I) ``f32[m, d]``."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d))
  y = rng.standard_normal((m, d)) + shift
  return x.astype(np.float32), y.astype(np.float32)


# Small data most tests share, so they share compiled programs.
X, Y = gaussians(23, 17, 3, 0.5, seed=0)


# -- references ----------------------------------------------------------------


def mmd2_reference(x, y, bandwidth=None):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if bandwidth is None:
    z = np.concatenate([x, y])
    distances = [np.linalg.norm(z[i] - z[j])
                 for i in range(len(z)) for j in range(i + 1, len(z))]
    bandwidth = np.median(distances)  # mean of the middle two if even
  kernel = lambda a, b: math.exp(-np.sum((a - b)**2) / (2 * bandwidth**2))
  n, m = len(x), len(y)
  xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j)
  yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(m))
  return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


def tv_reference(x, y, k, lowest_index_first=True):
  """Half split by index, k-NN vote among the other half's points (its x
  then its y), both directions, 2 · balanced accuracy − 1."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n, m = len(x) // 2, len(y) // 2
  halves = [(x[:n], y[:m]), (x[n:2 * n], y[m:2 * m])]
  said_x = {"x": 0, "y": 0}
  for held_out, reference in ((0, 1), (1, 0)):
    ref_x, ref_y = halves[reference]
    points = np.concatenate([ref_x, ref_y])
    labels = ["x"] * len(ref_x) + ["y"] * len(ref_y)
    for truth, queries in zip("xy", halves[held_out]):
      for q in queries:
        dist = np.sqrt(np.sum((points - q)**2, axis=1))
        order = (np.argsort(dist, kind="stable") if lowest_index_first else
                 len(dist) - 1 - np.argsort(dist[::-1], kind="stable"))
        votes = sum(labels[j] == "x" for j in order[:k])
        if votes > k / 2:
          said_x[truth] += 1
  tpr, fpr = said_x["x"] / (2 * n), said_x["y"] / (2 * m)
  return tpr - fpr


def exact_gaussian_tv(mu):
  """TV(N(0, 1), N(mu, 1)) = 2Φ(|mu|/2) − 1 = erf(|mu| / (2√2))."""
  return math.erf(abs(mu) / (2 * math.sqrt(2)))


# -- mmd2 ----------------------------------------------------------------------


@pytest.mark.parametrize("bandwidth", [None, 0.7, 2.0])
def test_mmd2_equals_numpy_double_loop(bandwidth):
  got = info.mmd2(X, Y, bandwidth)
  chex.assert_shape(got, ())
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, mmd2_reference(X, Y, bandwidth),
                             rtol=1e-4, atol=2e-6)


def test_mmd2_median_heuristic_even_and_odd_pair_counts():
  # P = 40 points give 780 pairs (even: the middle two are averaged); P = 39
  # give 741 (odd). Offset data (mean 5) exercise the centring.
  for x, y in [(X + 5, Y + 5), (X[:22] + 5, Y + 5)]:
    np.testing.assert_allclose(info.mmd2(x, y), mmd2_reference(x, y),
                               rtol=1e-4, atol=2e-6)


def test_mmd2_same_distribution_near_zero_and_shift_clearly_positive():
  same = [info.mmd2(*gaussians(200, 150, 2, 0.0, seed=s)) for s in range(3)]
  shifted = info.mmd2(*gaussians(200, 150, 2, 1.0, seed=3))
  # Unbiased: either sign under the null, of order 1/N.
  assert max(abs(float(v)) for v in same) < 0.01
  assert shifted > 0.1


def test_mmd2_symmetric():
  for bandwidth in (None, 1.3):
    np.testing.assert_allclose(info.mmd2(X, Y, bandwidth),
                               info.mmd2(Y, X, bandwidth), rtol=1e-5,
                               atol=1e-7)


def test_mmd2_duplicates_give_zero_bandwidth_limit_not_nan():
  # 16 of 20 points are e1: 120 of the 190 pairs are at distance 0, so the
  # median is h = 0 and the kernel is its limit [a == b].
  e = np.eye(3, dtype=np.float32)
  x = np.concatenate([np.repeat(e[:1], 8, axis=0), e[[1, 1]]])
  y = np.concatenate([np.repeat(e[:1], 8, axis=0), e[[2, 2]]])
  want = 2 * (8 * 7 + 2 * 1) / (10 * 9) - 2 * (8 * 8) / (10 * 10)
  np.testing.assert_allclose(info.mmd2(x, y), want, atol=1e-6)


def test_mmd2_gradient_finite():
  x = X.copy()
  x[-2:] = X[:2]  # duplicates: sqrt(0) in the median
  grad = jax.grad(lambda a: info.mmd2(a, Y))(x)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# -- tv_lower_bound ------------------------------------------------------------


@pytest.mark.parametrize("n, m, d, k", [(23, 17, 3, 5), (40, 40, 2, 1),
                                        (30, 45, 1, 7)])
def test_tv_equals_numpy_loop(n, m, d, k):
  x, y = gaussians(n, m, d, 0.7, seed=n + m)
  got = info.tv_lower_bound(x, y, k=k)
  chex.assert_shape(got, ())
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, tv_reference(x, y, k), atol=1e-6)


def test_tv_distance_ties_go_to_the_lower_index():
  # Small integers, pooled mean 0: float32 distances are exact, so many tie;
  # the ties decide votes (the reverse rule gives another answer).
  rng = np.random.default_rng(5)
  x = rng.integers(-2, 3, (32, 2)).astype(np.float32)
  y = rng.integers(-1, 4, (32, 2)).astype(np.float32)
  y[-1] -= np.sum(x, axis=0) + np.sum(y, axis=0)  # pooled sum 0
  want = tv_reference(x, y, 5)
  assert want != tv_reference(x, y, 5, lowest_index_first=False)
  np.testing.assert_allclose(info.tv_lower_bound(x, y, k=5), want, atol=1e-6)


def test_tv_separated_and_identical():
  far = info.tv_lower_bound(*gaussians(300, 300, 3, 10.0, seed=6))
  np.testing.assert_allclose(far, 1.0)
  for seed in (7, 8):
    same = info.tv_lower_bound(*gaussians(300, 250, 3, 0.0, seed=seed))
    assert abs(float(same)) < 0.2


def test_tv_below_and_close_to_exact_gaussian_tv():
  truth = exact_gaussian_tv(1.0)
  np.testing.assert_allclose(truth, 0.3829, atol=1e-4)
  n = 4000
  # Standard deviation of TPR − FPR at 2n = 2m = 4000 held-out points, at
  # most sqrt(2 · 0.25 / 4000) = 0.011.
  noise = math.sqrt(0.5 / n)
  for seed, k in ((9, 5), (10, 25)):
    est = float(info.tv_lower_bound(*gaussians(n, n, 1, 1.0, seed=seed), k=k))
    assert 0.2 < est < 0.42
    assert est < truth + 3 * noise


def test_tv_odd_sizes_drop_the_last_point():
  x, y = gaussians(21, 15, 2, 0.5, seed=11)
  moved = x.copy(), y.copy()
  moved[0][-1] += 100.0
  moved[1][-1] -= 100.0
  np.testing.assert_array_equal(info.tv_lower_bound(x, y),
                                info.tv_lower_bound(*moved))


# -- transformations -----------------------------------------------------------


def test_vmap_over_runs_equals_loop():
  # X's shape, so the looped calls reuse the other tests' programs.
  xs, ys = map(np.stack, zip(*(gaussians(23, 17, 3, s, seed=12 + i)
                               for i, s in enumerate((0.0, 0.5, 2.0)))))
  bandwidths = np.array([0.5, 1.0, 2.0], np.float32)
  np.testing.assert_allclose(jax.vmap(info.mmd2)(xs, ys),
                             [info.mmd2(x, y) for x, y in zip(xs, ys)],
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      jax.vmap(info.mmd2)(xs, ys, bandwidths),
      [info.mmd2(x, y, h) for x, y, h in zip(xs, ys, bandwidths)],
      rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(
      jax.vmap(info.tv_lower_bound)(xs, ys),
      [info.tv_lower_bound(x, y) for x, y in zip(xs, ys)])


def test_jit_traces_once_per_shape():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def both(x, y, h):
    return info.mmd2(x, y), info.mmd2(x, y, h), info.tv_lower_bound(x, y)

  for seed in range(3):
    x, y = gaussians(23, 17, 3, 0.5, seed=seed)
    got = both(x, y, 1.0 + seed)
    np.testing.assert_allclose(got[0], info.mmd2(x, y), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[1], info.mmd2(x, y, 1.0 + seed), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_array_equal(got[2], info.tv_lower_bound(x, y))


# -- bad input -----------------------------------------------------------------


def with_nan(v):
  v = v.copy()
  v[2, 1] = np.nan
  return v


@pytest.mark.parametrize("call, error, match", [
    (lambda: info.mmd2(X[:, 0], Y), ValueError, r"x must have rank 2"),
    (lambda: info.mmd2(X, Y[None]), ValueError, r"y must have rank 2"),
    (lambda: info.mmd2(X.astype(np.int32), Y), TypeError,
     "x must be a floating"),
    (lambda: info.mmd2(list(X), Y), TypeError, "x must be an array"),
    (lambda: info.mmd2(X, Y[:, :2]), ValueError,
     "y must have the same number of columns D"),
    (lambda: info.mmd2(X[:1], Y), ValueError, "x has 1 rows"),
    (lambda: info.mmd2(X, Y[:1]), ValueError, "y has 1 rows"),
    (lambda: info.mmd2(X[:, :0], Y[:, :0]), ValueError,
     "x must have at least one column"),
    (lambda: info.mmd2(with_nan(X), Y), ValueError,
     "x must be finite .* first at row 2, column 1"),
    (lambda: info.mmd2(X, np.full((4, 3), 1e39)), ValueError,
     "y must be finite"),
    (lambda: info.mmd2(X, Y, 0.0), ValueError, "bandwidth must be > 0"),
    (lambda: info.mmd2(X, Y, np.inf), ValueError, "bandwidth must be > 0"),
    (lambda: info.mmd2(X, Y, "auto"), TypeError, "bandwidth must be a number"),
    (lambda: info.tv_lower_bound(X[:3], Y), ValueError, "x has 3 rows"),
    (lambda: info.tv_lower_bound(X, Y[:3]), ValueError, "y has 3 rows"),
    (lambda: info.tv_lower_bound(X, with_nan(Y)), ValueError,
     "y must be finite"),
    (lambda: info.tv_lower_bound(X, Y, k=4), ValueError, "k must be odd"),
    (lambda: info.tv_lower_bound(X, Y, k=0), ValueError, "k must be >= 1"),
    (lambda: info.tv_lower_bound(X, Y, k=3.0), TypeError, "k must be an int"),
    (lambda: info.tv_lower_bound(X, Y, k=21), ValueError,
     "k must be at most the 19 points"),
])
def test_bad_input(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_traced_values_are_checked_under_checked():
  estimate = jax.jit(lambda x, y, h: info.mmd2(x, y, h))
  with pytest.raises(ValueError, match="x must be finite .* row 2, column 1"):
    ntdh_jax.checked(estimate)(with_nan(X), Y, 1.0)
  with pytest.raises(ValueError, match="bandwidth must be > 0"):
    ntdh_jax.checked(estimate)(X, Y, -1.0)
  tv = jax.jit(info.tv_lower_bound)
  with pytest.raises(ValueError, match="y must be finite"):
    ntdh_jax.checked(tv)(X, with_nan(Y))
