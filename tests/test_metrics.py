"""ntdh_jax.metrics against NumPy loops, in mini-batches and under jit/vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import metrics
from tests import reference

C = 5
IGNORE = 255
_SEG = (4, 6, 7)  # [B, H, W]


def _segmentation(seed, absent=(3,)):
  """Logits [B, H, W, C] and labels with IGNORE pixels; the classes in
  ``absent`` are neither labelled nor predicted anywhere."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(*_SEG, C)).astype(np.float32)
  logits[..., list(absent)] = -100.0
  present = [c for c in range(C) if c not in absent]
  labels = rng.choice(present, size=_SEG).astype(np.int32)
  # Mostly right, so IoUs are far from 0.
  right = rng.random(_SEG) < 0.6
  np.put_along_axis(logits, labels[..., None], np.where(right, 10.0, -10.0)[
      ..., None], axis=-1)
  where = rng.random(_SEG) < 0.8
  labels = np.where(where, labels, IGNORE).astype(np.int32)
  return logits, labels, where


_confusion = jax.jit(metrics.confusion_matrix, static_argnums=2)
_correct = jax.jit(metrics.correct)


def test_correct_matches_numpy_and_zeroes_ignored():
  logits, labels, where = _segmentation(0)
  got = _correct(logits, labels, where)
  chex.assert_shape(got, _SEG)
  chex.assert_type(got, jnp.float32)
  want = (np.argmax(logits, -1) == labels) & where
  np.testing.assert_array_equal(got, want.astype(np.float32))
  flat = _correct(logits[where], labels[where])
  assert float(jnp.sum(got)) == float(jnp.sum(flat))


def test_confusion_matrix_matches_loop_and_skips_ignored_pixels():
  logits, labels, where = _segmentation(1)
  got = _confusion(logits, labels, C, where)
  chex.assert_shape(got, (C, C))
  chex.assert_type(got, jnp.int32)
  want = reference.confusion_matrix(np.argmax(logits, -1), labels, C, where)
  np.testing.assert_array_equal(got, want)
  assert int(np.sum(got)) == int(where.sum())


def test_confusion_of_mini_batches_adds_up_to_the_whole():
  """Evaluation in mini-batches (lax.map over blocks) sums to one pass."""
  logits, labels, where = _segmentation(2)
  whole = _confusion(logits, labels, C, where)
  per_batch = jax.jit(lambda l, y, w: jax.lax.map(
      lambda a: metrics.confusion_matrix(a[0], a[1], C, a[2]), (l, y, w)))(
          logits, labels, where)
  chex.assert_shape(per_batch, (_SEG[0], C, C))
  np.testing.assert_array_equal(jnp.sum(per_batch, axis=0), whole)
  vmapped = jax.jit(jax.vmap(metrics.correct))(logits, labels, where)
  np.testing.assert_array_equal(vmapped, _correct(logits, labels, where))


def test_mean_iou_leaves_out_absent_classes():
  logits, labels, where = _segmentation(3, absent=(1, 3))
  confusion = _confusion(logits, labels, C, where)
  got = jax.jit(metrics.mean_iou)(confusion)
  want = reference.mean_iou(np.asarray(confusion))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  iou = np.asarray(metrics.class_iou(confusion))
  assert np.isnan(iou[[1, 3]]).all() and not np.isnan(iou[[0, 2, 4]]).any()
  # Averaging over all C classes instead would count the absent ones as 0.
  assert float(got) > np.nansum(iou) / C


def test_mean_iou_and_pixel_accuracy_by_hand():
  confusion = np.array([[3, 1, 0, 0],
                        [0, 0, 0, 0],
                        [2, 0, 4, 0],
                        [0, 0, 0, 0]], np.int32)
  # class 0: 3 / (4 + 5 - 3); class 2: 4 / (6 + 4 - 4); class 1 is only
  # predicted (IoU 0); class 3 is absent.
  want = np.mean([3 / 6, 0.0, 4 / 6])
  np.testing.assert_allclose(metrics.mean_iou(confusion), want, rtol=1e-6)
  np.testing.assert_allclose(reference.mean_iou(confusion), want)
  np.testing.assert_allclose(metrics.pixel_accuracy(confusion), 7 / 10,
                             rtol=1e-6)
  empty = np.zeros((3, 3), np.int32)
  assert np.isnan(float(metrics.mean_iou(empty)))
  assert np.isnan(float(metrics.pixel_accuracy(empty)))


def test_classification_batch_shapes():
  logits, labels, _ = _segmentation(4)
  logits, labels = logits[0, 0], np.where(labels[0, 0] == IGNORE, 0,
                                          labels[0, 0]).astype(np.int32)
  np.testing.assert_array_equal(
      metrics.correct(logits, labels),
      (np.argmax(logits, -1) == labels).astype(np.float32))
  np.testing.assert_array_equal(
      metrics.confusion_matrix(logits, labels, C),
      reference.confusion_matrix(np.argmax(logits, -1), labels, C))


def test_no_retrace_on_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def evaluate(logits, labels, where):
    confusion = metrics.confusion_matrix(logits, labels, C, where)
    return (jnp.sum(metrics.correct(logits, labels, where)),
            metrics.mean_iou(confusion), metrics.pixel_accuracy(confusion))

  for seed in range(2):
    evaluate(*_segmentation(seed))


def test_bad_input_raises_naming_the_argument():
  logits, labels, where = _segmentation(5)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    metrics.correct(logits, labels)  # 255 without where
  with pytest.raises(ValueError, match="labels must have shape"):
    metrics.correct(logits, labels[0])
  with pytest.raises(TypeError, match="labels must be an integer"):
    metrics.correct(logits, labels.astype(np.float32), where)
  with pytest.raises(ValueError, match="where must have"):
    metrics.correct(logits, labels, where[0])
  with pytest.raises(ValueError, match="num_classes = 4"):
    metrics.confusion_matrix(logits, labels, 4, where)
  with pytest.raises(TypeError, match="num_classes must be an int"):
    metrics.confusion_matrix(logits, labels, 5.0, where)
  with pytest.raises(ValueError, match="confusion must be a square"):
    metrics.mean_iou(np.zeros((3, 4), np.int32))
  with pytest.raises(ValueError, match="logits must have rank >= 1"):
    metrics.correct(np.float32(1.0), np.int32(0))
  # Lists are refused with the argument's name (jax.numpy refuses them too).
  with pytest.raises(TypeError, match="labels must be an array"):
    metrics.correct(logits[0, 0], labels[0, 0].tolist())
  with pytest.raises(TypeError, match="labels must be an array"):
    metrics.confusion_matrix(logits[0, 0], labels[0, 0].tolist(), C)
  with pytest.raises(TypeError, match="logits must be an array"):
    metrics.correct(logits[0, 0].tolist(), labels[0, 0])
  with pytest.raises(TypeError, match="confusion must be an array"):
    metrics.mean_iou(np.eye(3, dtype=np.int32).tolist())
