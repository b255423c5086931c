"""k-nearest-neighbour mutual-information estimators (KSG and Ross).

* ``ksg(x, y)``: I(X; Y) of two continuous variables, Kraskov, Stögbauer &
  Grassberger, *Estimating mutual information*, Phys. Rev. E 69, 066138
  (2004), algorithm 1 (their Eq. 8). With z_i = (x_i, y_i) and the max-norm
  ‖z − z′‖ = max(‖x − x′‖_∞, ‖y − y′‖_∞):

    ε_i   = distance from z_i to its k-th nearest neighbour (i itself excluded)
    n_x(i) = #{j ≠ i : ‖x_j − x_i‖_∞ < ε_i}  (strictly closer), n_y likewise
    pmi_i = ψ(k) + ψ(N) − ψ(n_x(i) + 1) − ψ(n_y(i) + 1),   I = ⟨pmi⟩.

* ``ksg_discrete(x, labels)``: I(X; C) of a continuous x and integer class
  labels, Ross, *Mutual information between discrete and continuous data
  sets*, PLoS ONE 9(2): e87357 (2014):

    d_i   = distance from x_i to its k-th nearest neighbour among the points
            of its own class (i excluded), max-norm
    m_i   = #{j : ‖x_j − x_i‖_∞ < d_i}, i itself included, all classes
    pmi_i = ψ(N) − ψ(N_c(i)) + ψ(k) − ψ(m_i),   N_c(i) = size of i's class.

  Ross counts "the neighbours within d, including the k-th one itself" (i
  excluded); scikit-learn's ``_compute_mi_cd`` (1.9) counts the points
  strictly closer than d with i included. The two coincide unless two
  points lie at exactly the same distance from x_i, which the jitter below
  rules out; this module follows scikit-learn's strict form.

Both follow scikit-learn's conventions for the counts (``_compute_mi_cc``
and ``_compute_mi_cd``): "strictly closer than ε" is "at most the largest
float below ε" (``nextafter(ε, 0)``), which differs from ``< ε`` only when
ε = 0 (k exact duplicates): then the duplicates are counted rather than
nothing, so every ψ stays finite.

**Preprocessing.** Each column is standardised to mean 0 and standard
deviation 1 (ddof 0), then jittered: ``z += noise · normal(key, z.shape)``
with the columns in the order x then y (``ksg``), or x alone
(``ksg_discrete``). Standardising makes the estimate invariant to
per-column affine maps (x → 3x + 1 gives the same neighbours; without it
the max-norm would weigh the columns by their scales); scikit-learn scales
too (to unit variance, without centring — centring here keeps float32's
digits). The jitter breaks ties, as Kraskov et al. advise: scikit-learn adds
1e-10 · max(1, mean |column|) · N(0, 1) to its unit-variance float64
columns; in float32 that is below a unit value's rounding step (1.2e-7) and
would change nothing, so the default here is ``noise = 1e-5`` of each
column's standard deviation (about 10 float32 steps at |z| ≈ 8, and ~1e-3
of the smallest k-th neighbour distances of 1-d Gaussians at N = 20,000).

**Precision.** Inputs are cast to float32 (jax's default) before anything
else; distances, counts (int32, exact) and ψ (``jax.scipy.special.digamma``)
are float32, ~1e-6 nats per point. Data whose mean is more than ~1e4
standard deviations from 0 lose digits in that cast: centre it first.

**Memory and time.** The query rows are processed in blocks of
``block_size`` (``lax.map`` with ``batch_size``); a block computes its
max-norm distances to all N points, one ``f32[block_size, N]`` array per
marginal, takes the (k+1)-th smallest joint distance with ``lax.top_k`` (i
itself, at distance 0, is the first) and counts. Temporary memory is a few
such arrays, proportional to block_size · N and never the N × N matrix:
XLA's memory analysis on CPU gives 12 MB at D_x = D_y = 1 and 23 MB at
D_x = D_y = 8 for N = 20,000 and the default block of 64 (about
(2 + D/4) · block_size · N · 4 bytes, D = D_x + D_y). Time is
O(N² · D). This brute force is ``method="brute"``, the default unless x and
y have one column each.

**The sorted method** (``method="sorted"``, the default when D_x = D_y = 1)
gives the brute force's counts bit for bit, faster (``benchmarks/ksg.py``:
~10× at N = 20,000 on a 2-core CPU, still slower there than scikit-learn's
trees). Each column is sorted once. ε_i: the k-th smallest max-norm distance
to the W neighbours on each side of i in x-order is an upper bound u; every
point beyond the window is at least as far in x as the first one beyond it
on its side, so when both of those x-distances are >= u, no point outside is
strictly closer and u is exact (ties at u leave the value unchanged). The
same in y-order; rows neither settles are tried with windows 4W wide, then
by brute force, ``block_size`` rows at a time (``lax.while_loop`` over a
static-size ``nonzero``). W ≈ sqrt(k · N)/2: a typical row's k-th-neighbour
band of a 1-d marginal holds ~sqrt(k · N) points, so the windows grow with
N and the method is O(N^1.5) on Gaussians. n_x, n_y: binary searches on the
sorted columns with the brute force's own float32 ``|x_i − x_j|``, which is
monotone in x_j, so the counts equal its O(N) comparisons. Both methods
count from one standardised z computed in its own program (XLA compiles the
standardisation differently when fused into different consumers, which can
move z by an ulp); inside a caller's ``jit`` they are compiled together and
may differ in a near-tie count (~1/n_x for that point), as a jitted and an
eager call of one method may.

**Bad input.** ``ValueError`` naming the argument: mismatched sample
counts, N <= k, non-finite values, constant columns, a class with <= k
members; ``TypeError`` for non-floating x/y and non-integer labels (the
library's convention for dtypes, ``ntdh_jax.validation``). Shapes are
checked always; values at once when they are concrete, under ``jit`` /
``vmap`` only inside ``ntdh_jax.checked`` (where a constant column is
harmless: it is standardised as if its spread were 1 and so becomes pure
jitter, which no longer moves the max-norm). Duplicated rows warn (concrete
inputs only): jitter separates them by ~``noise``, so their k-th neighbour
is a duplicate and their point-wise MI is inflated — never bootstrap KSG
by resampling rows.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma
import numpy as np

from ntdh_jax import validation
from ntdh_jax.info import units

DEFAULT_NOISE = 1e-5
DEFAULT_BLOCK_SIZE = 64


class KSGResult(NamedTuple):
  """A k-NN MI estimate.

  Attributes:
    mean: ``f32[]``, the estimate Î = mean of ``pointwise``.
    pointwise: ``f32[N]``, each sample's contribution (point-wise MI); it
      may be negative, only the mean estimates MI.
  """
  mean: jax.Array
  pointwise: jax.Array


# -- the computation -----------------------------------------------------------


def _standardise_and_jitter(z, key, noise):
  """``f32[N, D]`` columns to mean 0, std 1, plus ``noise`` · N(0, 1)."""
  std = jnp.std(z, axis=0)
  # A constant column (only reachable under jit, where values are not
  # checked) is divided by 1: it becomes 0 + jitter, not NaN.
  z = (z - jnp.mean(z, axis=0)) / jnp.where(std > 0, std, 1.0)
  return z + noise * jax.random.normal(key, z.shape, z.dtype)


def _max_abs_distance(q, ref_t):
  """``f32[N]`` of max_d |q[d] − ref_t[d, n]|: one point against all N.

  One pass per dimension (D is static) over ``ref_t``'s contiguous rows:
  written as ``max(|q[None] − ref|, axis=-1)`` on ``f32[N, D]``, XLA's CPU
  backend took 20 s instead of 0.5 s for the blocked N = 20,000 scan.
  """
  return functools.reduce(
      jnp.maximum, [jnp.abs(q[d] - ref_t[d]) for d in range(q.shape[0])])


def _kth_smallest(distances, k: int):
  """The k-th smallest entry of ``f32[N]`` (ties counted), via ``top_k``.

  ``min`` over the k values ``top_k`` returns, not its last column: XLA
  rewrites a top_k whose only use is one column into a full sort, which
  made the whole estimator ~40× slower on CPU.
  """
  return -jnp.min(jax.lax.top_k(-distances, k)[0], axis=-1)


def _count_closer(distances, radius):
  """#{n : distances[n] < radius} in scikit-learn's form (module docstring):
  at most the largest float below ``radius``."""
  return jnp.sum(distances <= jnp.nextafter(radius, 0.0), dtype=jnp.int32)


def _brute_counts(x, y, k: int, block_size: int):
  """``(n_x, n_y)``, ``int32[N]`` each, of standardised ``f32[N, Dx]``,
  ``f32[N, Dy]``, by blockwise brute force (module docstring)."""
  x_t, y_t = x.T, y.T

  def counts(rows):
    qx, qy = rows
    dist_x, dist_y = _max_abs_distance(qx, x_t), _max_abs_distance(qy, y_t)
    # The (k+1)-th smallest joint distance with i included (at distance 0)
    # is the k-th with i excluded, so no self mask is needed. The counts
    # include i (its distance 0 is always within range): minus 1.
    eps = _kth_smallest(jnp.maximum(dist_x, dist_y), k + 1)
    return (_count_closer(dist_x, eps) - 1, _count_closer(dist_y, eps) - 1)

  return jax.lax.map(counts, (x, y), batch_size=block_size)


# -- the sorted method (D_x = D_y = 1) -----------------------------------------


def _first_true(sorted_v, pred, m: int, n_steps: int):
  """``int32[m]``: for each of m queries, the first index j in [0, N] at
  which ``pred(sorted_v[j])`` (``bool[m]`` of ``f32[m]``) holds, N if none;
  ``pred`` must be monotone (false … false true … true) along
  ``sorted_v``. A binary search of ``n_steps`` >= log2(N + 1) halvings."""
  n = sorted_v.shape[0]
  lo, hi = jnp.zeros(m, jnp.int32), jnp.full(m, n, jnp.int32)

  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    hit = pred(sorted_v[jnp.minimum(mid, n - 1)])
    active = lo < hi
    return (jnp.where(active & ~hit, mid + 1, lo),
            jnp.where(active & hit, mid, hi))

  return jax.lax.fori_loop(0, n_steps, halve, (lo, hi))[0]


def _count_within(sorted_v, q, radius):
  """``int32[M]``: #{j : |q − sorted_v[j]| <= radius}, i itself included,
  with the brute force's own float32 ``|q − v|``: fl(q − v) is monotone
  (non-increasing) in v, so {fl(q − v) <= r} and {fl(q − v) < −r} are
  suffixes of the sorted column and the count is the difference of their
  starts — bit-for-bit the count ``_count_closer`` makes over all N."""
  steps, m = int(sorted_v.shape[0]).bit_length(), q.shape[0]
  start_le = _first_true(sorted_v, lambda v: q - v <= radius, m, steps)
  start_lt = _first_true(sorted_v, lambda v: q - v < -radius, m, steps)
  return start_lt - start_le


def _window_kth(order, rows, a, b, k: int, window: int):
  """The k-th smallest max-norm distance from each of ``rows`` (``int[M]``,
  original indices) to its ``window`` neighbours on each side in one
  column's sorted order, and whether that value is exact.

  ``order`` is the ``(perm, pos)`` pair of that order; ``a``, ``b`` the
  sorting column and the other one, ``f32[N]`` in original row order. Every
  point outside the window is at least as far in ``a`` as the first one
  beyond it on its side (the order is sorted), so when both those
  ``a``-distances are >= the window's k-th distance u, no outside point is
  strictly closer than u and u is the k-th neighbour distance over all N
  (ties at u do not change the value)."""
  perm, pos = order
  n = a.shape[0]
  a_s, b_s = a[perm], b[perm]
  p = pos[rows]
  qa, qb = a[rows], b[rows]
  offsets = np.r_[-window:0, 1:window + 1]
  j = p[:, None] + offsets
  inside = (j >= 0) & (j < n)
  j = jnp.clip(j, 0, n - 1)
  joint = jnp.maximum(jnp.abs(qa[:, None] - a_s[j]),
                      jnp.abs(qb[:, None] - b_s[j]))
  u = _kth_smallest(jnp.where(inside, joint, jnp.inf), k)

  def clear(beyond):
    out = (beyond < 0) | (beyond >= n)
    return out | (jnp.abs(qa - a_s[jnp.clip(beyond, 0, n - 1)]) >= u)

  return u, clear(p - window - 1) & clear(p + window + 1)


def _refine(eps, pending, fn, capacity: int):
  """Runs ``fn`` (rows ``int[M]`` -> value ``f32[M]``, exact ``bool[M]``)
  once on every pending row, ``capacity`` rows at a time (a static-size
  ``nonzero``), and stores the exact values; returns ``(eps, pending)``
  with the rows it could not settle still pending."""
  n = eps.shape[0]

  def step(state):
    eps, pending, todo = state
    picked = jnp.nonzero(todo, size=capacity, fill_value=n)[0]
    value, exact = fn(jnp.minimum(picked, n - 1))
    settled = jnp.where(exact, picked, n)  # index n: dropped
    return (eps.at[settled].set(value, mode="drop"),
            pending.at[settled].set(False, mode="drop"),
            todo.at[picked].set(False, mode="drop"))

  eps, pending, _ = jax.lax.while_loop(
      lambda state: jnp.any(state[2]), step, (eps, pending, pending))
  return eps, pending


def _sorted_counts(x, y, k: int, block_size: int):
  """``(n_x, n_y)``, ``int32[N]`` each, of standardised ``f32[N]`` columns:
  the brute force's counts in O(N log N + N · window) (module docstring)."""
  n = x.shape[0]
  orders = []
  for v in (x, y):
    perm = jnp.argsort(v)
    orders.append((perm, jnp.zeros(n, jnp.int32).at[perm].set(
        jnp.arange(n, dtype=jnp.int32))))

  def windows(width):
    def kth(rows):
      u_x, exact_x = _window_kth(orders[0], rows, x, y, k, width)
      u_y, exact_y = _window_kth(orders[1], rows, y, x, k, width)
      # Where one order's value is exact it is the smaller of the two (the
      # other is an upper bound of the same k-th distance).
      return jnp.minimum(u_x, u_y), exact_x | exact_y
    return kth

  def brute(rows):
    joint = jnp.maximum(jnp.abs(x[rows, None] - x), jnp.abs(y[rows, None] - y))
    return _kth_smallest(joint, k + 1), jnp.ones(rows.shape, bool)

  width = _first_window(n, k)
  eps, exact = windows(width)(jnp.arange(n))
  eps = jnp.where(exact, eps, jnp.inf)
  if 4 * width < n - 1:
    eps, pending = _refine(eps, ~exact, windows(4 * width), max(1, n // 8))
    eps, _ = _refine(eps, pending, brute, block_size)
  elif width < n - 1:
    eps, _ = _refine(eps, ~exact, brute, block_size)
  radius = jnp.nextafter(eps, 0.0)
  return tuple(_count_within(v[perm], v, radius) - 1
               for v, (perm, _) in zip((x, y), orders))


def _first_window(n: int, k: int) -> int:
  """Neighbours per side of the sorted method's first pass: about half the
  ~sqrt(k · N) points that share a typical k-th-neighbour band of a 1-d
  marginal (measured on Gaussians; the band is what the window must span)."""
  return min(n - 1, max(k, math.isqrt(k * n) // 2))


# Its own program: XLA compiles the standardisation differently when it is
# fused into different consumers (z moved by an ulp and flipped a near-tie
# neighbour count at N = 20,000), so ksg's two methods take z from here to
# count from the same float32 values.
_prepared = jax.jit(_standardise_and_jitter)


@functools.partial(jax.jit,
                   static_argnames=("dx", "k", "block_size", "method"))
def _ksg_nats(z, *, dx: int, k: int, block_size: int, method: str):
  """Point-wise KSG in nats, ``f32[N]``, of prepared ``f32[N, Dx + Dy]``
  (x's ``dx`` columns first); ``block_size`` <= N (callers clip it, so
  every block size >= N shares one compiled program); ``method`` "brute"
  or "sorted" (D_x = D_y = 1), which give the same counts of the same z."""
  n = z.shape[0]
  if method == "sorted":
    n_x, n_y = _sorted_counts(z[:, 0], z[:, 1], k, block_size)
  else:
    n_x, n_y = _brute_counts(z[:, :dx], z[:, dx:], k, block_size)
  return (digamma(jnp.float32(k)) + digamma(jnp.float32(n))
          - digamma(n_x + 1.0) - digamma(n_y + 1.0))


def _class_sizes(xp, labels):
  """``int[N]``: the size of each point's class, by sorting (O(N log N),
  no N × N comparison); ``xp`` is ``np`` or ``jnp``."""
  ordered = xp.sort(labels)
  return (xp.searchsorted(ordered, labels, side="right")
          - xp.searchsorted(ordered, labels, side="left"))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _ross_nats(x, labels, key, noise, *, k: int, block_size: int):
  """Point-wise Ross (2014) estimate in nats, ``f32[N]``, of validated
  ``f32[N, D]`` and ``int[N]``; ``block_size`` <= N."""
  n = x.shape[0]
  x = _standardise_and_jitter(x, key, noise)
  x_t = x.T

  def count(rows):
    q, label = rows
    dist = _max_abs_distance(q, x_t)
    same_class = jnp.where(labels == label, dist, jnp.inf)
    # (k+1)-th with i included = k-th same-class neighbour with i excluded.
    d = _kth_smallest(same_class, k + 1)
    return _count_closer(dist, d)  # i included, as scikit-learn counts

  m = jax.lax.map(count, (x, labels), batch_size=block_size)
  return (digamma(jnp.float32(n)) - digamma(_class_sizes(jnp, labels) * 1.0)
          + digamma(jnp.float32(k)) - digamma(m * 1.0))


# -- checks at the public boundary ---------------------------------------------


def check_samples(v, name: str):
  """Shape and dtype of ``f[N]`` or ``f[N, D]`` samples; returns the rank."""
  validation.check_rank(v, name, (1, 2), "[N] or [N, D]")
  validation.check_floating(v, name)
  if jnp.shape(v)[0] == 0 or (jnp.ndim(v) == 2 and jnp.shape(v)[1] == 0):
    raise ValueError(
        f"{name} must have at least one sample and one column, got shape "
        f"{jnp.shape(v)}.")


def _as_columns(v):
  """``f32[N, D]`` view of ``f[N]`` or ``f[N, D]``."""
  v = jnp.asarray(v, jnp.float32)
  return v[:, None] if v.ndim == 1 else v


def check_values(v, name: str) -> None:
  """Finite in float32 and no constant column (module docstring).

  The value check of every sample-based estimator in ``ntdh_jax.info``
  (``neural.check_pair`` calls it too), so all refuse the same input with
  the same message: ``ValueError`` at once for concrete ``v``, a
  ``checkify`` check under a trace.
  """
  xp = np if validation.is_concrete(v) else jnp
  with np.errstate(over="ignore", invalid="ignore"):  # inf is the answer
    v = xp.asarray(v, xp.float32)
  v = v[:, None] if v.ndim == 1 else v
  bad = ~xp.isfinite(v)
  first = xp.argmax(xp.ravel(bad))
  validation.require(
      ~xp.any(bad),
      f"{name} must be finite in float32 (the estimators compute in float32); "
      "it holds {} non-finite entries, the first at row {}, column {}.",
      xp.sum(bad), first // v.shape[1], first % v.shape[1])
  constant = xp.all(v == v[:1], axis=0)
  validation.require(
      ~xp.any(constant),
      f"{name} must have no constant column (a constant carries no "
      "information, and each column is standardised by its spread): column "
      "{} is constant; drop it.", xp.argmax(constant))


def _check_options(k, noise, key, block_size, base) -> None:
  validation.check_positive_int(k, "k")
  validation.check_positive(noise, "noise")
  if key is not None:
    validation.check_array(key, "key")
  validation.check_positive_int(block_size, "block_size")
  units.check_base(base)


def _check_method(method, one_column: bool) -> str:
  """``ksg``'s ``method`` resolved to "brute" or "sorted"."""
  if method not in ("auto", "brute", "sorted"):
    raise ValueError(
        f'method must be "auto", "brute" or "sorted", got {method!r}.')
  if method == "sorted" and not one_column:
    raise ValueError(
        'method "sorted" needs x and y of one column each (D_x = D_y = 1); '
        'use "brute" or "auto" for more.')
  if method == "auto":
    return "sorted" if one_column else "brute"
  return method


def _check_enough(n: int, k: int, name: str) -> None:
  if n <= k:
    raise ValueError(
        f"{name} has N = {n} samples; a k-nearest-neighbour estimate needs "
        f"N > k = {k}.")


def warn_duplicates(rows, what: str) -> None:
  """Warns when concrete ``rows`` (a tuple of ``[N, ...]`` arrays, one row
  per sample) repeat a row."""
  if not all(map(validation.is_concrete, rows)):
    return
  joint = np.concatenate(
      [np.asarray(r, np.float32).reshape(len(r), -1) for r in rows], axis=1)
  repeats = len(joint) - len(np.unique(joint, axis=0))
  if repeats:
    warnings.warn(
        f"{what}: {repeats} of {len(joint)} rows repeat an earlier row. The "
        "jitter puts duplicates ~noise apart, so each one's nearest "
        "neighbours are its copies and its point-wise MI is inflated; drop "
        "duplicated rows (and never bootstrap KSG by resampling rows).",
        stacklevel=3)


def _key(key):
  return jax.random.PRNGKey(0) if key is None else key


# -- public --------------------------------------------------------------------


def ksg(x, y, k: int = 3, *, base: Optional[float] = None,
        noise: float = DEFAULT_NOISE, key: Optional[jax.Array] = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        method: str = "auto") -> KSGResult:
  """I(X; Y) by KSG algorithm 1 (Kraskov et al. 2004), nats by default.

  See the module docstring for the estimator, preprocessing, precision and
  memory. Pure and jit/vmap-able (``k``, ``block_size``, ``base`` and
  ``method`` are static); eager calls reuse one compiled program per shape and ``k``. Not
  differentiable: the estimate is a function of neighbour counts.

  Args:
    x: ``f[N, Dx]`` (or ``f[N]``) samples of X.
    y: ``f[N, Dy]`` (or ``f[N]``), the paired samples of Y.
    k: neighbours, 1 <= k < N; 3 as in Kraskov et al.'s recommendation of
      a small k, scikit-learn and latentmi 0.1.3.
    base: ``None`` for nats, 2 for bits.
    noise: jitter scale in standard deviations of each column, > 0.
    key: PRNG key of the jitter; ``None`` means ``jax.random.PRNGKey(0)``.
    block_size: query rows per block of the brute force (and of the sorted
      method's last resort); temporary memory grows with block_size · N
      (module docstring).
    method: "auto" (the default): "sorted" when x and y have one column
      each, else "brute"; "brute": the blockwise O(N²) search; "sorted":
      the exact sorted search of one-column x and y. Both give the same
      estimate, bit for bit.

  Returns:
    ``KSGResult(mean=f32[], pointwise=f32[N])``. The estimate has KSG's
    known behaviour: small bias at low dimension and MI, under-estimation
    at high MI or dimension; ≈ 0, possibly slightly negative, for
    independent x and y (not clipped at 0, unlike scikit-learn).

  Raises:
    ValueError: naming ``x`` or ``y``: different N, N <= k, a non-finite
      entry, a constant column; or a bad option (``method`` "sorted" with
      more than one column included).
    TypeError: ``x`` or ``y`` not a floating array.

  Warns:
    UserWarning: concrete ``(x, y)`` with duplicated rows.
  """
  check_samples(x, "x")
  check_samples(y, "y")
  n = jnp.shape(x)[0]
  if jnp.shape(y)[0] != n:
    raise ValueError(
        f"x and y must have the same number of samples N (paired rows), got "
        f"{n} and {jnp.shape(y)[0]}.")
  _check_options(k, noise, key, block_size, base)
  one_column = all(jnp.ndim(v) == 1 or jnp.shape(v)[1] == 1 for v in (x, y))
  method = _check_method(method, one_column)
  _check_enough(n, k, "x")
  check_values(x, "x")
  check_values(y, "y")
  warn_duplicates((x, y), "ksg(x, y)")
  pointwise = units.in_base(
      _ksg_nats(_prepared(jnp.concatenate([_as_columns(x), _as_columns(y)],
                                          axis=1), _key(key),
                          jnp.float32(noise)),
                dx=_as_columns(x).shape[1], k=k,
                block_size=min(block_size, n), method=method), base)
  return KSGResult(jnp.mean(pointwise), pointwise)


def ksg_discrete(x, labels, k: int = 3, *, base: Optional[float] = None,
                 noise: float = DEFAULT_NOISE,
                 key: Optional[jax.Array] = None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> KSGResult:
  """I(X; C) of continuous x and class labels (Ross 2014), nats by default.

  For I(H; Y) with H a representation and Y its class label. See the module
  docstring for the estimator and its counting convention; jit/vmap as
  ``ksg``.

  Args:
    x: ``f[N, D]`` (or ``f[N]``) samples of X.
    labels: ``int[N]`` class labels, any integer values; every class needs
      more than k members.
    k: same-class neighbours, >= 1 (3 as scikit-learn's default).
    base: ``None`` for nats, 2 for bits.
    noise: jitter scale in standard deviations of each column, > 0.
    key: PRNG key of the jitter; ``None`` means ``jax.random.PRNGKey(0)``.
    block_size: query rows per block (memory ∝ block_size · N).

  Returns:
    ``KSGResult(mean=f32[], pointwise=f32[N])``, not clipped at 0.

  Raises:
    ValueError: naming the argument: ``labels`` not of shape [N]; N <= k;
      a class with <= k members; ``x`` with a non-finite entry or a
      constant column; a bad option.
    TypeError: ``x`` not floating, ``labels`` not an integer array.

  Warns:
    UserWarning: concrete ``(x, labels)`` with duplicated rows.
  """
  check_samples(x, "x")
  n = jnp.shape(x)[0]
  validation.check_array(labels, "labels")
  if jnp.shape(labels) != (n,):
    raise ValueError(
        f"labels must have shape [N] = ({n},), one per row of x, got "
        f"{jnp.shape(labels)}.")
  validation.check_integer(labels, "labels")
  _check_options(k, noise, key, block_size, base)
  _check_enough(n, k, "x")
  check_values(x, "x")
  xp = np if validation.is_concrete(labels) else jnp
  values = xp.asarray(labels)
  sizes = _class_sizes(xp, values)
  smallest = xp.argmin(sizes)
  validation.require(
      sizes[smallest] > k,
      f"labels must give every class more than k = {k} members (each point "
      "needs a k-th neighbour in its own class); class {} has {}.",
      values[smallest], sizes[smallest])
  warn_duplicates((x, labels), "ksg_discrete(x, labels)")
  pointwise = units.in_base(
      _ross_nats(_as_columns(x), jnp.asarray(labels), _key(key),
                 jnp.float32(noise), k=k, block_size=min(block_size, n)), base)
  return KSGResult(jnp.mean(pointwise), pointwise)


__all__ = ["KSGResult", "ksg", "ksg_discrete", "DEFAULT_NOISE",
           "DEFAULT_BLOCK_SIZE"]
