"""Tests of ntdh_jax.data.digits: the embedded digits → digits-M source."""

import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits, load_sample_images

from ntdh_jax.data import digits, source

SRC = digits.DIGITS


def _load(**kwargs):
  config = digits.DigitsConfig(**kwargs)
  return config, SRC.load(config)


@pytest.fixture(scope="module")
def loaded():
  return _load()


@pytest.fixture(scope="module")
def loaded28():
  return _load(size=28)


def test_registered():
  assert source.get("digits") is SRC
  assert source.normalise({"name": "digits"}) == {
      "name": "digits", **dataclasses.asdict(digits.DigitsConfig())}
  assert SRC.hparams == {}


def test_spec_and_split_sizes(loaded):
  config, arrays = loaded
  spec = SRC.spec(config)
  assert spec.teacher == source.Modality("digits", (8, 8, 1), "uint8")
  assert spec.student == source.Modality("digits_m", (8, 8, 3), "uint8")
  assert spec.num_classes == 10 and spec.paired and spec.gap is None
  assert dict(spec.splits) == {"train": 1347, "test": 450}
  # The spec's split sizes are computed without loading: they must agree
  # with the data scikit-learn ships.
  assert len(load_digits().target) == sum(spec.splits.values())
  source.check_arrays(SRC, config, arrays)
  assert sorted(arrays) == sorted(source.Views._fields)
  for key in ("teacher_train", "student_train", "teacher_test",
              "student_test"):
    assert arrays[key].dtype == np.uint8
  assert arrays["y_train"].dtype == np.int32
  assert arrays["y_test"].dtype == np.int32


def test_labels_and_stratified_split(loaded):
  _, arrays = loaded
  for split, n in (("train", 1347), ("test", 450)):
    y = arrays[f"y_{split}"]
    assert y.min() == 0 and y.max() == 9
    counts = np.bincount(y, minlength=10)
    # Stratified: each class holds its share of the split, ±1.
    full = np.bincount(load_digits().target, minlength=10)
    np.testing.assert_allclose(counts, full * n / full.sum(), atol=1.0)


def test_teacher_is_scaled_digits(loaded):
  _, arrays = loaded
  d = load_digits()
  train, test = digits.split_indices(d.target)
  for idx, split in ((train, "train"), (test, "test")):
    want = np.rint(d.images[idx] * 255 / 16).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(arrays[f"teacher_{split}"], want)
    np.testing.assert_array_equal(arrays[f"y_{split}"], d.target[idx])
  assert arrays["teacher_train"].max() == 255


def _expected_student(teacher_by_row, seed, size):
  """The documented recipe, written independently: photo choice, crop rows,
  crop columns from default_rng(seed), then |crop − digit| in integers."""
  photos = [np.asarray(p) for p in load_sample_images().images]
  n = len(teacher_by_row)
  rng = np.random.default_rng(seed)
  choice = rng.integers(0, 2, n)
  rows = rng.integers(0, 427 - size, n)
  cols = rng.integers(0, 640 - size, n)
  out = np.empty((n, size, size, 3), np.uint8)
  for i in range(n):
    crop = photos[choice[i]][rows[i]:rows[i] + size, cols[i]:cols[i] + size]
    out[i] = np.abs(crop.astype(np.int32)
                    - teacher_by_row[i].astype(np.int32)).astype(np.uint8)
  return out


@pytest.mark.parametrize("seed", [0, 3])
def test_student_is_the_mnist_m_blend_of_the_same_digit(seed):
  """Pairing: row i of the student view is row i's teacher digit blended
  over the documented crop (so the digit is visible in both views)."""
  _, arrays = _load(seed=seed)
  labels = load_digits().target
  train, test = digits.split_indices(labels)
  teacher = np.empty((len(labels), 8, 8, 1), np.uint8)
  teacher[train], teacher[test] = arrays["teacher_train"], arrays[
      "teacher_test"]
  want = _expected_student(teacher, seed, 8)
  np.testing.assert_array_equal(arrays["student_train"], want[train])
  np.testing.assert_array_equal(arrays["student_test"], want[test])


