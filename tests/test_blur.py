"""The traced Gaussian blur and the ``digits_blur`` source (CCH's knob)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ntdh_jax import data as data_lib
from ntdh_jax.data import blur

IMAGES = np.random.RandomState(0).rand(3, 8, 8, 3).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.5])
def test_blur_is_scipys_reflect_filter(sigma):
  want = ndimage.gaussian_filter(IMAGES.astype(np.float64),
                                 sigma=(0, sigma, sigma, 0), mode="reflect",
                                 radius=(0, 7, 7, 0))
  np.testing.assert_allclose(blur.gaussian_blur(IMAGES, sigma, 7), want,
                             atol=1e-6)


def test_zero_width_is_the_identity_and_the_mean_is_kept():
  np.testing.assert_array_equal(blur.gaussian_blur(IMAGES, 0.0, 7), IMAGES)
  blurred = blur.gaussian_blur(IMAGES, 3.0, 7)
  # Mirrored edges keep every image's mean; the blur lowers its spread.
  np.testing.assert_allclose(blurred.mean(axis=(1, 2)),
                             IMAGES.mean(axis=(1, 2)), atol=1e-5)
  assert float(blurred.std()) < float(IMAGES.std())


def test_traced_width_vmaps_with_one_trace():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def many(sigmas):
    return jax.vmap(lambda s: blur.gaussian_blur(IMAGES, s, 7))(sigmas)

  sigmas = jnp.array([0.0, 0.5, 2.0])
  out = many(sigmas)
  many(sigmas + 0.25)
  for i, s in enumerate(sigmas):
    np.testing.assert_allclose(out[i], blur.gaussian_blur(IMAGES, s, 7),
                               atol=1e-6)


def test_radius_beyond_the_image_is_refused():
  with pytest.raises(ValueError, match="radius must be in"):
    blur.gaussian_blur(IMAGES, 1.0, 8)


def test_digits_blur_source():
  source, config = data_lib.parse({"name": "digits_blur"})
  plain, plain_config = data_lib.parse({"name": "digits"})
  arrays = data_lib.load_arrays({"name": "digits_blur"})
  key = jax.random.PRNGKey(0)
  for view in ("teacher", "student"):
    x = arrays[f"{view}_test"][:4]
    unblurred = source.prepare(
        config, x, view, {"teacher_blur": 0.0, "student_blur": 0.0}, key)
    np.testing.assert_array_equal(
        unblurred, plain.prepare(plain_config, x, view, {}, key))
    # Only the view's own knob blurs it (the student view has no noise by
    # default, so its blur is exactly scipy's on the scaled image).
    other = "student" if view == "teacher" else "teacher"
    np.testing.assert_array_equal(
        source.prepare(config, x, view, {f"{view}_blur": 0.0,
                                         f"{other}_blur": 2.0}, key),
        unblurred)
  x = arrays["student_test"][:4]
  got = source.prepare(config, x, "student",
                       {"teacher_blur": 0.0, "student_blur": 1.5}, key)
  want = ndimage.gaussian_filter(x / 255.0, sigma=(0, 1.5, 1.5, 0),
                                 mode="reflect", radius=(0, 7, 7, 0))
  np.testing.assert_allclose(got, (want - 0.5) / 0.5, atol=1e-5)
  assert source.spec(config).gap == "student_blur"
  assert set(source.hparams) == {"teacher_blur", "student_blur"}
