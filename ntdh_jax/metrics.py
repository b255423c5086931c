"""Evaluation metrics that add up over mini-batches: accuracy, confusion, mIoU.

Evaluation runs in mini-batches (``lax.map`` over index blocks), so every
metric here is either per example (``correct``: sum it and divide by the
number of valid entries) or a count that is summed over batches
(``confusion_matrix``); the summary numbers (``mean_iou``,
``pixel_accuracy``) are then computed once from the summed confusion matrix.
All functions are pure and jit/vmap-safe.

Shapes follow optax's convention: logits ``f[..., C]``, labels ``int[...]``
and an optional ``where: bool[...]`` marking valid entries — ``[N]`` for
classification, ``[B, H, W]`` for segmentation, where ``where = labels !=
ignore_label`` drops unlabelled pixels (their labels, e.g. 255, are never
read as classes).

Mean IoU follows the PASCAL VOC evaluation (Everingham et al., "The PASCAL
Visual Object Classes Challenge", IJCV 2010; the devkit's segmentation
accuracy) and the SemanticKITTI benchmark (Behley et al., ICCV'19, whose
``iouEval`` computes the same TP / (TP + FP + FN) per class from a confusion
matrix of ignore-filtered points): per class c, IoU_c = TP / (TP + FP + FN)
from the dataset-wide confusion matrix, averaged over classes.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ntdh_jax import validation


def _check(logits, labels, where, num_classes: Optional[int] = None):
  validation.check_logits(logits, "logits")
  shape, c = tuple(jnp.shape(logits)[:-1]), jnp.shape(logits)[-1]
  if num_classes is not None:
    validation.check_num_classes(logits, num_classes)
  validation.check_where(where, shape)
  validation.check_labels(labels, shape, c, where=where)
  return c


def correct(logits, labels, where=None) -> jax.Array:
  """1 where the arg-max class is the label, else 0: ``f32[...]``.

  Args:
    logits: ``f[..., C]``.
    labels: ``int[...]`` in ``[0, C)`` where valid.
    where: optional ``bool[...]``; invalid entries give 0.

  Returns:
    ``f32[...]``; accuracy is ``sum(correct) / sum(where)`` (or the mean
    without ``where``), summable over mini-batches. Ties in the logits go to
    the lowest class index (``argmax``).
  """
  _check(logits, labels, where)
  hit = jnp.argmax(logits, axis=-1) == labels
  if where is not None:
    hit = hit & where
  return hit.astype(jnp.float32)


def confusion_matrix(logits, labels, num_classes: int,
                     where=None) -> jax.Array:
  """Counts of (true class, predicted class) pairs: ``i32[C, C]``.

  Row = true class, column = arg-max prediction, so ``sum(axis=1)`` is each
  class's number of labelled entries. Matrices of mini-batches add up to the
  dataset's. int32 counts are exact up to 2^31 − 1 entries per cell (all of
  NYU Depth V2's 1449 × 640 × 480 pixels fit).

  Args:
    logits: ``f[..., C]`` with C = ``num_classes``.
    labels: ``int[...]`` in ``[0, C)`` where valid (traced labels are
      checked under ``validation.checked`` only; otherwise an out-of-range
      label at a valid entry is not counted).
    num_classes: C, a static int.
    where: optional ``bool[...]``; invalid entries are not counted.

  Returns:
    ``i32[C, C]``.
  """
  validation.check_positive_int(num_classes, "num_classes")
  _check(logits, labels, where, num_classes)
  truth = jnp.reshape(labels, (-1,))
  predicted = jnp.reshape(jnp.argmax(logits, axis=-1), (-1,))
  counted = (truth >= 0) & (truth < num_classes)
  if where is not None:
    counted = counted & jnp.reshape(where, (-1,))
  # Uncounted entries are sent to cell 0 with weight 0, so a label such as
  # 255 never indexes (or wraps around) the matrix.
  cell = jnp.where(counted, truth * num_classes + predicted, 0)
  flat = jnp.zeros(num_classes * num_classes, jnp.int32).at[cell].add(
      counted.astype(jnp.int32))
  return jnp.reshape(flat, (num_classes, num_classes))


def class_iou(confusion) -> jax.Array:
  """Per-class IoU = TP / (TP + FP + FN): ``f32[C]``, NaN where absent.

  A class that occurs neither in the truth nor in the predictions (union 0)
  has no IoU; it is NaN here and left out by ``mean_iou``.
  """
  validation.check_square(confusion, "confusion")
  confusion = jnp.asarray(confusion, jnp.float32)
  tp = jnp.diagonal(confusion)
  union = jnp.sum(confusion, axis=0) + jnp.sum(confusion, axis=1) - tp
  return jnp.where(union > 0, tp / jnp.where(union > 0, union, 1.0), jnp.nan)


def mean_iou(confusion) -> jax.Array:
  """Mean IoU over the classes present in the truth or the predictions.

  Convention: a class with union TP + FP + FN = 0 (never labelled, never
  predicted) is left out of the mean, as numpy's ``nanmean`` over the PASCAL
  VOC per-class IoUs does. A class that is labelled but never predicted
  correctly counts with IoU 0, and one predicted but never labelled (FP only)
  counts with IoU 0 too. SemanticKITTI's ``iouEval`` instead averages over
  all evaluated classes, so the two agree when every class occurs.

  Args:
    confusion: ``[C, C]`` counts (``confusion_matrix``, summed over
      batches).

  Returns:
    ``f32[]``; NaN if no class occurs at all (an empty matrix).
  """
  iou = class_iou(confusion)
  present = ~jnp.isnan(iou)
  count = jnp.sum(present, dtype=jnp.float32)
  total = jnp.sum(jnp.where(present, iou, 0.0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


def pixel_accuracy(confusion) -> jax.Array:
  """Fraction of counted entries whose prediction is right: trace / total.

  ``f32[]`` from ``[C, C]`` counts; NaN if nothing was counted.
  """
  validation.check_square(confusion, "confusion")
  confusion = jnp.asarray(confusion, jnp.float32)
  total = jnp.sum(confusion)
  return jnp.where(total > 0,
                   jnp.trace(confusion) / jnp.where(total > 0, total, 1.0),
                   jnp.nan)
