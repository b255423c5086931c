"""Feature distillation losses: FitNet, RKD, PKT and SP.

Features are ``f[N, ...]``: any trailing shape, flattened to ``[N, D]`` where
a loss compares examples with each other. Student and teacher may differ in
D for the relational losses (RKD, PKT, SP), which compare the batch's
geometry, not the features themselves; FitNet needs equal shapes (map the
student through ``FitNetRegressor`` first). Inputs are computed in float32.

``fitnet`` is per-example (``reduction`` picks mean or ``f32[N]``, ``where``
ignores examples); ``rkd``,
``pkt`` and ``sp`` are batch-level: every example's term depends on the whole
batch, so they return a scalar and need N >= 2.

The functions are pure: gradients reach both arguments, and the caller
differentiates only the student (RepDistiller computes the teacher side under
``no_grad``, which gives the same student gradient). Norms and distances use
a square root whose gradient is taken as 0 at 0, so identical features and
zero distances give finite gradients.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ntdh_jax import validation
from ntdh_jax.losses.logit import reduce_loss


def _flatten(x) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  return x.reshape(x.shape[0], -1)


def _safe_sqrt(x):
  """sqrt(x) for x >= 0 with gradient 0 (not inf) at x = 0."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _l2_norm(x):
  """Norm over the last axis (kept), with a finite gradient at 0."""
  return _safe_sqrt(jnp.sum(x * x, axis=-1, keepdims=True))


def _l2_normalize(x):
  """x / max(‖x‖, 1e-12) over the last axis, torch's ``F.normalize``."""
  return x / jnp.maximum(_l2_norm(x), 1e-12)


