"""``nyu_depth_v2_labeled``: built from a fake labelled ``.mat`` (HDF5 in
h5py's reversed axis order, as MATLAB v7.3 writes it) and fake
``splits.mat`` / class-mapping files written with ``scipy.io.savemat``."""

import os
import pathlib
import shutil
import sys

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from ntdh_jax import data as data_lib
from ntdh_jax.data import archives
from ntdh_jax.data import prepared
from ntdh_jax.data.builders import nyu_depth_v2_labeled as nyu
from ntdh_jax.errors import UserError
from tests import prepared_util

NAME = "nyu_depth_v2_labeled"
FRAMES = 7
# 1-based, deliberately unsorted; frame 4 is in neither split.
TRAIN, TEST = [5, 1, 3, 7], [6, 2]
IDS = 894  # label ids of the real ``names``

# The 40 classes of classMapping40.mat, in order, and the 13-class table of
# the public prepare scripts, written out here by name (not by number) so
# the fake class13Mapping.mat is checked against an independent statement.
CLASS40 = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door",
    "window", "bookshelf", "picture", "counter", "blinds", "desk", "shelves",
    "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet",
    "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
    "otherprop"]
CLASS13 = ["bed", "books", "ceiling", "chair", "floor", "furniture",
           "objects", "picture", "sofa", "table", "tv", "wall", "window"]
TO13 = {
    "wall": ["wall", "door"], "floor": ["floor", "floor mat"],
    "window": ["window", "blinds", "curtain"], "table": ["table", "desk"],
    "ceiling": ["ceiling"], "bed": ["bed"], "chair": ["chair"],
    "sofa": ["sofa"], "picture": ["picture"], "books": ["books"],
    "tv": ["television"],
    "furniture": ["cabinet", "bookshelf", "counter", "shelves", "dresser",
                  "refridgerator", "night stand", "otherfurniture"],
    "objects": ["pillow", "mirror", "clothes", "paper", "towel",
                "shower curtain", "box", "whiteboard", "person", "toilet",
                "sink", "lamp", "bathtub", "bag", "otherstructure",
                "otherprop"]}
LABELS13 = [CLASS13.index(next(k for k, v in TO13.items() if c in v)) + 1
            for c in CLASS40]
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: fake HDF5"


def scene(i):
  return f"kitchen_{i:04d}" if i % 2 else f"café_{i:04d}"  # non-ASCII too


def frames(seed=0):
  """The fake frames in MATLAB's (row, column) order: ``image``
  u8[F, 480, 640, 3], ``depth`` f32[F, 480, 640] (30 % holes and an all-hole
  4×4 corner), ``labels`` u16[F, 480, 640] ids 0..894."""
  rng = np.random.default_rng(seed)
  shape = (FRAMES, 480, 640)
  depth = rng.uniform(0.5, 9.9, shape).astype(np.float32)
  depth[rng.random(shape) < 0.3] = 0
  depth[:, :4, :4] = 0
  return {"image": rng.integers(0, 256, shape + (3,), np.uint8),
          "depth": depth,
          "labels": rng.integers(0, IDS + 1, shape).astype(np.uint16)}


def write_labeled(path, fr, images_axes=(0, 3, 2, 1), skip=()):
  """The labelled ``.mat`` as MATLAB v7.3 stores it: a 512-byte MATLAB
  header, then HDF5 with every array's axes reversed and deflate-compressed
  (here in one chunk per frame); ``scenes`` a (1, F) array of references to
  uint16 char arrays under ``#refs#``."""
  with h5py.File(path, "w", userblock_size=512) as f:
    arrays = {"images": fr["image"].transpose(images_axes),
              "depths": fr["depth"].transpose(0, 2, 1),
              "rawDepths": fr["depth"].transpose(0, 2, 1),
              "labels": fr["labels"].transpose(0, 2, 1)}
    for key, value in arrays.items():
      if key not in skip:
        f.create_dataset(key, data=value, compression="gzip",
                         chunks=(1, *value.shape[1:]))
    refs = f.create_group("#refs#")
    names = []
    for i in range(FRAMES):
      chars = np.frombuffer(scene(i + 1).encode("utf-16-le"), "<u2")
      names.append(refs.create_dataset(f"s{i}", data=chars[:, None]).ref)
    f.create_dataset("scenes", data=np.array([names], h5py.ref_dtype))
  with open(path, "r+b") as f:
    f.write(MATLAB_HEADER)


def write_splits(path, train=TRAIN, test=TEST):
  scipy.io.savemat(path, {"trainNdxs": np.array(train, float)[:, None],
                          "testNdxs": np.array(test, float)[:, None]})


