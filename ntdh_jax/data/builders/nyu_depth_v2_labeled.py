"""``nyu_depth_v2_labeled``: NYU Depth V2's 1,449 labelled frames, RGB
(teacher) and depth (student), with per-pixel 13- and 40-class labels.

Dataset: Silberman, Hoiem, Kohli & Fergus, "Indoor Segmentation and Support
Inference from RGBD Images", ECCV 2012 — the densely labelled Kinect frames
of ``nyu_depth_v2_labeled.mat``, with the official 795 / 654 train / test
split of ``splits.mat``.

What the NTDH paper does with it and what we do instead: its NYU experiment
(RGB teacher, depth student) is 3-D *semantic scene completion* with AIC-Net
(Li et al., CVPR 2020), whose voxelised ground truth is not in this file. We
do 2-D per-pixel semantic segmentation of the labelled frames instead
(``models.SegmentationNet``), so our numbers are not comparable with the
paper's NYU table.

Archives (``manual_dir``, flat; no sizes or SHA-256 are published for these
files, so only their structure is checked, before the build starts and
again while reading):

* ``nyu_depth_v2_labeled.mat`` (~2.8 GB) — MATLAB v7.3, i.e. HDF5, read with
  h5py one frame at a time (the in-painted and raw depth maps alone are
  ~3.5 GB). MATLAB sizes and what h5py shows (h5py reverses the axes of a
  column-major MATLAB array):

    images  480×640×3×N uint8   → (N, 3, 640, 480), transposed (0, 3, 2, 1)
    depths  480×640×N single    → (N, 640, 480), transposed (0, 2, 1); metres,
                                  in-painted (Levin et al.'s colorization fill
                                  of the NYU toolbox), so no holes
    labels  480×640×N uint16    → (N, 640, 480); 0 = unlabelled, else an id
                                  1..894 into ``names``
    scenes  N×1 cell of char    → (1, N) object references; each one a
                                  uint16 array of UTF-16 code units

  ``rawDepths``, ``instances``, ``names``, ``sceneTypes``, ``accelData`` and
  the raw file names are not read.
* ``splits.mat`` (old MAT format, ``scipy.io.loadmat``): ``trainNdxs`` 795×1
  and ``testNdxs`` 654×1, **1-based** indices into the N frames.
* ``classMapping40.mat``: ``mapClass`` 1×894, the id → 1..40 table of Gupta,
  Arbeláez & Malik (CVPR 2013). Classes 1..40: wall, floor, cabinet, bed,
  chair, sofa, table, door, window, bookshelf, picture, counter, blinds,
  desk, shelves, curtain, dresser, pillow, mirror, floor mat, clothes,
  ceiling, books, refridgerator (sic), television, paper, towel, shower
  curtain, box, whiteboard, person, night stand, toilet, sink, lamp, bathtub,
  bag, otherstructure, otherfurniture, otherprop.
* ``class13Mapping.mat``: the struct ``classMapping13`` whose first field
  (``labels13`` in the public file) is the 1×40 table 40 → 1..13; through
  ``scipy.io.loadmat`` that is ``classMapping13[0, 0][0]``, the access path
  of the public loaders (``["classMapping13"][0][0][0][0]``). The 13 classes
  of Couprie et al. (ICLR 2013): 1 bed, 2 books, 3 ceiling,
  4 chair, 5 floor, 6 furniture, 7 objects, 8 picture, 9 sofa, 10 table,
  11 tv, 12 wall, 13 window. The file is the source of truth; the table
  public prepare scripts document (secondary, not read from here) is: wall
  ← wall, door; floor ← floor, floor mat; window ← window, blinds, curtain;
  table ← table, desk; ceiling, bed, chair, sofa, picture, books, tv ←
  the same-named class (tv ← television); furniture ← cabinet, bookshelf,
  counter, shelves, dresser, refridgerator, night stand, otherfurniture;
  objects ← pillow, mirror, clothes, paper, towel, shower curtain, box,
  whiteboard, person, toilet, sink, lamp, bathtub, bag, otherstructure,
  otherprop.

The mappings and ``splits.mat`` are the ones the NYU toolbox and its Python
ports ship (``splits.mat`` from the NYU site, both mappings from
VainF/nyuv2-python-toolkit).

Build (``Builder``), per split, in ``splits.mat`` order:

1. Read frame i of ``images``, ``depths``, ``labels``, ``scenes`` and undo
   h5py's axis reversal: ``u8[480, 640, 3]``, ``f32[480, 640]``,
   ``u16[480, 640]``. A depth that is not finite or is negative, or a label
   id past the end of ``mapClass``, names the file and the frame.
2. Reduce 480×640 by the config's integer factor f (each config is a whole
   fraction of the frame, so every output pixel covers one f×f block):

   * RGB: area average — the mean of the f×f block per channel, rounded half
     up to uint8 once (Pillow's ``BOX`` filter is within 1 of it: it rounds
     after each of its two separable passes);
   * depth: masked average — the mean of the block's valid (> 0) depths,
     0 (missing) if it has none. The in-painted maps have no holes, so this
     is the plain block mean there; the mask keeps a hole from dragging a
     depth edge towards 0;
   * labels: nearest — the label at the block's centre pixel
     (f·i + ⌊f/2⌋, f·j + ⌊f/2⌋), which Pillow's ``NEAREST`` also picks; a
     label is a class, never averaged.

3. ``label40 = [0, *mapClass][labels]`` and ``label13 = [0, *labels13]
   [label40]`` (the public prepare scripts' chain 894 → 40 → 13, each table
   with a leading 0 so unlabelled stays 0 = void).

Not done (simplifications): no crop to the valid Kinect region (rows 45:471,
cols 41:601 of the 480×640 frame, an evaluation convention of depth
estimation); no raw depth; no colour augmentation or random crops.

Configs (the frame divided by f; H and W stay divisible by 4 for
``segnet``'s default three levels): ``240x320`` (f = 2, default),
``120x160`` (f = 4), ``480x640`` (f = 1, full resolution).

Features: ``image`` u8[H, W, 3], ``depth`` f32[H, W] (metres), ``label40``
u8[H, W] (0 void, 1..40), ``label13`` u8[H, W] (0 void, 1..13), ``index``
(1-based frame number in the ``.mat``, what ``splits.mat`` lists),
``scene`` (e.g. ``"kitchen_0028"``).

Size on disk: the tensors are H·W·9 bytes per example, which
array_record's compression shrinks — ``240x320`` ≈ 1.0 GB before
compression (0.94 GB built from random-pixel fakes, 0.58 GB from smooth
synthetic frames: a one-off measurement, not in the tests), ``120x160`` a
quarter of that, ``480x640`` four times.

Source ``nyu_depth_v2_labeled`` (``data.name = "nyu_depth_v2_labeled"``):
teacher ``rgb`` u8[H, W, 3], student ``depth`` f32[H, W, 1], labels
``i32[H, W]`` = class − 1 in 0..C−1 with void → ``IGNORE`` (255), ``classes``
13 (default) or 40. Model input (``prepare``): RGB / 255 in [0, 1], depth /
10 m (about the Kinect's range, so depths land near [0, 1]), not clipped.
Host arrays for ``240x320``: 1,449 × 240·320 × (3 + 4 + 4) bytes ≈ 1.2 GB
(peak ≈ 2.3 GB while the stored rows are stacked); ``480x640`` is 4× that
(≈ 4.9 GB, peak ≈ 9 GB), ``120x160`` a quarter.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, NamedTuple

import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from ntdh_jax.data import archives
from ntdh_jax.data import prepared
from ntdh_jax.data import source

NAME = "nyu_depth_v2_labeled"
LABELED = "nyu_depth_v2_labeled.mat"
SPLITS = "splits.mat"
MAP40 = "classMapping40.mat"
MAP13 = "class13Mapping.mat"
_NYU_URL = "http://horatio.cs.nyu.edu/mit/silberman/"
_TOOLKIT_URL = "https://github.com/VainF/nyuv2-python-toolkit/raw/master/"
ARCHIVES = (
    archives.Archive(LABELED, _NYU_URL + "nyu_depth_v2/" + LABELED),
    archives.Archive(SPLITS, _NYU_URL + "indoor_seg_sup/" + SPLITS),
    archives.Archive(MAP40, _TOOLKIT_URL + MAP40),
    archives.Archive(MAP13, _TOOLKIT_URL + MAP13),
)
HEIGHT, WIDTH = 480, 640  # the Kinect frames of the labelled set
# Variable -> (h5py shape of one frame, dtype): MATLAB's 480×640[×3]×N
# with the axes reversed.
_FRAME_LAYOUT = {
    "images": ((3, WIDTH, HEIGHT), np.uint8),
    "depths": ((WIDTH, HEIGHT), np.float32),
    "labels": ((WIDTH, HEIGHT), np.uint16),
}
_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
CLASSES = (13, 40)
IGNORE = 255
MAX_DEPTH = 10.0  # metres: the student's input is depth / MAX_DEPTH


def _loadmat(path: str) -> dict:
  """``scipy.io.loadmat`` of an old-format ``.mat``; unreadable files name
  the path."""
  import scipy.io  # pylint: disable=import-outside-toplevel
  try:
    return scipy.io.loadmat(path)
  except (scipy.io.matlab.MatReadError, ValueError, OSError, EOFError,
          NotImplementedError) as e:
    raise archives.ArchiveError(
        f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e}); "
        "truncated or a different file, download it again.") from e


def _variable(mat: dict, path: str, key: str) -> np.ndarray:
  if key not in mat:
    found = sorted(k for k in mat if not k.startswith("__"))
    raise archives.ArchiveError(
        f"{path}: no variable {key!r} (found {found}); is it the right file?")
  return np.asarray(mat[key])


def _whole_numbers(values: np.ndarray, path: str, what: str, low: int,
                   high: int) -> np.ndarray:
  """``values`` as int64 if each is a whole number in ``[low, high]``, else
  an error naming the file and the first offender."""
  values = np.asarray(values).ravel()
  if values.dtype.kind not in "iuf":
    raise archives.ArchiveError(
        f"{path}: {what} has dtype {values.dtype}, expected numbers.")
  bad = ~np.isfinite(values) | (values != np.round(values)) | (
      values < low) | (values > high)
  if bad.any():
    first = int(np.argmax(bad))
    raise archives.ArchiveError(
        f"{path}: {what} holds {values[first].item()!r} at position "
        f"{first + 1}, expected whole numbers in {low}..{high}.")
  return values.astype(np.int64)


def read_splits(path: str, frames: int) -> dict[str, np.ndarray]:
  """``{"train": i64[795], "test": i64[654]}``: the 1-based frame numbers of
  ``splits.mat``, each in 1..``frames``, no frame twice."""
  mat = _loadmat(path)
  splits = {split: _whole_numbers(_variable(mat, path, key), path, key, 1,
                                  frames)
            for split, key in _SPLIT_KEYS.items()}
  seen = np.concatenate(list(splits.values()))
  values, counts = np.unique(seen, return_counts=True)
  if (counts > 1).any():
    raise archives.ArchiveError(
        f"{path}: frame {int(values[np.argmax(counts > 1)])} is listed twice "
        "in trainNdxs/testNdxs; each frame belongs to one split.")
  return splits


def read_map40(path: str) -> np.ndarray:
  """``u8[1 + K]``: ``[0, *mapClass]``, label id (0 = unlabelled) → 0..40."""
  table = _whole_numbers(_variable(_loadmat(path), path, "mapClass"), path,
                         "mapClass", 1, 40)
  return np.concatenate([[0], table]).astype(np.uint8)


def read_map13(path: str) -> np.ndarray:
  """``u8[41]``: ``[0, *labels13]``, 40-class label (0 = void) → 0..13."""
  struct = _variable(_loadmat(path), path, "classMapping13")
  if struct.dtype.names is None or struct.size != 1:
    raise archives.ArchiveError(
        f"{path}: classMapping13 is a {struct.dtype} array of shape "
        f"{struct.shape}, expected a 1×1 struct whose first field is the "
        "1×40 table 40 → 13.")
  table = _whole_numbers(struct.ravel()[0][0], path,
                         f"classMapping13.{struct.dtype.names[0]}", 1, 13)
  if table.size != 40:
    raise archives.ArchiveError(
        f"{path}: classMapping13.{struct.dtype.names[0]} has {table.size} "
        "entries, expected 40 (one per class of classMapping40.mat).")
  return np.concatenate([[0], table]).astype(np.uint8)


def _describe(var) -> str:
  if not hasattr(var, "dtype"):
    return f"a {type(var).__name__}, not an array"
  return f"{var.dtype} of h5py shape {var.shape}"


@contextlib.contextmanager
def labeled_mat(path: str) -> Iterator:
  """The open HDF5 file of ``nyu_depth_v2_labeled.mat`` once its variables
  have the labelled set's shapes and dtypes (errors name the file, the
  variable and the expected layout)."""
  import h5py  # pylint: disable=import-outside-toplevel
  if not h5py.is_hdf5(path):
    raise archives.ArchiveError(
        f"{path}: not an HDF5 file (MATLAB v7.3 .mat); truncated or a "
        f"different file, download it again from {ARCHIVES[0].url}.")
  with archives.reading(path):
    # MATLAB chooses the chunk shape; if a chunk spans several frames, a
    # cache that holds it spares decompressing it again for the next frame
    # (h5py's default cache is 1 MiB per variable, less than one RGB frame).
    f = h5py.File(path, "r", rdcc_nbytes=64 << 20)
  try:
    for key in (*_FRAME_LAYOUT, "scenes"):
      if key not in f:
        raise archives.ArchiveError(
            f"{path}: no variable {key!r} (found "
            f"{sorted(k for k in f if not k.startswith('#'))}); expected the "
            "labelled set's images, depths, labels and scenes.")
    images = f["images"]
    frames = images.shape[0] if getattr(images, "ndim", 0) == 4 else "N"
    for key, (shape, dtype) in _FRAME_LAYOUT.items():
      var = f[key]
      if not isinstance(var, h5py.Dataset) or var.shape != (
          frames, *shape) or var.dtype != dtype:
        raise archives.ArchiveError(
            f"{path}: {key!r} is {_describe(var)}, expected {np.dtype(dtype)} "
            f"of h5py shape {(frames, *shape)} (MATLAB's "
            f"{'×'.join(map(str, shape[::-1]))}×{frames}, axes reversed by "
            "h5py).")
    scenes = f["scenes"]
    if not isinstance(scenes, h5py.Dataset) or scenes.shape != (
        1, frames) or scenes.dtype != h5py.ref_dtype:
      raise archives.ArchiveError(
          f"{path}: 'scenes' is {_describe(scenes)}, expected object "
          f"references of h5py shape (1, {frames}) (MATLAB's {frames}×1 cell "
          "of strings).")
    yield f
  finally:
    f.close()


class Frame(NamedTuple):
  """One labelled frame at 480×640: ``image`` u8[480, 640, 3], ``depth``
  f32[480, 640] metres, ``labels`` u16[480, 640] ids, ``scene`` str."""
  image: np.ndarray
  depth: np.ndarray
  labels: np.ndarray
  scene: str


def read_frame(f, path: str, index: int) -> Frame:
  """Frame ``index`` (1-based) of the open labelled ``.mat``."""
  i = index - 1
  with archives.reading(path, f"frame {index}"):
    image = f["images"][i].transpose(2, 1, 0)
    depth = f["depths"][i].T
    labels = f["labels"][i].T
    chars = f[f["scenes"][0, i]][()]
  if chars.dtype != np.uint16:
    raise archives.ArchiveError(
        f"{path}: scenes{{{index}}} is {chars.dtype}, expected a MATLAB char "
        "array (uint16 UTF-16 code units).")
  scene = chars.ravel().astype("<u2").tobytes().decode("utf-16-le")
  if not np.isfinite(depth).all() or (depth < 0).any():
    raise archives.ArchiveError(
        f"{path}: depths of frame {index} hold NaN, infinite or negative "
        f"values (min {np.nanmin(depth)}); expected metres >= 0.")
  return Frame(image, depth, labels, scene)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
  """``u8[H, W, C]`` → ``u8[H/f, W/f, C]``: the mean of each f×f block,
  rounded half up (exact integer arithmetic)."""
  h, w, c = image.shape
  sums = image.reshape(h // factor, factor, w // factor, factor, c).sum(
      axis=(1, 3), dtype=np.int64)
  n = factor * factor
  return ((2 * sums + n) // (2 * n)).astype(np.uint8)


def masked_block_mean(depth: np.ndarray, factor: int) -> np.ndarray:
  """``f32[H, W]`` → ``f32[H/f, W/f]``: the mean of each f×f block's valid
  (> 0) depths, 0 where the block has none."""
  h, w = depth.shape
  blocks = depth.reshape(h // factor, factor, w // factor, factor).astype(
      np.float64)
  valid = blocks > 0
  count = valid.sum(axis=(1, 3))
  total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
  return np.divide(total, count, out=np.zeros_like(total),
                   where=count > 0).astype(np.float32)


def block_centre(labels: np.ndarray, factor: int) -> np.ndarray:
  """``[H, W]`` → ``[H/f, W/f]``: the value at each f×f block's centre pixel
  (nearest-neighbour downsampling)."""
  return labels[factor // 2::factor, factor // 2::factor]


def check_archives(manual_dir: str, verify: bool) -> dict[str, str]:
  """Every file present, then its structure (variables, shapes, index and
  class ranges), so a bad file is refused before a build starts."""
  paths = archives.check(manual_dir, ARCHIVES, verify, NAME)
  read_inputs(paths)
  return paths


class Inputs(NamedTuple):
  """The small inputs: ``splits`` (1-based frame numbers per split) and the
  class tables ``map40`` (id → 0..40) and ``map13`` (0..40 → 0..13)."""
  splits: dict[str, np.ndarray]
  map40: np.ndarray
  map13: np.ndarray


def read_inputs(paths: dict[str, str]) -> Inputs:
  """Checks the labelled ``.mat``'s layout (reading no frame) and reads the
  split and class-mapping files."""
  with labeled_mat(paths[LABELED]) as f:
    frames = f["images"].shape[0]
  return Inputs(read_splits(paths[SPLITS], frames), read_map40(paths[MAP40]),
                read_map13(paths[MAP13]))


@dataclasses.dataclass
class NyuConfig(tfds.core.BuilderConfig):
  """``factor``: the 480×640 frames are reduced over factor×factor blocks."""
  factor: int = 2

  @property
  def shape(self) -> tuple[int, int]:
    return HEIGHT // self.factor, WIDTH // self.factor


class Builder(tfds.core.GeneratorBasedBuilder):
  """NYU Depth V2's labelled frames: RGB, depth, 40- and 13-class labels."""
  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Labelled frames, official 795/654 split, "
                            "block-reduced to the config's resolution."}
  BUILDER_CONFIGS = [
      NyuConfig(name=f"{HEIGHT // f}x{WIDTH // f}", factor=f,
                description=f"480×640 reduced over {f}×{f} blocks")
      for f in (2, 4, 1)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put these four files, as downloaded, directly in manual_dir:\n"
      + "".join(f"  {a.name}  ({a.url})\n" for a in ARCHIVES))

  def _info(self) -> tfds.core.DatasetInfo:
    h, w = self.builder_config.shape
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(h, w, 3), dtype=np.uint8),
            "depth": tfds.features.Tensor(shape=(h, w), dtype=np.float32),
            "label40": tfds.features.Tensor(shape=(h, w), dtype=np.uint8),
            "label13": tfds.features.Tensor(shape=(h, w), dtype=np.uint8),
            "index": tfds.features.Scalar(dtype=np.int32),
            "scene": tfds.features.Text(),
        }),
        supervised_keys=None,
        homepage="https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
    )

  def _split_generators(self, dl_manager):
    paths = archives.check(str(dl_manager.manual_dir), ARCHIVES, False, NAME)
    inputs = read_inputs(paths)
    return {split: self._generate_examples(paths[LABELED], indices, inputs)
            for split, indices in inputs.splits.items()}

  def _generate_examples(self, path, indices, inputs):
    factor = self.builder_config.factor
    with labeled_mat(path) as f:
      for index in indices:
        frame = read_frame(f, path, int(index))
        if frame.labels.max() >= len(inputs.map40):
          raise archives.ArchiveError(
              f"{path}: frame {index} has label id {frame.labels.max()}, but "
              f"{MAP40} maps only ids 1..{len(inputs.map40) - 1}.")
        label40 = inputs.map40[block_centre(frame.labels, factor)]
        yield int(index), {
            "image": block_mean(frame.image, factor),
            "depth": masked_block_mean(frame.depth, factor),
            "label40": label40, "label13": inputs.map13[label40],
            "index": int(index), "scene": frame.scene}


