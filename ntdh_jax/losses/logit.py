"""Logit distillation losses: KD and DKD (NTDH's α/β weight-adjusted KD).

With p = softmax(z / T) over C classes and k the label of a sample:

* ``kd``: KL(p_t || p_s) · T²  (Hinton et al., "Distilling the Knowledge in a
  Neural Network", 2015). The T² keeps gradient magnitudes comparable across
  temperatures.
* ``dkd``: (α · TCKL + β · NCKL) · T², the target/non-target split of KD
  (Zhao et al., "Decoupled Knowledge Distillation", CVPR'22). The same
  computation is the weight-adjusted KD whose (α, β) the NTDH study sweeps
  (Chen et al., Non-target Divergence Hypothesis), so there is one function
  under DKD's name and defaults; pass α, β, T explicitly for NTDH.

TCKL and NCKL are defined in ``ntdh_jax.divergences``; they are computed there
in log space, so the non-target distribution is renormalised exactly where
mdistiller approximates it by subtracting 1000 from the target logit.

Argument order: these losses keep the positional ``(student_logits,
teacher_logits, ...)`` order of the KD libraries (RepDistiller, mdistiller) so
code ports over unchanged, whereas ``ntdh_jax.divergences`` takes keywords
``teacher_logits=``, ``student_logits=``.

Shapes (optax's convention): logits ``f[..., C]``, labels ``int[...]`` and an
optional ``where: bool[...]`` marking valid entries; ``[N, C]`` for a
classification batch, ``[B, H, W, C]`` for per-pixel distillation of a
segmentation batch. ``reduction="mean"`` returns the mean over the valid
entries, sum(loss · where) / max(count, 1) (without ``where``, the batch mean
the reference libraries report); ``"none"`` the per-example ``f32[...]``,
exactly 0 where ``where`` is False, that per-sample masks (NTDH Algorithm 2)
weight. Temperatures and the weights α, β may be traced scalars, so sweeps
can vmap over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import divergences
from ntdh_jax import validation

REDUCTIONS = validation.REDUCTIONS


def reduce_loss(per_example: jax.Array, where, reduction: str) -> jax.Array:
  """Applies a loss ``reduction`` to per-example values of any shape.

  ``"mean"``: mean over all entries (``where`` None) or over the valid ones,
  sum(values · where) / max(count, 1), so an all-invalid batch gives 0;
  ``"none"``: the values, 0 where ``where`` is False. Entries are flattened
  before the mean so a ``[B, H, W]`` batch reduces exactly as its ``[N]``
  flattening.
  """
  if where is not None:
    per_example = jnp.where(where, per_example, 0.0)
  if reduction == "none":
    return per_example
  flat = jnp.reshape(per_example, (-1,))
  if where is None:
    return jnp.mean(flat)
  count = jnp.sum(where, dtype=jnp.float32)
  return jnp.sum(flat) / jnp.maximum(count, 1.0)


def smoothed_cross_entropy(logits, labels, label_smoothing) -> jax.Array:
  """Per-example softmax cross-entropy against label-smoothed targets,
  torch's ``cross_entropy(label_smoothing=s)``: the target is
  (1 − s)·onehot(y) + s/C (``optax.smooth_labels``).

  Args:
    logits: ``f[..., C]``.
    labels: ``int[...]`` in [0, C).
    label_smoothing: s in [0, 1) (may be traced).

  Returns:
    ``f32[...]``.
  """
  c = jnp.shape(logits)[-1]
  target = optax.smooth_labels(jax.nn.one_hot(labels, c, dtype=jnp.float32),
                               label_smoothing)
  return optax.softmax_cross_entropy(logits, target)


def kd(student_logits, teacher_logits, temperature=4.0, *, where=None,
       reduction: str = "mean") -> jax.Array:
  """Hinton KD loss KL(softmax(t/T) || softmax(s/T)) · T².

  Args:
    student_logits: ``f[..., C]``.
    teacher_logits: ``f[..., C]``.
    temperature: a finite number > 0 (may be traced). Default 4,
      RepDistiller's ``--kd_T`` (and mdistiller's ``KD.TEMPERATURE``).
    where: optional ``bool[...]``; False marks entries to ignore.
    reduction: ``"mean"`` → scalar mean over the valid entries, ``"none"`` →
      ``f32[...]``.

  Returns:
    ``f32[]`` or ``f32[...]``.
  """
  validation.check_reduction(reduction)
  per_example = divergences.kl(teacher_logits=teacher_logits,
                               student_logits=student_logits,
                               temperature=temperature, where=where)
  return reduce_loss(per_example * jnp.asarray(temperature, jnp.float32)**2,
                     where, reduction)


def dkd(student_logits, teacher_logits, labels, alpha=1.0, beta=8.0,
        temperature=4.0, *, where=None, reduction: str = "mean") -> jax.Array:
  """Decoupled KD, (α · TCKL + β · NCKL) · T²; also NTDH's weighted KD.

  DKD (Zhao et al., CVPR'22) with its defaults α = 1, β = 8, T = 4, those of
  mdistiller's ``engine/cfg.py`` (``CFG.DKD.ALPHA/BETA/T``). DKD's
  cross-entropy term and its linear warm-up of the KD weight belong to the
  training step, not to the loss.

  The same formula is the α/β weight-adjusted KD of the NTDH study: KD itself
  is the special case α = 1, β = 1 − p_k^t (a per-sample weight, by
  KL = TCKL + (1 − p_k^t) · NCKL), and NTDH studies how fixed (α, β) trade
  the target against the non-target term (pass α, β and T explicitly).

  Args:
    student_logits: ``f[..., C]``, C >= 3 (NCKL needs two non-target
      classes).
    teacher_logits: ``f[..., C]``.
    labels: ``int[...]`` in ``[0, C)`` where valid.
    alpha: weight of TCKL, a finite number >= 0 (may be traced).
    beta: weight of NCKL, a finite number >= 0 (may be traced).
    temperature: a finite number > 0 (may be traced).
    where: optional ``bool[...]``; False marks entries to ignore (any label,
      e.g. 255, is allowed there).
    reduction: ``"mean"`` → scalar mean over the valid entries, ``"none"`` →
      ``f32[...]``.

  Returns:
    ``f32[]`` or ``f32[...]``.
  """
  validation.check_reduction(reduction)
  validation.check_nonnegative(alpha, "alpha")
  validation.check_nonnegative(beta, "beta")
  parts = divergences.decompose(teacher_logits=teacher_logits,
                                student_logits=student_logits, labels=labels,
                                temperature=temperature, where=where)
  t = jnp.asarray(temperature, jnp.float32)
  per_example = (jnp.asarray(alpha, jnp.float32) * parts.tckl
                 + jnp.asarray(beta, jnp.float32) * parts.nckl) * t**2
  return reduce_loss(per_example, where, reduction)
