"""The NTDH study on a real source (``ntdh_digits.py``): planning, a tiny
end-to-end run, the report's tables and verdicts, and Fig. 10's heatmaps."""

import csv
import json
import os

import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import ntdh_real
from ntdh_jax.experiments import ntdh_real_report as report
from ntdh_jax.train import objectives
from ntdh_jax.train import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "sweeps", "configs", "ntdh_digits.py")


def _plan(arg, overrides=()):
  _, configs, _ = config_lib.load_sweep(f"{CONFIG}:{arg}", list(overrides))
  return ntdh_real.plan(configs)


def test_plan_shares_teachers_between_parts():
  specs = _plan("quick")
  unique = {s.run_id: s for s in specs}
  by_role = lambda role: [s for s in unique.values()
                          if s.tags_dict["role"] == role]
  seeds, kinds, ratios = 2, 3, 3  # quick: alg1 ratios 0.25, 0.5, 0.75
  assert len(by_role("teacher")) == seeds
  assert len(by_role("joint")) == seeds
  # table2's 50 % masked teachers are alg1's.
  assert len(by_role("masked_teacher")) == seeds * kinds * ratios
  # DKD at (α, β) = (1, 8) is a Fig. 7 run and Table II's "w/o mask" cell.
  assert len(specs) - len(unique) == seeds
  assert len({s.signature for s in unique.values()}) == 11


def test_table2_logits_wiring_plans_the_authors_train_kd():
  """``table2.wiring=logits``: the five feature methods on logits with the
  authors' weights at T = 1; DKD and every other part unchanged."""
  features = {s.run_id: s for s in _plan("quick")}
  logits = {s.run_id: s for s in _plan("quick", ["table2.wiring=logits"])}
  moved = [s for i, s in logits.items() if i not in features]
  assert {s.tags_dict["method"] for s in moved} == {
      "fitnet", "crd", "rkd", "pkt", "sp"}
  assert len(moved) == 2 * 5 * 4  # seeds × methods × (w/o mask + 3 kinds)
  for s in moved:
    assert s.static_dict["feature_wiring"] == "logits"
    want = objectives.AUTHORS_LOGIT_HPARAMS[s.tags_dict["method"]]
    assert {k: s.hparams_dict[k] for k in want} == want


@pytest.mark.parametrize("override, message", [
    ("parts=weights,fig3", r"unknown parts \['fig3'\]"),
    ("table2.methods=", r"config.table2.methods must be a non-empty list"),
    ("alg1.repeats=0", r"config.alg1.repeats must be an integer >= 1"),
    ("weights.betas=-1", r"weights.betas .* >= 0, got -1"),
    ("table2.wiring=logit", r"config.table2.wiring must be one of "
     r"\['features', 'logits'\], got 'logit'"),
    ("alg1.importance_form=authors", r"config.alg1.importance_form must be "
     r"one of \['paper', 'reference_code'\]"),
])
def test_bad_configs_are_refused_before_the_workdir_exists(tmp_path, override,
                                                           message):
  base, configs, fingerprint = config_lib.load_sweep(f"{CONFIG}:quick",
                                                    [override])
  with pytest.raises(UserError, match=message):
    experiments.run(configs, str(tmp_path / "w"), base=base, progress=False,
                    fingerprint=fingerprint)
  assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ntdh_digits")
  base, configs, fingerprint = config_lib.load_sweep(f"{CONFIG}:tiny")
  experiments.run(configs, str(workdir), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(workdir / "results.jsonl") as f:
    rows = [json.loads(line) for line in f]
  return workdir, base, rows


def test_tiny_study_writes_report_tables_and_figures(tiny):
  workdir, _, _ = tiny
  text = (workdir / "report.md").read_text()
  for name in ("fig7_weights.png", "fig9_alg1.png", "fig10_masks.png"):
    assert (workdir / name).exists()
  with open(workdir / "summary.csv") as f:
    conditions = {(r["stage"], r["role"], r["method"])
                  for r in csv.DictReader(f)}
  # Every kind of run, KD students by what they distil (tiny: Fig. 7's and
  # Algorithm 1's KL and DKD, Table II's FitNet and DKD).
  assert conditions == {("joint", "joint", ""), ("teacher", "teacher", ""),
                        ("teacher", "masked_teacher", ""),
                        ("student", "no_kd", "none"),
                        *(("student", "kd", m) for m in ("kl", "dkd",
                                                         "fitnet"))}
  assert text.count("reproduced** —") == 4  # Fig. 7, Fig. 9 ×2, Table II
  table = text[text.index("### Table II"):]
  assert ("penultimate features (their papers' wiring; "
          "`table2.wiring=features`)") in table
  rows = [line for line in table.splitlines() if line.startswith("| dkd")]
  # DKD's w/o-mask cell is the Fig. 7 run at (1, 8), found by what it is.
  assert len(rows) == 1 and "–" not in rows[0]


def test_distilled_selects_by_teacher_and_hyperparameters(tiny):
  _, _, rows = tiny
  by_id = {r["run_id"]: r for r in rows}
  masked = report.distilled(rows, "kl", "true", 0.5)
  assert len(masked) == 1
  teacher = by_id[masked[0]["needs"]["teacher"]]
  assert (teacher["tag.kind"], teacher["tag.ratio"]) == ("true", 0.5)
  assert len(report.distilled(rows, "dkd", alpha=1.0, beta=8.0)) == 1
  assert report.distilled(rows, "dkd", alpha=1.0, beta=3.0) == []


def test_heatmaps_mark_exactly_the_removed_pixels(tiny):
  workdir, _, rows = tiny
  images = report.mask_heatmaps(rows, str(workdir), 0.5)
  importance = images["importance"]
  assert importance.shape == (8, 8)
  kinds = ("true", "random", "false")
  teachers = [[r for r in rows if r.get("tag.role") == "masked_teacher"
               and r["tag.kind"] == kind and r["tag.ratio"] == 0.5][0]
              for kind in kinds]
  for kind, out in zip(kinds, sweep.run_outputs(str(workdir), rows,
                                                teachers)):
    keep = out["feature_mask"]
    np.testing.assert_array_equal(images[kind], 1.0 - keep[..., 0])
    assert images[kind].sum() == 32  # half of the 64 pixels
  removed = lambda kind: images[kind].astype(bool)
  # true removes the least important pixels, false the most important.
  assert importance[removed("true")].max() <= importance[
      ~removed("true")].min()
  assert importance[removed("false")].min() >= importance[
      ~removed("false")].max()
