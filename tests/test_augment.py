"""SimCLR-style augmentations (``data/augment.py``): keyed, jit/vmap-safe."""

import dataclasses
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ntdh_jax.data import augment
from ntdh_jax.data import blur

RNG = np.random.RandomState(0)
RGB = RNG.rand(4, 8, 8, 3).astype(np.float32)
GREY = RNG.rand(4, 8, 8, 1).astype(np.float32)
# 64 images in [0.05, 0.7]: brightening by up to 1.4 stays below 1.
MANY = RNG.uniform(0.05, 0.7, (64, 8, 8, 3)).astype(np.float32)
KEY = jax.random.PRNGKey(0)
DEFAULT = augment.AugmentConfig()
IDENTITY = augment.IDENTITY


def only(**options):
  """The identity config with ``options`` switched on."""
  return dataclasses.replace(IDENTITY, **options)


# One compiled program per (config, shape), shared by the tests.
_AUGMENT = jax.jit(augment.augment, static_argnames="config")
_AUGMENT_ONE = jax.jit(augment.augment_one, static_argnames="config")


def _jitted(config):
  return lambda key, x: _AUGMENT(key, x, config=config)


@jax.jit
def _draws(key, images):
  """The documented draws ``f32[N, DRAWS]`` of a batch of N ``images``."""
  return jax.vmap(lambda k: jax.random.uniform(k, (augment.DRAWS,)))(
      jax.random.split(key, images.shape[0]))


_BLUR = jax.jit(blur.gaussian_blur, static_argnums=2)
_CROP = jax.jit(augment.resized_crop)


def test_same_key_same_output_and_new_key_new_output():
  run = _jitted(DEFAULT)
  first = run(KEY, RGB)
  np.testing.assert_array_equal(first, run(KEY, RGB))
  other = run(jax.random.PRNGKey(1), RGB)
  assert float(jnp.max(jnp.abs(first - other))) > 0.05


def test_examples_draw_independently():
  twins = np.repeat(RGB[:1], len(RGB), axis=0)
  out = _jitted(DEFAULT)(KEY, twins)
  for i in range(1, len(RGB)):
    assert float(jnp.max(jnp.abs(out[0] - out[i]))) > 0.05


@pytest.mark.parametrize("shape", [(4, 8, 8, 3), (2, 8, 12, 1)])
def test_identity_config_returns_the_input(shape):
  x = np.random.RandomState(1).rand(*shape).astype(np.float32)
  out = _jitted(IDENTITY)(KEY, x)
  np.testing.assert_allclose(out, x, atol=1e-6, rtol=0)
  # Every probability 0 but the crop still drawn: the (1, 1) crop is exact.
  u = jnp.array([0.3, 0.6, 0.9, 0.2])
  assert augment.crop_box(u, 8, 12, IDENTITY).tolist() == [0, 0, 8, 12]


def test_flip_only():
  out = _jitted(only(flip=1.0))(KEY, RGB)
  np.testing.assert_array_equal(out, RGB[:, :, ::-1])
  # At 0.5 some images are flipped and some are not, each exactly (and a
  # typed key works as a raw one).
  half = _jitted(only(flip=0.5))(jax.random.key(0), MANY)
  flipped = [bool(np.array_equal(half[i], MANY[i, :, ::-1]))
             for i in range(64)]
  kept = [bool(np.array_equal(half[i], MANY[i])) for i in range(64)]
  assert all(f != k for f, k in zip(flipped, kept))
  assert 16 < sum(flipped) < 48


def test_grayscale_only():
  out = np.asarray(_jitted(only(grayscale=1.0))(KEY, RGB))
  want = 0.299 * RGB[..., 0] + 0.587 * RGB[..., 1] + 0.114 * RGB[..., 2]
  for c in range(3):
    np.testing.assert_allclose(out[..., c], want, atol=1e-6)
  # One channel: nothing to do.
  np.testing.assert_array_equal(jax.jit(augment.grayscale)(GREY), GREY)


