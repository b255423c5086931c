"""The advisor's calibration study (experiment ``advisor``): plan, the
truth of a condition, the threshold search, the validation table, and the
tiny study end to end with its cache."""

import csv
import json
import math
import os

import numpy as np
import pytest

from ntdh_jax import advisor
from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import advisor_calibration as calib
from ntdh_jax.experiments import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "sweeps", "configs", "advisor_calibration.py")
HELPS, NEUTRAL, HURTS = advisor.HELPS, advisor.NEUTRAL, advisor.HURTS


def _sweep(arg="", overrides=()):
  return config_lib.load_sweep(CONFIG + arg, list(overrides))


def test_full_plan_has_five_runs_per_pair_and_shares_the_unblurred_digits():
  base, configs, _ = _sweep()
  specs = calib.plan(configs)
  per_pair = 3 + len(base.mask_ratios)
  pairs = sum(len(p.conditions) * p.num_seeds for p in base.parts.values())
  assert len(specs) == per_pair * pairs
  by_id = {s.run_id: s for s in specs}
  # σ = 0 in both digits parts is one study: its runs are planned twice.
  shared = per_pair * base.parts.digits_student_blur.num_seeds
  assert len(by_id) == len(specs) - shared
  for s in specs:
    tags = s.tags_dict
    part = base.parts[tags["part"]]
    assert s.hparams_dict[part.knob] == tags["condition"]
    if tags["role"] != "kd":
      assert not s.needs_dict
      continue
    teacher = by_id[s.needs_dict["teacher"]]
    assert teacher.seed == s.seed
    assert teacher.hparams_dict[part.knob] == tags["condition"]
    masked = s.static_dict["sample_mask"] == "ncjsd"
    assert masked == (tags["mask_ratio"] > 0)
    if masked:
      assert s.hparams_dict["mask_ratio"] == tags["mask_ratio"]
      assert s.hparams_dict["mask_kind"] == 0  # "true"


@pytest.mark.parametrize("override, key", [
    ("calibrate_on=digits", "config.calibrate_on"),
    ("mask_ratios=0.25,1.0", "config.mask_ratios"),
    ("mask_ratios=0.25,0.25", "config.mask_ratios"),
    ("parts.synthetic.num_seeds=1", "config.parts.synthetic.num_seeds"),
    ("parts.synthetic.num_seeds=0", "config.parts.synthetic.num_seeds"),
    ("parts.synthetic.knob=blur", "config.parts.synthetic.knob"),
    ("parts.digits_student_blur.conditions=0.0,99.0", "conditions"),
])
def test_bad_config_is_refused_naming_the_key(override, key):
  _, configs, _ = _sweep("", [override])
  with pytest.raises((UserError, ValueError), match=key.replace(".", r"\.")):
    calib.plan(configs)


@pytest.mark.parametrize("gains, expected", [
    ([1.0, 1.2, 0.8, 1.1], HELPS),
    ([-1.0, -1.2, -0.8, -1.1], HURTS),
    ([1.0, -1.0, 0.5, -0.5], NEUTRAL),
    # mean 0.5, std 0.5, 2 SE = 0.5: exactly on the edge is not "helps".
    ([0.0, 1.0, 0.0, 1.0], NEUTRAL),
])
def test_truth_is_the_mean_gain_two_standard_errors_from_zero(gains,
                                                              expected):
  assert calib.truth(gains) == expected


def _point(part, condition, seed, gain, ncjsd, delta, half=0.001):
  return {"part": part, "condition": condition, "seed": seed,
          "kd_gain": gain, "gain@0.25": gain - 1.0,
          "ncjsd.value": ncjsd, "ncjsd.low": ncjsd - half,
          "ncjsd.high": ncjsd + half, "kl.value": 1.0, "kl.low": 1.0,
          "kl.high": 1.0,
          "delta.value": delta, "delta.low": delta - half,
          "delta.high": delta + half,
          "kept_ncjsd": {"0.0": ncjsd, "0.25": ncjsd / 2}}


def _separable():
  """Three conditions × three seeds: low NCJSD / high Δ helps, middling is
  neutral, high NCJSD / low Δ hurts."""
  pts = []
  for c, (gains, ncjsd, delta) in enumerate((
      ([2.0, 2.2, 1.8], 0.05, 0.9), ([0.5, -0.5, 0.1], 0.2, 0.0),
      ([-2.0, -1.8, -2.2], 0.4, -0.8))):
    for seed, g in enumerate(gains):
      pts.append(_point("a", float(c), seed, g, ncjsd + 0.01 * seed,
                        delta + 0.01 * seed))
  return pts


def test_calibration_separates_separable_points_and_validation_scores_it():
  pts = _separable()
  conds = calib.conditions(pts)
  assert [conds[("a", float(c))]["truth"] for c in range(3)] == [
      HELPS, NEUTRAL, HURTS]
  rule = calib.calibrate(pts, conds)
  advisor.check_rule(rule)
  assert 0.07 < rule.ncjsd_helps < 0.2 and 0.22 < rule.ncjsd_hurts < 0.4
  assert 0.02 < rule.delta_helps < 0.9 and -0.8 < rule.delta_hurts < 0.0
  result = calib.validation(pts, conds, rule, calib.verdicts(pts, rule),
                            pts)["a"]
  assert result["majority"] == pytest.approx(1 / 3)
  for signal in calib.SIGNALS:
    assert result[signal]["accuracy"] == 1.0
    assert result[signal]["rho_conditions"] == pytest.approx(1.0)
  # Masking lowers every gain here, and NCJSD/2 of the neutral condition
  # (0.1) qualifies at 25 %: one condition of three is advised wrongly.
  assert result["mask"]["right"] == pytest.approx(2 / 3)
  assert result["mask"]["never_mask"] == 1.0
  assert result["mask"]["regret"] == pytest.approx(1 / 3)


