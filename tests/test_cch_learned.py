"""CCH on learned representations (experiment ``cch``) end to end at tiny
scale: plan, sweep, features, estimates, report, cache."""

import csv
import json
import os

import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import cch
from ntdh_jax.experiments import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep(name, arg="", overrides=()):
  path = os.path.join(REPO, "sweeps", "configs", name) + arg
  return config_lib.load_sweep(path, list(overrides))


def test_plan_has_a_teacher_a_plain_and_a_distilled_student_per_point():
  base, configs, _ = _sweep("cch_digits.py", ":teachers")
  specs = cch.plan(configs)
  assert len(specs) == 3 * len(base.conditions) * base.num_seeds
  by_id = {s.run_id: s for s in specs}
  assert len(by_id) == len(specs)
  for s in specs:
    tags = s.tags_dict
    assert s.hparams_dict["teacher_blur"] == tags["condition"]
    assert s.hparams_dict["student_blur"] == 0.0
    if tags["role"] == "kd":
      teacher = by_id[s.needs_dict["teacher"]]
      assert teacher.seed == s.seed
      assert teacher.tags_dict["condition"] == tags["condition"]
    else:
      assert not s.needs_dict


@pytest.mark.parametrize("override, key", [
    ("knob=gamma", "config.knob"),
    ("candidates=both", "config.candidates"),
    ("mi.estimators=ksg,kde", "config.mi.estimators"),
    ("conditions=0.0,9.0", "conditions"),
    ("num_seeds=0", "config.num_seeds"),
])
def test_bad_config_is_refused_naming_the_key(override, key):
  _, configs, _ = _sweep("cch_digits.py", ":teachers,tiny", [override])
  with pytest.raises((UserError, ValueError), match=key.replace(".", r"\.")):
    cch.plan(configs)


def test_fixed_knobs_must_be_the_other_knobs():
  for mutate in (lambda f: f.update({"teacher_blur": 1.0}),
                 lambda f: f.pop("student_blur")):
    _, configs, _ = _sweep("cch_digits.py", ":teachers,tiny")
    with configs[0].unlocked():
      fixed = configs[0].fixed_knobs.to_dict()
      mutate(fixed)
      configs[0].fixed_knobs = fixed
    with pytest.raises(UserError, match=r"config\.fixed_knobs"):
      cch.plan(configs)


def test_choices_and_agreement_on_constructed_points():
  # Two seeds, three candidates; Δ picks the best in seed 0 (one sign
  # wrong: condition 0), and in seed 1 no gain is positive and no Δ either.
  pts = [{"seed": 0, "condition": c, "kd_gain": g, "d": d}
         for c, g, d in ((0, 1.0, -0.05), (1, 2.0, 0.5), (2, -1.0, -0.2))]
  pts += [{"seed": 1, "condition": c, "kd_gain": g, "d": d}
          for c, g, d in ((0, -0.5, -0.1), (1, -0.2, -0.3), (2, -0.1, -0.5))]
  assert cch.choices(pts, "d", abstain=True) == {
      "seeds": 2, "right": 2, "abstained": 1, "regret": 0.0}
  # Without abstaining, seed 1 picks condition 0 (gain −0.5, best −0.1).
  got = cch.choices(pts, "d", abstain=False)
  assert (got["right"], got["abstained"]) == (1, 0)
  assert got["regret"] == pytest.approx(0.2)
  a = cch.agreement(pts, "d")
  assert a["points"] == pytest.approx(5 / 6)
  assert a["majority"] == pytest.approx(4 / 6)  # four of six gains < 0
  # Condition means: Δ −0.075, 0.1, −0.35 against gains 0.25, 0.9, −0.55.
  assert a["conditions"] == pytest.approx(2 / 3)
  assert np.isnan(a["spearman"]) or -1 <= a["spearman"] <= 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cch"))
  base, configs, _ = _sweep("cch_synthetic.py", ":tiny")
  rows = experiments.run(configs, workdir, base=base, progress=False)
  return workdir, base, configs, rows


def test_tiny_study_writes_report_csv_figure_and_cache(tiny):
  workdir, base, _, rows = tiny
  assert len(rows) == 3 * len(base.conditions) * base.num_seeds
  for name in ("report.md", "summary.csv", "cch_delta_vs_gain.png",
               cch.CACHE):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  report = open(os.path.join(workdir, "report.md")).read()
  assert "## Does the criterion predict the KD gain?" in report
  assert "## Choosing the teacher" in report  # candidates = "teacher"
  with open(os.path.join(workdir, "summary.csv")) as f:
    lines = list(csv.DictReader(f))
  assert len(lines) == len(base.conditions) * base.num_seeds
  for line in lines:
    gain = float(line["kd_acc"]) - float(line["student_acc"])
    assert float(line["kd_gain"]) == pytest.approx(gain)
    assert float(line["delta"]) == pytest.approx(
        float(line["i_teacher_student"]) - float(line["i_student_label"]),
        abs=1e-5)
    assert np.isfinite(float(line["ncjsd"])) and float(line["ncjsd"]) >= 0


def test_features_are_the_ones_the_runs_were_evaluated_on(tiny):
  """Re-evaluating the stored networks on the recomputed inputs gives the
  accuracies the sweep recorded: same key, same views, same test input."""
  workdir, base, _, rows = tiny
  pairs = list(cch._pairs(rows).values())[:2]
  for pair, f in zip(pairs, cch.representations(rows, base, workdir, pairs)):
    n = len(f["labels"])
    for role, acc in (("teacher", f["teacher_acc"]),
                      ("no_kd", f["student_acc"])):
      # One test row may flip on a near-tie (another compiled program).
      assert acc == pytest.approx(tables.last(pair[role], "test_acc"),
                                  abs=1.5 / n)
    assert f["teacher"].shape == (n, 16) and f["student"].shape == (n, 16)


def test_report_reuses_cached_estimates(tiny, monkeypatch):
  workdir, base, configs, _ = tiny
  with open(os.path.join(workdir, cch.CACHE)) as f:
    cached = json.load(f)

  def refuse(*args, **kwargs):
    raise AssertionError("an estimate was recomputed")

  monkeypatch.setattr(cch.cch_lib, "cch_gap", refuse)
  before = open(os.path.join(workdir, "summary.csv")).read()
  experiments.run(configs, workdir, base=base, progress=False)
  assert open(os.path.join(workdir, "summary.csv")).read() == before
  with open(os.path.join(workdir, cch.CACHE)) as f:
    assert json.load(f) == cached