def test_brightness_only_scales_each_image_by_one_factor():
  x = MANY.copy()
  x[:, 0, 0, 0] = 0.95  # clipped whenever the factor exceeds 1/0.95
  config = only(jitter=1.0, brightness=0.4, contrast=0.0, saturation=0.0,
                hue=0.0)
  out = np.asarray(_jitted(config)(KEY, x))
  # The documented draw: factor 0.6 + 0.8·u, u the jitter's second slot.
  u = np.asarray(_draws(KEY, x)[:, augment.SLOTS["jitter"]], np.float64)
  factors = 0.6 + 0.8 * u[:, 1]
  want = np.clip(x * factors[:, None, None, None], 0.0, 1.0)
  np.testing.assert_allclose(out, want, atol=2e-6)
  # Documented range U(1 − 0.4, 1 + 0.4), spread over it, one per image.
  assert 0.6 <= factors.min() < 0.7 and 1.3 < factors.max() <= 1.4
  assert len(np.unique(np.round(factors, 5))) == 64
  assert np.any(out[:, 0, 0, 0] == 1.0)


@pytest.mark.parametrize("radius, x", [(None, RGB), (3, GREY)])
def test_blur_only_is_the_gaussian_blur(radius, x):
  config = only(blur=1.0, blur_sigma=(1.0, 1.0), blur_radius=radius)
  want = _BLUR(x, 1.0, 4 if radius is None else radius)
  np.testing.assert_allclose(_jitted(config)(KEY, x), want, atol=1e-6)
  # The default radius is ceil(4σ), capped by the image side.
  assert augment.blur_radius(DEFAULT, 8, 8) == 7
  assert augment.blur_radius(DEFAULT, 28, 28) == 8


def _bilinear_reference(image, top, left, h, w):
  """float64 loops: output (i, j) samples (top + (i + ½)h/H − ½, left +
  (j + ½)w/W − ½), pixel centres at integers, clamped to the image."""
  image = np.asarray(image, np.float64)
  rows, cols = image.shape[:2]
  out = np.zeros_like(image)
  for i in range(rows):
    y = min(max(top + (i + 0.5) * h / rows - 0.5, 0.0), rows - 1.0)
    y0 = int(math.floor(y))
    y1, fy = min(y0 + 1, rows - 1), y - y0
    for j in range(cols):
      x = min(max(left + (j + 0.5) * w / cols - 0.5, 0.0), cols - 1.0)
      x0 = int(math.floor(x))
      x1, fx = min(x0 + 1, cols - 1), x - x0
      out[i, j] = ((1 - fy) * (1 - fx) * image[y0, x0]
                   + (1 - fy) * fx * image[y0, x1]
                   + fy * (1 - fx) * image[y1, x0] + fy * fx * image[y1, x1])
  return out


def test_resized_crop_matches_a_bilinear_reference():
  image = RGB[0]
  np.testing.assert_array_equal(
      _CROP(image, jnp.array([0.0, 0.0, 8.0, 8.0])), image)
  for box in [(2.0, 2.0, 4.0, 4.0), (1.5, 0.75, 5.0, 6.5),
              (0.0, 3.0, 8.0, 2.25)]:
    got = _CROP(image, jnp.array(box))
    np.testing.assert_allclose(got, _bilinear_reference(image, *box),
                               atol=1e-6)
  # Away from the crop's border the centre crop is the usual half-pixel
  # bilinear upsampling of the cropped patch (here scipy's).
  centre = _CROP(image, jnp.array([2.0, 2.0, 4.0, 4.0]))
  zoomed = ndimage.zoom(image[2:6, 2:6].astype(np.float64), (2, 2, 1),
                        order=1, grid_mode=True, mode="nearest")
  np.testing.assert_allclose(centre[1:-1, 1:-1], zoomed[1:-1, 1:-1],
                             atol=1e-6)


