"""Hyperparameters are checked on the host, before anything is written.

They are traced (a sweep vmaps them), so a bad value could not raise inside
the program: γ = 2 trained γ = 1 and was labelled 2, T = 0 trained with NaN,
a negative learning rate ran gradient ascent, a mask ratio of 1.5 switched
the KD term off, ``num_seeds=0`` wrote an empty report. Each is now refused
while the runs are planned, naming the config key, the value and the range,
and the workdir is never created.
"""

import math
import os

import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax import hparams
from ntdh_jax.errors import UserError
from ntdh_jax.train import stages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NTDH = os.path.join(REPO, "sweeps", "configs", "ntdh_synthetic.py:quick")
DIGITS = os.path.join(REPO, "sweeps", "configs", "digits_kd.py:quick")


@pytest.mark.parametrize("config, override, message", [
    (NTDH, "gaps=2.0", r"config.gaps \(hyperparameter 'gamma' of stage "
     r"'teacher'\) must be a multiple of 0.05 in \[0, 1\], got 2.0"),
    (NTDH, "gaps=0,0.33", r"config.gaps .* got 0.33"),
    (NTDH, "temperature=0", r"config.temperature \(hyperparameter "
     r"'temperature' of stage 'student'\) must be a finite number > 0, "
     r"got 0.0"),
    (NTDH, "temperature=inf", r"config.temperature .* got inf"),
    (NTDH, "presets.tuned.lr=-0.01",
     r"config.presets.tuned.lr .* must be a finite number > 0, got -0.01"),
    (NTDH, "alg2.ratios=0,1.5", r"config.alg2.ratios \(hyperparameter "
     r"'mask_ratio' .* must be a finite number in \[0, 1\), got 1.5"),
    (NTDH, "alg1.ratios=1.0", r"config.alg1.ratios .* got 1.0"),
    (NTDH, "kd_weight=nan", r"config.kd_weight .* >= 0, got nan"),
    (NTDH, "weights.betas=-1", r"config.weights.betas .* >= 0, got -1"),
    (NTDH, "presets.tuned.momentum=1", r"presets.tuned.momentum .* got 1"),
    (NTDH, "alg1.momentum=-0.5", r"config.alg1.momentum .* got -0.5"),
    (NTDH, "num_seeds=0", r"config.num_seeds must be an integer >= 1, got 0"),
    (NTDH, "alg1.repeats=0", r"config.alg1.repeats must be an integer >= 1"),
    (NTDH, "gaps=", r"config.gaps must be a non-empty list, got \[\]"),
    (DIGITS, "train.lr=0", r"config.train.lr .* > 0, got 0"),
    (DIGITS, "num_seeds=-1", r"config.num_seeds must be an integer >= 1"),
])
def test_bad_values_are_refused_before_the_workdir_exists(tmp_path, config,
                                                          override, message):
  base, configs, fingerprint = config_lib.load_sweep(config, [override])
  workdir = tmp_path / "w"
  with pytest.raises(UserError, match=message):
    experiments.run(configs, str(workdir), base=base, progress=False,
                    fingerprint=fingerprint)
  assert not workdir.exists()


def test_a_kd_method_value_names_its_method(tmp_path):
  base, configs, _ = config_lib.load_sweep(DIGITS)
  configs[0].methods.kd.temperature = -2.0
  with pytest.raises(UserError, match=r"config.methods.kd.temperature"):
    experiments.run(configs, str(tmp_path / "w"), base=base, progress=False)


_STATIC = {"data": {"name": "ntdh"}, "model": {"name": "mlp", "hidden": [4]},
           "epochs": 2, "eval_every": 1}


@pytest.mark.parametrize("stage, static, hp, message", [
    ("teacher", {}, {"gamma": 0.5}, r"stage 'teacher' needs hyperparameters "
     r"\['lr', 'momentum'\]"),
    ("student", {"distill": "dkd"}, {"gamma": 0.5, "lr": 0.1, "momentum": 0,
                                     "kd_weight": 1, "temperature": 1,
                                     "alpha": 1}, r"needs .*\['beta'\]"),
    ("student", {"distill": "kl", "kd_form": "convex"},
     {"gamma": 0.5, "lr": 0.1, "momentum": 0, "kd_weight": 1.5,
      "temperature": 1}, r"'kd_weight' .* in \[0, 1\], got 1.5"),
    ("teacher", {}, {"gamma": 0.5, "lr": "0.1", "momentum": 0},
     r"'lr' of stage 'teacher' must be a number, got '0.1' \(str\)"),
    ("teacher", {}, {"gamma": 0.5, "lr": True, "momentum": 0},
     r"must be a number, got True \(bool\)"),
    ("teacher", {"feature_mask": "importance"},
     {"gamma": 0.5, "lr": 0.1, "momentum": 0, "mask_ratio": 0.5,
      "mask_kind": 3}, r"'mask_kind' .* an integer in \[0, 2\], got 3"),
    ("teacher", {"data": {"name": "mfh"}},
     {"overlap": 2.5, "lr": 0.1, "momentum": 0},
     r"'overlap' .* an integer in \[0, 10\], got 2.5"),
])
def test_run_spec_checks_every_stage_hyperparameter(stage, static, hp,
                                                    message):
  with pytest.raises(UserError, match=message):
    stages.run_spec(stage, {**_STATIC, **static}, hp, 0)


def test_values_in_range_and_unread_ones_pass():
  # Adam reads no momentum; it may still be given, as the NTDH planner does
  # for both optimisers (and must still be a valid momentum).
  spec = stages.run_spec("teacher", {**_STATIC, "optimizer": "adam"},
                         {"gamma": 0.15, "lr": 1e-3, "momentum": 0.9}, 0)
  assert spec.hparams_dict["gamma"] == pytest.approx(0.15)
  stages.run_spec("teacher", _STATIC,
                  {"gamma": np.float32(1.0), "lr": np.asarray(0.1),
                   "momentum": 0}, 0)


@pytest.mark.parametrize("rng, inside, outside", [
    (hparams.POSITIVE, [1e-30, 3.0], [0.0, -1.0, math.inf, math.nan]),
    (hparams.NON_NEGATIVE, [0.0, 7.0], [-1e-9, math.inf, math.nan]),
    (hparams.FRACTION, [0.0, 0.999], [1.0, -0.1, math.nan]),
    (hparams.Range(0, 1, step=0.05), [0.0, 0.15, 0.35, 1.0],
     [0.33, 1.05, -0.05]),
    (hparams.Range(0, 2, integer=True), [0, 1, 2], [0.5, 3, -1]),
])
def test_range_membership(rng, inside, outside):
  assert all(rng.contains(v) for v in inside)
  assert not any(rng.contains(v) for v in outside)
