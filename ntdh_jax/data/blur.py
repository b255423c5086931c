"""Gaussian blur with a traced width, for degrading an image view.

CCH (Xie et al., arXiv 2510.13182) moves the information gap between
MNIST and MNIST-M by blurring the student's images with Gaussian kernels of
increasing strength. Here the width σ is a traced hyperparameter, so every
blur level of a sweep shares one compiled program: the kernel has a fixed
radius and σ only changes its weights.

The filter is scipy's ``ndimage.gaussian_filter(x, σ, mode="reflect",
radius=r)`` on the two spatial axes (the tests check it): separable,
normalised taps exp(−t²/2σ²), t = −r … r, edges mirrored including the edge
pixel (numpy's ``"symmetric"``). σ = 0 is the identity: the width is floored
at 1e-6 pixel, where every tap but the centre is exactly 0 in float32.
"""

from __future__ import annotations

import jax.numpy as jnp

_MIN_SIGMA = 1e-6


def gaussian_kernel(sigma, radius: int):
  """``f32[2·radius + 1]``, the normalised taps of width ``sigma`` (traced)."""
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  s = jnp.maximum(jnp.asarray(sigma, jnp.float32), _MIN_SIGMA)
  w = jnp.exp(-0.5 * (t / s) ** 2)
  return w / jnp.sum(w)


def gaussian_blur(x, sigma, radius: int):
  """Blurs images ``f32[..., H, W, C]`` over H and W with width ``sigma``.

  Args:
    x: float images, channels last.
    sigma: the width in pixels, a scalar (may be traced); 0 leaves ``x`` as
      it is.
    radius: static half-width of the kernel, at most ``min(H, W) − 1``
      (mirroring cannot extend further).

  Returns:
    The blurred images, ``x``'s shape and float32.
  """
  x = jnp.asarray(x, jnp.float32)
  h, w = x.shape[-3], x.shape[-2]
  if not 0 <= radius < min(h, w):
    raise ValueError(f"radius must be in [0, {min(h, w) - 1}] for {h}×{w} "
                     f"images, got {radius}.")
  taps = gaussian_kernel(sigma, radius)
  for axis in (-3, -2):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    x = sum(taps[i] * jnp.take(padded, jnp.arange(i, i + n), axis=axis)
            for i in range(2 * radius + 1))
  return x