def test_crop_boxes_follow_the_documented_distribution():
  config = DEFAULT
  u = jax.random.uniform(KEY, (4000, 4))
  boxes = np.asarray(jax.jit(jax.vmap(
      lambda u: augment.crop_box(u, 8, 8, config)))(u), np.float64)
  top, left, h, w = boxes.T
  assert np.all((top >= 0) & (left >= 0) & (h > 0) & (w > 0))
  assert np.all(top + h <= 8 + 1e-5) and np.all(left + w <= 8 + 1e-5)
  free = (h < 8) & (w < 8)  # not clamped: area and aspect as drawn
  area, aspect = h[free] * w[free] / 64, w[free] / h[free]
  assert np.all((area >= 0.08 - 1e-6) & (area <= 1 + 1e-6))
  assert np.all((aspect >= 0.75 - 1e-5) & (aspect <= 4 / 3 + 1e-5))
  assert area.min() < 0.1 and area.max() > 0.9
  np.testing.assert_allclose(np.mean(np.log(aspect)), 0.0, atol=0.02)
  assert 0 < np.sum(~free) < 4000  # big or elongated boxes are clamped


def test_crop_in_augment_is_crop_box_then_resized_crop():
  config = only(crop_scale=(0.2, 0.6), crop_ratio=(0.5, 2.0))
  out = _jitted(config)(KEY, MANY)
  keys = jax.random.split(KEY, len(MANY))
  boxes = jax.jit(jax.vmap(lambda u: augment.crop_box(u, 8, 8, config)))(
      _draws(KEY, MANY)[:, augment.SLOTS["crop"]])
  for i in range(4):
    box = np.asarray(boxes[i], np.float64)
    np.testing.assert_allclose(
        out[i], _bilinear_reference(MANY[i], *box), atol=1e-5)
    # Example i is augment_one with split(key, N)[i].
    np.testing.assert_allclose(
        out[i], _AUGMENT_ONE(keys[i], MANY[i], config=config), atol=1e-6)
  assert float(jnp.max(jnp.abs(out - MANY))) > 0.1


STRONG = dataclasses.replace(DEFAULT, jitter=1.0, brightness=2.0,
                             contrast=2.0, saturation=2.0, hue=0.5, blur=1.0)


@pytest.mark.parametrize("config, size, channels", [
    (DEFAULT, 8, 1), (DEFAULT, 8, 3), (DEFAULT, 28, 1), (DEFAULT, 28, 3),
    (STRONG, 8, 3)])
