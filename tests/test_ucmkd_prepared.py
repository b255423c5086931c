"""``sweeps/configs/ucmkd_ravdess.py`` end to end on fake RAVDESS archives
(``tests.test_ravdess``'s fakes, config ``present_actors``), at ``:tiny``."""

import json
import math
import os

import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import data as data_lib
from ntdh_jax import experiments
from ntdh_jax.experiments import ucmkd
from tests import prepared_util
from tests import test_ravdess

CONFIG = os.path.join(prepared_util.REPO, "sweeps", "configs",
                      "ucmkd_ravdess.py")
# The fakes' training actors (1, 2) hold one clip per emotion; marginal
# mismatch splits each class into disjoint pools, so it needs two: one more
# clip per training clip, the other statement.
FAKES = test_ravdess.FAKES + [
    test_ravdess.Fake(f.actor, f.emotion, f.codes[1], 3 - f.codes[2],
                      f.codes[3], seed=7)
    for f in test_ravdess.FAKES
    if f.actor in test_ravdess.SPLIT_ACTORS["train"]]
# Tiny networks and batches, and a subset of the tiny plan (6 methods × 3
# pairings: 15 compiled student programs; presets vmap within one) so the
# test stays near a minute: the teacher-free baseline and both bi-level
# forms (FA, κ, the first-order and the unrolled hypergradient), unpaired.
OVERRIDES = ["model.channels=[4]", "teacher_model.channels=[4]",
             "model.dense=8", "teacher_model.dense=8",
             "teacher.batch_size=4", "student.batch_size=4",
             "eval_batch_size=8", "student.sinkhorn_iterations=5"]
METHODS = ("ce", "bilevel", "bilevel_paper")
PAIRINGS = ("unpaired",)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("ucmkd_ravdess")
  test_ravdess.write_fakes(root / "manual", FAKES)
  prepared_util.build("ravdess", root / "manual", root / "data",
                      test_ravdess.CONFIG)
  return root / "data"


def test_config_has_one_feature_width_and_the_source_s_knobs():
  base = config_lib.load_sweep(f"{CONFIG}:tiny,data_dir=/nowhere")[0]
  assert base.model.dense == base.teacher_model.dense
  assert set(base.presets) == {"clean", "mismatch", "imbalance"}
  knobs = set(data_lib.get("ravdess").hparams)
  assert all(set(p.knobs) == knobs for p in base.presets.values())


# ~1.5 min on 2 cores: with the prepared CMCD/NTDH studies, under -m slow;
# the digits study runs end to end in the default suite (test_ucmkd.py).
@pytest.mark.slow
def test_tiny_study_runs_end_to_end_on_fakes(built, tmp_path):
  base, configs, fingerprint = config_lib.load_sweep(
      f"{CONFIG}:tiny,data_dir={built},config={test_ravdess.CONFIG}",
      OVERRIDES)
  for c in (base, *configs):
    c.methods = {m: c.methods[m].to_dict() for m in METHODS}
    c.pairings = list(PAIRINGS)
  workdir = tmp_path / "w"
  experiments.run(configs, str(workdir), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(workdir / "results.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == len({s.run_id for s in ucmkd.plan(configs)})
  roles = {}
  for r in rows:
    roles.setdefault(r["tag.role"], []).append(r)
    assert 0.0 <= r["history.test_acc"][-1] <= 1.0
  # No traced knob: the presets leave the teacher view alone and share one
  # teacher run.
  assert len(roles["teacher"]) == 1
  students = sorted((r["tag.method"], r["tag.preset"])
                    for r in roles["student"])
  assert students == sorted((m, p) for m in METHODS
                            for p in ("clean", "mismatch", "imbalance"))
  for r in roles["student"]:
    assert all(math.isfinite(x) for x in r["history.train_ce"])
    if r["tag.method"].startswith("bilevel"):
      assert math.isfinite(r["final.test_fa"])
      assert math.isfinite(r["final.test_la"])
  for name in ("report.md", "summary.csv", "ucmkd_accuracy.png",
               "ucmkd_bound_terms.png"):
    assert (workdir / name).exists(), name
  assert "## mismatch" in (workdir / "report.md").read_text()
