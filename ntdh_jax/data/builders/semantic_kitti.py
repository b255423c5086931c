"""``semantic_kitti``: SemanticKITTI LiDAR scans as RangeNet++ range images,
two channel groups of one scan as the teacher and student views.

SemanticKITTI (Behley et al., ICCV 2019; semantic-kitti.org) labels every
point of the KITTI odometry Velodyne HDL-64E scans. NTDH's SemanticKITTI
experiment pairs a LiDAR network with a camera network on the points inside
the camera's field of view (a PMF config, Zhuang et al., ICCV 2021, with
dense image labels from Chen et al., arXiv 2404.12861); that camera view
needs ``data_odometry_color.zip`` (65 GB) and ``data_odometry_calib.zip``
and is NOT built here. Instead the two views are two channel groups of the
same range image (the RangeNet++ input, Milioto et al., IROS 2019):

* teacher ``geometry`` — range, x, y, z (what the scanner measures of
  shape);
* student ``remission`` — the return's remission, plus a 0/1 validity-mask
  channel. The mask is needed because RangeNet++ zeroes empty pixels after
  normalising, which makes an empty pixel look like a return of mean
  remission; it also tells the student where the scan has returns (a
  silhouette of the scene), a little geometry the teacher sees in full.

Archives (``manual_dir``, flat, as downloaded; read in place, never
extracted — 80 GB): ``data_odometry_velodyne.zip`` (KITTI odometry) and
``data_odometry_labels.zip`` (SemanticKITTI), holding
``dataset/sequences/NN/velodyne/NNNNNN.bin`` and
``dataset/sequences/NN/labels/NNNNNN.label`` respectively. Their SHA-256
are the published ones; their exact sizes are not known to us (~80 GB,
~179 MB), so a truncated download is caught by the SHA-256 (with
``--skip_checksums``, by the zip's central directory and CRCs).

Build (``Builder``), one scan at a time:

1. A ``.bin`` is little-endian float32 ``[P, 4]`` = x, y, z, remission
   (semantic-kitti-api ``auxiliary/laserscan.py``); a size that is not a
   multiple of 16, or a NaN / inf, names the scan. A ``.label`` is uint32
   per point: the semantic id in the low 16 bits, the instance id in the
   high 16 (not kept); a count that differs from the scan's names both
   files.
2. ``learning_map`` (semantic-kitti-api ``config/semantic-kitti.yaml``)
   maps ``label & 0xFFFF`` to 0..19, 0 = unlabelled / ignored (a 260-entry
   lookup table). An id absent from the map names the label file and the id
   (RangeNet++'s parser, lidar-bonnetal ``dataset/kitti/parser.py``, maps
   unknown ids silently to 0 through a zero-filled table; we refuse them).
3. ``range_image.project``: the RangeNet++ spherical projection (nearest
   point wins; the HDL-64E's +3° / −25° vertical field of view; points
   outside it clamped into the edge rows, the API's convention), then the
   learning ids projected through the winning point's index.

Splits (``config/semantic-kitti.yaml``): ``train`` = sequences 00–07, 09,
10 (19,130 scans); ``test`` = sequence 08, the official *validation*
sequence (4,071 scans) — named ``test`` because it is the held-out split
the engine evaluates on. The official test sequences 11–21 have no labels
and are not built. ``stride`` keeps every k-th scan of each sequence
(scans 0, k, 2k, ... in scan order): consecutive scans are 0.1 s apart and
nearly identical, so a stride loses little.

Features: ``range_image`` f32[H, W, 5] (range, x, y, z, remission; −1 where
no point lands), ``label`` u8[H, W] (learning id 0..19, 0 also where empty),
``point_index`` i32[H, W] (the winning point's index in the scan, −1 where
empty: with the scan it un-projects predictions to points), ``sequence``,
``scan``.

Configs: ``range_64x512`` (default) — 64 × 512 (a quarter of RangeNet++'s
2048 columns, 0.7° of azimuth per pixel) and stride 5: 3,834 train / 815
test scans, ~3.3 GB prepared (0.82 MB per scan before array_record's
compression, 0.72 MB after on HDL-64-sized fakes); ``range_64x2048`` —
RangeNet++'s 64 × 2048, stride 5: ~10.5 GB prepared (2.3 MB per scan).
Other sequence subsets or strides are one more ``SemanticKittiConfig``
entry. Preparing reads only the selected scans' members (stride 5: ~9 GB of
the 80 GB zip) and runs at ~18 scans/s (64 × 512) or ~10 scans/s
(64 × 2048) on 2 CPU cores, mostly the projection: ~4.5 min and ~8 min
for the two configs, plus the SHA-256 pass over 80 GB.

Source ``semantic_kitti`` (``data.name = "semantic_kitti"``): teacher
``f32[H, W, 4]``, student ``f32[H, W, 2]``, labels ``i32[H, W]`` = learning
id − 1 in 0..18 (the 19 classes of ``CLASSES``), 255 where the id is 0 or
the pixel is masked (``ignore_label`` 255). Channels are normalised as the
RangeNet++ parser does (lidar-bonnetal ``dataset/kitti/parser.py``,
``darknet21.yaml`` means / stds): ``(x − mean) / std``, then multiplied by
the mask, so empty pixels are 0. ``mask`` option: ``"valid"`` (default,
``point_index >= 0``) or ``"api"`` (``> 0``, the API's quirk that also
drops point 0's pixel, as RangeNet++ trained). Host arrays (one copy, all
float32 / int32): 28 bytes per pixel, 0.92 MB per 64 × 512 scan — the
default config's 4,649 scans hold 4.3 GB (reading one split's records on
top peaks near 6.7 GB): it fits a 16 GB laptop. ``range_64x2048`` holds
17 GB (a workstation).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow_datasets as tfds

from ntdh_jax.data import archives
from ntdh_jax.data import prepared
from ntdh_jax.data import range_image
from ntdh_jax.data import source

NAME = "semantic_kitti"
VELODYNE = "data_odometry_velodyne.zip"
LABELS = "data_odometry_labels.zip"
ARCHIVES = (
    archives.Archive(
        VELODYNE, "https://www.cvlibs.net/datasets/kitti/eval_odometry.php",
        None,
        "062a45667bec6874ac27f733bd6809919f077265e7ac0bb25ac885798fa85ab5"),
    archives.Archive(
        LABELS, "https://www.semantic-kitti.org/dataset.html#download", None,
        "408ec524636a393bae0288a0b2f48bf5418a1af988e82dee8496f89ddb7e6dda"),
)
TRAIN_SEQUENCES = ("00", "01", "02", "03", "04", "05", "06", "07", "09",
                   "10")
TEST_SEQUENCES = ("08",)
# The labelled sequences; 11-21 are the unlabelled benchmark test set.
LABELLED = tuple(f"{i:02d}" for i in range(11))

# semantic-kitti-api config/semantic-kitti.yaml: raw semantic id -> learning
# id (0 = ignored).
LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6,
    31: 7, 32: 8, 40: 9, 44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0,
    60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7,
    254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
# Learning ids 1..19; the source's class c is learning id c + 1.
CLASSES = ("car", "bicycle", "motorcycle", "truck", "other-vehicle",
           "person", "bicyclist", "motorcyclist", "road", "parking",
           "sidewalk", "other-ground", "building", "fence", "vegetation",
           "trunk", "terrain", "pole", "traffic-sign")
# Raw semantic id -> learning id, -1 where the id is not in the map.
LEARNING_TABLE = np.full(260, -1, np.int16)
LEARNING_TABLE[list(LEARNING_MAP)] = list(LEARNING_MAP.values())
IGNORE = 255
# lidar-bonnetal darknet21.yaml img_means / img_stds: range, x, y, z,
# remission.
MEANS = np.array([12.12, 10.88, 0.23, -1.04, 0.21], np.float32)
STDS = np.array([12.32, 11.47, 6.91, 0.86, 0.16], np.float32)

_SCAN = re.compile(r"dataset/sequences/(\d\d)/velodyne/(\d{6})\.bin")


def scan_member(sequence: str, scan: int) -> str:
  return f"dataset/sequences/{sequence}/velodyne/{scan:06d}.bin"


def label_member(sequence: str, scan: int) -> str:
  return f"dataset/sequences/{sequence}/labels/{scan:06d}.label"


def check_archives(manual_dir: str, verify: bool) -> dict[str, str]:
  return archives.check(manual_dir, ARCHIVES, verify, NAME)


def read_scan(archive, member: str) -> np.ndarray:
  """``f32[P, 4]`` (x, y, z, remission) of a ``.bin`` member; a size that
  is not a multiple of 16 bytes or a NaN / inf names it."""
  raw = archives.read_member(archive, member)
  where = f"{archive.filename} (member {member})"
  if len(raw) % 16:
    raise archives.ArchiveError(
        f"{where}: {len(raw):,} bytes, not a multiple of 16 (a point is 4 "
        "little-endian float32: x, y, z, remission): truncated or not a "
        "KITTI scan.")
  points = np.frombuffer(raw, "<f4").reshape(-1, 4)
  bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
  if len(bad):
    raise archives.ArchiveError(
        f"{where}: NaN or inf in {len(bad):,} of its {len(points):,} points "
        f"(first: point {bad[0]}); a KITTI scan's values are finite: a "
        "corrupt file?")
  return points


def read_labels(archive, member: str, num_points: int,
                scan_file: str) -> np.ndarray:
  """Learning ids ``u8[P]`` (0..19) of a ``.label`` member that must hold
  ``P = num_points`` raw uint32 labels (the points of ``scan_file``); a
  wrong count or an id absent from ``LEARNING_MAP`` names the file."""
  raw = archives.read_member(archive, member)
  where = f"{archive.filename} (member {member})"
  if len(raw) % 4:
    raise archives.ArchiveError(
        f"{where}: {len(raw):,} bytes, not a multiple of 4 (one uint32 per "
        "point): truncated or not a SemanticKITTI label file.")
  if len(raw) // 4 != num_points:
    raise archives.ArchiveError(
        f"{where}: {len(raw) // 4:,} labels, expected one per point of "
        f"{scan_file} ({num_points:,} points): the label and scan files do "
        "not belong together.")
  semantic = np.frombuffer(raw, "<u4") & 0xFFFF
  known = semantic < len(LEARNING_TABLE)
  learning = np.full(len(semantic), -1, np.int16)
  learning[known] = LEARNING_TABLE[semantic[known]]
  if (learning < 0).any():
    unknown = np.unique(semantic[learning < 0]).tolist()
    raise archives.ArchiveError(
        f"{where}: semantic ids {unknown} are not in SemanticKITTI's "
        f"learning_map (known ids: {sorted(LEARNING_MAP)}); is it a "
        "SemanticKITTI label file?")
  return learning.astype(np.uint8)


def select_scans(velodyne, labels, sequences, stride: int):
  """``[(sequence, scan)]``: every ``stride``-th scan of each sequence, in
  order; a sequence without scans or a scan without labels names the
  archive."""
  found = {}
  for name in velodyne.namelist():
    match = _SCAN.fullmatch(name)
    if match:
      found.setdefault(match[1], []).append(int(match[2]))
  label_names = set(labels.namelist())
  selected = []
  for sequence in sequences:
    if sequence not in found:
      raise archives.ArchiveError(
          f"{velodyne.filename}: no scans of sequence {sequence} (nothing "
          f"under dataset/sequences/{sequence}/velodyne/); is it the "
          f"complete {VELODYNE}?")
    for scan in sorted(found[sequence])[::stride]:
      if label_member(sequence, scan) not in label_names:
        raise archives.ArchiveError(
            f"{labels.filename}: no {label_member(sequence, scan)} for "
            f"{scan_member(sequence, scan)}; is it the complete {LABELS}?")
      selected.append((sequence, scan))
  return selected


@dataclasses.dataclass
class SemanticKittiConfig(tfds.core.BuilderConfig):
  """The range image's size and field of view, and which scans.

  Attributes:
    height, width: H × W of the range image; W a multiple of 4 (``segnet``
      halves it twice by default).
    fov_up, fov_down: vertical field of view in degrees.
    stride: keep every ``stride``-th scan of each sequence.
    train_sequences, test_sequences: labelled sequences ("00".."10").
  """
  height: int = 64
  width: int = 2048
  fov_up: float = range_image.FOV_UP
  fov_down: float = range_image.FOV_DOWN
  stride: int = 1
  train_sequences: tuple[str, ...] = TRAIN_SEQUENCES
  test_sequences: tuple[str, ...] = TEST_SEQUENCES

  def __post_init__(self):
    if self.width % 4 or self.height % 4:
      raise ValueError(f"{self.name}: height and width must be multiples of "
                       f"4, got {self.height} × {self.width}.")
    if self.stride < 1:
      raise ValueError(f"{self.name}: stride must be >= 1, got "
                       f"{self.stride}.")
    for sequence in self.train_sequences + self.test_sequences:
      if sequence not in LABELLED:
        raise ValueError(f"{self.name}: sequence {sequence!r} is not a "
                         f"labelled sequence {LABELLED}.")


class Builder(tfds.core.GeneratorBasedBuilder):
  """SemanticKITTI scans as RangeNet++ range images with learning ids."""
  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "RangeNet++ range images of sequences 00-10."}
  BUILDER_CONFIGS = [
      SemanticKittiConfig(
          name="range_64x512", width=512, stride=5,
          description="64 × 512 range images of every 5th scan"),
      SemanticKittiConfig(
          name="range_64x2048", width=2048, stride=5,
          description="64 × 2048 (RangeNet++) range images of every 5th "
                      "scan"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put these two files, as downloaded (not extracted), directly in "
      "manual_dir:\n"
      + "".join(f"  {a.name}  ({a.url})\n" for a in ARCHIVES))

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    image = (c.height, c.width)
    raw = tfds.features.Encoding.BYTES  # a float list is 6× slower to write
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "range_image": tfds.features.Tensor(
                shape=image + (5,), dtype=np.float32, encoding=raw),
            "label": tfds.features.Tensor(shape=image, dtype=np.uint8,
                                          encoding=raw),
            "point_index": tfds.features.Tensor(shape=image, dtype=np.int32,
                                                encoding=raw),
            "sequence": tfds.features.Scalar(dtype=np.int32),
            "scan": tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=None,
        homepage="https://www.semantic-kitti.org/",
    )

  def _split_generators(self, dl_manager):
    paths = check_archives(str(dl_manager.manual_dir), verify=False)
    c = self.builder_config
    with archives.open_zip(paths[VELODYNE]) as velodyne, \
        archives.open_zip(paths[LABELS]) as labels:
      splits = {
          split: select_scans(velodyne, labels, sequences, c.stride)
          for split, sequences in (("train", c.train_sequences),
                                   ("test", c.test_sequences))}
    return {split: self._generate_examples(paths, scans)
            for split, scans in splits.items()}

  def _generate_examples(self, paths, scans):
    c = self.builder_config
    with archives.open_zip(paths[VELODYNE]) as velodyne, \
        archives.open_zip(paths[LABELS]) as labels:
      for sequence, scan in scans:
        member = scan_member(sequence, scan)
        points = read_scan(velodyne, member)
        learning = read_labels(labels, label_member(sequence, scan),
                               len(points), f"{velodyne.filename} "
                               f"(member {member})")
        p = range_image.project(points, learning, c.height, c.width,
                                c.fov_up, c.fov_down)
        image = np.concatenate([p.range[..., None], p.xyz,
                                p.remission[..., None]], axis=-1)
        yield f"{sequence}/{scan:06d}", {
            "range_image": image, "label": p.label, "point_index": p.index,
            "sequence": int(sequence), "scan": scan}


# Source option ``mask``: which pixels of ``point_index`` hold a point.
MASKS = {"valid": lambda index: index >= 0, "api": lambda index: index > 0}


@dataclasses.dataclass(frozen=True)
class SemanticKittiSourceConfig(prepared.PreparedConfig):
  """Options of the ``semantic_kitti`` source.

  Attributes:
    mask: ``"valid"`` (``point_index >= 0``, default) or ``"api"``
      (``point_index > 0``: the SemanticKITTI API's quirk, which also masks
      point 0's pixel, as RangeNet++ was trained).
  """
  mask: str = "valid"

  def __post_init__(self):
    if self.mask not in MASKS:
      raise ValueError(f"mask must be one of {sorted(MASKS)}, got "
                       f"{self.mask!r}.")


def _builder_config(config) -> SemanticKittiConfig:
  return Builder.builder_configs[config.config
                                 or Builder.BUILDER_CONFIGS[0].name]


class SemanticKittiSource(prepared.PreparedSource):
  """Prepared ``semantic_kitti``: geometry (teacher) → remission (student),
  per-pixel 19 classes."""
  name = NAME
  Config = SemanticKittiSourceConfig
  hparams = {}

  def modalities(self, config, path):
    del path
    c = _builder_config(config)
    image = (c.height, c.width)
    return (source.Modality("geometry", image + (4,), "float32"),
            source.Modality("remission", image + (2,), "float32"),
            len(CLASSES), image, IGNORE)

  def arrays(self, config, split, rows):
    """Normalised channel groups ``f32[N, H, W, 4]`` / ``f32[N, H, W, 2]``
    and labels ``i32[N, H, W]``, in (sequence, scan) order; filled row by
    row so no second float copy of the split exists."""
    del split
    rows = sorted(rows, key=lambda r: (int(r["sequence"]), int(r["scan"])))
    n = len(rows)
    c = _builder_config(config)
    shape = (c.height, c.width)
    teacher = np.empty((n,) + shape + (4,), np.float32)
    student = np.empty((n,) + shape + (2,), np.float32)
    y = np.empty((n,) + shape, np.int32)
    for i, row in enumerate(rows):
      mask = MASKS[config.mask](row["point_index"])
      x = (row["range_image"] - MEANS) / STDS * mask[..., None]
      teacher[i] = x[..., :4]
      student[i, ..., 0] = x[..., 4]
      student[i, ..., 1] = mask
      label = row["label"].astype(np.int32)
      y[i] = np.where(mask & (label > 0), label - 1, IGNORE)
    return {"teacher": teacher, "student": student, "y": y}


SOURCE = source.register(SemanticKittiSource())
