"""Tests of ntdh_jax.info.plane: KSG's neighbour counts of one-column x and
y by sorting equal the brute force's, bit for bit.

The reference is the library's blockwise brute force (``ksg._brute_counts``,
every pair) on the same float32 inputs, and for small N an independent
float32 NumPy computation of the same counts. Inputs are passed as they are
(no standardisation or jitter), so exact ties are possible and exercised.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax.info.ksg import _brute_counts
from ntdh_jax.info import plane


def kind(name, n, seed=0):
  """``f32[n]`` x, y of one of the shapes the tiers see differently."""
  rng = np.random.default_rng(seed)
  if name.startswith("rho"):
    rho = float(name[3:])
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)
  elif name == "clusters":  # tight blobs far apart: wide empty gaps
    c = rng.integers(0, 5, n)
    x = 3 * c + 0.01 * rng.standard_normal(n)
    y = c + 0.01 * rng.standard_normal(n)
  elif name == "cauchy":  # heavy tails: huge k-th neighbour distances
    x = rng.standard_cauchy(n)
    y = x + rng.standard_cauchy(n)
  elif name == "ties":  # few distinct values: exact ties, ε = 0 rows
    x, y = rng.integers(0, 7, n), rng.integers(0, 3, n)
  elif name == "uniform":
    x, y = rng.random(n), rng.random(n)
  return x.astype(np.float32), y.astype(np.float32)


KINDS = ["rho0", "rho0.5", "rho0.99", "clusters", "cauchy", "ties", "uniform"]


@functools.partial(jax.jit, static_argnums=2)
def brute(x, y, k):
  return _brute_counts(x[:, None], y[:, None], k, 64)


counts = jax.jit(plane.counts, static_argnums=2)


def fresh_counts(x, y, k):
  """plane.counts in a new jit, so patched tier settings are traced."""
  return jax.jit(lambda x, y: plane.counts(x, y, k))(x, y)


def numpy_counts(x, y, k):
  """float32 NumPy, one row at a time: the brute force's arithmetic."""
  n_x, n_y = [], []
  for i in range(len(x)):
    dx, dy = np.abs(x[i] - x), np.abs(y[i] - y)
    eps = np.partition(np.maximum(dx, dy), k)[k]  # i itself is at 0
    radius = np.nextafter(eps, np.float32(0))
    n_x.append(np.sum(dx <= radius) - 1)
    n_y.append(np.sum(dy <= radius) - 1)
  return np.array(n_x), np.array(n_y)


@pytest.mark.parametrize("name", KINDS)
def test_counts_equal_the_brute_force(name):
  """3,000 points with the tiers as shipped: the strips prove most rows,
  the 257-point windows the rest (4–5 % of the Gaussians' rows, 70 % at
  ρ = 0.99), the 1,025-point windows a few (ρ = 0.5, Cauchy). The
  brute-force tier runs in the forced-fallback test below."""
  x, y = kind(name, 3000)
  got, want = counts(x, y, 3), brute(x, y, 3)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("name", ["rho0.5", "cauchy", "ties"])
def test_each_fallback_tier_alone_gives_the_same_counts(monkeypatch, name):
  """Strips too narrow to prove anything (3 candidates < k + 1), then a
  window of 5 that proves few rows: the window and brute-force tiers and
  their block bookkeeping carry almost every row, and must agree."""
  x, y = kind(name, 700, seed=1)
  monkeypatch.setattr(plane, "_STRIPS", (0, 1))
  monkeypatch.setattr(plane, "_WINDOWS", ((2, 7),))
  got = fresh_counts(x, y, 3)
  want = brute(x, y, 3)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("n, k", [(4, 3), (5, 1), (9, 3), (17, 8), (130, 3),
                                  (300, 20)])
def test_small_n_and_large_k_equal_a_numpy_loop(n, k):
  for name in ("rho0.5", "ties"):
    x, y = kind(name, n, seed=n)
    got = counts(x, y, k)
    want = numpy_counts(x, y, k)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_vmapped_equals_looped():
  """Under vmap the tiers' conditions and loops run for the whole batch."""
  xs, ys = zip(*(kind(name, 500) for name in ("rho0", "rho0.99", "cauchy")))
  xs, ys = np.stack(xs), np.stack(ys)
  batched = jax.jit(jax.vmap(lambda x, y: plane.counts(x, y, 3)))(xs, ys)
  for b, (x, y) in enumerate(zip(xs, ys)):
    looped = counts(x, y, 3)
    np.testing.assert_array_equal(batched[0][b], looped[0])
    np.testing.assert_array_equal(batched[1][b], looped[1])


def test_strip_size_is_the_power_of_two_nearest_sqrt_n():
  assert [plane._strip_size(n) for n in (2, 100, 2000, 20000, 10**6)] == [
      8, 8, 32, 128, 1024]


def test_first_true_finds_the_boundary_of_a_monotone_predicate():
  values = jnp.asarray([0, 0, 1, 1, 1])
  lo, hi = jnp.asarray([0, 0, 3, 2]), jnp.asarray([5, 2, 5, 2])
  got = plane._first_true(lambda j: values[j] >= 1, lo, hi, plane._steps(5))
  np.testing.assert_array_equal(got, [2, 2, 3, 2])
