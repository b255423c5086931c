"""``semantic_kitti``: built from fake velodyne / label zips; the range
projection against a float64 per-point loop."""

import math
import os
import sys
import zipfile

import numpy as np
import pytest

from ntdh_jax import data as data_lib
from ntdh_jax.data import archives
from ntdh_jax.data import prepared
from ntdh_jax.data import range_image
from ntdh_jax.data.builders import semantic_kitti
from ntdh_jax.errors import UserError
from tests import prepared_util

NAME = "semantic_kitti"
# Scans per fake sequence: the default stride 5 keeps scans 0 and 5 of 00
# and 08, scan 0 of the others; 11 (unlabelled, as in the real archive) is
# never read.
SCANS = {"00": 6, "01": 1, "02": 1, "03": 1, "04": 1, "05": 1, "06": 1,
         "07": 1, "08": 7, "09": 1, "10": 1, "11": 1}
TRAIN = [("00", 0), ("00", 5)] + [(s, 0) for s in
                                  ("01", "02", "03", "04", "05", "06", "07",
                                   "09", "10")]
TEST = [("08", 0), ("08", 5)]
# semantic-kitti-api config/semantic-kitti.yaml
RAW_IDS = [0, 1, 10, 11, 13, 15, 16, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50,
           51, 52, 60, 70, 71, 72, 80, 81, 99, 252, 253, 254, 255, 256, 257,
           258, 259]
LEARNING_MAP_INV = [10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51,
                    70, 71, 72, 80, 81]
MOVING = {252: 10, 253: 31, 254: 30, 255: 32, 256: 16, 257: 13, 258: 18,
          259: 20}  # moving-X -> static X
# lidar-bonnetal darknet21.yaml: range, x, y, z, remission
MEANS = [12.12, 10.88, 0.23, -1.04, 0.21]
STDS = [12.32, 11.47, 6.91, 0.86, 0.16]


def make_scan(rng, n=100):
  """``f32[P, 4]``: random directions (some above / below the +3° / −25°
  field of view), a few farther copies of earlier points (same pixel), an
  exact duplicate (a range tie) and point 0 near the sensor."""
  yaw = rng.uniform(-math.pi, math.pi, n)
  pitch = np.radians(rng.uniform(-28, 6, n))
  r = rng.uniform(2, 60, n)
  r[0] = 1.0  # point 0 wins its pixel: the `> 0` quirk has work to do
  xyz = np.stack([r * np.cos(pitch) * np.cos(yaw),
                  r * np.cos(pitch) * np.sin(yaw), r * np.sin(pitch)], 1)
  xyz[n - 10:n - 5] = xyz[:5] * 1.7
  xyz[n - 1] = xyz[3]
  remission = rng.uniform(0, 1, (n, 1))
  return np.concatenate([xyz, remission], 1).astype(np.float32)


def make_labels(rng, n):
  raw = rng.choice(RAW_IDS, n).astype(np.uint32)
  return raw | (rng.integers(0, 50, n).astype(np.uint32) << 16)


def fake_data():
  rng = np.random.default_rng(0)
  scans, labels = {}, {}
  for sequence, count in SCANS.items():
    for scan in range(count):
      scans[sequence, scan] = make_scan(rng, 100 + scan)
      if sequence != "11":
        labels[sequence, scan] = make_labels(rng, 100 + scan)
  return scans, labels


SCAN_DATA, LABEL_DATA = fake_data()


def members():
  velodyne = {
      f"dataset/sequences/{s}/velodyne/{i:06d}.bin": p.astype("<f4").tobytes()
      for (s, i), p in SCAN_DATA.items()}
  labels = {
      f"dataset/sequences/{s}/labels/{i:06d}.label": l.astype("<u4").tobytes()
      for (s, i), l in LABEL_DATA.items()}
  labels["dataset/sequences/00/poses.txt"] = b"1 0 0 0 0 1 0 0 0 0 1 0\n"
  return velodyne, labels


def write_zip(path, files):
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in files.items():
      z.writestr(name, data)


def write_fakes(manual, edit=None):
  os.makedirs(manual, exist_ok=True)
  velodyne, labels = members()
  if edit:
    edit(velodyne, labels)
  write_zip(os.path.join(manual, "data_odometry_velodyne.zip"), velodyne)
  write_zip(os.path.join(manual, "data_odometry_labels.zip"), labels)


# -- float64 references, written from the RangeNet++ recipe ------------------

