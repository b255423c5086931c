"""Estimates of each real dataset's prepare time and disk size, from fakes.

  python -m scripts.prepare_estimates [NAME ...] [--out FILE]

No machine here has the real archives, so each dataset is built from fake
archives in the real layout with real per-example sizes (MNIST: all 70,000
digits and 200 photographs of 481×321; the others: a few examples at the
real resolutions, see ``ESTIMATES``), through ``ntdh-data prepare``'s code
path. Time and bytes per example are then scaled to the real example
counts. Decoding real media costs about what decoding the fakes costs
(same sizes, same codecs); reading 80 GB of zips off a slow disk may not,
so the time is a lower bound where the archives are large. Prints a
Markdown table (the README's "Real datasets" table).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

import numpy as np

from ntdh_jax.data import prepared
from tests import test_mnist_pair
from tests import test_nyu_depth_v2_labeled
from tests import test_ravdess
from tests import test_semantic_kitti


def _mnist(manual):
  photos = [np.random.default_rng(i).integers(0, 256, (321, 481, 3), np.uint8)
            for i in range(200)]
  test_mnist_pair.write_fakes(manual, {"train": 60_000, "t10k": 10_000},
                              photos, image_format="JPEG")


def _ravdess(manual):
  """Four clips per split of real size: 3.7 s of 48 kHz wav, 112 frames of
  1280×720 H.264 at 29.97 fps (a moving gradient, smoother than noise,
  like a face on a plain background)."""
  clips = [test_ravdess.Fake(actor, emotion, 1, 1, 1, seconds=3.7,
                             n_frames=112, seed=emotion)
           for actor in (1, 21, 23) for emotion in (2, 3, 4, 5)]
  test_ravdess.write_fakes(manual, clips, size=(1280, 720))


def _nyu(manual):
  """7 frames at 480×640 (6 in the splits), deflate-compressed HDF5 with one
  chunk per frame, random pixels (a worst case for compression)."""
  test_nyu_depth_v2_labeled.write_fakes(manual)


def _kitti(manual):
  """Sequences 00–10, 10 scans each, of 120,000 points (an HDL-64 scan's
  count; random directions, so less compressible than real scans); the
  default stride 5 builds 2 per sequence."""
  rng = np.random.default_rng(0)
  velodyne, labels = {}, {}
  for seq in range(11):
    for i in range(10):
      stem = f"dataset/sequences/{seq:02d}/{{}}/{i:06d}"
      scan = test_semantic_kitti.make_scan(rng, 120_000)
      velodyne[stem.format("velodyne") + ".bin"] = scan.astype("<f4").tobytes()
      labels[stem.format("labels") + ".label"] = (
          test_semantic_kitti.make_labels(rng, 120_000).astype("<u4").tobytes())
  os.makedirs(manual, exist_ok=True)
  test_semantic_kitti.write_zip(
      os.path.join(manual, "data_odometry_velodyne.zip"), velodyne)
  test_semantic_kitti.write_zip(
      os.path.join(manual, "data_odometry_labels.zip"), labels)


# name -> (writes the fakes into manual_dir, builder config, real examples,
# what the fakes hold, for the table)
ESTIMATES = {
    "mnist_pair": (_mnist, None, 70_000,
                   "all 70,000 digits, 200 photos 481×321"),
    "ravdess": (_ravdess, "present_actors", 1_440,
                "12 clips: 3.7 s wav, 112 frames 1280×720"),
    "nyu_depth_v2_labeled": (_nyu, "240x320", 1_449,
                             "6 frames 480×640, deflate HDF5, random pixels"),
    # Real examples: the scans the default stride keeps (3,834 + 815).
    "semantic_kitti": (_kitti, "range_64x512", 4_649,
                       "22 scans of 120,000 points (stride 5 of 110)"),
}


def _bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(path) for f in files)


def estimate(name: str, root: str) -> dict:
  write, config, real, fake = ESTIMATES[name]
  manual, data_dir = os.path.join(root, "manual"), os.path.join(root, "data")
  write(manual)
  start = time.perf_counter()
  path = prepared.prepare(name, manual, data_dir=data_dir, config=config,
                          verify=False)
  seconds = time.perf_counter() - start
  n = sum(prepared.split_sizes(path).values())
  return {"name": name, "fake": fake, "examples": n, "seconds": seconds,
          "real": real, "est_minutes": seconds / n * real / 60,
          "est_gb": _bytes(path) / n * real / 1e9}


# Archives whose published SHA-256 ``ntdh-data prepare`` verifies (without
# --skip_checksums), approximate sizes in GB: the hash reads them in full.
HASHED_GB = {"mnist_pair": 0.012, "semantic_kitti": 80.2}


def sha256_gb_per_s(megabytes: int = 256) -> float:
  """This machine's SHA-256 throughput on data in memory (GB/s)."""
  data = np.random.default_rng(0).integers(0, 256, megabytes << 20,
                                            np.uint8).tobytes()
  start = time.perf_counter()
  hashlib.sha256(data).hexdigest()
  return len(data) / 1e9 / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("names", nargs="*", default=list(ESTIMATES),
                      help="datasets (default: all)")
  parser.add_argument("--out", default=None, help="also write the table here")
  flags = parser.parse_args()
  rows = []
  for name in flags.names:
    with tempfile.TemporaryDirectory() as root:
      rows.append(estimate(name, root))
  lines = ["| dataset | fake archives built | examples | build time | real "
           "examples | est. prepare time | est. disk |", "|---" * 7 + "|"]
  for r in rows:
    lines.append(
        f"| `{r['name']}` | {r['fake']} | {r['examples']:,} | "
        f"{r['seconds']:.1f} s | {r['real']:,} | {r['est_minutes']:.1f} min | "
        f"{r['est_gb']:.2f} GB |")
  speed = sha256_gb_per_s()
  lines.append("")
  lines.append(
      f"Verifying the published SHA-256 reads each checked archive once "
      f"more: at {speed:.2f} GB/s here (in memory; a disk may be slower), "
      + ", ".join(f"`{n}` +{gb / speed / 60:.1f} min" for n, gb in
                  HASHED_GB.items() if n in flags.names) + ".")
  table = "\n".join(lines)
  print(table)
  if flags.out:
    with open(flags.out, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
