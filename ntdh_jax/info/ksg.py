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

**Memory and time.** Two ways to find the neighbours, with the same counts
(``method``):

* ``"brute"``, any widths: the query rows are processed in blocks of
  ``block_size`` (``lax.map`` with ``batch_size``); a block computes its
  max-norm distances to all N points, one ``f32[block_size, N]`` array per
  marginal, takes the (k+1)-th smallest joint distance with ``lax.top_k``
  (i itself, at distance 0, is the first) and counts. Temporary memory is a
  few such arrays, proportional to block_size · N and never the N × N
  matrix: XLA's memory analysis on CPU gives 12 MB at D_x = D_y = 1 and
  23 MB at D_x = D_y = 8 for N = 20,000 and the default block of 64 (about
  (2 + D/4) · block_size · N · 4 bytes, D = D_x + D_y). Time is O(N² · D):
  the design for accelerators and for high dimension, where k-d trees
  degrade.
* ``"sorted"``, one column each (``ntdh_jax.info.plane``): sorted orders
  and candidate windows with a proof that no closer point was missed,
  O(N log N) in practice and O(N) memory; ``"auto"`` takes it for
  D_x = D_y = 1 and k <= 10. On a CPU it is several times faster than
  scikit-learn's tree search (``benchmarks/ksg.py``).

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
import warnings
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma
import numpy as np

from ntdh_jax import validation
from ntdh_jax.info import plane
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


def _count_closer(distances, radius):
  """#{n : distances[n] < radius} in scikit-learn's form (module docstring):
  at most the largest float below ``radius``."""
  return jnp.sum(distances <= jnp.nextafter(radius, 0.0), dtype=jnp.int32)


def _brute_counts(x, y, k: int, block_size: int):
  """``(n_x, n_y)`` of standardised ``f32[N, Dx]``, ``f32[N, Dy]`` by
  blocks of query rows against all N points (module docstring)."""
  x_t, y_t = x.T, y.T

  def counts(rows):
    qx, qy = rows
    dist_x, dist_y = _max_abs_distance(qx, x_t), _max_abs_distance(qy, y_t)
    # The (k+1)-th smallest joint distance with i included (at distance 0)
    # is the k-th with i excluded, so no self mask is needed. The counts
    # include i (its distance 0 is always within range): minus 1.
    eps = plane.kth_smallest(jnp.maximum(dist_x, dist_y), k + 1)
    return (_count_closer(dist_x, eps) - 1, _count_closer(dist_y, eps) - 1)

  return jax.lax.map(counts, (x, y), batch_size=block_size)


def _sorted_counts(x, y, k: int, block_size: int):
  """The same counts of one-column x and y by sorting (``info.plane``)."""
  del block_size  # plane bounds its own memory
  return plane.counts(x[:, 0], y[:, 0], k)


# How the neighbour counts are found; "auto" takes "sorted" where it applies.
METHODS = {"brute": _brute_counts, "sorted": _sorted_counts}


def _method(method: str, dx: int, dy: int, k: int) -> str:
  """The counting method for ``method`` at these widths and k (validated)."""
  if method == "auto":
    return "sorted" if dx == dy == 1 and k <= plane.AUTO_MAX_K else "brute"
  if method not in METHODS:
    raise ValueError(
        f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}.")
  if method == "sorted" and not dx == dy == 1:
    raise ValueError(
        "method='sorted' needs one column each in x and y, got "
        f"{dx} and {dy}; use 'brute' (or 'auto').")
  return method


@functools.partial(jax.jit, static_argnames=("k", "block_size", "method"))
def _ksg_nats(x, y, key, noise, *, k: int, block_size: int,
              method: str = "brute"):
  """Point-wise KSG in nats, ``f32[N]``, of validated ``f32[N, Dx]``,
  ``f32[N, Dy]``; ``block_size`` <= N (callers clip it, so every block
  size >= N shares one compiled program); ``method`` a key of METHODS."""
  n, dx = x.shape
  z = _standardise_and_jitter(jnp.concatenate([x, y], axis=1), key, noise)
  n_x, n_y = METHODS[method](z[:, :dx], z[:, dx:], k, block_size)
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
    d = plane.kth_smallest(same_class, k + 1)
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
  memory. Pure and jit/vmap-able (``k``, ``block_size`` and ``base`` are
  static); eager calls reuse one compiled program per shape and ``k``. Not
  differentiable: the estimate is a function of neighbour counts.

  Args:
    x: ``f[N, Dx]`` (or ``f[N]``) samples of X.
    y: ``f[N, Dy]`` (or ``f[N]``), the paired samples of Y.
    k: neighbours, 1 <= k < N; 3 as in Kraskov et al.'s recommendation of
      a small k, scikit-learn and latentmi 0.1.3.
    base: ``None`` for nats, 2 for bits.
    noise: jitter scale in standard deviations of each column, > 0.
    key: PRNG key of the jitter; ``None`` means ``jax.random.PRNGKey(0)``.
    block_size: query rows per block of the brute force; its temporary
      memory grows with block_size · N (module docstring).
    method: how the neighbours are found, with the same counts either way:
      ``"brute"`` (every pair, blockwise, any widths), ``"sorted"`` (one
      column each; sorted orders, O(N log N), ``info.plane``) or
      ``"auto"`` (``"sorted"`` for one column each and k <= 10, else
      ``"brute"``).

  Returns:
    ``KSGResult(mean=f32[], pointwise=f32[N])``. The estimate has KSG's
    known behaviour: small bias at low dimension and MI, under-estimation
    at high MI or dimension; ≈ 0, possibly slightly negative, for
    independent x and y (not clipped at 0, unlike scikit-learn).

  Raises:
    ValueError: naming ``x`` or ``y``: different N, N <= k, a non-finite
      entry, a constant column; or a bad option.
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
  _check_enough(n, k, "x")
  width = lambda v: 1 if jnp.ndim(v) == 1 else jnp.shape(v)[1]
  method = _method(method, width(x), width(y), k)
  check_values(x, "x")
  check_values(y, "y")
  warn_duplicates((x, y), "ksg(x, y)")
  pointwise = units.in_base(
      _ksg_nats(_as_columns(x), _as_columns(y), _key(key),
                jnp.float32(noise), k=k, block_size=min(block_size, n),
                method=method), base)
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