def reference_projection(points, height, width, up=3.0, down=-25.0):
  """Per point, in scan order: its pixel, then keep the nearest point per
  pixel (the first on a tie). Returns ``(range_image f64[H, W, 5], index
  i64[H, W])``, −1 where empty."""
  fov = math.radians(abs(up)) + math.radians(abs(down))
  best = {}
  for i, (x, y, z, _) in enumerate(points.astype(np.float64)):
    r = math.sqrt(x * x + y * y + z * z)
    yaw, pitch = -math.atan2(y, x), math.asin(z / (r + 1e-8))
    u = math.floor(0.5 * (yaw / math.pi + 1.0) * width)
    v = math.floor((1.0 - (pitch + math.radians(abs(down))) / fov) * height)
    pixel = (min(max(v, 0), height - 1), min(max(u, 0), width - 1))
    if pixel not in best or r < best[pixel][0]:
      best[pixel] = (r, i)
  image = np.full((height, width, 5), -1.0)
  index = np.full((height, width), -1)
  for (v, u), (r, i) in best.items():
    image[v, u] = [r, *points[i].astype(np.float64)]
    index[v, u] = i
  return image, index


def reference_learning(raw):
  """The yaml's learning ids of raw labels (dict lookup per point)."""
  table = dict(zip(RAW_IDS, [0, 0, 1, 2, 5, 3, 5, 4, 5, 6, 7, 8, 9, 10, 11,
                             12, 13, 14, 0, 9, 15, 16, 17, 18, 19, 0, 1, 7, 6,
                             8, 5, 5, 4, 5]))
  return np.array([table[int(r) & 0xFFFF] for r in raw])


def expected(scans, height, width, api_mask=False):
  """Features and source arrays of ``scans`` from the references."""
  out = {k: [] for k in ("range_image", "point_index", "label", "teacher",
                         "student", "y")}
  for key in scans:
    image, index = reference_projection(SCAN_DATA[key], height, width)
    learning = reference_learning(LABEL_DATA[key])
    label = np.where(index >= 0, learning[index], 0)
    mask = index > 0 if api_mask else index >= 0
    x = (image - np.array(MEANS)) / np.array(STDS) * mask[..., None]
    out["range_image"].append(image)
    out["point_index"].append(index)
    out["label"].append(label)
    out["teacher"].append(x[..., :4])
    out["student"].append(np.stack([x[..., 4], mask], -1))
    out["y"].append(np.where(mask & (label > 0), label - 1, 255))
  return {k: np.stack(v) for k, v in out.items()}


# -- the projection ----------------------------------------------------------

@pytest.mark.parametrize("height, width", [(16, 64), (64, 512)])
def test_projection_matches_a_float64_per_point_loop(height, width):
  rng = np.random.default_rng(height)
  points = make_scan(rng, 400)  # 16 × 64: many points per pixel
  points[7, :3] = 0.0  # at the sensor: pitch 0 by the 1e-8
  labels = rng.integers(0, 20, 400).astype(np.uint8)
  p = range_image.project(points, labels, height, width)
  image, index = reference_projection(points, height, width)
  np.testing.assert_array_equal(p.index, index)
  got = np.concatenate([p.range[..., None], p.xyz, p.remission[..., None]],
                       -1)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, image, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(p.mask, index >= 0)
  np.testing.assert_array_equal(p.label, np.where(index >= 0, labels[index],
                                                  0))
  assert p.label.dtype == np.uint8
  np.testing.assert_array_equal(p.index[p.row, p.col] >= 0, True)
  n = len(points)
  assert len(np.unique(p.row * width + p.col)) < n  # pixels are shared
  # The farther copies of points 0-4 lose; the duplicate of 3 ties and the
  # lower index wins.
  assert (p.index[p.row[n - 10:n - 5], p.col[n - 10:n - 5]] == range(5)).all()
  assert p.index[p.row[n - 1], p.col[n - 1]] == 3
  assert (index == 0).sum() == 1  # point 0 won a pixel ...
  quirk = range_image.project(points, None, height, width, api_mask=True)
  np.testing.assert_array_equal(quirk.mask, index > 0)  # ... the API drops it
  assert quirk.label is None


def test_out_of_fov_points_are_clamped_into_the_edge_rows():
  # pitch +26.6° (above), −38.7° (below), 0°; yaw 0, 0, −90°
  points = np.array([[10, 0, 5, .5], [10, 0, -8, .5], [0, 10, 0, .5]],
                    np.float32)
  p = range_image.project(points, None, 64, 512)
  assert p.row.tolist() == [0, 63, math.floor(3 / 28 * 64)]
  assert p.col.tolist() == [256, 256, 128]
  assert (p.index[[0, 63, 6], [256, 256, 128]] == [0, 1, 2]).all()


