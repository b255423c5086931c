"""The embedded real default: scikit-learn's digits and a "digits-M" twin.

No download: everything ships with scikit-learn.

* Teacher modality ``digits``: ``sklearn.datasets.load_digits``, 1,797
  handwritten digits, 8×8 grey, integer values 0..16, 10 classes.
* Student modality ``digits_m``: the same digit blended the MNIST-M way
  (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
  ICML 2015; recipe as in pumpikano/tf-dann ``create_mnistm.py`` and NTDH's
  ``MNIST/dataloader/create_mnistm.py``) over a random crop of one of
  scikit-learn's two bundled colour photographs
  (``sklearn.datasets.load_sample_images``: china.jpg, flower.jpg, both
  427×640×3). Row i of both views is the same digit: that is the pairing, as
  in NTDH, which builds MNIST-M in MNIST order.

Recipe (per example, in dataset order, before the split):

1. Grey digit to [0, 255]: ``x·255/16``, rounded to the nearest integer. The
   MNIST-M recipe binarises MNIST (``> 0`` → 255); at 8×8 the 17 grey levels
   carry much of the stroke (a binarised 8×8 digit loses its anti-aliased
   edges, which are most of its pixels), so we scale instead.
2. With ``size=28``, the grey digit is resized to 28×28 with Pillow's
   bilinear filter (so MNIST-shaped models run unchanged). Pillow, because it
   is already a dependency: ``load_sample_images`` decodes its JPEGs with it,
   and matplotlib (an install requirement) requires it.
3. Background photo and crop corner from ``np.random.default_rng(seed)``:
   photo ``rng.integers(0, 2, N)``, then rows ``rng.integers(0, 427 − s, N)``,
   columns ``rng.integers(0, 640 − s, N)`` (the recipe's ``[0, H − s)``
   range). NTDH seeds the photo choice (``RandomState(42)``) but draws the
   crop corner from the unseeded global ``np.random``; here one ``seed``
   fixes both, so ``load`` is deterministic.
4. Blend per pixel and channel: ``uint8(|crop − digit|)`` with the digit
   repeated over 3 channels, computed in float (uint8 − uint8 wraps around).

Split: fixed, ``train_test_split(test_size=0.25, random_state=0,
stratify=labels)`` over the 1,797 rows: 1,347 train / 450 test, identical
for every ``seed`` and ``size`` (``seed`` changes only the backgrounds).

Stored arrays (``load``), for ``s`` = ``size`` (8 or 28)::

  teacher_train u8[1347, s, s, 1]   student_train u8[1347, s, s, 3]
  teacher_test  u8[450, s, s, 1]    student_test  u8[450, s, s, 3]
  y_train       i32[1347]           y_test        i32[450]

Model input (``prepare``), NTDH's modality-strength equalisation
(``MNIST/dataloader/dataset.py``, ``CrossModalData._add_noise``): the
reference adds ``noise_level · U[0, 1)`` per pixel to MNIST-M and
``3 · noise_level · U[0, 1)`` to MNIST, clips to [0, 1], then
``Normalize(0.5, 0.5)``. We keep that form, one-sided U[0, 1) noise (it
brightens and washes out; it is not zero-mean), with one level per modality::

  x_in = (clip(x/255 + noise · U[0, 1), 0, 1) − 0.5) / 0.5,  f32 in [-1, 1]

``noise`` = ``teacher_noise`` or ``student_noise``. Fresh noise per call
(per mini-batch, from the caller's key), like the reference's per-item draw.
Unlike the reference we do not quantise the noisy image back to uint8 before
normalising (a ≤ 1/255 floor, immaterial). With ``noise = 0`` the noise term
is skipped, so the input is exactly ``(x/255 − 0.5)/0.5``.

Default noise levels (the NTDH paper, Assumption 2: the two modalities
should be of about equal strength, which its MNIST experiment obtains with
the noise). Measured with the repo's ``models.SmallCNN`` (3×3 conv 32 and 64,
2×2 max-pool, ReLU, dense 128, 10-way head, torch init) trained on one view
alone, Adam lr 1e-3, batch 64, 30 epochs of 21 full batches (630 steps; the
3 rows left over by each epoch's permutation are skipped), ``size=8``,
test accuracy on the 450 test rows with test-time noise (as the reference
evaluates), mean ± std over seeds 0..4 (seed = init, batch order, noise; the
``digits-M`` backgrounds use ``seed=0``); a one-off scan (not kept in the
repository) on 2 CPU cores, jax 0.10.2, flax 0.12.8:

  view      noise      test accuracy %   per seed 0..4
  digits    0          98.36 ± 0.34      98.00 98.44 98.00 98.67 98.67
  digits-M  0          88.31 ± 0.96      88.89 88.89 88.22 88.89 86.67
  digits    0.8        92.31 ± 0.87      93.11 93.11 91.78 92.44 91.11
  digits    0.9        88.89 ± 0.57      89.11 89.56 88.89 88.89 88.00
  (seed 0 alone: teacher_noise 0.5 → 96.22, 1.0 → 84.44, 2.0 → 54.44,
  3.0 → 41.11)

So the raw gap is 10 points in the teacher's favour (a clean 8×8 digit is
easier than the same digit on a photograph), and the defaults are
``teacher_noise = 0.9``, ``student_noise = 0.0``: 88.9 vs 88.3, within one
point. Only the stronger view is degraded; NTDH's fixed 3:1 ratio
(MNIST 3×, MNIST-M 1×) was tuned for 28×28 MNIST and an MLP, and any
positive student level here would only lower both views. std is the sample
std (ddof 1) over the 5 seeds.

``sweeps/configs/digits_kd.py`` re-measures the defaults through the sweep
engine (its teacher and its no-KD student are this CNN on each view alone);
its numbers are in the README. The defaults were chosen at ``size=8`` only.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits, load_sample_images
from sklearn.model_selection import train_test_split

from ntdh_jax import hparams as hparams_lib
from ntdh_jax.data import blur
from ntdh_jax.data import mnistm
from ntdh_jax.data import source

SIZES = (8, 28)
NUM_CLASSES = 10
_DIGIT_MAX = 16  # load_digits values are integers 0..16
_TEST_SIZE = 0.25
_SPLIT_SEED = 0  # the split is fixed; `seed` only moves the backgrounds
MODALITIES = ("teacher", "student")


def _require_pillow():
  """Pillow, or an ImportError that says how to get it."""
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        "The digits dataset needs Pillow (scikit-learn's sample photographs "
        "are JPEGs decoded with it, and size=28 resizes with it): "
        "pip install pillow") from e
  return Image


def _check_noise(value, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise ValueError(f"{name} must be a float >= 0, got {value!r}.")
  if not (math.isfinite(float(value)) and float(value) >= 0.0):
    raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class DigitsConfig:
  """Static options of the ``digits`` source.

  Attributes:
    size: image side, 8 (native) or 28 (bilinear upsampling, MNIST-shaped).
    seed: seeds the digits-M background photo and crop corner per example.
    teacher_noise: level of the U[0, 1) noise ``prepare`` adds to the digits
      view (in units of the [0, 1] image range).
    student_noise: the same for the digits-M view.
  """
  size: int = 8
  seed: int = 0
  teacher_noise: float = 0.9
  student_noise: float = 0.0

  def __post_init__(self):
    if isinstance(self.size, bool) or self.size not in SIZES:
      raise ValueError(f"size must be one of {SIZES}, got {self.size!r}.")
    if (isinstance(self.seed, bool)
        or not isinstance(self.seed, (int, np.integer)) or self.seed < 0):
      raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}.")
    _check_noise(self.teacher_noise, "teacher_noise")
    _check_noise(self.student_noise, "student_noise")


def _grey_digits(size: int) -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits as ``u8[N, size, size]`` in [0, 255], and ``i32[N]``."""
  digits = load_digits()
  grey = np.rint(digits.images * (255.0 / _DIGIT_MAX))  # f64[N, 8, 8]
  if size != 8:
    image = _require_pillow()
    # Mode "F" (float32) keeps the bilinear filter from rounding twice.
    grey = np.stack([
        np.asarray(image.fromarray(g.astype(np.float32), mode="F").resize(
            (size, size), image.Resampling.BILINEAR)) for g in grey])
    grey = np.clip(np.rint(grey), 0, 255)
  return grey.astype(np.uint8), digits.target.astype(np.int32)