def fitnet(student_features, teacher_features, *, where=None,
           reduction: str = "mean") -> jax.Array:
  """FitNet hint loss (Romero et al., "FitNets", ICLR'15): squared error.

  Per example, the mean over all feature entries of (s − t)²; the batch mean
  equals torch's ``MSELoss`` that RepDistiller's ``HintLoss`` uses.

  Args:
    student_features: ``f[N, ...]``, already mapped to the teacher's shape
      (``FitNetRegressor``).
    teacher_features: ``f[N, ...]``, same shape.
    where: optional ``bool[N]``; False marks examples to ignore (their loss
      is 0 and the mean runs over the others).
    reduction: ``"mean"`` → scalar mean over the valid examples, ``"none"``
      → ``f32[N]``.

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  validation.check_reduction(reduction)
  validation.check_features(student_features, teacher_features,
                            same_shape=True)
  validation.check_where(where, jnp.shape(student_features)[:1])
  diff = _flatten(student_features) - _flatten(teacher_features)
  return reduce_loss(jnp.mean(diff * diff, axis=-1), where, reduction)


class FitNetRegressor(nn.Module):
  """FitNet's learnable regressor from the student's to the teacher's width.

  ``f[N, D_s] → f[N, features]`` by a linear layer, or ``f[N, H, W, C_s] →
  f[N, H, W, features]`` (NHWC) by a 1×1 convolution. The FitNets paper
  sizes its convolutional regressor's kernel to make spatial sizes match, and
  RepDistiller's ``ConvReg`` adds BatchNorm + ReLU; here H, W must already
  match the teacher's. Its parameters are trained with the student's.

  Attributes:
    features: the teacher's feature width (channels for 4-D input).
  """
  features: int

  @nn.compact
  def __call__(self, student_features):
    validation.check_rank(student_features, "student_features", (2, 4),
                          "[N, D] or [N, H, W, C]")
    if jnp.ndim(student_features) == 2:
      return nn.Dense(self.features)(student_features)
    return nn.Conv(self.features, kernel_size=(1, 1))(student_features)


def _normalised_distances(diff):
  """Pairwise distances ``[N, N]`` over their mean off-diagonal distance."""
  n = diff.shape[0]
  d = _safe_sqrt(jnp.sum(diff * diff, axis=-1))
  mean = jnp.sum(d) / (n * (n - 1))  # the diagonal is exactly 0
  # A batch of identical points has all distances 0; keep them 0 rather than
  # 0/0, the limit of the normalised distances being undefined anyway.
  return d / jnp.where(mean > 0, mean, 1.0)


def _triplet_cosines(diff):
  """cos of angle j-i-k for all triplets, ``[N, N, N]``; 0 where j or k = i."""
  unit = _l2_normalize(diff)
  return jnp.einsum("ijd,ikd->ijk", unit, unit)


def rkd(student_features, teacher_features, distance_weight=25.0,
        angle_weight=50.0) -> jax.Array:
  """Relational KD (Park et al., CVPR'19), batch-level scalar.

  distance term: smooth-L1 (Huber, δ = 1) between the ``[N, N]`` Euclidean
  distance matrices, each divided by its mean off-diagonal distance; angle
  term: smooth-L1 between ``[N, N, N]`` cosines ⟨e_ij, e_ik⟩ of the unit
  difference vectors e_ij = (f_j − f_i)/‖f_j − f_i‖. Both are averaged over
  all matrix entries, diagonal and degenerate triplets included, as
  RepDistiller's ``RKDLoss`` does (they are 0 or 1 on both sides).

  Args:
    student_features: ``f[N, ...]``, N >= 2.
    teacher_features: ``f[N, ...]`` (trailing size may differ).
    distance_weight: w_d >= 0, default 25 (paper and RepDistiller).
    angle_weight: w_a >= 0, default 50 (paper and RepDistiller).

  Returns:
    ``f32[]``.
  """
  validation.check_features(student_features, teacher_features,
                            same_shape=False, min_examples=2)
  validation.check_nonnegative(distance_weight, "distance_weight")
  validation.check_nonnegative(angle_weight, "angle_weight")
  s, t = _flatten(student_features), _flatten(teacher_features)
  s_diff = s[None, :, :] - s[:, None, :]  # [i, j] = f_j - f_i
  t_diff = t[None, :, :] - t[:, None, :]
  distance = jnp.mean(optax.losses.huber_loss(
      _normalised_distances(s_diff), _normalised_distances(t_diff)))
  angle = jnp.mean(optax.losses.huber_loss(
      _triplet_cosines(s_diff), _triplet_cosines(t_diff)))
  return distance_weight * distance + angle_weight * angle


def _cosine_conditional(x, eps):
  """PKT's conditional probabilities from cosine similarity, ``[N, N]``."""
  x = x / (_l2_norm(x) + eps)
  kernel = (x @ x.T + 1.0) / 2.0
  return kernel / jnp.sum(kernel, axis=-1, keepdims=True)


def pkt(student_features, teacher_features, eps=1e-7) -> jax.Array:
  """Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV'18), scalar.

  Features are L2-normalised, the cosine kernel (cos + 1)/2 is row-normalised
  into conditional probabilities P (teacher) and Q (student), and the loss is
  mean_ij P_ij · log((P_ij + ε)/(Q_ij + ε)): the mean over all N² entries,
  i.e. the row KL(P_i || Q_i) averaged over rows and divided by N, which is
  the value of the authors' code and RepDistiller's ``PKT``.

  Args:
    student_features: ``f[N, ...]``, N >= 2.
    teacher_features: ``f[N, ...]`` (trailing size may differ).
    eps: finite, > 0, default 1e-7 (authors' code), added to norms and
      probabilities.

  Returns:
    ``f32[]``.
  """
  validation.check_features(student_features, teacher_features,
                            same_shape=False, min_examples=2)
  validation.check_positive(eps, "eps")
  q = _cosine_conditional(_flatten(student_features), eps)
  p = _cosine_conditional(_flatten(teacher_features), eps)
  return jnp.mean(p * (jnp.log(p + eps) - jnp.log(q + eps)))


def _similarity(x):
  return _l2_normalize(x @ x.T)


def sp(student_features, teacher_features) -> jax.Array:
  """Similarity-Preserving KD (Tung & Mori, ICCV'19), batch-level scalar.

  G = f fᵀ on flattened features, each row L2-normalised; the loss is
  ‖G_t − G_s‖²_F / N² (paper Eq. 4, RepDistiller's ``Similarity``).

  Args:
    student_features: ``f[N, ...]``, N >= 2.
    teacher_features: ``f[N, ...]`` (trailing size may differ).

  Returns:
    ``f32[]``.
  """
  validation.check_features(student_features, teacher_features,
                            same_shape=False, min_examples=2)
  diff = (_similarity(_flatten(teacher_features))
          - _similarity(_flatten(student_features)))
  n = diff.shape[0]
  return jnp.sum(diff * diff) / (n * n)
