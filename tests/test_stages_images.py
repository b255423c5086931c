"""The stages on image modalities: uint8 sources, CNNs with BatchNorm and
dropout under jit(vmap), per-pixel segmentation with an ignore label, and a
CNN teacher beside an MLP student."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import data as data_lib
from ntdh_jax.train import stages
from tests.fast_jit import fast_jit

_jit = fast_jit  # many small programs: compile them cheaply
KEYS = jax.random.split(jax.random.PRNGKey(0), 2)
HP = {"lr": jnp.full((2,), 1e-3, jnp.float32),
      "momentum": jnp.zeros((2,), jnp.float32)}
KD_HP = {**HP, "temperature": jnp.full((2,), 2.0, jnp.float32),
         "kd_weight": jnp.ones((2,), jnp.float32),
         "mask_ratio": jnp.array([0.0, 0.5], jnp.float32),
         "mask_kind": jnp.zeros((2,), jnp.float32)}


def _train_two(stage, static, hp, inputs=None):
  """Two runs (two keys) of one program under jit(vmap)."""
  program = stages.build_program(stage, static)
  in_axes = (0, 0, None, None if inputs is None else 0)
  out = _jit(jax.vmap(program.train, in_axes=in_axes))(
      hp, KEYS, program.load(), inputs)
  return program, jax.device_get(out)


def _finite(tree):
  return all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


# ------------------------------------------------------------------ digits

DIGITS = {"data": {"name": "digits"}, "epochs": 1, "eval_every": 1,
          "batch_size": 64, "optimizer": "adam", "eval_batch_size": 200}
CNN_BN = {"name": "cnn", "channels": [8, 16], "dense": 32, "batch_norm": True,
          "dropout": 0.3}


@pytest.fixture(scope="module")
def digits_teacher():
  return _train_two("teacher", {**DIGITS, "model": CNN_BN},
                    {**HP, "lr": HP["lr"] * 10})


def test_cnn_teacher_with_batchnorm_and_dropout_trains(digits_teacher):
  """uint8 digits through ``prepare``, BatchNorm statistics carried in the
  run's state, keyed dropout; evaluation in batches of 200 of the 450 test
  images (the last batch padded) gives a proper accuracy."""
  _, (final, history, outputs) = digits_teacher
  assert _finite((final, history, outputs))
  stats = outputs["variables"]["batch_stats"]
  means = jax.tree.leaves(stats)
  assert means and all(np.any(m != 0) for m in means)  # updated in training
  acc = history["test_acc"][:, -1]
  assert np.all(acc > 0.3) and np.all(acc <= 1)
  # 450 test images: an accuracy is a multiple of 1/450 (no padding counted).
  np.testing.assert_allclose(acc * 450, np.round(acc * 450), atol=1e-3)
  kernel = jax.tree.leaves(outputs["variables"]["params"])[0]
  assert not np.array_equal(kernel[0], kernel[1])  # two keys, two runs


def test_cnn_student_distils_from_a_cnn_teacher_per_role(digits_teacher):
  """A student (an MLP on the 3-channel view) restores the CNN teacher's
  variables, BatchNorm statistics included, through the ``teacher`` role."""
  program, (_, history, _) = _train_two(
      "student", {**DIGITS, "model": {"name": "mlp", "hidden": [32]},
                  "teacher_model": CNN_BN, "distill": "kl"},
      KD_HP, inputs={"teacher": digits_teacher[1][2]})
  assert set(program.input_spec) == {"teacher"}
  assert _finite(history)
  for name in ("tcjsd", "ncjsd", "kl"):
    assert np.all(history[name] >= 0)


# ------------------------------------------------------------ segmentation

IGNORE = 255


@dataclasses.dataclass(frozen=True)
class BlobsConfig:
  n_train: int = 24
  n_test: int = 12


class Blobs(data_lib.DataSource):
  """A tiny segmentation source: 8×8 scenes of three region classes; the
  teacher sees them grey, the student in noisy colour; border pixels carry
  the ignore label."""
  name = "test_blobs"
  Config = BlobsConfig

  def spec(self, config):
    return data_lib.DataSpec(
        teacher=data_lib.Modality("grey", (8, 8, 1), "uint8"),
        student=data_lib.Modality("colour", (8, 8, 3), "uint8"),
        num_classes=3, splits={"train": config.n_train, "test": config.n_test},
        label_shape=(8, 8), ignore_label=IGNORE)

  def load(self, config):
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", config.n_train), ("test", config.n_test)):
      field = rng.random((n, 8, 8)).cumsum(1).cumsum(2)
      labels = np.digitize(field / field.max((1, 2), keepdims=True),
                           [0.33, 0.66]).astype(np.int32)
      labels[:, 0, :] = IGNORE
      grey = (np.minimum(labels, 2) * 120).astype(np.uint8)[..., None]
      colour = np.clip(grey + rng.integers(0, 60, (n, 8, 8, 3)), 0, 255)
      out.update({f"teacher_{split}": grey, f"y_{split}": labels,
                  f"student_{split}": colour.astype(np.uint8)})
    return out

  def views(self, config, arrays, hparams, key):
    return data_lib.Views(*(arrays[k] for k in (
        "teacher_train", "student_train", "y_train", "teacher_test",
        "student_test", "y_test")))


data_lib.register(Blobs())
SEG = {"data": {"name": "test_blobs"},
       "model": {"name": "segnet", "channels": [4, 8]}, "epochs": 2,
       "eval_every": 1, "batch_size": 8, "optimizer": "adam",
       "eval_batch_size": 5}


@pytest.fixture(scope="module")
def seg_teacher():
  return _train_two("teacher", SEG, {**HP, "lr": HP["lr"] * 10})


def test_segmentation_teacher_reports_miou_over_valid_pixels(seg_teacher):
  """Per-pixel CE and metrics skip the ignore label (255 ≥ C would be out
  of range otherwise); mean IoU sits beside pixel accuracy."""
  _, (final, history, _) = seg_teacher
  assert _finite((final, history))
  assert set(history) == {"train_ce", "test_acc", "test_miou"}
  assert np.all((history["test_miou"] >= 0) & (history["test_miou"] <= 1))
  assert np.all(history["test_acc"][:, -1] > 0.4)


def test_per_pixel_sample_mask_student(seg_teacher):
  """Algorithm 2 per pixel: NCJSD-ranked pixels of a batch excluded from the
  KD term (ratio 0 vs 0.5 differ); per-pixel divergences averaged over the
  valid pixels."""
  static = {**SEG, "distill": "kl", "sample_mask": "ncjsd"}
  _, (_, history, outputs) = _train_two(
      "student", static, {**KD_HP, "lr": KD_HP["lr"] * 10},
      inputs={"teacher": seg_teacher[1][2]})
  assert _finite((history, outputs))
  assert {"test_miou", "ncjsd", "tcjsd", "train_kd"} <= set(history)
  assert np.all(history["ncjsd"] <= np.log(2) + 1e-6)
  assert not np.allclose(history["train_kd"][0], history["train_kd"][1])
  joint = stages.build_program("joint", {**SEG, "importance_repeats": 1})
  assert jax.eval_shape(
      joint.train, {"lr": jnp.float32(0.01), "momentum": jnp.float32(0)},
      KEYS[0], joint.load())[2]["importance"].shape == (8, 8, 1)
