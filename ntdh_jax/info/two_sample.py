"""Two-sample statistics between two sets of embeddings (for CMCD).

CMCD (Lin et al., arXiv 2405.03355) bounds the distilled target's error by
the total-variation distance between the source and the target modality's
latent distributions, and plots a latent-distance diagnostic against
downstream accuracy. Both statistics here compare ``x: f[N, D]`` (source)
with ``y: f[M, D]`` (target); both are pure, jit- and vmap-safe and return
an ``f32[]`` scalar.

* ``mmd2(x, y, bandwidth=None)``: the unbiased squared Maximum Mean
  Discrepancy of Gretton, Borgwardt, Rasch, Schölkopf & Smola, *A Kernel
  Two-Sample Test*, JMLR 13:723–773 (2012), Lemma 6 (their Eq. 3), with the
  Gaussian kernel k(a, b) = exp(−‖a − b‖² / (2h²)):

    MMD²_u = 1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j)
             − 2/(NM) Σ_{i,j} k(x_i, y_j).

  Unbiased, so ≈ 0 and possibly slightly negative when x and y come from
  one distribution; it is never clipped. ``bandwidth=None`` takes h by the
  median heuristic (Gretton et al. 2012, Sec. 8: the median distance
  between points of the pooled sample): h = the median of the P(P − 1)/2
  distances ‖z_i − z_j‖, i < j, of z = x ∪ y (P = N + M), with
  ``jnp.median``'s convention, the mean of the two middle values when the
  count is even. It is computed as ``jnp.median`` of the P(P − 1)
  off-diagonal entries of the distance matrix, where each pair appears
  twice: that count is always even, and its two middle values are those of
  the i < j list (its median for an even count, or its middle value twice
  for an odd one), so the result is the same. If more than half of the
  pairs are duplicates h is 0; the kernel is then its h → 0 limit, 1 for
  equal points and 0 otherwise (no NaN).

* ``tv_lower_bound(x, y, k=5)``: a held-out classifier two-sample estimate
  of TV(P_x, P_y) (the classifier two-sample test of Lopez-Paz & Oquab,
  *Revisiting Classifier Two-Sample Tests*, ICLR 2017, with a k-nearest-
  neighbour classifier). Each sample is split by index into a first half
  x[:n] and a second half x[n:2n], n = ⌊N/2⌋ (m = ⌊M/2⌋ for y; the last
  point of an odd-sized sample is unused, so both halves are equal in size,
  which the bound below needs). Each point of one half is classified as
  "x" or "y" by the majority label of its k nearest neighbours (Euclidean)
  among the n + m points of the *other* half (its x and its y points), in
  both directions (half 1 → half 2 and
  half 2 → half 1), so every used point is held out exactly once. k is odd,
  so the vote cannot tie; equal distances go to the lower index in the
  reference order (that half's x points, then its y points), as
  ``lax.top_k`` guarantees. With TPR_x the fraction of the 2n held-out x
  points classified "x" and TNR_y the fraction of the 2m held-out y points
  classified "y", the balanced accuracy is (TPR_x + TNR_y) / 2 and the
  estimate is 2 · balanced accuracy − 1 = TPR_x − (1 − TNR_y).

  *Why a lower bound in expectation.* For any classifier h fixed
  independently of the points it is scored on, P_x(h = x) − P_y(h = x) =
  P_x(A) − P_y(A) for the set A = {h = x}, which is at most
  sup_A |P_x(A) − P_y(A)| = TV(P_x, P_y); and its balanced accuracy is
  (P_x(h = x) + P_y(h = y)) / 2 = (1 + P_x(h = x) − P_y(h = x)) / 2, so
  2 · balanced accuracy − 1 = P_x(h = x) − P_y(h = x) ≤ TV. Each direction's
  k-NN classifier is built from the other half only, so it is independent
  of the points it classifies; the estimate is the average of the two
  directions' TPR − FPR (equal halves give them equal weight), and its
  expectation, over the held-out points and then over the classifiers'
  training halves, is at most TV. A single estimate can exceed TV by
  sampling noise (standard deviation ≈ sqrt(1/(4n) + 1/(4m)) at most, less
  the correlation of the two directions). The classifier's own error (k-NN
  is not the Bayes classifier) only lowers it: how close it comes to TV
  depends on k, n, m and D.

  The estimate is **not** clipped at 0: a value below 0 is chance-level
  noise (the classifier found nothing) and is reported as such, so that
  averages over runs stay unbiased. Balanced accuracy is a mean of two
  rates in [0, 1], so the estimate lies in [−1, 1] for any N and M (with
  N = M it is also 2 · plain accuracy − 1). It is a step function of the
  data (neighbour votes), so it has no useful gradient.

**Paired samples.** Both are written for independent samples. When x and
y are paired (row i of each embeds the same example in the two
modalities, as for a test set seen by both), ``tv_lower_bound``'s split by
index keeps every pair in one half if N = M, so each classifier is still
independent of the points it scores and the bound holds (pairing only
correlates TPR and FPR, changing the noise). ``mmd2``'s cross term then
holds N dependent pairs (x_i, y_i) among its N · M: for aligned embeddings
k(x_i, y_i) exceeds the average k(x, y′), and MMD²_u is biased low by at
most 2/M (for N = M, 2/N · (E k(x_i, y_i) − E k(x, y′))).

**Precision.** Inputs are cast to float32. Squared distances are computed
as ‖a‖² + ‖b‖² − 2 a·b (clamped at 0) on data centred at the pooled mean
(a translation leaves every distance unchanged, and centring keeps the
cancellation small), with ``Precision.HIGHEST`` matrix products, so GPUs do
not use TF32 (whose ~1e-3 relative error would move the median and the
neighbours). Small integers or binary fractions with an exactly
representable pooled mean give exact distances, and hence the exact ties
the tests use.

**Memory and time.** One pooled squared-distance matrix: ``f32[P, P]`` for
``mmd2`` (plus the sort of its P(P − 1) entries for the median heuristic),
``f32[n + m, n + m]`` for ``tv_lower_bound``; O(P² D) time. At N = M =
5000 that is 400 MB and 100 MB; subsample larger sets.

**Bad input.** ``ValueError`` naming the argument (``x``, ``y``, ``k``,
``bandwidth``): rank other than 2, no column, different D, too few rows
(N, M >= 2 for ``mmd2``, >= 4 for ``tv_lower_bound``), non-finite values,
an even or too large k, a bandwidth that is not > 0 and finite.
``TypeError`` for a non-floating x or y, a non-int k, a non-number
bandwidth (the library's convention for types, ``ntdh_jax.validation``).
Shapes and k are checked always; values at once when they are concrete,
under ``jit`` / ``vmap`` only inside ``ntdh_jax.checked``.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import validation

DEFAULT_K = 5

# -- the computation -----------------------------------------------------------


def _centred(*parts):
  """The ``f32[., D]`` parts, minus the mean of all their rows together."""
  mean = jnp.mean(jnp.concatenate(parts, axis=0), axis=0)
  return tuple(p - mean for p in parts)


def _squared_distances(a, b):
  """``f32[A, B]`` of ‖a_i − b_j‖², clamped at 0 (module docstring)."""
  gram = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
  d2 = (jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :]
        - 2.0 * gram)
  return jnp.maximum(d2, 0.0)


def _median_heuristic(d2):
  """The median pairwise distance of a symmetric ``f32[P, P]`` of squared
  distances: ``jnp.median`` of its P(P − 1) off-diagonal entries."""
  p = d2.shape[0]
  # Drop the diagonal without a gather: the P² − 1 entries after the first
  # are P − 1 rows of P + 1 whose last entry is the next diagonal one.
  off = d2.reshape(-1)[1:].reshape(p - 1, p + 1)[:, :-1]
  # sqrt(0) has an infinite derivative: take roots of positive entries only.
  positive = off > 0
  dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, off, 1.0)), 0.0)
  return jnp.median(dist)


def _gaussian_kernel(d2, h):
  """exp(−d2 / (2h²)); for h = 0 its limit, 1 where d2 = 0 and 0 elsewhere."""
  two_h2 = 2.0 * jnp.square(h)
  safe = jnp.where(two_h2 > 0, two_h2, 1.0)
  return jnp.where(two_h2 > 0, jnp.exp(-d2 / safe),
                   (d2 == 0).astype(d2.dtype))


@jax.jit
def _mmd2(x, y, bandwidth):
  """Unbiased MMD² of validated ``f32[N, D]``, ``f32[M, D]``; ``bandwidth``
  an ``f32[]`` or ``None`` (the median heuristic)."""
  n, m = x.shape[0], y.shape[0]
  z = jnp.concatenate(_centred(x, y), axis=0)
  d2 = _squared_distances(z, z)
  h = _median_heuristic(d2) if bandwidth is None else bandwidth
  kernel = _gaussian_kernel(d2, h)
  # The diagonal (k(z_i, z_i) = 1) is left out of the within-sample sums.
  kernel = jnp.where(jnp.eye(n + m, dtype=bool), 0.0, kernel)
  within_x = jnp.sum(kernel[:n, :n]) / (n * (n - 1))
  within_y = jnp.sum(kernel[n:, n:]) / (m * (m - 1))
  between = jnp.sum(kernel[:n, n:]) / (n * m)
  return within_x + within_y - 2.0 * between


def _votes_for_x(d2, n_x: int, k: int):
  """``bool[Q]``: whether each query row's k nearest columns of ``d2``
  (``f32[Q, R]``, the first ``n_x`` columns labelled x) are mostly x."""
  # top_k of −d2: the k smallest distances, equal ones lowest index first.
  _, nearest = jax.lax.top_k(-d2, k)
  return 2 * jnp.sum(nearest < n_x, axis=-1) > k


@functools.partial(jax.jit, static_argnames=("k",))
def _tv_lower_bound(x, y, *, k: int):
  """The half-split k-NN estimate of validated ``f32[N, D]``, ``f32[M, D]``
  (N, M >= 4); ``k`` a static odd int."""
  n, m = x.shape[0] // 2, y.shape[0] // 2
  first, second = _centred(jnp.concatenate([x[:n], y[:m]], axis=0),
                           jnp.concatenate([x[n:2 * n], y[m:2 * m]], axis=0))
  d2 = _squared_distances(first, second)  # rows: half 1, columns: half 2
  says_x = jnp.concatenate([_votes_for_x(d2, n, k), _votes_for_x(d2.T, n, k)])
  is_x = jnp.tile(jnp.arange(n + m) < n, 2)
  true_positive_rate = jnp.sum(says_x & is_x) / (2 * n)
  false_positive_rate = jnp.sum(says_x & ~is_x) / (2 * m)
  return (true_positive_rate - false_positive_rate).astype(jnp.float32)


# -- checks at the public boundary ---------------------------------------------


def _check_pair(x, y, min_rows: int) -> None:
  """``x``, ``y``: floating ``[N, D]``, ``[M, D]``, N, M >= ``min_rows``,
  D >= 1, finite (values checked as ``validation.require`` does)."""
  for name, v in (("x", x), ("y", y)):
    validation.check_rank(v, name, (2,), "[N, D]")
    validation.check_floating(v, name)
  for name, v in (("x", x), ("y", y)):
    rows, columns = jnp.shape(v)
    if columns == 0:
      raise ValueError(
          f"{name} must have at least one column (D >= 1), got shape "
          f"{jnp.shape(v)}.")
    if rows < min_rows:
      raise ValueError(
          f"{name} has {rows} rows; this statistic needs at least {min_rows}.")
  if jnp.shape(y)[1] != jnp.shape(x)[1]:
    raise ValueError(
        f"y must have the same number of columns D as x (both embed into one "
        f"space), got {jnp.shape(y)[1]} and {jnp.shape(x)[1]}.")
  for name, v in (("x", x), ("y", y)):
    xp = np if validation.is_concrete(v) else jnp
    with np.errstate(over="ignore", invalid="ignore"):  # inf is the answer
      v = xp.asarray(v, xp.float32)
    bad = ~xp.isfinite(v)
    first = xp.argmax(xp.ravel(bad))
    validation.require(
        ~xp.any(bad),
        f"{name} must be finite in float32; it holds {{}} non-finite "
        "entries, the first at row {}, column {}.",
        xp.sum(bad), first // v.shape[1], first % v.shape[1])


def _check_k(k, x, y) -> None:
  validation.check_positive_int(k, "k")
  if k % 2 == 0:
    raise ValueError(
        f"k must be odd (so the x/y neighbour vote cannot tie), got {k}.")
  reference = jnp.shape(x)[0] // 2 + jnp.shape(y)[0] // 2
  if k > reference:
    raise ValueError(
        f"k must be at most the {reference} points of one half (⌊N/2⌋ + "
        f"⌊M/2⌋), the neighbours a held-out point votes among; got {k}.")


# -- public --------------------------------------------------------------------


def mmd2(x, y, bandwidth: Optional[float] = None) -> jax.Array:
  """Unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012).

  See the module docstring for the estimator, the median heuristic and
  precision. Pure and jit/vmap-able (``bandwidth`` may be traced, or mapped
  by ``vmap``); differentiable in x and y (for ``bandwidth=None`` the
  gradient also flows through the median).

  Args:
    x: ``f[N, D]`` source embeddings, N >= 2.
    y: ``f[M, D]`` target embeddings, M >= 2.
    bandwidth: h > 0 of k(a, b) = exp(−‖a − b‖² / (2h²)); ``None`` for the
      median heuristic, h = median pairwise distance of x ∪ y.

  Returns:
    ``f32[]``, MMD²_u (Gretton et al. 2012, Eq. 3): ≈ 0, possibly slightly
    negative, for one distribution; never clipped.

  Raises:
    ValueError: naming ``x``, ``y`` or ``bandwidth`` (module docstring).
    TypeError: ``x`` or ``y`` not floating, ``bandwidth`` not a number.
  """
  _check_pair(x, y, min_rows=2)
  if bandwidth is not None:
    validation.check_positive(bandwidth, "bandwidth")
    bandwidth = jnp.asarray(bandwidth, jnp.float32)
  return _mmd2(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
               bandwidth)


def tv_lower_bound(x, y, k: int = DEFAULT_K) -> jax.Array:
  """A held-out k-NN classifier estimate of TV(P_x, P_y), ≤ TV in expectation.

  See the module docstring for the half split, the vote, why its
  expectation is at most the total-variation distance and why it is not
  clipped at 0. Pure and jit/vmap-able (``k`` is static).

  Args:
    x: ``f[N, D]`` source embeddings, N >= 4.
    y: ``f[M, D]`` target embeddings, M >= 4.
    k: neighbours in the vote, an odd int, 1 <= k <= ⌊N/2⌋ + ⌊M/2⌋.

  Returns:
    ``f32[]``, 2 · balanced accuracy − 1 = TPR_x − FPR_y, in [−1, 1]: ≈ 1
    for separated distributions, ≈ 0 (either sign) for one distribution.

  Raises:
    ValueError: naming ``x``, ``y`` or ``k`` (module docstring).
    TypeError: ``x`` or ``y`` not floating, ``k`` not an int.
  """
  _check_pair(x, y, min_rows=4)
  _check_k(k, x, y)
  return _tv_lower_bound(jnp.asarray(x, jnp.float32),
                         jnp.asarray(y, jnp.float32), k=k)


__all__ = ["mmd2", "tv_lower_bound", "DEFAULT_K"]
