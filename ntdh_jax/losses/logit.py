"""Logit distillation losses: KD, the NTDH decoupled KL and DKD.

With p = softmax(z / T) over C classes and k the label of a sample:

* ``kd``: KL(p_t || p_s) · T²  (Hinton et al., "Distilling the Knowledge in a
  Neural Network", 2015). The T² keeps gradient magnitudes comparable across
  temperatures.
* ``decoupled_kl``: (α · TCKL + β · NCKL) · T², the target/non-target split
  of KD whose weights the NTDH weight-adjustment study sweeps (Chen et al.,
  Non-target Divergence Hypothesis) and the body of DKD.
* ``dkd``: ``decoupled_kl`` with DKD's defaults (Zhao et al., "Decoupled
  Knowledge Distillation", CVPR'22).

TCKL and NCKL are defined in ``ntdh_jax.divergences``; they are computed there
in log space, so the non-target distribution is renormalised exactly where
mdistiller approximates it by subtracting 1000 from the target logit.

Argument order: these losses keep the positional ``(student_logits,
teacher_logits, ...)`` order of the KD libraries (RepDistiller, mdistiller) so
code ports over unchanged, whereas ``ntdh_jax.divergences`` takes keywords
``teacher_logits=``, ``student_logits=``.

Shapes: logits ``f[N, C]``, labels ``int[N]``. ``reduction="mean"`` returns
the batch mean (the value the reference libraries report), ``"none"`` the
per-example ``f32[N]`` that per-sample masks (NTDH Algorithm 2) weight.
Temperatures and the weights α, β may be traced scalars, so sweeps can vmap
over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntdh_jax import divergences
from ntdh_jax import validation

REDUCTIONS = ("mean", "none")


def _check_reduction(reduction: str):
  if reduction not in REDUCTIONS:
    raise ValueError(
        f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")


def _reduce(per_example: jax.Array, reduction: str) -> jax.Array:
  return jnp.mean(per_example) if reduction == "mean" else per_example


def kd(student_logits, teacher_logits, temperature=4.0, *,
       reduction: str = "mean") -> jax.Array:
  """Hinton KD loss KL(softmax(t/T) || softmax(s/T)) · T².

  Args:
    student_logits: ``f[N, C]``.
    teacher_logits: ``f[N, C]``.
    temperature: scalar > 0. Default 4, RepDistiller's ``--kd_T`` (and
      mdistiller's ``KD.TEMPERATURE``).
    reduction: ``"mean"`` → scalar batch mean, ``"none"`` → ``f32[N]``.

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_reduction(reduction)
  per_example = divergences.kl(teacher_logits=teacher_logits,
                               student_logits=student_logits,
                               temperature=temperature)
  return _reduce(per_example * jnp.asarray(temperature, jnp.float32)**2,
                 reduction)


def decoupled_kl(student_logits, teacher_logits, labels, alpha, beta,
                 temperature=1.0, *, reduction: str = "mean") -> jax.Array:
  """NTDH weight-adjusted KD, (α · TCKL + β · NCKL) · T².

  KD itself is the special case α = 1, β = 1 − p_k^t (a per-sample weight,
  by KL = TCKL + (1 − p_k^t) · NCKL); NTDH studies how fixed (α, β) trade the
  target against the non-target term.

  Args:
    student_logits: ``f[N, C]``, C >= 3 (NCKL needs two non-target classes).
    teacher_logits: ``f[N, C]``.
    labels: ``int[N]`` in ``[0, C)``.
    alpha: scalar weight of TCKL (may be traced).
    beta: scalar weight of NCKL (may be traced).
    temperature: scalar > 0 (may be traced).
    reduction: ``"mean"`` → scalar batch mean, ``"none"`` → ``f32[N]``.

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_reduction(reduction)
  validation.check_scalar(alpha, "alpha")
  validation.check_scalar(beta, "beta")
  parts = divergences.decompose(teacher_logits=teacher_logits,
                                student_logits=student_logits, labels=labels,
                                temperature=temperature)
  t = jnp.asarray(temperature, jnp.float32)
  per_example = (jnp.asarray(alpha, jnp.float32) * parts.tckl
                 + jnp.asarray(beta, jnp.float32) * parts.nckl) * t**2
  return _reduce(per_example, reduction)


def dkd(student_logits, teacher_logits, labels, alpha=1.0, beta=8.0,
        temperature=4.0, *, reduction: str = "mean") -> jax.Array:
  """Decoupled Knowledge Distillation (Zhao et al., CVPR'22).

  ``decoupled_kl`` with DKD's defaults α = 1, β = 8, T = 4, those of
  mdistiller's ``engine/cfg.py`` (``CFG.DKD.ALPHA/BETA/T``). DKD's
  cross-entropy term and its linear warm-up of the KD weight belong to the
  training step, not to the loss.

  Shapes and reduction as in ``decoupled_kl``.
  """
  return decoupled_kl(student_logits, teacher_logits, labels, alpha, beta,
                      temperature, reduction=reduction)
