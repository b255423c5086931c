"""``mnist_pair``: built from fake idx files and a fake BSDS500 tgz."""

import gzip
import io
import os
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from ntdh_jax import data as data_lib
from ntdh_jax.data import archives
from ntdh_jax.data import mnistm
from ntdh_jax.data import prepared
from ntdh_jax.errors import UserError
from tests import prepared_util

N = {"train": 12, "t10k": 6}


def write_idx(path, array, magic):
  header = np.array([magic, *array.shape], ">i4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def photo(seed, shape):
  return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


PHOTOS = [photo(0, (40, 33, 3)), photo(1, (33, 40, 3))]


def write_fakes(manual, sizes=None, photos=None, image_format="PNG"):
  """MNIST idx files with ``sizes`` ({"train": n, "t10k": n}) random digits
  and a BSDS500 tgz of ``photos`` (saved as ``image_format``; PNG decodes
  to the exact bits) plus members the builder must skip."""
  photos = PHOTOS if photos is None else photos
  os.makedirs(manual, exist_ok=True)
  rng = np.random.default_rng(0)
  digits = {}
  for prefix, n in (sizes or N).items():
    images = rng.integers(0, 256, (n, 28, 28)) * (rng.random((n, 28, 28)) > .7)
    labels = np.arange(n) % 10
    write_idx(os.path.join(manual, f"{prefix}-images-idx3-ubyte.gz"), images,
              2051)
    write_idx(os.path.join(manual, f"{prefix}-labels-idx1-ubyte.gz"), labels,
              2049)
    digits[prefix] = (images.astype(np.uint8), labels)
  with tarfile.open(os.path.join(manual, "BSR_bsds500.tgz"), "w:gz") as tar:
    members = [(f"BSR/BSDS500/data/images/train/{i}.jpg", p)
               for i, p in enumerate(photos)]
    members.insert(1, ("BSR/BSDS500/data/images/test/skip.jpg", photos[0]))
    for name, array in members:
      buf = io.BytesIO()
      Image.fromarray(array).save(buf, format=image_format)
      data = buf.getvalue()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    info = tarfile.TarInfo("BSR/BSDS500/data/images/train/Thumbs.db")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"xyz"))
  return digits


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("mnist_pair")
  digits = write_fakes(root / "manual")
  prepared_util.build("mnist_pair", root / "manual", root / "data")
  return root, digits


def test_builds_paired_views_in_mnist_order(built):
  root, digits = built
  config = {"name": "mnist_pair", "data_dir": str(root / "data")}
  spec = data_lib.spec(config)
  assert spec.splits == {"train": 12, "test": 6}
  assert spec.teacher.shape == (28, 28, 1) and spec.student.shape == (28, 28, 3)
  arrays = data_lib.load_arrays(config)
  for split, prefix, stream in (("train", "train", 0), ("test", "t10k", 1)):
    images, labels = digits[prefix]
    np.testing.assert_array_equal(arrays[f"teacher_{split}"][..., 0], images)
    np.testing.assert_array_equal(arrays[f"y_{split}"], labels)
    assert arrays[f"student_{split}"].dtype == np.uint8
    # MNIST-M: the binarised digit over the seeded crops (PNG photos decode
    # exactly), recomputed independently of the builder's loop.
    rng = np.random.default_rng([42, stream])
    binary = np.where(images > 0, 255, 0).astype(np.uint8)
    want = mnistm.blend(binary, PHOTOS, rng)
    np.testing.assert_array_equal(arrays[f"student_{split}"], want)
  assert "tensorflow" not in sys.modules


def test_blend_matches_a_float64_per_pixel_reference():
  rng = np.random.default_rng(3)
  grey = (rng.random((5, 28, 28)) > .5).astype(np.uint8) * 255
  got = mnistm.blend(grey, PHOTOS, np.random.default_rng(7))
  ref_rng = np.random.default_rng(7)
  choice = ref_rng.integers(0, 2, 5)
  h = np.array([p.shape[0] for p in PHOTOS])[choice]
  w = np.array([p.shape[1] for p in PHOTOS])[choice]
  rows, cols = ref_rng.integers(0, h - 28), ref_rng.integers(0, w - 28)
  for i in range(5):
    crop = PHOTOS[choice[i]][rows[i]:rows[i] + 28, cols[i]:cols[i] + 28]
    want = np.abs(crop.astype(np.float64) - grey[i, :, :, None])
    np.testing.assert_array_equal(got[i], want.astype(np.uint8))