def test_shapes_range_and_finiteness(config, size, channels):
  x = np.random.RandomState(4).rand(4, size, size, channels).astype(
      np.float32)
  for key in (KEY, jax.random.PRNGKey(7)):
    out = _jitted(config)(key, x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    chex.assert_tree_all_finite(out)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_colour_operations():
  hue, luma = jax.jit(augment.adjust_hue), jax.jit(augment.luma)
  grey = np.full((1, 4, 4, 3), 0.4, np.float32)
  np.testing.assert_allclose(hue(grey, 0.3), grey, atol=1e-6)
  np.testing.assert_allclose(hue(RGB, 0.0), RGB, atol=1e-6)
  pastel = np.array([[[[0.6, 0.45, 0.45], [0.4, 0.5, 0.45]]]], np.float32)
  for h in (0.1, 0.25, 0.5):
    turned = hue(pastel, h)
    np.testing.assert_allclose(luma(turned), luma(pastel), atol=1e-6)
    np.testing.assert_allclose(hue(turned, -h), pastel, atol=1e-5)
  red = hue(pastel, 1 / 12)[0, 0, 0]
  assert red[1] > 0.45 > red[2]  # red turns towards yellow, as in HSV
  # Contrast keeps the mean luma (unclipped); saturation 0 is grayscale.
  soft = 0.25 + 0.5 * RGB
  np.testing.assert_allclose(
      luma(jax.jit(augment.adjust_contrast)(soft, 0.5)).mean(axis=(1, 2, 3)),
      luma(soft).mean(axis=(1, 2, 3)), atol=1e-6)
  np.testing.assert_allclose(jax.jit(augment.adjust_saturation)(RGB, 0.0),
                             jax.jit(augment.grayscale)(RGB), atol=1e-6)


@jax.jit
@chex.assert_max_traces(n=1)
def _runs(keys, images):
  """``augment`` vmapped over a leading axis of runs (one trace, ever)."""
  return jax.vmap(lambda k, x: augment.augment(k, x, DEFAULT))(keys, images)


RUNS = np.random.RandomState(5).rand(3, 4, 8, 8, 3).astype(np.float32)


def test_vmap_over_runs_equals_a_loop():
  keys = jax.random.split(KEY, 3)
  many = _runs(keys, RUNS)
  for r in range(3):
    np.testing.assert_allclose(many[r], _jitted(DEFAULT)(keys[r], RUNS[r]),
                               atol=1e-6)


def test_new_keys_do_not_retrace():
  outs = [_runs(jax.random.split(jax.random.PRNGKey(seed), 3), RUNS)
          for seed in range(3)]
  assert not np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("field, value", [
    ("crop_scale", (0.0, 1.0)), ("crop_scale", (0.6, 0.2)),
    ("crop_scale", (0.5, 1.5)), ("crop_scale", 0.5),
    ("crop_scale", (0.1, 0.2, 0.3)), ("crop_ratio", (2.0, 1.0)),
    ("crop_ratio", (-1.0, 1.0)), ("flip", 1.5), ("flip", -0.1),
    ("jitter", True), ("grayscale", "0.2"), ("blur", float("nan")),
    ("brightness", -0.1), ("contrast", float("inf")), ("saturation", None),
    ("hue", 0.6), ("blur_sigma", (0.0, 1.0)), ("blur_sigma", (2.0, 1.0)),
    ("blur_radius", -1), ("blur_radius", 2.5),
])
def test_config_errors_name_the_field(field, value):
  with pytest.raises(ValueError, match=rf"^{field}\b"):
    augment.AugmentConfig(**{field: value})


def test_misuse_is_refused():
  with pytest.raises(ValueError, match="blur_radius must be at most 7"):
    augment.augment(KEY, RGB, only(blur=1.0, blur_radius=8))
  with pytest.raises(ValueError, match="1 or 3 channels"):
    augment.augment(KEY, np.zeros((2, 8, 8, 2), np.float32))
  with pytest.raises(ValueError, match=r"images must .*\[N, H, W, C\]"):
    augment.augment(KEY, RGB[0])
  with pytest.raises(TypeError, match="images must be a floating array"):
    augment.augment(KEY, (RGB * 255).astype(np.uint8))
  with pytest.raises(TypeError, match="config must be an AugmentConfig"):
    augment.augment(KEY, RGB, {"flip": 0.0})


def test_normalise_and_from_dict():
  full = augment.normalise({})
  assert full == augment.normalise(full)  # idempotent
  assert json.loads(json.dumps(full)) == full
  assert full["crop_scale"] == [0.08, 1.0] and full["blur_radius"] is None
  assert list(full) == [f.name for f in dataclasses.fields(DEFAULT)]
  spelled = augment.normalise({"flip": 0, "crop_ratio": [1, 1],
                               "blur_radius": np.int64(3)})
  assert spelled == augment.normalise({"flip": 0.0,
                                       "crop_ratio": (1.0, 1.0),
                                       "blur_radius": 3})
  assert isinstance(spelled["flip"], float)
  assert isinstance(spelled["blur_radius"], int)
  config = augment.AugmentConfig.from_dict(spelled)
  assert config == augment.AugmentConfig(flip=0.0, crop_ratio=(1.0, 1.0),
                                         blur_radius=3)
  assert hash(config) == hash(augment.AugmentConfig.from_dict(
      config.to_dict()))
  assert augment.AugmentConfig.from_dict(full) == DEFAULT
  with pytest.raises(ValueError,
                     match=r"unknown keys \['colour', 'crop'\]; valid keys: "
                           r"\['crop_scale', 'crop_ratio', 'flip'"):
    augment.normalise({"flip": 0.0, "crop": 1, "colour": 0.5})
  with pytest.raises(ValueError, match="^hue"):
    augment.normalise({"hue": 0.7})
