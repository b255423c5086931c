"""Tests of ntdh_jax.info's closed forms (gaussian) and k-NN estimators (ksg).

References are independent: float64 NumPy determinants for the closed form,
straightforward Python double loops (float64) for KSG and Ross's estimator,
scikit-learn's ``mutual_info_regression`` / ``mutual_info_classif`` for a
cross-check, and the closed form for the estimators' accuracy.
"""

import math
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_classif
from sklearn.feature_selection import mutual_info_regression

import ntdh_jax
from ntdh_jax import info
from ntdh_jax.info.ksg import DEFAULT_NOISE, _ksg_nats


def correlated(n, d, rho, seed):
  """x, y: ``f32[n, d]`` standard normal, corr(x_j, y_j) = rho per
  dimension, independent across dimensions: I = −d/2 · log(1 − rho²)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d))
  y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
  return x.astype(np.float32), y.astype(np.float32)


# The small data most tests share, so they share compiled programs:
# x f32[60, 2], y f32[60], labels int[60] (4 classes of 15).
X, Y = correlated(60, 2, 0.6, seed=16)
Y = Y[:, 0]
C = np.arange(60) % 4


def with_entry(value, row=3, column=1):
  bad = X.copy()
  bad[row, column] = value
  return bad


# -- gaussian ------------------------------------------------------------------


def random_covariance(dim, seed):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((dim, dim + 3)) * rng.uniform(0.5, 3.0, (dim, 1))
  return a @ a.T / (dim + 3)


def test_gaussian_mi_matches_float64_determinants():
  cov = random_covariance(6, seed=0)
  a, b = [0, 2], [5, 1, 3]
  sub = lambda i: cov[np.ix_(i, i)]
  want = 0.5 * math.log(np.linalg.det(sub(a)) * np.linalg.det(sub(b))
                        / np.linalg.det(sub(a + b)))
  got = info.gaussian_mi(cov.astype(np.float32), a, b)
  chex.assert_shape(got, ())
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(info.gaussian_mi(cov.astype(np.float32), a, b,
                                              base=2),
                             want / math.log(2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rho", [0.0, 0.3, -0.7, 0.99])
def test_gaussian_mi_two_scalars_is_correlation_mi(rho):
  sd = np.array([2.0, 0.1])
  cov = np.array([[1.0, rho], [rho, 1.0]]) * np.outer(sd, sd)
  got = info.gaussian_mi(cov.astype(np.float32), 0, 1)
  # float32: rho = 0.99 itself rounds by ~1e-8, and dI/drho = rho/(1 - rho²)
  # is 50 there.
  np.testing.assert_allclose(got, info.correlation_mi(rho), rtol=5e-6,
                             atol=2e-6)
  np.testing.assert_allclose(got, -0.5 * math.log(1 - rho**2), rtol=5e-6,
                             atol=2e-6)


def test_gaussian_mi_per_dimension_blocks():
  d, rho = 4, 0.9
  cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
  got = info.gaussian_mi(cov.astype(np.float32), range(d), range(d, 2 * d))
  np.testing.assert_allclose(got, -d / 2 * math.log(1 - rho**2), rtol=1e-5)


def test_correlation_mi_small_rho_and_arrays():
  # log1p keeps small correlations exact where log(1 - rho²) rounds to 0.
  np.testing.assert_allclose(info.correlation_mi(1e-4), 0.5e-8, rtol=1e-5)
  rho = jnp.array([[0.0, 0.5], [-0.5, 0.9]])
  got = info.correlation_mi(rho, base=2)
  chex.assert_shape(got, (2, 2))
  np.testing.assert_allclose(got, -0.5 * np.log2(1 - np.square(rho)),
                             rtol=1e-6)


def test_gaussian_mi_vmaps_over_covariances():
  rhos = jnp.array([0.1, 0.5, 0.8])
  covs = jax.vmap(lambda r: jnp.array([[1.0, r], [r, 1.0]]))(rhos)
  got = jax.vmap(lambda c: info.gaussian_mi(c, 0, 1))(covs)
  np.testing.assert_allclose(got, info.correlation_mi(rhos), atol=2e-6)


@pytest.mark.parametrize("cov, a, b, error, match", [
    (np.eye(3, 2), 0, 1, ValueError, "cov must be a square"),
    (np.eye(3, dtype=np.int32), 0, 1, TypeError, "cov must be a floating"),
    (np.eye(3), [0, 1], [1, 2], ValueError, "disjoint"),
    (np.eye(3), [0, 3], [1], ValueError, r"idx_a must lie in \[0, D\)"),
    (np.eye(3), [], [1], ValueError, "idx_a must be a non-empty"),
    (np.eye(3), [0], [1, 1], ValueError, "idx_b must not repeat"),
    (np.eye(3), [0], jnp.array([1]), TypeError, "idx_b must be static"),
    (np.array([[1.0, 1.0], [1.0, 1.0]]), 0, 1, ValueError,
     "cov must be positive definite"),
    (np.array([[1.0, 0.5], [0.2, 1.0]]), 0, 1, ValueError,
     "cov must be symmetric"),
    (np.array([[1.0, 0.0], [0.0, np.nan]]), 0, 1, ValueError,
     "cov must be finite"),
])
def test_gaussian_mi_bad_input(cov, a, b, error, match):
  with pytest.raises(error, match=match):
    info.gaussian_mi(cov, a, b)


@pytest.mark.parametrize("call, error, match", [
    (lambda: info.correlation_mi(1.0), ValueError, r"\|rho\| < 1"),
    (lambda: info.correlation_mi(np.array([0.2, np.nan])), ValueError,
     r"\|rho\| < 1"),
    (lambda: info.correlation_mi(0.5, base=1), ValueError, "base must be"),
    (lambda: info.correlation_mi(0.5, base="bits"), TypeError, "base must be"),
])
def test_correlation_mi_bad_input(call, error, match):
  with pytest.raises(error, match=match):
    call()


# -- KSG against the closed form -----------------------------------------------

# KSG (k = 3, max-norm, standardised columns) on N = 2000 correlated
# Gaussians: mean bias and standard deviation over 100 independent data sets,
# measured with an independent cKDTree (p = inf, float64) implementation of
# the same estimator. KSG is nearly unbiased at d = 1 and under-estimates in
# the 8-d joint space of d = 4, more so at high MI (Kraskov et al. 2004,
# Fig. 4; companions.md A.5). A test passes within 4 standard deviations of
# truth + bias.
N_ACCURACY = 2000
BIAS_SD = {  # (d, rho): (bias, sd), nats
    (1, 0.0): (0.000, 0.015), (1, 0.5): (0.001, 0.020),
    (1, 0.9): (0.011, 0.022), (4, 0.0): (0.002, 0.016),
    (4, 0.5): (-0.088, 0.025), (4, 0.9): (-0.668, 0.034),
}


@pytest.mark.parametrize("d, rho", sorted(BIAS_SD))
def test_ksg_matches_gaussian_closed_form(d, rho):
  x, y = correlated(N_ACCURACY, d, rho, seed=10 * d + int(10 * rho))
  truth = float(info.gaussian_mi(
      np.block([[np.eye(d), rho * np.eye(d)],
                [rho * np.eye(d), np.eye(d)]]).astype(np.float32),
      range(d), range(d, 2 * d)))
  np.testing.assert_allclose(truth, -d / 2 * math.log(1 - rho**2), atol=1e-6)
  got = info.ksg(x, y)
  chex.assert_shape((got.mean, got.pointwise), ((), (N_ACCURACY,)))
  bias, sd = BIAS_SD[d, rho]
  assert abs(float(got.mean) - (truth + bias)) <= 4 * sd, (
      float(got.mean), truth, bias, sd)
  np.testing.assert_allclose(got.mean, np.mean(got.pointwise), rtol=1e-6)


def test_ksg_independent_non_gaussian_is_near_zero():
  rng = np.random.default_rng(3)
  x = rng.uniform(size=(N_ACCURACY, 1)).astype(np.float32)
  y = rng.exponential(size=(N_ACCURACY, 1)).astype(np.float32)
  assert abs(float(info.ksg(x, y).mean)) < 4 * 0.016


def test_ksg_discrete_independent_and_dependent():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 3, N_ACCURACY)
  noise = rng.standard_normal((N_ACCURACY, 1)).astype(np.float32)
  assert abs(float(info.ksg_discrete(noise, labels).mean)) < 0.05
  # Classes far apart: x determines the label, I = H(labels) ≈ ln 3.
  separated = (10 * labels[:, None] + noise).astype(np.float32)
  entropy = -sum(p * math.log(p) for p in np.bincount(labels) / N_ACCURACY)
  np.testing.assert_allclose(info.ksg_discrete(separated, labels).mean,
                             entropy, atol=0.01)


# -- KSG against straightforward loops -----------------------------------------


def prepared(columns, key, noise=DEFAULT_NOISE):
  """The documented preprocessing in float64: standardise each column, add
  ``noise · normal(key, shape)`` (the same draws as the estimators)."""
  z = np.asarray(columns, np.float64)
  z = (z - z.mean(axis=0)) / z.std(axis=0)
  return z + noise * np.asarray(jax.random.normal(key, z.shape), np.float64)


def ksg_loop(x, y, k):
  """KSG algorithm 1 as written in Kraskov et al. (2004), one point at a
  time (x, y already prepared, float64)."""
  n = len(x)
  pointwise = []
  for i in range(n):
    joint = []
    for j in range(n):
      if j != i:
        joint.append(max(np.max(np.abs(x[i] - x[j])),
                         np.max(np.abs(y[i] - y[j]))))
    eps = sorted(joint)[k - 1]
    n_x = sum(1 for j in range(n)
              if j != i and np.max(np.abs(x[i] - x[j])) < eps)
    n_y = sum(1 for j in range(n)
              if j != i and np.max(np.abs(y[i] - y[j])) < eps)
    pointwise.append(digamma(k) + digamma(n) - digamma(n_x + 1)
                     - digamma(n_y + 1))
  return np.array(pointwise)


def ross_loop(x, labels, k):
  """Ross (2014) in his own words: d = distance to the k-th same-class
  neighbour, m = neighbours within d *including* the k-th one (i itself
  excluded). Equal to scikit-learn's strict count with i included when no
  two distances tie."""
  n = len(x)
  pointwise = []
  for i in range(n):
    dist = [np.max(np.abs(x[i] - x[j])) for j in range(n)]
    same = sorted(dist[j] for j in range(n)
                  if j != i and labels[j] == labels[i])
    d = same[k - 1]
    m = sum(1 for j in range(n) if j != i and dist[j] <= d)
    n_class = sum(1 for j in range(n) if labels[j] == labels[i])
    pointwise.append(digamma(n) - digamma(n_class) + digamma(k) - digamma(m))
  return np.array(pointwise)


@pytest.mark.parametrize("dx, dy, k", [(2, 1, 3), (1, 3, 4)])
def test_ksg_equals_numpy_double_loop(dx, dy, k):
  x, y = correlated(60, max(dx, dy), 0.6, seed=5)
  x, y = x[:, :dx], y[:, :dy]
  key = jax.random.PRNGKey(7)
  z = prepared(np.concatenate([x, y], axis=1), key)
  want = ksg_loop(z[:, :dx], z[:, dx:], k)
  got = info.ksg(x, y, k=k, key=key)
  # Float32 vs float64 rounding is ~1e-7; a single differing neighbour count
  # would move that point by >= 1/60.
  np.testing.assert_allclose(got.pointwise, want, atol=1e-5)
  np.testing.assert_allclose(got.mean, want.mean(), atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_sorted_ksg_equals_numpy_double_loop(k):
  """One column each: the default counts by sorting (info.plane)."""
  x, y = correlated(60, 1, 0.6, seed=9)
  key = jax.random.PRNGKey(3)
  z = prepared(np.concatenate([x, y], axis=1), key)
  want = ksg_loop(z[:, :1], z[:, 1:], k)
  for got in (info.ksg(x, y, k=k, key=key),
              info.ksg(x[:, 0], y[:, 0], k=k, key=key, method="sorted")):
    np.testing.assert_allclose(got.pointwise, want, atol=1e-5)


def test_auto_sorts_one_column_each_and_equals_the_brute_force():
  """The same counts, so the same bits (one block of the brute force: its
  blocks are what the sorted method replaces)."""
  x, y = correlated(600, 1, 0.8, seed=2)
  auto = info.ksg(x, y)
  np.testing.assert_array_equal(auto.pointwise,
                                info.ksg(x, y, method="sorted").pointwise)
  np.testing.assert_array_equal(
      auto.pointwise, info.ksg(x, y, method="brute", block_size=600).pointwise)
  vmapped = jax.vmap(lambda x, y: info.ksg(x, y).pointwise)(
      np.stack([x, y]), np.stack([y, x]))
  np.testing.assert_array_equal(vmapped[0], auto.pointwise)
  np.testing.assert_array_equal(vmapped[1], info.ksg(y, x).pointwise)


@pytest.mark.parametrize("d", [1, 2])
def test_ksg_discrete_equals_numpy_double_loop(d):
  rng = np.random.default_rng(6)
  labels = rng.integers(-1, 2, 60)  # any integers, not 0..C-1
  x = (labels[:, None] * 0.7 + rng.standard_normal((60, d))).astype(np.float32)
  key = jax.random.PRNGKey(8)
  want = ross_loop(prepared(x, key), labels, k=3)
  got = info.ksg_discrete(x, labels, key=key)
  np.testing.assert_allclose(got.pointwise, want, atol=1e-5)


# -- properties ----------------------------------------------------------------


def test_ksg_invariant_to_per_dimension_affine_maps():
  scale = np.array([3.0, -0.01], np.float32)
  base = info.ksg(X, Y)
  moved = info.ksg(X * scale + 1, -2 * Y + 5)
  # Standardising undoes the maps up to float32 rounding, which could flip a
  # near-tie neighbour count (one point by >= 1/60); none here.
  np.testing.assert_allclose(moved.pointwise, base.pointwise, atol=1e-5)
  np.testing.assert_allclose(info.ksg_discrete(X * scale + 1, C).pointwise,
                             info.ksg_discrete(X, C).pointwise, atol=1e-5)


def test_blockwise_equals_one_block():
  for estimate in (lambda b: info.ksg(X, Y, block_size=b),
                   lambda b: info.ksg_discrete(X, C, block_size=b)):
    # 7 does not divide 60: lax.map's remainder block is exercised too.
    np.testing.assert_array_equal(estimate(7).pointwise,
                                  estimate(1000).pointwise)


def test_vmap_over_datasets_equals_loop():
  xs, ys = zip(*(correlated(60, 2, rho, seed=12) for rho in (0.0, 0.5, 0.9)))
  xs, ys = np.stack(xs), np.stack(ys)[..., 0]
  batched = jax.vmap(lambda x, y: info.ksg(x, y))(xs, ys)
  looped = [info.ksg(x, y) for x, y in zip(xs, ys)]
  np.testing.assert_allclose(batched.pointwise,
                             [r.pointwise for r in looped], atol=1e-6)
  np.testing.assert_allclose(batched.mean, [r.mean for r in looped],
                             atol=1e-6)


def test_jit_traces_once_per_shape():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def estimate(x, y, key):
    return info.ksg(x, y, key=key).mean

  for seed in range(3):
    x, y = correlated(60, 2, 0.5, seed=seed)
    estimate(x, y[:, 0], jax.random.PRNGKey(seed))


def test_units_and_key():
  nats = info.ksg(X, Y)
  np.testing.assert_allclose(info.ksg(X, Y, base=2).mean,
                             nats.mean / math.log(2), rtol=1e-6)
  np.testing.assert_allclose(info.in_base(nats.mean, 10),
                             nats.mean / math.log(10), rtol=1e-6)
  # The jitter is ~1e-5 std: another key moves no neighbour count here.
  np.testing.assert_allclose(info.ksg(X, Y, key=jax.random.PRNGKey(1)).mean,
                             nats.mean, atol=1e-3)


def test_ksg_keeps_topk_on_cpu():
  """XLA rewrites a top_k whose only use is one column into a full sort,
  which made KSG ~40x slower on CPU; the compiled program must keep TopK."""
  if jax.default_backend() != "cpu":
    pytest.skip("the rewrite concerns XLA's CPU backend")
  x = jnp.zeros((256, 1))
  text = _ksg_nats.lower(x, x, jax.random.PRNGKey(0), jnp.float32(1e-5), k=3,
                         block_size=64).compile().as_text()
  assert "TopK" in text and " sort(" not in text


# -- scikit-learn --------------------------------------------------------------

# scikit-learn runs the same estimators in float64 with its own jitter
# (1e-10 of each unit-variance column, ours 1e-5) and clips negative
# estimates to 0 (not reached at these MIs). The neighbour structure is the
# same up to near-ties that the different jitter and float32 rounding can
# flip; each flipped count moves one point's ψ by ~1/n_x, the mean by
# ~1/(N · n_x). At N = 2000: agreement to 2e-3 nats.


def test_ksg_close_to_sklearn_mutual_info_regression():
  x, y = correlated(N_ACCURACY, 1, 0.5, seed=14)
  theirs = mutual_info_regression(x, y[:, 0], n_neighbors=3, random_state=0)
  np.testing.assert_allclose(info.ksg(x, y, k=3).mean, theirs[0], atol=2e-3)


def test_ksg_discrete_close_to_sklearn_mutual_info_classif():
  rng = np.random.default_rng(15)
  labels = rng.integers(0, 4, N_ACCURACY)
  x = (0.5 * labels[:, None]
       + rng.standard_normal((N_ACCURACY, 1))).astype(np.float32)
  theirs = mutual_info_classif(x, labels, n_neighbors=3, random_state=0)
  np.testing.assert_allclose(info.ksg_discrete(x, labels, k=3).mean,
                             theirs[0], atol=2e-3)


# -- bad input -----------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: info.ksg(X, Y[:59]), ValueError,
     "x and y must have the same number of samples N"),
    (lambda: info.ksg(X[:3], Y[:3]), ValueError, r"N = 3 .* N > k = 3"),
    (lambda: info.ksg(with_entry(np.nan), Y), ValueError,
     "x must be finite .* first at row 3, column 1"),
    (lambda: info.ksg(X, with_entry(np.inf, column=0)[:, 0]), ValueError,
     "y must be finite"),
    (lambda: info.ksg(X, np.full((60, 1), 1e39)), ValueError,
     "y must be finite in float32"),
    (lambda: info.ksg(np.c_[X, np.ones(60, np.float32)], Y), ValueError,
     "x must have no constant column .* column 2 is constant"),
    (lambda: info.ksg(X.astype(np.int32), Y), TypeError,
     "x must be a floating"),
    (lambda: info.ksg(X[None], Y), ValueError, r"x must have rank 1 or 2"),
    (lambda: info.ksg(X[:0], Y[:0]), ValueError, "at least one sample"),
    (lambda: info.ksg(list(X), Y), TypeError, "x must be an array"),
    (lambda: info.ksg(X, Y, k=0), ValueError, "k must be >= 1"),
    (lambda: info.ksg(X, Y, noise=0.0), ValueError, "noise must be > 0"),
    (lambda: info.ksg(X, Y, block_size=2.5), TypeError,
     "block_size must be an int"),
    (lambda: info.ksg(X, Y, base=-2), ValueError, "base must be"),
    (lambda: info.ksg(X, Y, method="sorted"), ValueError,
     "method='sorted' needs one column each in x and y, got 2 and 1"),
    (lambda: info.ksg(X, Y, method="tree"), ValueError,
     r"method must be 'auto' or one of \['brute', 'sorted'\], got 'tree'"),
    (lambda: info.ksg_discrete(X, C.astype(np.float32)), TypeError,
     "labels must be an integer"),
    (lambda: info.ksg_discrete(X, C[:59]), ValueError,
     r"labels must have shape \[N\] = \(60,\)"),
    (lambda: info.ksg_discrete(X, np.r_[C[:58], 7, 7]), ValueError,
     "every class more than k = 3 members .* class 7 has 2"),
    (lambda: info.ksg_discrete(X, C, k=15), ValueError,
     "class 0 has 15"),
    (lambda: info.ksg_discrete(with_entry(-np.inf), C), ValueError,
     "x must be finite"),
])
def test_bad_input(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_traced_values_are_checked_under_checked():
  estimate = jax.jit(lambda x, y: info.ksg(x, y).mean)
  with pytest.raises(ValueError, match="x must be finite .* row 3, column 1"):
    ntdh_jax.checked(estimate)(with_entry(np.nan), Y)
  # Unchecked, a constant column is harmless: it becomes pure jitter.
  constant = np.c_[X, np.ones(60, np.float32)]
  np.testing.assert_allclose(estimate(constant, Y), info.ksg(X, Y).mean,
                             atol=1e-5)


def test_sorted_method_is_checked_under_checked_too():
  """One column each (the sorted counts, with their loops and conditions):
  checkify still sees the value checks."""
  estimate = jax.jit(lambda x, y: info.ksg(x, y).mean)
  np.testing.assert_array_equal(ntdh_jax.checked(estimate)(X[:, 0], Y),
                                estimate(X[:, 0], Y))
  with pytest.raises(ValueError, match="x must be finite .* row 3, column 0"):
    ntdh_jax.checked(estimate)(with_entry(np.nan, column=0)[:, 0], Y)


def test_duplicated_rows_warn():
  x, y, c = X.copy(), Y.copy(), C.copy()
  x[-2:], y[-2:], c[-2:] = X[:2], Y[:2], C[:2]
  with pytest.warns(UserWarning, match="2 of 60 rows repeat an earlier row"):
    info.ksg(x, y)
  with pytest.warns(UserWarning, match="ksg_discrete.* 2 of 60 rows"):
    info.ksg_discrete(x, c)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    info.ksg(X, Y)  # distinct rows: silent
    info.ksg(x, Y)  # x repeats, (x, y) does not