def write_fakes(manual):
  """The four input files in ``manual`` (a path or str); returns the frames
  and the fake ``mapClass``."""
  manual = pathlib.Path(manual)
  manual.mkdir(parents=True, exist_ok=True)
  fr = frames()
  write_labeled(manual / nyu.LABELED, fr)
  write_splits(manual / nyu.SPLITS)
  map_class = np.random.default_rng(1).integers(1, 41, IDS)
  scipy.io.savemat(manual / nyu.MAP40, {
      "mapClass": map_class[None].astype(float),
      "className": np.array(CLASS40, object)[None]})
  scipy.io.savemat(manual / nyu.MAP13, {"classMapping13": {
      "labels13": np.array(LABELS13, float)[None],
      "className": np.array(CLASS13, object)[None]}})
  return fr, map_class


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
  manual = tmp_path_factory.mktemp("nyu") / "manual"
  fr, map_class = write_fakes(manual)
  return manual, fr, map_class


@pytest.fixture(scope="module")
def built(fakes, tmp_path_factory):
  manual, fr, map_class = fakes
  data_dir = tmp_path_factory.mktemp("nyu_data")
  prepared_util.build(NAME, manual, data_dir)
  return data_dir, fr, map_class


# -- float64 references, written independently of the builder ----------------

def ref_area(image, f):
  """Per-channel mean of f×f blocks from f² strided views, round half up."""
  views = [image[a::f, b::f].astype(np.float64) for a in range(f)
           for b in range(f)]
  return np.floor(sum(views) / f**2 + 0.5)