def test_noise_is_applied_at_load_time_three_times_on_mnist(built):
  import jax
  root, _ = built
  source, config = data_lib.parse({"name": "mnist_pair",
                                   "data_dir": str(root / "data"),
                                   "noise_level": 0.1})
  x = np.zeros((4, 28, 28, 1), np.uint8)
  key = jax.random.PRNGKey(0)
  t = np.asarray(source.prepare(config, x, "teacher", {}, key))
  s = np.asarray(source.prepare(config, x, "student", {}, key))
  u = np.asarray(jax.random.uniform(key, x.shape))
  np.testing.assert_allclose(t, (np.clip(0.3 * u, 0, 1) - .5) / .5, atol=1e-6)
  np.testing.assert_allclose(s, (np.clip(0.1 * u, 0, 1) - .5) / .5, atol=1e-6)
  with pytest.raises(ValueError, match="noise_level"):
    data_lib.parse({"name": "mnist_pair", "noise_level": -1})


def test_listed_and_refused_twice(built):
  root, _ = built
  rows = prepared.list_prepared(str(root / "data"))
  assert [(r["name"], r["config"], r["splits"]) for r in rows] == [
      ("mnist_pair", "default", {"train": 12, "test": 6})]
  with pytest.raises(UserError, match="already prepared"):
    prepared_util.build("mnist_pair", root / "manual", root / "data")


def test_tiny_kd_sweep_runs_end_to_end(built, tmp_path):
  root, _ = built
  prepared_util.tiny_kd_sweep("mnist_pair", root / "data",
                                     tmp_path / "w")


# -- bad input ---------------------------------------------------------------

def _bad(tmp_path, damage):
  manual = tmp_path / "manual"
  write_fakes(manual)
  damage(manual)
  return manual



@pytest.mark.parametrize("damage, message", [
    (lambda m: os.remove(m / "t10k-labels-idx1-ubyte.gz"),
     r"missing t10k-labels-idx1-ubyte.gz in --manual_dir"),
    (lambda m: prepared_util.truncate(m / "train-images-idx3-ubyte.gz"),
     r"train-images-idx3-ubyte.gz: truncated or corrupt"),
    (lambda m: write_idx(m / "train-images-idx3-ubyte.gz",
                         np.zeros((12, 28, 28)), 2049),
     r"train-images-idx3-ubyte.gz: idx magic number 2049, expected 2051"),
    (lambda m: prepared_util.truncate(m / "BSR_bsds500.tgz"),
     r"BSR_bsds500.tgz.*truncated or corrupt"),
    (lambda m: tarfile.open(m / "BSR_bsds500.tgz", "w:gz").close(),
     r"BSR_bsds500.tgz: no JPEG under BSR/BSDS500/data/images/train/"),
])
def test_bad_archives_are_refused_and_nothing_is_prepared(tmp_path, damage,
                                                         message):
  manual = _bad(tmp_path, damage)
  with pytest.raises(archives.ArchiveError, match=message):
    prepared_util.build("mnist_pair", manual, tmp_path / "data")
  assert prepared.list_prepared(str(tmp_path / "data")) == []
  assert not [p for p in os.listdir(tmp_path / "data")
              if p.startswith(".incomplete")] if (
                  tmp_path / "data").exists() else True


def test_published_checksums_are_enforced_by_default(tmp_path):
  manual = tmp_path / "manual"
  write_fakes(manual)
  with pytest.raises(archives.ArchiveError,
                     match=r"train-images-idx3-ubyte.gz: [\d,]+ bytes, "
                           r"expected 9,912,422 \(sha256 440fcabf"):
    prepared.prepare("mnist_pair", str(manual), data_dir=str(tmp_path / "d"))


def test_unprepared_dataset_names_the_prepare_command(tmp_path):
  with pytest.raises(UserError, match=r"not prepared in .*ntdh-data prepare "
                                      r"mnist_pair --manual_dir"):
    data_lib.spec({"name": "mnist_pair", "data_dir": str(tmp_path)})