def test_blend_does_not_wrap():
  grey = np.full((4, 8, 8), 255, np.uint8)
  out = digits.blend(grey, seed=0)
  zero = digits.blend(np.zeros_like(grey), seed=0)  # the crops themselves
  np.testing.assert_array_equal(out, 255 - zero)


def test_deterministic_in_seed(loaded):
  config, arrays = loaded
  again = SRC.load(config)
  for key in arrays:
    np.testing.assert_array_equal(arrays[key], again[key])
  _, other = _load(seed=1)
  for key in ("teacher_train", "teacher_test", "y_train", "y_test"):
    np.testing.assert_array_equal(arrays[key], other[key])
  assert (arrays["student_train"] != other["student_train"]).mean() > 0.5


def test_size_28(loaded, loaded28):
  config, arrays = loaded28
  spec = SRC.spec(config)
  assert spec.teacher.shape == (28, 28, 1)
  assert spec.student.shape == (28, 28, 3)
  source.check_arrays(SRC, config, arrays)
  _, small = loaded
  np.testing.assert_array_equal(arrays["y_train"], small["y_train"])
  np.testing.assert_array_equal(arrays["y_test"], small["y_test"])
  # The 28×28 digit is the 8×8 one upsampled: shrinking it back correlates.
  from PIL import Image  # pylint: disable=import-outside-toplevel
  back = np.stack([
      np.asarray(Image.fromarray(t[..., 0]).resize((8, 8),
                                                   Image.Resampling.BILINEAR))
      for t in arrays["teacher_test"]]).astype(np.float64)
  corr = np.corrcoef(back.ravel(),
                     small["teacher_test"].ravel().astype(np.float64))[0, 1]
  assert corr > 0.9
  labels = load_digits().target
  train, test = digits.split_indices(labels)
  teacher = np.empty((len(labels), 28, 28, 1), np.uint8)
  teacher[train], teacher[test] = arrays["teacher_train"], arrays[
      "teacher_test"]
  np.testing.assert_array_equal(arrays["student_test"],
                                _expected_student(teacher, 0, 28)[test])


@pytest.mark.parametrize("field, value", [
    ("size", 7), ("size", 16), ("size", True), ("seed", -1), ("seed", 1.5),
    ("teacher_noise", -0.1), ("teacher_noise", math.nan),
    ("teacher_noise", math.inf), ("teacher_noise", "0.5"),
    ("student_noise", -1e-3), ("student_noise", math.nan),
    ("student_noise", None),
])
def test_bad_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    digits.DigitsConfig(**{field: value})
  with pytest.raises(ValueError, match=field):
    source.parse({"name": "digits", field: value})


def test_unknown_key_rejected():
  with pytest.raises(ValueError, match="noise"):
    source.parse({"name": "digits", "noise": 0.1})


def test_views_are_the_arrays(loaded):
  config, arrays = loaded
  views = SRC.views(config, arrays, (), jax.random.PRNGKey(0))
  assert isinstance(views, source.Views)
  for key in source.Views._fields:
    assert getattr(views, key) is arrays[key]


