"""SimCLR-style image augmentations in JAX: keyed, jit- and vmap-safe.

For CMCD's self-supervised source stage (contrastive pre-training on two
augmented views of each image). The pipeline is SimCLR's (Chen et al., "A
Simple Framework for Contrastive Learning of Visual Representations", ICML
2020, Appendix A), in its order, each step with its own probability:

1. random resized crop, resampled back to H×W (bilinear);
2. horizontal flip (``flip``);
3. colour jitter (``jitter``): brightness, contrast, saturation, hue, in that
   fixed order;
4. grayscale (``grayscale``);
5. Gaussian blur (``blur``), ``blur.gaussian_blur`` with σ ~ U(blur_sigma);

then the result is clipped to [0, 1]. Images are ``f32[N, H, W, C]`` in
[0, 1] with C = 1 or 3; every example draws its own randomness
(``augment`` splits the key into N keys and vmaps ``augment_one``).

Randomness, a stable contract (tests and callers may replay one step):
``augment(key, images)`` gives image i the key ``jax.random.split(key,
N)[i]``; ``augment_one`` draws all of an image's randomness at once,
``u = jax.random.uniform(key, (DRAWS,))`` with ``DRAWS`` = 13, in fixed
slots (``SLOTS``): crop ``u[0:4]`` (area, log-aspect, top, left), flip
``u[4]``, jitter ``u[5:10]`` (whether, then brightness, contrast,
saturation, hue), grayscale ``u[10]``, blur ``u[11:13]`` (whether, then σ).
Every slot is drawn whatever the options, so changing one step's options
never changes another step's draws; a step applies when its "whether" draw is
below its probability. (One draw of 13 rather than a key per step: on CPU
each further threefry call added about 0.2 s of compile time, measured, more
than most steps cost.)
A step whose probability is 0 (or whose strengths are all 0) is left out of
the program; a step is otherwise computed and selected per image with
``jnp.where`` (what ``vmap`` makes of a ``cond`` anyway), so every step
leaves an image it does not apply to bit-identical.

Defaults (``AugmentConfig``), and where they depart from SimCLR's ImageNet
recipe:

* crop: area fraction s ~ U(0.08, 1), log-aspect ~ U(log 3/4, log 4/3), as
  torchvision's ``RandomResizedCrop`` that SimCLR uses.
* flip 0.5, jitter 0.8, grayscale 0.2, blur 0.5: SimCLR's probabilities.
* jitter strengths brightness = contrast = saturation = 0.4, hue = 0.1: SimCLR
  writes them as (0.8s, 0.8s, 0.8s, 0.2s) for a colour strength s; these are
  s = 0.5, the strength SimCLR uses for CIFAR-10 (its small-image setting, and
  MoCo v2's values), rather than ImageNet's s = 1: our images are small
  (8×8 digits to 64×64), closer to CIFAR than to ImageNet.
* blur σ ~ U(0.1, 2.0) pixels, SimCLR's range. SimCLR blurs ImageNet images
  (224 px, kernel 10 % of the side) and leaves CIFAR-10 unblurred; at 8×8 a
  σ of 2 px is a heavy blur, so pipelines on the smallest images may want
  ``blur = 0``. The kernel radius defaults to ``min(min(H, W) − 1,
  ceil(4 · max σ))``: scipy's 4σ truncation, capped where the mirrored edge
  stops.

Simplifications and choices relative to torchvision / SimCLR:

* Crop size: w = sqrt(s·r)·W, h = sqrt(s/r)·H, each clamped to the image
  (so a clamped crop covers less than s of the area). torchvision draws up to
  10 times until the crop fits, then falls back to a centre crop; a clamp
  keeps the program free of loops. The aspect r is relative to the image's
  (torchvision's w/h = r is absolute): identical for square images, which are
  all this project has, and it makes ``crop_scale = crop_ratio = (1, 1)`` the
  identity for every shape.
* The crop box is continuous (sub-pixel corner and size, the corner uniform
  over the valid range), not rounded to whole pixels. It is resampled with a
  bilinear sampler over the whole image (pixel centres at k + 0.5, edges
  clamped): at the crop's border a pixel just outside the box may contribute,
  where torchvision crops whole pixels first and repeats the crop's edge. The
  crop is never larger than the image, so resampling never shrinks and no
  antialiasing arises (torchvision's ``antialias`` only acts when shrinking).
* Colour jitter in a fixed order (brightness, contrast, saturation, hue);
  torchvision's ``ColorJitter`` permutes the four per call. Factors as
  torchvision's: brightness b ~ U(max(0, 1 − B), 1 + B), x·b; contrast
  c ~ U(max(0, 1 − C), 1 + C), c·x + (1 − c)·mean(luma(x)) over the image;
  saturation s likewise, s·x + (1 − s)·luma(x) per pixel; each clipped to
  [0, 1], as torchvision's blends clamp to the image range.
* Hue h ~ U(−H, H) (a fraction of a turn) is a rotation of the chroma plane
  (I, Q) of YIQ by −2πh, a closed form that keeps the luma Y, where
  torchvision shifts the hue channel of HSV. The sign makes h > 0 turn red
  towards yellow, as HSV's does. Then clipped to [0, 1] (a rotation can leave
  the RGB cube).
* Luma (contrast's mean, saturation, grayscale) is 0.299 R + 0.587 G +
  0.114 B (ITU-R BT.601, PIL's weights). For C = 1 the luma is the image, so
  saturation, hue and grayscale do nothing.
* The output is clipped to [0, 1], as torchvision's colour operations clamp
  to the image range; every other step maps [0, 1] into itself.

Jit: ``AugmentConfig`` is frozen and hashable (tuples), so it is a static
argument: ``jax.jit(augment, static_argnames="config")``, or close over it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import validation
from ntdh_jax.data import blur as blur_lib

# ITU-R BT.601 luma weights (PIL's "L" conversion): they sum to 1.
LUMA = (0.299, 0.587, 0.114)

# RGB -> YIQ (NTSC, FCC rounding). The inverse is computed, not rounded, so a
# zero rotation is the identity to float rounding.
_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.596, -0.274, -0.322],
                 [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
# RGB -> RGB with the chroma (I, Q) rotated by θ is A + cos θ·B + sin θ·S.
_HUE_A = _YIQ_INV[:, :1] @ _YIQ[:1]           # keeps the luma
_HUE_B = _YIQ_INV[:, 1:] @ _YIQ[1:]           # keeps the chroma
_HUE_S = _YIQ_INV[:, 1:] @ np.array([[0.0, -1.0], [1.0, 0.0]]) @ _YIQ[1:]

_PROBABILITIES = ("flip", "jitter", "grayscale", "blur")
_STRENGTHS = ("brightness", "contrast", "saturation", "hue")
_MAX_HUE = 0.5  # a half turn; torchvision's bound too

# An image's uniforms u = jax.random.uniform(key, (DRAWS,)), by step.
SLOTS = types.MappingProxyType({
    "crop": slice(0, 4), "flip": 4, "jitter": slice(5, 10), "grayscale": 10,
    "blur": slice(11, 13)})
DRAWS = 13


def _number(value: Any, name: str) -> float:
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name} must be a number, got {value!r}.")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{name} must be finite, got {value!r}.")
  return value


def _pair(value: Any, name: str, upper: float | None = None
          ) -> tuple[float, float]:
  """A ``(low, high)`` range with ``0 < low <= high`` (``<= upper``)."""
  if isinstance(value, (str, bytes, Mapping)) or np.ndim(value) != 1 or len(
      value) != 2:
    raise ValueError(f"{name} must be a pair (low, high), got {value!r}.")
  low, high = (_number(v, f"{name}[{i}]") for i, v in enumerate(value))
  if not 0 < low <= high:
    raise ValueError(
        f"{name} must satisfy 0 < low <= high, got ({low!r}, {high!r}).")
  if upper is not None and high > upper:
    raise ValueError(f"{name} must lie in (0, {upper}], got ({low!r}, "
                     f"{high!r}).")
  return low, high


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """The static options of ``augment`` (see the module docstring).

  Values are stored canonically (floats, tuples of floats), so equal options
  spelled differently (``0`` or ``0.0``, a list or a tuple) give equal,
  equally hashed configs.

  Attributes:
    crop_scale: range of the crop's area fraction s, ``0 < low <= high <= 1``.
    crop_ratio: range of its aspect r (relative to the image's), log-uniform,
      ``0 < low <= high``.
    flip: probability of a horizontal flip.
    jitter: probability of the colour jitter (all four parts together).
    brightness: B >= 0, factor ~ U(max(0, 1 − B), 1 + B).
    contrast: C >= 0, likewise.
    saturation: S >= 0, likewise (no-op for one channel).
    hue: H in [0, 0.5], shift ~ U(−H, H) of a turn (no-op for one channel).
    grayscale: probability of converting to luma (no-op for one channel).
    blur: probability of a Gaussian blur.
    blur_sigma: range of its σ in pixels, uniform, ``0 < low <= high``.
    blur_radius: the kernel's static half-width, an int >= 0 below the image
      side, or None for ``min(min(H, W) − 1, ceil(4 · blur_sigma[1]))``.
  """
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip: float = 0.5
  jitter: float = 0.8
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.4
  hue: float = 0.1
  grayscale: float = 0.2
  blur: float = 0.5
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  blur_radius: int | None = None

  def __post_init__(self):
    canonical = {
        "crop_scale": _pair(self.crop_scale, "crop_scale", upper=1.0),
        "crop_ratio": _pair(self.crop_ratio, "crop_ratio"),
        "blur_sigma": _pair(self.blur_sigma, "blur_sigma"),
    }
    for name in _PROBABILITIES:
      p = _number(getattr(self, name), name)
      if not 0 <= p <= 1:
        raise ValueError(
            f"{name} is a probability and must lie in [0, 1], got {p!r}.")
      canonical[name] = p
    for name in _STRENGTHS:
      v = _number(getattr(self, name), name)
      upper = _MAX_HUE if name == "hue" else math.inf
      if not 0 <= v <= upper:
        raise ValueError(
            f"{name} must be >= 0{' and <= 0.5' if name == 'hue' else ''}, "
            f"got {v!r}.")
      canonical[name] = v
    r = self.blur_radius
    if r is not None:
      if isinstance(r, (bool, np.bool_)) or not isinstance(
          r, (int, np.integer)) or r < 0:
        raise ValueError(
            f"blur_radius must be None or an int >= 0, got {r!r}.")
      canonical["blur_radius"] = int(r)
    for name, value in canonical.items():
      object.__setattr__(self, name, value)

  @classmethod
  def from_dict(cls, options: Mapping) -> "AugmentConfig":
    """The config of ``options`` (a mapping of some fields; the rest take
    their defaults). Unknown keys are a ``ValueError`` naming them and the
    valid ones."""
    if not hasattr(options, "items"):
      raise ValueError(f"augmentation options must be a mapping of field "
                       f"names to values, got {type(options).__name__}.")
    options = dict(options.items())
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted((k for k in options if k not in fields), key=str)
    if unknown:
      raise ValueError(f"augmentation options have unknown keys {unknown}; "
                       f"valid keys: {fields}.")
    return cls(**options)

  def to_dict(self) -> dict:
    """Every field, JSON-able (lists for the ranges), in declared order."""
    return {f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)}


def normalise(options: Mapping) -> dict:
  """``options`` with every default filled in, JSON-able: what a stage config
  holds and hashes. Idempotent; equal options spelled differently (``0`` or
  ``0.0``, tuples or lists) give equal dicts. Raises ``ValueError`` for an
  unknown key (naming it and the valid keys) or a value out of range."""
  return AugmentConfig.from_dict(options).to_dict()


# No augmentation at all: ``augment(key, x, IDENTITY)`` returns ``x``.
IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                         flip=0.0, jitter=0.0, grayscale=0.0, blur=0.0)


# -- colour --------------------------------------------------------------------


def _channels(x) -> int:
  c = jnp.shape(x)[-1]
  if c not in (1, 3):
    raise ValueError(f"images must have 1 or 3 channels (last axis), got "
                     f"shape {jnp.shape(x)}.")
  return c


def _per_image(factor):
  """A scalar or per-image ``[...]`` factor, broadcast over H, W and C."""
  return jnp.asarray(factor, jnp.float32)[..., None, None, None]


def luma(x) -> jax.Array:
  """``f32[..., H, W, 1]``: 0.299 R + 0.587 G + 0.114 B, or the one
  channel."""
  x = jnp.asarray(x, jnp.float32)
  if _channels(x) == 1:
    return x
  # Elementwise, not a dot: exact float32 on every backend.
  return (LUMA[0] * x[..., 0:1] + LUMA[1] * x[..., 1:2]
          + LUMA[2] * x[..., 2:3])


def grayscale(x) -> jax.Array:
  """The luma repeated over ``x``'s channels (``x`` itself for one)."""
  return jnp.broadcast_to(luma(x), jnp.shape(x))


def adjust_brightness(x, factor) -> jax.Array:
  """``clip(x · factor, 0, 1)``; ``factor`` scalar or one per image."""
  return jnp.clip(jnp.asarray(x, jnp.float32) * _per_image(factor), 0.0, 1.0)


def adjust_contrast(x, factor) -> jax.Array:
  """``clip(f·x + (1 − f)·m, 0, 1)``, m the image's mean luma."""
  x = jnp.asarray(x, jnp.float32)
  mean = jnp.mean(luma(x), axis=(-3, -2, -1), keepdims=True)
  f = _per_image(factor)
  return jnp.clip(f * x + (1.0 - f) * mean, 0.0, 1.0)


def adjust_saturation(x, factor) -> jax.Array:
  """``clip(f·x + (1 − f)·luma(x), 0, 1)``; ``x`` as it is for one channel."""
  x = jnp.asarray(x, jnp.float32)
  if _channels(x) == 1:
    return x
  f = _per_image(factor)
  return jnp.clip(f * x + (1.0 - f) * luma(x), 0.0, 1.0)


def adjust_hue(x, shift) -> jax.Array:
  """Rotates the YIQ chroma by −2π·``shift`` (turns), keeping the luma, and
  clips to [0, 1]; ``x`` as it is for one channel. ``shift`` > 0 turns red
  towards yellow, as a positive HSV hue shift does."""
  x = jnp.asarray(x, jnp.float32)
  if _channels(x) == 1:
    return x
  theta = -2.0 * jnp.pi * jnp.asarray(shift, jnp.float32)
  cos, sin = _per_image(jnp.cos(theta)), _per_image(jnp.sin(theta))
  out = 0.0
  for k in range(3):  # out_c = Σ_k T[c, k]·x_k, elementwise (exact float32)
    t = (jnp.asarray(_HUE_A[:, k], jnp.float32)
         + cos * jnp.asarray(_HUE_B[:, k], jnp.float32)
         + sin * jnp.asarray(_HUE_S[:, k], jnp.float32))
    out = out + t * x[..., k:k + 1]
  return jnp.clip(out, 0.0, 1.0)


# -- geometry ------------------------------------------------------------------


def crop_box(u, height: int, width: int, config: AugmentConfig
             ) -> jax.Array:
  """``f32[4]``: ``(top, left, h, w)`` in pixels, a random resized crop box.

  s ~ U(crop_scale), log r ~ U(log crop_ratio), w = min(sqrt(s·r), 1)·width,
  h = min(sqrt(s/r), 1)·height, the corner uniform over the positions that
  keep the box inside the image.

  Args:
    u: ``f32[4]`` uniforms in [0, 1) (area, log-aspect, top, left), e.g.
      ``jax.random.uniform(key, (4,))``; ``augment_one`` passes its
      ``u[SLOTS["crop"]]``.
    height, width: the image's static size.
    config: supplies ``crop_scale`` and ``crop_ratio``.
  """
  u = jnp.asarray(u, jnp.float32)
  (s_lo, s_hi), (r_lo, r_hi) = config.crop_scale, config.crop_ratio
  s = s_lo + (s_hi - s_lo) * u[0]
  log_lo, log_hi = math.log(r_lo), math.log(r_hi)
  r = jnp.exp(log_lo + (log_hi - log_lo) * u[1])
  h = jnp.minimum(jnp.sqrt(s / r), 1.0) * height
  w = jnp.minimum(jnp.sqrt(s * r), 1.0) * width
  return jnp.stack([u[2] * (height - h), u[3] * (width - w), h, w])


def _taps(start, extent, n: int):
  """Bilinear source indices and weights of ``n`` outputs spanning
  ``[start, start + extent)`` of an axis of ``n`` pixels (pixel k covers
  [k, k + 1); positions clamped to the pixel centres at the edges)."""
  pos = start + (jnp.arange(n, dtype=jnp.float32) + 0.5) * (extent / n) - 0.5
  pos = jnp.clip(pos, 0.0, n - 1.0)
  low = jnp.floor(pos)
  frac = pos - low
  low = low.astype(jnp.int32)
  return low, jnp.minimum(low + 1, n - 1), frac


def resized_crop(image, box) -> jax.Array:
  """The ``(top, left, h, w)`` box of ``image`` ``f32[H, W, C]`` resampled to
  H×W, bilinear.

  Output pixel (i, j) samples the image at row ``top + (i + ½)·h/H − ½`` and
  column ``left + (j + ½)·w/W − ½`` (pixel centres at integers; positions
  clamped to [0, H − 1] and [0, W − 1]). Gathers and weighted sums only, so a
  box equal to the image returns it exactly. ``box`` may be traced.
  """
  image = jnp.asarray(image, jnp.float32)
  h, w = image.shape[0], image.shape[1]
  top, left, box_h, box_w = (jnp.asarray(box, jnp.float32)[i]
                             for i in range(4))
  r0, r1, fr = _taps(top, box_h, h)
  out = (image[r0] * (1.0 - fr)[:, None, None]
         + image[r1] * fr[:, None, None])
  c0, c1, fc = _taps(left, box_w, w)
  return (out[:, c0] * (1.0 - fc)[None, :, None]
          + out[:, c1] * fc[None, :, None])


# -- the pipeline --------------------------------------------------------------


def _between(u, low: float, high: float):
  """``u`` ~ U[0, 1) mapped to U[low, high)."""
  return low + (high - low) * u


def _apply(u, p: float, changed, unchanged):
  """``changed`` with probability ``p``, given ``u`` ~ U[0, 1)."""
  return jnp.where(u < p, changed, unchanged)


def _jitter(u, x, config: AugmentConfig, channels: int):
  """``u``: five uniforms, whether to jitter, then the brightness, contrast,
  saturation and hue draws."""
  y = x
  if config.brightness:
    b = config.brightness
    y = adjust_brightness(y, _between(u[1], max(0.0, 1.0 - b), 1.0 + b))
  if config.contrast:
    c = config.contrast
    y = adjust_contrast(y, _between(u[2], max(0.0, 1.0 - c), 1.0 + c))
  if config.saturation and channels == 3:
    s = config.saturation
    y = adjust_saturation(y, _between(u[3], max(0.0, 1.0 - s), 1.0 + s))
  if config.hue and channels == 3:
    y = adjust_hue(y, _between(u[4], -config.hue, config.hue))
  return _apply(u[0], config.jitter, y, x)


def blur_radius(config: AugmentConfig, height: int, width: int) -> int:
  """The kernel half-width ``augment`` uses on ``height × width`` images."""
  side = min(height, width)
  if config.blur_radius is None:
    return min(side - 1, math.ceil(4 * config.blur_sigma[1]))
  if config.blur_radius >= side:
    raise ValueError(
        f"blur_radius must be at most {side - 1} for {height}×{width} images "
        f"(mirroring cannot reach further), got {config.blur_radius}.")
  return config.blur_radius


def augment_one(key, image, config: AugmentConfig = AugmentConfig()
                ) -> jax.Array:
  """One image ``f32[H, W, C]`` (C = 1 or 3, values in [0, 1]) augmented.

  ``key`` (raw or typed, may be traced) draws ``jax.random.uniform(key,
  (DRAWS,))``, read in the slots of ``SLOTS``. Returns ``f32[H, W, C]`` in
  [0, 1].
  """
  validation.check_type(config, AugmentConfig, "config",
                        "an AugmentConfig (AugmentConfig.from_dict(options) "
                        "builds one from a mapping)")
  validation.check_rank(image, "image", (3,), "[H, W, C]")
  validation.check_floating(image, "image")
  channels = _channels(image)
  h, w = image.shape[0], image.shape[1]
  radius = blur_radius(config, h, w)
  x = jnp.asarray(image, jnp.float32)
  u = jax.random.uniform(key, (DRAWS,), jnp.float32)

  x = resized_crop(x, crop_box(u[SLOTS["crop"]], h, w, config))
  if config.flip:
    x = _apply(u[SLOTS["flip"]], config.flip, x[:, ::-1], x)
  if config.jitter and any(getattr(config, s) for s in _STRENGTHS):
    x = _jitter(u[SLOTS["jitter"]], x, config, channels)
  if config.grayscale and channels == 3:
    x = _apply(u[SLOTS["grayscale"]], config.grayscale, grayscale(x), x)
  if config.blur:  # whether to blur, then σ
    whether, draw = u[SLOTS["blur"]]
    sigma = _between(draw, *config.blur_sigma)
    x = _apply(whether, config.blur,
               blur_lib.gaussian_blur(x, sigma, radius), x)
  return jnp.clip(x, 0.0, 1.0)


def augment(key, images, config: AugmentConfig = AugmentConfig()
            ) -> jax.Array:
  """A batch ``f32[N, H, W, C]`` (C = 1 or 3, values in [0, 1]) augmented.

  Example i uses ``jax.random.split(key, N)[i]`` with ``augment_one``, so
  examples are independent, and the result is a function of ``key``.
  jit-safe with ``config`` static, and vmap-safe over ``key`` and
  ``images`` (e.g. a leading axis of runs).

  Returns:
    ``f32[N, H, W, C]`` in [0, 1].
  """
  validation.check_type(config, AugmentConfig, "config",
                        "an AugmentConfig (AugmentConfig.from_dict(options) "
                        "builds one from a mapping)")
  validation.check_batch(images, "images", min_rank=4, layout="[N, H, W, C]")
  validation.check_rank(images, "images", (4,), "[N, H, W, C]")
  validation.check_floating(images, "images")
  _channels(images)
  blur_radius(config, images.shape[1], images.shape[2])  # fails early
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment_one(k, x, config))(keys, images)
