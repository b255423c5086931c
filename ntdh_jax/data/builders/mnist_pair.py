"""``mnist_pair``: MNIST (teacher) and MNIST-M (student), paired by index.

The NTDH paper's MNIST/MNIST-M experiment (elonchern/Non-target-Divergence-
Hypothesis ``MNIST/``): MNIST-M is built from MNIST itself in MNIST order,
so example i of both views shows the same digit — that is the pairing (the
public ``mnist_m.tar.gz`` of Ganin & Lempitsky is not position-paired).

Archives (``manual_dir``, flat): the four MNIST idx ``.gz`` files (checked
against TFDS's published sizes and SHA-256) and ``BSR_bsds500.tgz``
(BSDS500, whose 200 training photographs are the backgrounds).

Build (``Builder``), per split (train 60,000 / test 10,000):

1. Parse the idx files (big-endian header: magic 2051 for images, 2049 for
   labels, then counts and sizes; raw uint8 after). Header, size and count
   mismatches name the file.
2. Binarise each digit (``> 0`` → 255), the MNIST-M recipe.
3. Blend over seeded 28×28 crops of the BSDS500 training photographs
   (``ntdh_jax.data.mnistm``): generator ``default_rng([seed, split])``
   with split 0 = train, 1 = test. The references seed only the photo
   choice (``RandomState(42)``) and draw the crop corner unseeded; ours is
   reproducible, so the bits differ from any one run of theirs.

Features: ``mnist`` u8[28, 28, 1], ``mnist_m`` u8[28, 28, 3], ``label``
(10 classes), ``index`` (the MNIST position).

Source ``mnist_pair`` (``data.name = "mnist_pair"``): teacher ``mnist``,
student ``mnist_m`` (NTDH's default ``--stu-type 0``). NTDH's
modality-strength equalisation is a load-time option, not baked into the
files: ``noise_level`` (NTDH's ``--noise_level``, default 1.5) adds
``noise_level · U[0, 1)`` per pixel to MNIST-M and ``3 · noise_level ·
U[0, 1)`` to MNIST, clips to [0, 1] and normalises with (0.5, 0.5) —
``CrossModalData._add_noise`` in NTDH's ``MNIST/dataloader/dataset.py``.
"""

from __future__ import annotations

import dataclasses
import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from ntdh_jax.data import archives
from ntdh_jax.data import mnistm
from ntdh_jax.data import prepared
from ntdh_jax.data import source

NAME = "mnist_pair"
_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_BSDS_URL = ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/"
             "grouping/BSR/BSR_bsds500.tgz")