def _photos() -> list[np.ndarray]:
  """scikit-learn's bundled photographs, ``u8[427, 640, 3]`` each."""
  _require_pillow()
  return [np.asarray(p) for p in load_sample_images().images]


def blend(grey: np.ndarray, seed: int) -> np.ndarray:
  """MNIST-M blend of ``u8[N, s, s]`` digits: ``u8[N, s, s, 3]``.

  Deterministic in ``seed`` (photo choice, then crop rows, then columns).
  """
  return mnistm.blend(grey, _photos(), np.random.default_rng(seed))


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The fixed stratified 75/25 split: train and test row indices."""
  return train_test_split(
      np.arange(len(labels)), test_size=_TEST_SIZE, random_state=_SPLIT_SEED,
      stratify=labels)


def _split_sizes() -> dict[str, int]:
  n = 1797  # len(load_digits().target); checked by the tests
  n_test = math.ceil(n * _TEST_SIZE)  # train_test_split rounds the test up
  return {"train": n - n_test, "test": n_test}


class DigitsSource(source.DataSource):
  """scikit-learn digits (teacher) and their MNIST-M-style twin (student)."""
  name = "digits"
  Config = DigitsConfig
  hparams = {}

  def spec(self, config) -> source.DataSpec:
    s = config.size
    return source.DataSpec(
        teacher=source.Modality("digits", (s, s, 1), "uint8"),
        student=source.Modality("digits_m", (s, s, 3), "uint8"),
        num_classes=NUM_CLASSES, splits=_split_sizes(), gap=None,
        paired=True)

  def load(self, config) -> dict[str, np.ndarray]:
    grey, labels = _grey_digits(config.size)
    colour = blend(grey, config.seed)
    train, test = split_indices(labels)
    return {
        "teacher_train": grey[train, ..., None],
        "student_train": colour[train],
        "y_train": labels[train],
        "teacher_test": grey[test, ..., None],
        "student_test": colour[test],
        "y_test": labels[test],
    }

  def views(self, config, arrays, hparams, key) -> source.Views:
    # Real data: the stored rows as they are; the noise is per batch, in
    # `prepare`, so no float copy of the set exists per run.
    del config, hparams, key
    return source.Views(**{k: arrays[k] for k in source.Views._fields})

  def prepare(self, config, x, modality: str, hparams, key) -> jax.Array:
    """``u8[B, s, s, c]`` stored rows → ``f32[B, s, s, c]`` in [-1, 1].

    ``(clip(x/255 + noise·U[0, 1), 0, 1) − 0.5)/0.5`` with ``noise`` the
    ``modality``'s level (``"teacher"`` or ``"student"``); ``key`` (raw or
    typed, may be traced) draws the noise. jit- and vmap-safe.
    """
    del hparams
    if modality not in MODALITIES:
      raise ValueError(
          f"modality must be one of {MODALITIES}, got {modality!r}.")
    noise = config.teacher_noise if modality == "teacher" else (
        config.student_noise)
    x = jnp.asarray(x).astype(jnp.float32) / 255.0
    if noise:  # static: with noise 0 the input is exactly x/255, no draw
      x = x + noise * jax.random.uniform(key, x.shape, jnp.float32)
      x = jnp.clip(x, 0.0, 1.0)
    return (x - 0.5) / 0.5


DIGITS = source.register(DigitsSource())


# Blur widths in pixels; the kernel reaches 4σ at the largest (scipy's
# default truncation), or the image's edge at size 8.
_MAX_BLUR = 3.0


class BlurredDigitsSource(DigitsSource):
  """``digits`` with a Gaussian blur of traced width on each view.

  CCH (Xie et al., arXiv 2510.13182) moves the information gap between
  MNIST and MNIST-M by blurring with increasing strength; here
  ``student_blur`` (σ of the digits-M view, pixels) and ``teacher_blur``
  (the digits view) are the gap knobs, both traced, so all levels share one
  program. The blur (``blur.gaussian_blur``, scipy's reflect-mode filter)
  acts on the stored image, before the noise; at 0 a view is exactly
  ``digits``'.
  """
  name = "digits_blur"
  hparams = {"teacher_blur": hparams_lib.Range(0.0, _MAX_BLUR),
             "student_blur": hparams_lib.Range(0.0, _MAX_BLUR)}

  def spec(self, config) -> source.DataSpec:
    return dataclasses.replace(
        super().spec(config), gap="student_blur",
        gap_direction="σ in pixels of the Gaussian blur on the student "
                      "(digits-M) view; teacher_blur likewise on the digits "
                      "view")

  def prepare(self, config, x, modality: str, hparams, key) -> jax.Array:
    """As ``DigitsSource.prepare``, with the view's blur before the noise."""
    if modality not in MODALITIES:
      raise ValueError(
          f"modality must be one of {MODALITIES}, got {modality!r}.")
    radius = min(config.size - 1, math.ceil(4 * _MAX_BLUR))
    x = blur.gaussian_blur(jnp.asarray(x, jnp.float32),
                           hparams[f"{modality}_blur"], radius)
    return super().prepare(config, x, modality, hparams, key)


DIGITS_BLUR = source.register(BlurredDigitsSource())