def test_empty_scan_and_bad_input():
  p = range_image.project(np.zeros((0, 4), np.float32), None, 4, 8)
  assert (p.index == -1).all() and (p.range == -1).all() and not p.mask.any()
  with pytest.raises(ValueError, match=r"points must be \[P, 4\]"):
    range_image.project(np.zeros((5, 3), np.float32))
  with pytest.raises(ValueError, match="must be finite; 1 entries"):
    range_image.project(np.array([[1, 2, np.nan, 0]], np.float32))
  with pytest.raises(ValueError, match=r"labels must be \[P\] = \[1\]"):
    range_image.project(np.ones((1, 4), np.float32), np.zeros(2))
  with pytest.raises(ValueError, match="width must be an int >= 1, got 0"):
    range_image.project(np.ones((1, 4), np.float32), width=0)
  with pytest.raises(ValueError, match="fov_up, fov_down must bracket"):
    range_image.project(np.ones((1, 4), np.float32), fov_up=-3.0)


def test_learning_map_is_the_yaml_one():
  table = semantic_kitti.LEARNING_TABLE
  assert table.shape == (260,)
  assert sorted(np.flatnonzero(table >= 0).tolist()) == RAW_IDS
  # learning_map_inv inverts it; moving classes share the static class.
  for learning_id, raw in enumerate(LEARNING_MAP_INV, start=1):
    assert table[raw] == learning_id
  for moving, static in MOVING.items():
    assert table[moving] == table[static]
  np.testing.assert_array_equal(table[RAW_IDS],
                                reference_learning(np.array(RAW_IDS)))
  assert len(semantic_kitti.CLASSES) == 19


# -- the prepared dataset ----------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp(NAME)
  write_fakes(root / "manual")
  prepared_util.build(NAME, root / "manual", root / "data")
  return root


def _sorted_records(root, split, config=None):
  rows = prepared.records(NAME, config, str(root / "data"), split)
  return sorted(rows, key=lambda r: (int(r["sequence"]), int(r["scan"])))


def test_builds_range_images_and_source_arrays(built):
  config = {"name": NAME, "data_dir": str(built / "data")}
  spec = data_lib.spec(config)
  assert spec.splits == {"train": 11, "test": 2}
  assert spec.teacher.shape == (64, 512, 4) and spec.teacher.dtype == "float32"
  assert spec.student.shape == (64, 512, 2)
  assert (spec.num_classes, spec.label_shape, spec.ignore_label) == (
      19, (64, 512), 255)
  arrays = data_lib.load_arrays(config)
  for split, scans in (("train", TRAIN), ("test", TEST)):
    want = expected(scans, 64, 512)
    rows = _sorted_records(built, split)
    assert [(f"{int(r['sequence']):02d}", int(r["scan"])) for r in rows] == (
        scans)
    for key in ("range_image", "point_index", "label"):
      got = prepared.stack(rows, key)
      np.testing.assert_allclose(got, want[key], rtol=1e-6, atol=1e-6)
    for key in ("teacher", "student", "y"):
      got = arrays[f"{key}_{split}"]
      assert got.dtype == (np.int32 if key == "y" else np.float32)
      np.testing.assert_allclose(got, want[key], rtol=1e-5, atol=1e-5)
  assert "tensorflow" not in sys.modules


