"""Feature masks (NTDH Algorithm 1) and sample masks (Algorithm 2).

Algorithm 1 scores every teacher input *unit* — a feature column of an
``[N, D]`` input, a pixel (all its channels together) of an ``[N, H, W, C]``
image — by *permutation importance*: shuffle that unit across samples and
measure how much the teacher–student non-target divergence (NCJSD) moves.
The scores are computed in mini-batches of units and of rows, so memory is
bounded whatever the input size.

Which features the "true" mask removes: the paper's intent is a mask that
*lowers* the teacher–student non-target divergence. A feature whose
permutation barely moves NCJSD (low importance) carries no knowledge the two
networks share; high-importance features are the ones the jointly trained
teacher and student agree through. The true mask therefore removes the
lowest-importance features first and keeps the high ones — the reference
code's ``mode='alg1'``, which keeps the top features by importance. The false
mask removes the highest-importance features first (its ``'reverse'``), the
random mask a uniformly random subset of the same size.

Algorithm 2 works per sample inside the student's training step: the ``r``
fraction of the batch with the largest teacher–student NCJSD is excluded from
the distillation term (true), or the smallest (false), or a random subset.
Samples may be pixels: scores of any shape (``[B, H, W]`` for a segmentation
batch) are ranked together, and a ``where`` mask leaves ignored pixels out of
the ranking and the count.

Ratios may be traced scalars so a sweep vmaps them: the number removed is
``floor(ratio · size)``, and a mask is built by ranking, never by a
value-dependent shape.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ntdh_jax import sorting
from ntdh_jax import validation

MASK_KINDS = ("true", "false", "random")
# How permutation_importance draws its row permutations: one per (repeat,
# unit), or one per repeat shared by all units.
PERMUTATIONS = ("per_unit", "shared")

# Default memory budget of permutation importance: permuted input values
# alive at once (unit_batch · row_batch · values per example), 2^24 float32 =
# 64 MiB. NTDH's synthetic study (6000 rows × 50 features, 10 units a step:
# 3·10^6 values) fits one row block, where the importance is the old
# single-pass batch mean bit for bit; a 240×320×3 image batch gets blocks of
# ~7 rows instead of exhausting memory.
_BLOCK_VALUES = 2**24
_UNIT_BATCH = 10  # units scored side by side (vmapped) per lax.map step

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
# A linear first layer ``(kernel f[D, F], bias f[F] or None)``.
FirstLayer = tuple[jax.Array, Optional[jax.Array]]


# ------------------------------------------------------- permutation importance


def _as_units(x: jax.Array):
  """``x`` as ``[N, U, K]`` (U units of K values) and the units' shape.

  ``[N, D]``: each column is a unit, ``unit_shape = (D,)``. ``[N, *S, C]``:
  each position of S is a unit holding its C channels, ``unit_shape =
  (*S, 1)``, which broadcasts against one example.
  """
  n = x.shape[0]
  if x.ndim == 2:
    return jnp.reshape(x, (n, x.shape[1], 1)), (x.shape[1],)
  spatial = x.shape[1:-1]
  return (jnp.reshape(x, (n, math.prod(spatial), x.shape[-1])),
          (*spatial, 1))


# jax.random.permutation's shuffle (jax/_src/random/core.py, _shuffle): sort
# by fresh random uint32 keys, ceil(3 · ln N / ln(2^32 − 1)) rounds.
_SHUFFLE_EXPONENT = 3


def _permutation(key: jax.Array, n: int) -> jax.Array:
  """``jax.random.permutation(key, n)``, the same permutation bit for bit
  (the same rounds, keys and stable order), with each round's key–value
  sort done by ``sorting.stable_argsort_u32``: ~3× faster on XLA:CPU, where the
  draws were most of permutation importance's time
  (``benchmarks/permutation_importance.py``)."""
  rounds = math.ceil(_SHUFFLE_EXPONENT * math.log(max(1, n))
                     / math.log(2**32 - 1))
  order = jnp.arange(n, dtype=jnp.int32)
  for _ in range(rounds):
    key, subkey = jax.random.split(key)
    order = order[sorting.stable_argsort_u32(
        jax.random.bits(subkey, (n,), jnp.uint32))]
  return order


def _check_importance_args(x, num_repeats, unit_batch, row_batch):
  validation.check_batch(x, "x", layout="[N, D] or [N, ..., C]")
  validation.check_positive_int(num_repeats, "num_repeats")
  validation.check_positive_int(unit_batch, "unit_batch")
  if row_batch is not None:
    validation.check_positive_int(row_batch, "row_batch")


def _check_first_layer(first_layer, x):
  """Checks ``first_layer = (kernel f[D, F], bias f[F] or None)`` against
  ``x``, D its values per example; returns ``(kernel, bias)`` as arrays."""
  if not isinstance(first_layer, (tuple, list)) or len(first_layer) != 2:
    raise ValueError(
        "first_layer must be a pair (kernel f[D, F], bias f[F] or None), got "
        f"{type(first_layer).__name__}"
        + (f" of length {len(first_layer)}"
           if isinstance(first_layer, (tuple, list)) else "") + ".")
  kernel, bias = first_layer
  validation.check_array(kernel, "first_layer's kernel")
  validation.check_floating(kernel, "first_layer's kernel")
  values = math.prod(jnp.shape(x)[1:])
  if jnp.ndim(kernel) != 2 or jnp.shape(kernel)[0] != values:
    raise ValueError(
        f"first_layer's kernel must have shape [D, F] with D = {values}, the "
        f"values of one example of x (shape {tuple(jnp.shape(x))}), got "
        f"{tuple(jnp.shape(kernel))}.")
  if bias is not None:
    validation.check_array(bias, "first_layer's bias")
    validation.check_floating(bias, "first_layer's bias")
    validation.check_shape(bias, "first_layer's bias",
                           (jnp.shape(kernel)[1],))
  return jnp.asarray(kernel), None if bias is None else jnp.asarray(bias)


def _first_preactivation(x, kernel, bias):
  """``flatten(x) @ kernel (+ bias)``: ``f[N, ...] -> f32[N, F]``, the
  operations of ``flax.linen.Dense`` on the flattened input."""
  h = jnp.reshape(x, (x.shape[0], -1)) @ kernel
  return h if bias is None else h + bias


def _default_row_batch(per_example: int, units_at_once: int) -> int:
  return max(1, _BLOCK_VALUES // (units_at_once * max(per_example, 1)))


def _mean_over_rows(score_fn: ScoreFn, x: jax.Array, row_batch: int,
                    substitute) -> jax.Array:
  """Mean over all N rows of ``score_fn`` on ``substitute(x rows, rows)``.

  Rows are scored in contiguous blocks ``rows = start + arange(B)``, ``B =
  min(row_batch, N)``. One block covering all N computes exactly
  ``jnp.sum(scores) / N``, the operations of ``jnp.mean``, so a single-block
  result equals the batch mean of the full-batch per-example score bit for
  bit (what callers computed before scores were batched). Several blocks are
  a ``lax.scan`` adding block sums, divided by N at the end; when B does not
  divide N the last block is shifted back to end at row N and the rows it
  shares with the previous block are discarded, so every block is a plain
  slice and each row counts once.
  """
  n = x.shape[0]
  size = min(row_batch, n)

  def scores_of(start):
    rows = start + jnp.arange(size, dtype=jnp.int32)
    x_rows = jax.lax.dynamic_slice_in_dim(x, start, size)
    scores = score_fn(substitute(x_rows, rows), rows)
    validation.check_shape(
        scores, "score_fn's output (per-example scores of a block of B rows)",
        (size,))
    return rows, scores

  if size == n:
    return jnp.sum(scores_of(0)[1]) / n
  num_blocks = -(-n // size)

  def add_block(total, block):
    first_new = block * size  # rows before it were counted by earlier blocks
    rows, scores = scores_of(jnp.minimum(first_new, n - size))
    return total + jnp.sum(jnp.where(rows >= first_new, scores, 0.0)), None

  total, _ = jax.lax.scan(add_block, jnp.zeros((), jnp.float32),
                          jnp.arange(num_blocks, dtype=jnp.int32))
  return total / n


def mean_score(score_fn: ScoreFn, x: jax.Array, *,
               row_batch: Optional[int] = None,
               first_layer: Optional[FirstLayer] = None) -> jax.Array:
  """Mean of the per-example ``score_fn`` over all rows of ``x``, in blocks.

  The unpermuted baseline of ``permutation_importance``, computed the same
  batched way (same ``score_fn`` contract, block rule and ``first_layer``
  option, so one ``score_fn`` serves both).

  Args:
    score_fn: ``(x_rows f[B, ...], rows i32[B]) -> f32[B]`` per-example
      scores of a block of rows, ``rows`` their indices into ``x`` (see
      ``permutation_importance``); with ``first_layer``, ``(h_rows f32[B, F],
      rows) -> f32[B]`` on the rows' first pre-activation.
    x: ``f[N, ...]``.
    row_batch: rows per block; default as many as hold 2^24 input values
      (pre-activation values with ``first_layer``).
    first_layer: ``(kernel f[D, F], bias f[F] or None)``, D the values of
      one example: ``score_fn`` then receives rows of ``h = flatten(x) @
      kernel (+ bias)``, computed once.

  Returns:
    ``f32[]``.
  """
  _check_importance_args(x, 1, 1, row_batch)
  x = jnp.asarray(x)
  if first_layer is not None:
    x = _first_preactivation(x, *_check_first_layer(first_layer, x))
  row_batch = row_batch or _default_row_batch(math.prod(x.shape[1:]), 1)
  return _mean_over_rows(score_fn, x, row_batch, lambda xb, rows: xb)


def permutation_importance(score_fn: ScoreFn, x: jax.Array, key: jax.Array,
                           num_repeats: int, *, unit_batch: int = _UNIT_BATCH,
                           row_batch: Optional[int] = None,
                           permutations: str = "per_unit",
                           first_layer: Optional[FirstLayer] = None
                           ) -> jax.Array:
  """Mean score of ``x`` with each unit permuted, for every unit and repeat.

  The importance of unit j in repeat m is the mean over all N rows of
  ``score_fn`` with unit j of every row replaced by that unit of row
  ``perm[row]``. A unit is a column of an ``[N, D]`` input, or one position
  (all channels together) of an ``[N, ..., C]`` input such as
  ``[N, H, W, C]`` images; j is its flat index. ``permutations`` chooses
  ``perm``:

  * ``"per_unit"`` (default): a fresh permutation for every (repeat, unit),
    ``perm = jax.random.permutation(fold_in(fold_in(key, m), j), N)``: M·U
    draws, each sorting N random keys (in one or more rounds), which
    dominates the cost when ``score_fn`` is cheap.
  * ``"shared"``: one permutation per repeat, shared by every unit,
    ``perm = jax.random.permutation(fold_in(key, m), N)``: M sorts instead of
    M·U. Each unit's estimate is unchanged in distribution: in repeat m its
    unit is still moved by a uniformly random permutation, independent
    across repeats, so its M scores and their mean have the same joint law
    as with ``"per_unit"``. Each score still moves one unit alone (the
    others keep their own rows). What changes is only the dependence
    between units: within a repeat all units are moved by the same row
    order, so the estimates of different units are correlated, and what
    combines units (``normalise_importance``'s min–max, a mask's ranking)
    may be distributed differently.

  ``first_layer = (kernel, bias)`` (optional) applies when ``score_fn``
  begins with a linear map of the flattened example, ``h = flatten(x) @
  kernel + bias`` (an MLP teacher's first Dense layer: ``models.Net.
  first_layer``), and then takes ``h`` instead of ``x``: ``score_fn(h_rows
  f32[B, F], rows)`` (e.g. ``Net.apply(..., from_first_layer=True)``:
  Algorithm 1 on an MLP teacher). Permuting unit j (its K values
  ``x[:, j]``) changes ``h`` by a rank-K update only,

      h' = h + (x[perm, j] - x[:, j]) @ kernel[j]   (kernel as [U, K, F]),

  so ``h`` is computed once for all rows and every (repeat, unit) pair costs
  a ``[B, K] @ [K, F]`` product and the rest of the score: no permuted copy
  of ``x`` and no ``[B, D] @ [D, F]`` product per pair. The permutations
  (``key``, ``permutations``) are the same, so the scores are those of the
  plain call on ``x`` with ``score_fn ∘ first layer``, equal up to float32
  rounding (``h + Δ·kernel[j]`` rounds differently from ``x' @ kernel``;
  not bit for bit). ``h`` (``f32[N, F]``) lives for the whole call and
  ``unit_batch · row_batch`` updated rows (F values each) at once; the
  default ``row_batch`` budgets F values per example instead of D.

  Memory: ``lax.map`` steps over the M·U (repeat, unit) pairs,
  ``unit_batch`` of them vmapped side by side, and each step scores the rows
  in blocks of ``row_batch``, so at most ``unit_batch × row_batch`` permuted
  examples exist at once, plus one ``int32[N]`` permutation per pair in the
  step (``"per_unit"``) or the M shared ones, ``int32[M, N]``, for the whole
  call (``"shared"``). The mean is the sum of block sums / N; a single block
  computes ``jnp.sum(scores) / N`` exactly, see ``mean_score``.

  Args:
    score_fn: ``(x_rows f[B, ...], rows i32[B]) -> f32[B]``, per-example
      scores of a block of (permuted) rows; ``rows`` are their indices into
      ``x``, to look up the matching student logits and labels. E.g. the
      NCJSD between the teacher on ``x_rows`` and the fixed student. ``rows``
      is always the contiguous range ``rows[0] + arange(B)``, so
      ``lax.dynamic_slice_in_dim(a, rows[0], B)`` selects the matching
      entries of an ``[N, ...]`` array ``a``; for a single block XLA drops
      that slice, which keeps the result bit for bit that of the unbatched
      computation (``a[rows]``, a gather, is equal up to float32 round-off:
      XLA may fuse the arithmetic after it differently).
    x: ``[N, D]`` or ``[N, ..., C]`` input whose units are permuted.
    key: PRNG key.
    num_repeats: M, a static int >= 1.
    unit_batch: (repeat, unit) pairs scored side by side per step, static.
      Default 10: enough rows for the teacher's matmuls to amortise a
      step's overhead, while memory stays ten row blocks.
    row_batch: rows per block, static; default the most rows for which
      ``unit_batch · row_batch · (values per example) <= 2^24`` (64 MiB of
      float32). At that budget NTDH's synthetic study (6000 × 50) is one
      block, i.e. the unbatched batch mean bit for bit.
    permutations: ``"per_unit"`` or ``"shared"`` (see above), static.
    first_layer: ``None`` (default: ``score_fn`` reads input rows), or
      ``(kernel f[D, F], bias f[F] or None)``, D = the values of one example
      of ``x`` in row-major order (``[N, H, W, C]``: D = H·W·C, a pixel's C
      channels adjacent, as a flattening Dense layer reads them): the rank-K
      path above, ``score_fn`` reading first pre-activation rows.

  Returns:
    ``f32[M, D]`` for ``[N, D]`` input, ``f32[M, ..., 1]`` (e.g.
    ``[M, H, W, 1]``) for ``[N, ..., C]``; a unit's importance broadcasts
    against one example. One jit-able computation.
  """
  _check_importance_args(x, num_repeats, unit_batch, row_batch)
  validation.check_choice(permutations, "permutations", PERMUTATIONS)
  x = jnp.asarray(x)
  n = x.shape[0]
  units, unit_shape = _as_units(x)
  num_units = units.shape[1]
  # Unit-major, so the unit a pair moves is one contiguous [N, K] block
  # (a strided column of [N, U, K] costs a gather of N scattered values).
  columns = jnp.transpose(units, (1, 0, 2))
  if first_layer is not None:
    kernel, bias = _check_first_layer(first_layer, x)
    # The rows score_fn reads: the first pre-activation, computed once.
    scored = _first_preactivation(x, kernel, bias)
    unit_kernels = jnp.reshape(kernel, (num_units, units.shape[2], -1))
  else:
    scored = x
  row_batch = row_batch or _default_row_batch(math.prod(scored.shape[1:]),
                                              unit_batch)

  if permutations == "per_unit":
    def permutation(m, j):
      return _permutation(
          jax.random.fold_in(jax.random.fold_in(key, m), j), n)
  else:
    # The M draws (M sorts) happen once, here; the pairs only look them up.
    shared = jax.vmap(lambda m: _permutation(
        jax.random.fold_in(key, m), n))(jnp.arange(num_repeats,
                                                   dtype=jnp.int32))

    def permutation(m, j):
      del j  # every unit of repeat m moves by the same row order
      return shared[m]

  def importance(pair):
    m, j = pair // num_units, pair % num_units
    perm = permutation(m, j)

    def substitute(x_rows, rows):
      b = x_rows.shape[0]
      sources = jax.lax.dynamic_slice_in_dim(perm, rows[0], b)
      moved = jnp.take(columns[j], sources, axis=0)
      if first_layer is not None:  # x_rows are pre-activation rows
        own = jax.lax.dynamic_slice_in_dim(columns[j], rows[0], b)
        return x_rows + (moved - own) @ unit_kernels[j]
      block = jnp.reshape(x_rows, (b, num_units, -1))
      return jnp.reshape(block.at[:, j, :].set(moved), x_rows.shape)

    return _mean_over_rows(score_fn, scored, row_batch, substitute)

  pairs = jnp.arange(num_repeats * num_units, dtype=jnp.int32)
  scores = jax.lax.map(importance, pairs, batch_size=unit_batch)
  return jnp.reshape(scores.astype(jnp.float32), (num_repeats, *unit_shape))


def normalise_importance(scores: jax.Array) -> jax.Array:
  """Mean over repeats, then min–max scaled to [0, 1] (the paper's Alg. 1).

  ``scores: f32[M, *unit_shape] -> f32[*unit_shape]`` (``[M, D] -> [D]``,
  ``[M, H, W, 1] -> [H, W, 1]``); min and max run over all units. If every
  unit scores the same the result is all zeros (no unit stands out) rather
  than 0/0.
  """
  validation.check_batch(scores, "scores", layout="[M, *unit_shape]")
  validation.check_floating(scores, "scores")
  mean = jnp.mean(scores, axis=0)
  span = jnp.max(mean) - jnp.min(mean)
  return jnp.where(span > 0, (mean - jnp.min(mean)) / jnp.where(span > 0, span,
                                                                1.0), 0.0)


# ------------------------------------------------------------------ masks


def kind_code(kind) -> jax.Array:
  """A mask kind as its index in ``MASK_KINDS``: a name, or an integer code
  (which may be traced, so one compiled program serves all three kinds)."""
  validation.check_choice_or_index(kind, "kind", MASK_KINDS)
  if isinstance(kind, str):
    return jnp.asarray(MASK_KINDS.index(kind), jnp.int32)
  return jnp.asarray(kind).astype(jnp.int32)


def _count(ratio, size) -> jax.Array:
  """floor(ratio · size), robust to float32 rounding of the ratio.

  float32(0.53) · 100 = 52.99999; the few-ulp nudge makes it 53 as meant.
  ``size`` is a static int or a traced float32 count.
  """
  x = jnp.asarray(ratio, jnp.float32) * size
  return jnp.floor(x + jnp.maximum(x, 1.0) * 2.0**-20)


def _removal_order(scores, kind, key, valid=None) -> jax.Array:
  """Rank of each entry of ``f32[n]`` in removal order (0 = removed first).

  "true" removes the lowest scores first, "false" the highest, "random" a
  uniformly random order. With ``valid: bool[n]``, every invalid entry ranks
  after every valid one (a two-key sort, so no score value, not even NaN or
  inf, can put an invalid entry first).
  """
  code = kind_code(kind)
  priority = jnp.select([code == 0, code == 1], [scores, -scores],
                        jax.random.uniform(key, jnp.shape(scores)))
  if valid is None:
    return jnp.argsort(jnp.argsort(priority, stable=True), stable=True)
  n = priority.shape[0]
  position = jnp.arange(n, dtype=jnp.int32)
  # Keys: invalid after valid, then priority, then position (ties broken by
  # position, as the stable argsort above does).
  order = jax.lax.sort((jnp.logical_not(valid).astype(jnp.int32), priority,
                        position), num_keys=3)[2]
  return jnp.zeros(n, jnp.int32).at[order].set(position)


def _check_importance(importance):
  """Checks a unit shape of ``permutation_importance``: ``[D]``, or
  ``[*S, 1]`` (rank >= 2) for the positions of an ``[N, *S, C]`` input.

  Every entry is one unit, ranked together with all others, so a stray
  leading batch axis (``[1, D]``, ``[N, D]``) must not pass as a unit axis:
  its last axis is not 1.
  """
  validation.check_array(importance, "importance")
  shape = jnp.shape(importance)
  if not shape or math.prod(shape) == 0 or (len(shape) > 1 and shape[-1] != 1):
    raise ValueError(
        "importance must have shape [D] (one score per feature) or [..., 1] "
        "(one per position of an [N, ..., C] input, e.g. [H, W, 1]), as "
        f"normalise_importance returns it, got {shape}; drop any batch axis "
        "(e.g. [1, D] -> [D]).")
  validation.check_floating(importance, "importance")


def feature_keep_mask(importance: jax.Array, ratio, kind,
                      key: jax.Array) -> jax.Array:
  """Algorithm 1's teacher input mask, 1 = keep, 0 = removed.

  Args:
    importance: ``f32[*unit_shape]`` normalised permutation importance: ``[D]``
      for the features of ``[N, D]`` inputs, ``[*S, 1]`` (e.g. ``[H, W, 1]``)
      for the positions of ``[N, *S, C]`` inputs. A batch axis (``[1, D]``)
      is refused: all entries are ranked together as units.
    ratio: fraction of units removed, in [0, 1) (may be traced).
    kind: ``"true"`` removes the lowest-importance units, ``"false"`` the
      highest, ``"random"`` a random subset (see the module docstring); or
      its index in ``MASK_KINDS`` (may be traced).
    key: PRNG key (used by ``"random"``).

  Returns:
    ``f32`` of ``importance``'s shape; floor(ratio · size) zeros.
  """
  _check_importance(importance)
  validation.check_fraction(ratio, "ratio")
  shape = jnp.shape(importance)
  flat = jnp.reshape(importance, (-1,))
  removed = _count(ratio, flat.shape[0])
  keep = _removal_order(flat, kind, key) >= removed
  return jnp.reshape(keep.astype(jnp.float32), shape)


def sample_keep_mask(ncjsd: jax.Array, ratio, kind, key: jax.Array, *,
                     where: Optional[jax.Array] = None) -> jax.Array:
  """Algorithm 2's per-sample mask of the distillation term, 1 = keep.

  Args:
    ncjsd: ``f32[...]`` teacher–student NCJSD of the batch's samples:
      ``[N]``, or ``[B, H, W]`` for per-pixel Algorithm 2 on a segmentation
      batch (all entries are ranked together).
    ratio: fraction r of samples excluded, in [0, 1) (may be traced).
    kind: ``"true"`` excludes the most divergent samples, ``"false"`` the
      least divergent, ``"random"`` a random subset; or its index in
      ``MASK_KINDS`` (may be traced).
    key: PRNG key (used by ``"random"``).
    where: optional ``bool[...]`` of ``ncjsd``'s shape; only valid entries
      are ranked and counted: floor(r · n_valid) of them are excluded
      (n_valid may be traced), and invalid entries are 0 in the mask
      whatever their score.

  Returns:
    ``f32`` of ``ncjsd``'s shape.
  """
  validation.check_array(ncjsd, "ncjsd")
  validation.check_floating(ncjsd, "ncjsd")
  validation.check_fraction(ratio, "ratio")
  validation.check_where(where, jnp.shape(ncjsd))
  shape = jnp.shape(ncjsd)
  flat = jnp.reshape(ncjsd, (-1,))
  # Ranked by -NCJSD, "true" removes the most divergent samples first.
  if where is None:
    removed = _count(ratio, flat.shape[0])
    keep = _removal_order(-flat, kind, key) >= removed
  else:
    valid = jnp.reshape(where, (-1,))
    removed = _count(ratio, jnp.sum(valid, dtype=jnp.float32))
    keep = (_removal_order(-flat, kind, key, valid) >= removed) & valid
  return jnp.reshape(keep.astype(jnp.float32), shape)