def _batch(arrays, role, n=32):
  return jnp.asarray(arrays[f"{role}_train"][:n])


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_prepare_without_noise_is_exact(loaded, role):
  _, arrays = loaded
  config = digits.DigitsConfig(teacher_noise=0.0, student_noise=0.0)
  x = _batch(arrays, role)
  out = SRC.prepare(config, x, role, (), jax.random.PRNGKey(0))
  assert out.dtype == jnp.float32 and out.shape == x.shape
  # No noise term at all: the key does not matter, bit for bit, and the
  # input is (x/255 − 0.5)/0.5 (to the float32 rounding of x/255, which XLA
  # may compute as x·(1/255)).
  other = SRC.prepare(config, x, role, (), jax.random.PRNGKey(9))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(other))
  want = (np.asarray(x).astype(np.float64) / 255 - 0.5) / 0.5
  np.testing.assert_allclose(np.asarray(out), want, rtol=0, atol=3e-7)
  np.testing.assert_array_equal(np.asarray(x)[np.asarray(x) == 0].size,
                                (np.asarray(out) == -1.0).sum())
  np.testing.assert_array_equal(np.asarray(x)[np.asarray(x) == 255].size,
                                (np.asarray(out) == 1.0).sum())


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_prepare_with_noise_range_and_direction(loaded, role):
  _, arrays = loaded
  config = digits.DigitsConfig(teacher_noise=0.9, student_noise=0.4)
  x = _batch(arrays, role)
  out = np.asarray(SRC.prepare(config, x, role, (), jax.random.PRNGKey(1)))
  clean = (np.asarray(x).astype(np.float32) / 255 - 0.5) / 0.5
  assert out.dtype == np.float32 and out.shape == x.shape
  assert out.min() >= -1.0 and out.max() <= 1.0
  # U[0, 1) noise only brightens (NTDH's form), and does change the input.
  assert (out >= clean - 1e-6).all()
  assert np.abs(out - clean).mean() > 0.05


def test_prepare_noise_levels_in_measured_std():
  """On a black image no clipping happens for levels <= 1, so the output is
  2·noise·U − 1 with std 2·noise/sqrt(12) per modality."""
  config = digits.DigitsConfig(teacher_noise=0.3, student_noise=0.1)
  stds = {}
  for role, c in (("teacher", 1), ("student", 3)):
    x = jnp.zeros((32, 8, 8, c), jnp.uint8)  # the shape of _batch: cached
    out = np.asarray(SRC.prepare(config, x, role, (), jax.random.PRNGKey(2)))
    stds[role] = out.std()
    level = getattr(config, f"{role}_noise")
    np.testing.assert_allclose(stds[role], 2 * level / math.sqrt(12),
                               rtol=0.05)
    np.testing.assert_allclose(out.mean(), level - 1.0, atol=0.02)
  np.testing.assert_allclose(stds["teacher"] / stds["student"], 3.0,
                             rtol=0.07)


def test_default_noise_levels():
  """The defaults (measured, see the module docstring) reach the input."""
  config = digits.DigitsConfig()
  for role, c in (("teacher", 1), ("student", 3)):
    level = getattr(config, f"{role}_noise")
    x = jnp.zeros((32, 8, 8, c), jnp.uint8)
    out = np.asarray(SRC.prepare(config, x, role, (), jax.random.PRNGKey(4)))
    # Below 1 nothing clips on a black image; above, clip(U·level) has
    # mean 1 − 1/(2·level).
    mean01 = level / 2 if level <= 1 else 1 - 1 / (2 * level)
    np.testing.assert_allclose(((out + 1) / 2).mean(), mean01, atol=0.02)


def test_prepare_jit_vmap_over_keys_equals_loop(loaded):
  _, arrays = loaded
  config = digits.DigitsConfig(teacher_noise=0.7, student_noise=0.2)
  cases = (("teacher", jax.random.split(jax.random.PRNGKey(5), 3)),  # raw
           ("student", jax.random.split(jax.random.key(7), 3)))  # typed
  for role, keys in cases:
    x = _batch(arrays, role)

    def one(xb, k, role=role):
      return SRC.prepare(config, xb, role, (), k)

    # x and the keys are traced arguments, as in a sweep.
    batched = np.asarray(jax.jit(jax.vmap(one, in_axes=(None, 0)))(x, keys))
    looped = np.stack([np.asarray(one(x, k)) for k in keys])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])  # keys matter


def test_prepare_rejects_unknown_modality(loaded):
  config, arrays = loaded
  with pytest.raises(ValueError, match="modality"):
    SRC.prepare(config, _batch(arrays, "teacher"), "audio", (),
                jax.random.PRNGKey(0))


def test_missing_pillow_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "PIL", None)
  with pytest.raises(ImportError, match="pip install pillow"):
    digits._require_pillow()  # pylint: disable=protected-access