def test_api_mask_drops_point_zero(built):
  config = {"name": NAME, "data_dir": str(built / "data"), "mask": "api"}
  arrays = data_lib.load_arrays(config)
  want = expected(TEST, 64, 512, api_mask=True)
  np.testing.assert_allclose(arrays["student_test"], want["student"],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(arrays["y_test"], want["y"])
  point0 = want["point_index"] == 0
  assert point0.sum() == 2 and (arrays["y_test"][point0] == 255).all()
  with pytest.raises(ValueError, match=r"mask must be one of \['api', "
                                       r"'valid'\], got 'x'"):
    data_lib.parse({"name": NAME, "mask": "x"})


def test_full_width_config(tmp_path):
  write_fakes(tmp_path / "manual")
  prepared_util.build(NAME, tmp_path / "manual", tmp_path / "data",
                      config="range_64x2048")
  rows = _sorted_records(tmp_path, "test", "range_64x2048")
  want = expected(TEST, 64, 2048)
  np.testing.assert_allclose(prepared.stack(rows, "range_image"),
                             want["range_image"], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(prepared.stack(rows, "label"), want["label"])


def test_listed_and_refused_twice(built):
  rows = prepared.list_prepared(str(built / "data"))
  assert [(r["name"], r["config"], r["splits"]) for r in rows] == [
      (NAME, "range_64x512", {"train": 11, "test": 2})]
  with pytest.raises(UserError, match="already prepared"):
    prepared_util.build(NAME, built / "manual", built / "data")


def test_tiny_kd_sweep_runs_end_to_end(built, tmp_path):
  # One U-Net level: XLA's CPU compile of each layer's initialiser, not the
  # 64 × 512 images, dominates; [4, 8] takes ~4× as long.
  prepared_util.tiny_kd_sweep(
      NAME, built / "data", tmp_path / "w",
      overrides=["model.channels=[4]", "teacher_model.channels=[4]",
                 "train.eval_batch_size=4"])


# -- bad input ---------------------------------------------------------------


def _set(kind, name, data):
  def edit(velodyne, labels):
    {"scan": velodyne, "label": labels}[kind][name] = data
  return edit


def _drop(kind, prefix):
  def edit(velodyne, labels):
    files = {"scan": velodyne, "label": labels}[kind]
    for name in [n for n in files if n.startswith(prefix)]:
      del files[name]
  return edit


SCAN_00_5 = "dataset/sequences/00/velodyne/000005.bin"
LABEL_08_0 = "dataset/sequences/08/labels/000000.label"
NAN_SCAN = SCAN_DATA["00", 5].copy()
NAN_SCAN[3, 1] = np.inf


@pytest.mark.parametrize("edit, damage, message", [
    (None, lambda m: os.remove(m / "data_odometry_labels.zip"),
     r"missing data_odometry_labels.zip in --manual_dir"),
    (None, lambda m: prepared_util.truncate(m / "data_odometry_velodyne.zip"),
     r"data_odometry_velodyne.zip: truncated or corrupt"),
    (_set("scan", SCAN_00_5, b"\0" * 1603), None,
     r"data_odometry_velodyne.zip \(member " + SCAN_00_5 +
     r"\): 1,603 bytes, not a multiple of 16"),
    (_set("label", LABEL_08_0, LABEL_DATA["08", 0][:99].tobytes()), None,
     r"data_odometry_labels.zip \(member " + LABEL_08_0 + r"\): 99 labels, "
     r"expected one per point of .*velodyne.zip \(member "
     r"dataset/sequences/08/velodyne/000000.bin\) \(100 points\)"),
    (_set("label", LABEL_08_0, b"\0" * 398), None,
     LABEL_08_0 + r"\): 398 bytes, not a multiple of 4"),
    (_set("label", LABEL_08_0,
          np.r_[np.uint32(2 | 7 << 16), LABEL_DATA["08", 0][1:]].astype(
              "<u4").tobytes()), None,
     LABEL_08_0 + r"\): semantic ids \[2\] are not in SemanticKITTI's "
     r"learning_map \(known ids: \[0, 1, 10,"),
    (_set("scan", SCAN_00_5, NAN_SCAN.tobytes()), None,
     SCAN_00_5 + r"\): NaN or inf in 1 of its 105 points \(first: point 3\)"),
    (_drop("label", "dataset/sequences/09/labels/000000"), None,
     r"data_odometry_labels.zip: no dataset/sequences/09/labels/000000.label "
     r"for dataset/sequences/09/velodyne/000000.bin"),
    (_drop("scan", "dataset/sequences/04/"), None,
     r"data_odometry_velodyne.zip: no scans of sequence 04"),
])
def test_bad_archives_are_refused_and_nothing_is_prepared(tmp_path, edit,
                                                         damage, message):
  manual = tmp_path / "manual"
  write_fakes(manual, edit)
  if damage:
    damage(manual)
  with pytest.raises(archives.ArchiveError, match=message):
    prepared_util.build(NAME, manual, tmp_path / "data")
  assert prepared.list_prepared(str(tmp_path / "data")) == []
  data = tmp_path / "data"
  assert not data.exists() or not [
      p for p in os.listdir(data) if p.startswith(".incomplete")]


def test_published_checksums_are_enforced_by_default(tmp_path):
  write_fakes(tmp_path / "manual")
  with pytest.raises(archives.ArchiveError,
                     match=r"data_odometry_velodyne.zip: sha256 [0-9a-f]{64}, "
                           r"expected 062a45667bec6874ac27f733bd6809919f0772"):
    prepared.prepare(NAME, str(tmp_path / "manual"),
                     data_dir=str(tmp_path / "d"))


def test_unprepared_dataset_names_the_prepare_command(tmp_path):
  with pytest.raises(UserError, match=r"not prepared in .*ntdh-data prepare "
                                      r"semantic_kitti --manual_dir"):
    data_lib.spec({"name": NAME, "data_dir": str(tmp_path)})
