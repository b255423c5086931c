"""Feature masks (NTDH Algorithm 1) and sample masks (Algorithm 2).

Algorithm 1 scores every teacher input feature by *permutation importance*:
shuffle that feature's column across samples and measure how much the
teacher–student non-target divergence (NCJSD) moves. All features × all
repeats are evaluated as one vmapped computation.

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

Ratios may be traced scalars so a sweep vmaps them: the number removed is
``floor(ratio · size)``, and a mask is built by ranking, never by a
value-dependent shape.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ntdh_jax import validation

MASK_KINDS = ("true", "false", "random")


def permutation_importance(score_fn: Callable[[jax.Array], jax.Array],
                           x: jax.Array, key: jax.Array,
                           num_repeats: int) -> jax.Array:
  """Score of ``x`` with each column permuted, for every column and repeat.

  Args:
    score_fn: ``f[N, D] -> f32[]``, e.g. the batch-mean NCJSD between the
      teacher on the permuted input and the (fixed) student.
    x: ``f[N, D]`` the input whose columns are permuted one at a time.
    key: PRNG key; repeat m of column j uses ``fold_in(fold_in(key, m), j)``.
    num_repeats: M, static.

  Returns:
    ``f32[M, D]`` scores; one vmapped, jit-able computation over M·D inputs.
  """
  if jnp.ndim(x) != 2 or jnp.shape(x)[0] == 0:
    raise ValueError(f"x must be a non-empty [N, D] array, got {jnp.shape(x)}.")
  if num_repeats < 1:
    raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
  n, d = x.shape

  def permuted_score(m, j):
    k = jax.random.fold_in(jax.random.fold_in(key, m), j)
    rows = jax.random.permutation(k, n)
    column = jnp.take(x[:, j], rows)
    return score_fn(x.at[:, j].set(column))

  repeats, columns = jnp.arange(num_repeats), jnp.arange(d)
  return jax.vmap(lambda m: jax.vmap(lambda j: permuted_score(m, j))(columns))(
      repeats)


def normalise_importance(scores: jax.Array) -> jax.Array:
  """Mean over repeats, then min–max scaled to [0, 1] (the paper's Alg. 1).

  ``scores: f32[M, D] -> f32[D]``. If every feature scores the same the
  result is all zeros (no feature stands out) rather than 0/0.
  """
  mean = jnp.mean(scores, axis=0)
  span = jnp.max(mean) - jnp.min(mean)
  return jnp.where(span > 0, (mean - jnp.min(mean)) / jnp.where(span > 0, span,
                                                                1.0), 0.0)


def kind_code(kind) -> jax.Array:
  """A mask kind as its index in ``MASK_KINDS``: a name, or an integer code
  (which may be traced, so one compiled program serves all three kinds)."""
  if isinstance(kind, str):
    if kind not in MASK_KINDS:
      raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}.")
    return jnp.asarray(MASK_KINDS.index(kind), jnp.int32)
  if validation.is_concrete(kind) and float(kind) not in (0.0, 1.0, 2.0):
    raise ValueError(
        f"kind must be one of {MASK_KINDS} or its index 0..2, got {kind}.")
  return jnp.asarray(kind).astype(jnp.int32)


def _count(ratio, size: int) -> jax.Array:
  """floor(ratio · size), robust to float32 rounding of the ratio.

  float32(0.53) · 100 = 52.99999; the few-ulp nudge makes it 53 as meant.
  """
  x = jnp.asarray(ratio, jnp.float32) * size
  return jnp.floor(x + jnp.maximum(x, 1.0) * 2.0**-20)


def _removal_order(scores, kind, key) -> jax.Array:
  """Rank of each entry in removal order (0 = removed first).

  "true" removes the lowest scores first, "false" the highest, "random" a
  uniformly random order.
  """
  code = kind_code(kind)
  priority = jnp.select([code == 0, code == 1], [scores, -scores],
                        jax.random.uniform(key, jnp.shape(scores)))
  return jnp.argsort(jnp.argsort(priority, stable=True), stable=True)


def feature_keep_mask(importance: jax.Array, ratio, kind,
                      key: jax.Array) -> jax.Array:
  """Algorithm 1's teacher input mask: ``f32[D]``, 1 = keep, 0 = removed.

  Args:
    importance: ``f32[D]`` normalised permutation importance.
    ratio: fraction of features removed, in [0, 1) (may be traced).
    kind: ``"true"`` removes the lowest-importance features, ``"false"`` the
      highest, ``"random"`` a random subset (see the module docstring); or
      its index in ``MASK_KINDS`` (may be traced).
    key: PRNG key (used by ``"random"``).
  """
  validation.check_fraction(ratio, "ratio")
  removed = _count(ratio, jnp.shape(importance)[0])
  return (_removal_order(importance, kind, key) >= removed).astype(jnp.float32)


def sample_keep_mask(ncjsd: jax.Array, ratio, kind,
                     key: jax.Array) -> jax.Array:
  """Algorithm 2's per-sample mask of the distillation term: ``f32[N]``.

  Args:
    ncjsd: ``f32[N]`` teacher–student NCJSD of the batch's samples.
    ratio: fraction r of samples excluded, in [0, 1) (may be traced).
    kind: ``"true"`` excludes the most divergent samples, ``"false"`` the
      least divergent, ``"random"`` a random subset; or its index in
      ``MASK_KINDS`` (may be traced).
    key: PRNG key (used by ``"random"``).
  """
  validation.check_fraction(ratio, "ratio")
  removed = _count(ratio, jnp.shape(ncjsd)[0])
  # Ranked by -NCJSD, "true" removes the most divergent samples first.
  return (_removal_order(-ncjsd, kind, key) >= removed).astype(jnp.float32)