ARCHIVES = (
    archives.Archive(
        "train-images-idx3-ubyte.gz", _MNIST_URL + "train-images-idx3-ubyte.gz",
        9_912_422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    archives.Archive(
        "train-labels-idx1-ubyte.gz", _MNIST_URL + "train-labels-idx1-ubyte.gz",
        28_881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    archives.Archive(
        "t10k-images-idx3-ubyte.gz", _MNIST_URL + "t10k-images-idx3-ubyte.gz",
        1_648_877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    archives.Archive(
        "t10k-labels-idx1-ubyte.gz", _MNIST_URL + "t10k-labels-idx1-ubyte.gz",
        4_542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    archives.Archive("BSR_bsds500.tgz", _BSDS_URL),
)
_SPLITS = {"train": ("train", 0), "test": ("t10k", 1)}
BSDS_TRAIN = "BSR/BSDS500/data/images/train/"
SIZE = 28
_IDX_MAGIC = {"images": 2051, "labels": 2049}


def check_archives(manual_dir: str, verify: bool) -> dict[str, str]:
  return archives.check(manual_dir, ARCHIVES, verify, NAME)


def read_idx(path: str, kind: str) -> np.ndarray:
  """An idx ``.gz`` file: ``u8[N, rows, cols]`` images or ``u8[N]`` labels;
  a wrong magic number or a payload of the wrong size names the file."""
  raw = archives.read_gzip(path)
  ndim = 3 if kind == "images" else 1
  header = 4 * (1 + ndim)
  if len(raw) < header:
    raise archives.ArchiveError(f"{path}: {len(raw)} bytes, shorter than an "
                                f"idx {kind} header ({header} bytes).")
  magic, *dims = np.frombuffer(raw[:header], ">i4").tolist()
  if magic != _IDX_MAGIC[kind]:
    raise archives.ArchiveError(
        f"{path}: idx magic number {magic}, expected {_IDX_MAGIC[kind]} "
        f"(MNIST {kind}); is it the right file?")
  if len(raw) - header != math.prod(dims):
    raise archives.ArchiveError(
        f"{path}: {len(raw) - header} bytes of {kind} after the header, "
        f"expected {math.prod(dims)} for shape {tuple(dims)}: truncated.")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def bsds_photos(path: str) -> list[np.ndarray]:
  """The BSDS500 training photographs (``u8[H, W, 3]``), in archive order."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  photos = []
  for member, data in archives.tar_members(path, BSDS_TRAIN):
    if not member.lower().endswith(".jpg"):
      continue
    with archives.reading(path, member):
      photos.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
  if not photos:
    raise archives.ArchiveError(
        f"{path}: no JPEG under {BSDS_TRAIN}; expected BSDS500's 200 "
        "training photographs (is it BSR_bsds500.tgz?).")
  return photos


@dataclasses.dataclass
class MnistPairConfig(tfds.core.BuilderConfig):
  """``seed``: seeds the MNIST-M background photo and crop per example."""
  seed: int = 42


class Builder(tfds.core.GeneratorBasedBuilder):
  """MNIST and MNIST-M built from it with BSDS500 backgrounds, paired."""
  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "MNIST + seeded MNIST-M, index-paired."}
  BUILDER_CONFIGS = [MnistPairConfig(name="default", seed=42,
                                     description="backgrounds seeded with 42")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put these five files, as downloaded, directly in manual_dir:\n"
      + "".join(f"  {a.name}  ({a.url})\n" for a in ARCHIVES))

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "mnist": tfds.features.Tensor(shape=(SIZE, SIZE, 1),
                                          dtype=np.uint8),
            "mnist_m": tfds.features.Tensor(shape=(SIZE, SIZE, 3),
                                            dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=None,
        homepage="https://github.com/elonchern/Non-target-Divergence-Hypothesis",
    )

  def _split_generators(self, dl_manager):
    paths = check_archives(str(dl_manager.manual_dir), verify=False)
    photos = bsds_photos(paths["BSR_bsds500.tgz"])
    return {split: self._generate_examples(paths, prefix, stream, photos)
            for split, (prefix, stream) in _SPLITS.items()}

  def _generate_examples(self, paths, prefix, stream, photos):
    images_file = f"{prefix}-images-idx3-ubyte.gz"
    labels_file = f"{prefix}-labels-idx1-ubyte.gz"
    images = read_idx(paths[images_file], "images")
    labels = read_idx(paths[labels_file], "labels")
    if images.shape[1:] != (SIZE, SIZE) or len(images) != len(labels):
      raise archives.ArchiveError(
          f"{paths[images_file]}: images of shape {images.shape} with "
          f"{len(labels)} labels in {labels_file}; expected N×28×28 and N "
          "labels.")
    digits = np.where(images > 0, 255, 0).astype(np.uint8)
    rng = np.random.default_rng([self.builder_config.seed, stream])
    colour = mnistm.blend(digits, photos, rng)
    for i in range(len(images)):
      yield i, {"mnist": images[i, :, :, None], "mnist_m": colour[i],
                "label": int(labels[i]), "index": i}


@dataclasses.dataclass(frozen=True)
class MnistPairSourceConfig(prepared.PreparedConfig):
  """Options of the ``mnist_pair`` source.

  Attributes:
    noise_level: NTDH's ``--noise_level`` (default 1.5): U[0, 1) noise of
      this level on MNIST-M and of 3× this level on MNIST, in units of the
      [0, 1] image range; 0 = clean.
  """
  noise_level: float = 1.5

  def __post_init__(self):
    level = self.noise_level
    if (isinstance(level, bool) or not isinstance(level, (int, float))
        or not math.isfinite(level) or level < 0):
      raise ValueError(f"noise_level must be a finite number >= 0, got "
                       f"{level!r}.")


class MnistPairSource(prepared.PreparedSource):
  """Prepared ``mnist_pair``: MNIST (teacher) → MNIST-M (student)."""
  name = NAME
  Config = MnistPairSourceConfig
  hparams = {}

  def modalities(self, config, path):
    del config, path
    return (source.Modality("mnist", (SIZE, SIZE, 1), "uint8"),
            source.Modality("mnist_m", (SIZE, SIZE, 3), "uint8"), 10, (),
            None)

  def arrays(self, config, split, rows):
    del config, split
    order = np.argsort(prepared.stack(rows, "index"))  # MNIST order
    return {"teacher": prepared.stack(rows, "mnist")[order],
            "student": prepared.stack(rows, "mnist_m")[order],
            "y": prepared.stack(rows, "label", np.int32)[order]}

  def prepare(self, config, x, modality, hparams, key):
    """``u8[B, 28, 28, c]`` → ``f32`` in [-1, 1]: NTDH's noise (3× on the
    teacher's MNIST), clip to [0, 1], normalise (0.5, 0.5)."""
    del hparams
    level = config.noise_level * (3.0 if modality == "teacher" else 1.0)
    x = jnp.asarray(x).astype(jnp.float32) / 255.0
    if level:
      x = jnp.clip(x + level * jax.random.uniform(key, x.shape), 0.0, 1.0)
    return (x - 0.5) / 0.5


SOURCE = source.register(MnistPairSource())