@dataclasses.dataclass(frozen=True)
class NyuSourceConfig(prepared.PreparedConfig):
  """Options of the ``nyu_depth_v2_labeled`` source.

  Attributes:
    classes: 13 (Couprie et al., default) or 40 (Gupta et al.) classes.
  """
  classes: int = 13

  def __post_init__(self):
    if isinstance(self.classes, bool) or self.classes not in CLASSES:
      raise ValueError(f"classes must be one of {list(CLASSES)} (the 13- or "
                       f"40-class labelling), got {self.classes!r}.")


# Stored rows -> model input: divide by these (uint8 RGB to [0, 1], depth in
# metres to about [0, 1]).
_SCALE = {"teacher": 255.0, "student": MAX_DEPTH}


class NyuSource(prepared.PreparedSource):
  """Prepared ``nyu_depth_v2_labeled``: RGB (teacher) → depth (student),
  per-pixel classes."""
  name = NAME
  Config = NyuSourceConfig
  hparams = {}

  def modalities(self, config, path):
    del path
    configs = {c.name: c for c in Builder.BUILDER_CONFIGS}
    h, w = configs[config.config or Builder.BUILDER_CONFIGS[0].name].shape
    return (source.Modality("rgb", (h, w, 3), "uint8"),
            source.Modality("depth", (h, w, 1), "float32"), config.classes,
            (h, w), IGNORE)

  def arrays(self, config, split, rows):
    """``teacher`` u8[N, H, W, 3], ``student`` f32[N, H, W, 1], ``y``
    i32[N, H, W] (class − 1, void → ``IGNORE``), in ``.mat`` frame order."""
    del split
    rows = sorted(rows, key=lambda r: int(r["index"]))
    labels = prepared.stack(rows, f"label{config.classes}", np.int32)
    return {"teacher": prepared.stack(rows, "image"),
            "student": prepared.stack(rows, "depth")[..., None],
            "y": np.where(labels == 0, IGNORE, labels - 1).astype(
                np.int32, copy=False)}

  def prepare(self, config, x, modality, hparams, key):
    """``u8[B, H, W, 3]`` RGB → / 255; ``f32[B, H, W, 1]`` depth → / 10 m
    (float32, not clipped)."""
    del config, hparams, key
    return jnp.asarray(x).astype(jnp.float32) / _SCALE[modality]


SOURCE = source.register(NyuSource())