def test_votes_follow_the_intervals_and_the_kl_floor():
  pts = [_point("a", 0.0, 0, 1.0, 0.1, 0.5, half=0.05)]
  rule = advisor.Rule(ncjsd_helps=0.12, ncjsd_hurts=0.3, delta_helps=0.5,
                      delta_hurts=-0.5)
  # The NCJSD interval [0.05, 0.15] straddles 0.12; Δ's [0.45, 0.55]
  # straddles 0.5: both neutral although both points are on the helps side.
  votes = calib.verdicts(pts, rule)
  assert (votes["ntdh"][0], votes["cch"][0]) == (NEUTRAL, NEUTRAL)
  pts[0].update({"ncjsd.high": 0.11, "delta.low": 0.51})
  votes = calib.verdicts(pts, rule)
  assert (votes["ntdh"][0], votes["cch"][0], votes["combined"][0]) == (
      HELPS, HELPS, HELPS)
  pts[0]["kl.high"] = advisor.DEFAULT_RULE.kl_floor / 2
  assert calib.verdicts(pts, rule)["ntdh"][0] == NEUTRAL


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("advisor"))
  base, configs, _ = _sweep(":tiny")
  rows = experiments.run(configs, workdir, base=base, progress=False)
  return workdir, base, configs, rows


def test_tiny_study_writes_report_csv_figure_and_cache(tiny):
  workdir, base, _, rows = tiny
  for name in ("report.md", "summary.csv", "advisor_calibration.png",
               calib.CACHE):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  report = open(os.path.join(workdir, "report.md")).read()
  for heading in ("## Accuracy and rank correlation", "## The mask advice",
                  "### digits_teacher_blur"):
    assert heading in report
  assert "digits_student_blur (calibration)" in report
  with open(os.path.join(workdir, "summary.csv")) as f:
    lines = list(csv.DictReader(f))
  # The shared σ = 0 runs count in both parts: no part loses a condition.
  expected = sum(len(p.conditions) * p.num_seeds
                 for p in base.parts.values())
  assert len(lines) == expected
  for part, p in base.parts.items():
    got = {float(l["condition"]) for l in lines if l["part"] == part}
    assert got == set(p.conditions)
  for line in lines:
    assert 0 <= float(line["ncjsd.value"]) <= math.log(2)
    assert float(line["ncjsd.low"]) <= float(line["ncjsd.high"])
    # The gains are the KD students' test accuracy over the no-KD one's.
    group = calib._groups(rows, base)[line["part"]][
        (float(line["condition"]), int(line["seed"]))]
    no_kd = tables.last(group["no_kd"], "test_acc")
    for r in [0.0] + list(base.mask_ratios):
      column = "kd_gain" if r == 0 else f"gain@{r:g}"
      assert float(line[column]) == pytest.approx(
          100 * (tables.last(group[("kd", r)], "test_acc") - no_kd))
    assert line["truth"] in advisor.VERDICTS
    for signal in calib.SIGNALS:
      assert line[f"vote.{signal}"] in advisor.VERDICTS


def test_report_reuses_cached_diagnoses(tiny, monkeypatch):
  workdir, base, configs, _ = tiny
  with open(os.path.join(workdir, calib.CACHE)) as f:
    cached = json.load(f)

  def refuse(*args, **kwargs):
    raise AssertionError("a diagnosis was recomputed")

  monkeypatch.setattr(calib.advisor, "diagnose", refuse)
  before = open(os.path.join(workdir, "report.md")).read()
  experiments.run(configs, workdir, base=base, progress=False)
  assert open(os.path.join(workdir, "report.md")).read() == before
  with open(os.path.join(workdir, calib.CACHE)) as f:
    assert json.load(f) == cached


def test_calibrated_thresholds_in_the_report_are_the_rule_it_validated(tiny):
  workdir, base, _, rows = tiny
  pts = calib.points(rows, base, workdir)
  conds = calib.conditions(pts)
  rule = calib.calibrate([p for p in pts if p["part"] in base.calibrate_on],
                         conds)
  report = open(os.path.join(workdir, "report.md")).read()
  assert f"**{rule.ncjsd_helps:.6g}**" in report
  assert f"**{rule.delta_hurts:.6g}**" in report
  # And the calibration is the best rule on its own part: no threshold
  # pair does better than the one found.
  cal = [p for p in pts if p["part"] in base.calibrate_on]
  truths = np.array([conds[(p["part"], p["condition"])]["truth"]
                     for p in cal], object)
  best = np.mean(calib.verdicts(cal, rule)["ntdh"] == truths)
  for helps in np.linspace(0, 0.69, 24):
    for hurts in np.linspace(helps, 0.69, 8):
      votes = calib._votes(cal, "ntdh", helps, hurts)
      assert np.mean(votes == truths) <= best + 1e-12