def ref_masked(depth, f):
  views = [depth[a::f, b::f].astype(np.float64) for a in range(f)
           for b in range(f)]
  total = sum(np.where(v > 0, v, 0.0) for v in views)
  count = sum((v > 0).astype(np.float64) for v in views)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def ref_nearest(labels, f):
  """Pillow's nearest: output pixel i samples input ⌊(i + ½)·f⌋."""
  rows = np.floor((np.arange(labels.shape[0] // f) + 0.5) * f).astype(int)
  cols = np.floor((np.arange(labels.shape[1] // f) + 0.5) * f).astype(int)
  return labels[np.ix_(rows, cols)]


def ref_labels(fr, map_class, indices, f):
  """``(label40, label13)`` u8[n, H, W]: the chain id → 40 → 13, 0 = void."""
  to40 = {i + 1: c for i, c in enumerate(map_class)}
  to40[0] = 0
  to13 = {i + 1: c for i, c in enumerate(LABELS13)}
  to13[0] = 0
  ids = np.stack([ref_nearest(fr["labels"][i - 1], f) for i in indices])
  label40 = np.vectorize(to40.get)(ids)
  return label40, np.vectorize(to13.get)(label40)


@pytest.mark.parametrize("f", [1, 2, 4])
def test_reductions_match_float64_references(f):
  rng = np.random.default_rng(f)
  image = rng.integers(0, 256, (48, 64, 3), np.uint8)
  depth = rng.uniform(0, 10, (48, 64)).astype(np.float32)
  depth[rng.random(depth.shape) < 0.5] = 0
  depth[:8, :8] = 0  # whole blocks without a valid depth stay 0
  labels = rng.integers(0, 900, (48, 64)).astype(np.uint16)
  np.testing.assert_array_equal(nyu.block_mean(image, f), ref_area(image, f))
  np.testing.assert_allclose(nyu.masked_block_mean(depth, f),
                             ref_masked(depth, f), rtol=1e-6)
  assert (nyu.masked_block_mean(depth, f)[:8 // f, :8 // f] == 0).all()
  np.testing.assert_array_equal(nyu.block_centre(labels, f),
                                ref_nearest(labels, f))
  # The same through Pillow: NEAREST samples the same pixel; BOX rounds
  # after each of its two passes, so it is within 1 of the exact mean.
  size = (64 // f, 48 // f)
  np.testing.assert_array_equal(
      nyu.block_centre(labels, f),
      np.asarray(Image.fromarray(labels.astype(np.int32)).resize(
          size, Image.NEAREST)))
  box = np.asarray(Image.fromarray(image).resize(size, Image.BOX))
  assert np.abs(box.astype(int) - nyu.block_mean(image, f)).max() <= 1


def test_builds_the_official_split_at_240x320(built):
  data_dir, fr, map_class = built
  config = {"name": NAME, "data_dir": str(data_dir)}
  spec = data_lib.spec(config)
  assert spec.splits == {"train": 4, "test": 2}
  assert (spec.teacher.shape, spec.teacher.dtype) == ((240, 320, 3), "uint8")
  assert (spec.student.shape, spec.student.dtype) == ((240, 320, 1),
                                                      "float32")
  assert (spec.num_classes, spec.label_shape, spec.ignore_label) == (
      13, (240, 320), 255)
  arrays = data_lib.load_arrays(config)
  for split, indices in (("train", TRAIN), ("test", TEST)):
    order = sorted(indices)  # the source returns frames in .mat order
    np.testing.assert_array_equal(
        arrays[f"teacher_{split}"],
        np.stack([ref_area(fr["image"][i - 1], 2) for i in order]))
    np.testing.assert_allclose(
        arrays[f"student_{split}"][..., 0],
        np.stack([ref_masked(fr["depth"][i - 1], 2) for i in order]),
        rtol=1e-6)
    _, label13 = ref_labels(fr, map_class, order, 2)
    y = arrays[f"y_{split}"]
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, np.where(label13 == 0, 255,
                                              label13 - 1))
    assert 0 < (y == 255).mean() < 1 and y[y != 255].max() <= 12
  rows = prepared.list_prepared(str(data_dir))
  assert [(r["name"], r["config"], r["splits"]) for r in rows] == [
      (NAME, "240x320", {"train": 4, "test": 2})]
  assert "tensorflow" not in sys.modules


def test_records_hold_both_labellings_the_scene_and_the_frame(built):
  data_dir, fr, map_class = built
  for split, indices in (("train", TRAIN), ("test", TEST)):
    rows = prepared.records(NAME, None, str(data_dir), split)
    rows.sort(key=lambda r: int(r["index"]))
    order = sorted(indices)
    assert [int(r["index"]) for r in rows] == order
    assert [r["scene"].decode() for r in rows] == [scene(i) for i in order]
    label40, label13 = ref_labels(fr, map_class, order, 2)
    got40 = prepared.stack(rows, "label40")
    np.testing.assert_array_equal(got40, label40)
    assert got40.dtype == np.uint8
    np.testing.assert_array_equal(prepared.stack(rows, "label13"), label13)


def test_class13_mapping_round_trips(fakes):
  manual, _, _ = fakes
  table = nyu.read_map13(str(manual / nyu.MAP13))
  assert table.tolist() == [0, *LABELS13]
  assert [CLASS13[table[1 + CLASS40.index(c)] - 1] for c in
          ("door", "blinds", "desk", "television", "refridgerator", "lamp")
          ] == ["wall", "window", "table", "tv", "furniture", "objects"]


def test_40_classes_and_option_errors(built):
  data_dir, fr, map_class = built
  config = {"name": NAME, "data_dir": str(data_dir), "classes": 40}
  assert data_lib.spec(config).num_classes == 40
  y = data_lib.load_arrays(config)["y_test"]
  label40, _ = ref_labels(fr, map_class, sorted(TEST), 2)
  np.testing.assert_array_equal(y, np.where(label40 == 0, 255, label40 - 1))
  for bad in (12, True, "13"):
    with pytest.raises(ValueError, match=r"classes must be one of \[13, 40\]"):
      data_lib.parse({"name": NAME, "classes": bad})


def test_model_input_scales_rgb_and_depth(built):
  import jax
  data_dir, _, _ = built
  source, config = data_lib.parse({"name": NAME, "data_dir": str(data_dir)})
  key = jax.random.PRNGKey(0)
  rgb = np.array([[[[0, 128, 255]]]], np.uint8)
  depth = np.array([[[[0.0], [2.5], [12.0]]]], np.float32)
  np.testing.assert_allclose(source.prepare(config, rgb, "teacher", {}, key),
                             rgb / 255.0, rtol=1e-7)
  got = source.prepare(config, depth, "student", {}, key)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, depth / 10.0, rtol=1e-7)  # not clipped


def test_tiny_kd_sweep_runs_end_to_end(built, tmp_path):
  data_dir, _, _ = built
  # One-level U-Nets: the sweep's cost is XLA compiling its programs, which
  # grows with the depth of the net, not with the 240×320 frames.
  prepared_util.tiny_kd_sweep(
      NAME, data_dir, tmp_path / "w",
      overrides=["model.channels=[4]", "teacher_model.channels=[4]",
                 "train.eval_batch_size=2"])


# -- bad input ---------------------------------------------------------------


def _edit_labeled(edit):
  def damage(manual):
    with h5py.File(manual / nyu.LABELED, "r+") as f:
      edit(f)
  return damage


def _set(key, index, value):
  def edit(f):
    f[key][index] = value
  return _edit_labeled(edit)


def _rewrite_labeled(**kwargs):
  return lambda m: write_labeled(m / nyu.LABELED, frames(), **kwargs)


_LABELED = r"nyu_depth_v2_labeled\.mat"


# name -> (damage to the fakes, the error it must raise).
BAD_INPUT = {
    "missing_map13": (
        lambda m: os.remove(m / nyu.MAP13),
        r"missing class13Mapping\.mat in --manual_dir"),
    "truncated_mat": (
        lambda m: prepared_util.truncate(m / nyu.LABELED),
        _LABELED + r": truncated or corrupt \(OSError"),
    "mat_not_hdf5": (
        lambda m: scipy.io.savemat(m / nyu.LABELED, {"images": np.zeros(3)}),
        _LABELED + r": not an HDF5 file \(MATLAB v7\.3 \.mat\)"),
    "no_depths": (
        _rewrite_labeled(skip=("depths",)),
        _LABELED + r": no variable 'depths' \(found \['images', 'labels', "
                   r"'rawDepths', 'scenes'\]\)"),
    "images_axes_not_reversed": (
        _rewrite_labeled(images_axes=(0, 1, 2, 3)),
        _LABELED + r": 'images' is uint8 of h5py shape \(7, 480, 640, 3\), "
                   r"expected uint8 of h5py shape \(7, 3, 640, 480\)"),
    "no_scenes": (
        _edit_labeled(lambda f: f.move("scenes", "scene")),
        _LABELED + r": no variable 'scenes'"),
    "label_id_past_map40": (
        _set("labels", (2, 10, 20), 900),  # frame 3, in train
        _LABELED + r": frame 3 has label id 900, but classMapping40\.mat "
                   r"maps only ids 1\.\.894"),
    "nan_depth": (
        _set("depths", (5, 0, 0), np.nan),  # frame 6, in test
        _LABELED + r": depths of frame 6 hold NaN, infinite or negative"),
    "split_index_past_end": (
        lambda m: write_splits(m / nyu.SPLITS, train=[5, 8, 3]),
        r"splits\.mat: trainNdxs holds 8\.0 at position 2, expected whole "
        r"numbers in 1\.\.7"),
    "split_index_zero_based": (
        lambda m: write_splits(m / nyu.SPLITS, test=[0, 1]),
        r"splits\.mat: testNdxs holds 0\.0 at position 1, expected whole "
        r"numbers in 1\.\.7"),
    "frame_in_two_splits": (
        lambda m: write_splits(m / nyu.SPLITS, test=[6, 3]),
        r"splits\.mat: frame 3 is listed twice"),
    "no_testNdxs": (
        lambda m: scipy.io.savemat(m / nyu.SPLITS, {"trainNdxs": [[1.0]]}),
        r"splits\.mat: no variable 'testNdxs' \(found \['trainNdxs'\]\)"),
    "truncated_splits": (
        lambda m: prepared_util.truncate(m / nyu.SPLITS),
        r"splits\.mat: not a readable MATLAB \.mat file"),
    "map40_value_41": (
        lambda m: scipy.io.savemat(m / nyu.MAP40, {"mapClass": [[1, 41, 2]]}),
        r"classMapping40\.mat: mapClass holds 41 at position 2, expected "
        r"whole numbers in 1\.\.40"),
    "map13_not_a_struct": (
        lambda m: scipy.io.savemat(m / nyu.MAP13,
                                   {"classMapping13": np.ones((1, 40))}),
        r"class13Mapping\.mat: classMapping13 is a float64 array of shape "
        r"\(1, 40\), expected a 1×1 struct"),
    "map13_13_entries": (
        lambda m: scipy.io.savemat(m / nyu.MAP13, {
            "classMapping13": {"labels13": np.ones((1, 13))}}),
        r"class13Mapping\.mat: classMapping13\.labels13 has 13 entries, "
        r"expected 40"),
}


@pytest.mark.parametrize("damage, message", BAD_INPUT.values(),
                         ids=BAD_INPUT.keys())
def test_bad_input_is_refused_and_nothing_is_prepared(fakes, tmp_path, damage,
                                                      message):
  manual = tmp_path / "manual"
  shutil.copytree(fakes[0], manual)
  damage(manual)
  with pytest.raises(archives.ArchiveError, match=message):
    prepared_util.build(NAME, manual, tmp_path / "data")
  assert prepared.list_prepared(str(tmp_path / "data")) == []
  if (tmp_path / "data").exists():
    assert not [p for p in os.listdir(tmp_path / "data")
                if p.startswith(".incomplete")]


def test_no_published_checksums_so_verify_checks_structure_only(fakes,
                                                                tmp_path):
  assert all(a.size is None and a.sha256 is None for a in nyu.ARCHIVES)
  manual = tmp_path / "manual"
  shutil.copytree(fakes[0], manual)
  write_splits(manual / nyu.SPLITS, train=[1, 2, 99])
  with pytest.raises(archives.ArchiveError, match=r"trainNdxs holds 99\.0"):
    prepared.prepare(NAME, str(manual), data_dir=str(tmp_path / "d"))


def test_unknown_config_names_the_configs(fakes, tmp_path):
  with pytest.raises(UserError, match=r"unknown config '60x80'; configs: "
                                      r"\['240x320', '120x160', '480x640'\]"):
    prepared_util.build(NAME, fakes[0], tmp_path / "d", config="60x80")
