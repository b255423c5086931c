"""Shared by the dataset-builder tests: build from fakes, run a tiny sweep."""

import json
import math
import os

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.data import prepared

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_KD = os.path.join(REPO, "sweeps", "configs", "real_kd.py")


def build(name, manual_dir, data_dir, config=None):
  """``ntdh-data prepare`` on fakes: checksums skipped (fakes cannot match
  the published ones; their refusal is tested separately)."""
  return prepared.prepare(name, str(manual_dir), data_dir=str(data_dir),
                          config=config, verify=False)


def tiny_kd_sweep(dataset, data_dir, workdir, overrides=(), config=None):
  """The README's ``real_kd.py`` study on a prepared fake: one seed, one
  epoch, teacher → no-KD, KD and DKD students; returns the result rows."""
  arg = f"{dataset},quick,data_dir={data_dir}"
  if config:
    arg += f",config={config}"
  base, configs, fingerprint = config_lib.load_sweep(
      f"{REAL_KD}:{arg}", ["num_seeds=1", "train.epochs=1", "train.batch_size=4",
                           "train.eval_every=1", *overrides])
  experiments.run(configs, str(workdir), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(os.path.join(workdir, "results.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert os.path.exists(os.path.join(workdir, "report.md"))
  assert sorted(r["tag.role"] for r in rows) == ["kd", "kd", "no_kd",
                                                 "teacher"]
  for r in rows:
    assert 0.0 <= r["history.test_acc"][-1] <= 1.0
    assert all(math.isfinite(x) for x in r["history.train_ce"])
  return rows


def truncate(path, keep=0.5):
  """Cuts the file at ``path`` to ``keep`` of its bytes (a broken
  download)."""
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep)])
