"""CCH in the joint-Gaussian test bed: analytic Δ against the measured KD gain.

  ntdh-sweep --config sweeps/configs/cch_gaussian.py --workdir runs/cch_gaussian

A reconstruction of the paper's theory setting (``ntdh_jax.experiments.
cch_gaussian``; the ``linear_kd`` stage documents the generator), not its
Theorem 1. The default: 60 knob points (overlap ω × teacher noise σ₁ ×
student noise σ₂, regular grids chosen before any gain was seen; ω = 0 gives
Δ < 0 by construction, ω = 1 with a clean teacher Δ > 0) × 50 seeds × three
training-set sizes n = 40, 160, 640 (n/d₂ = 2, 8, 32) — 9,000 closed-form
runs, three compiled programs, a few minutes on a 2-core CPU.

Arguments (``:arg``): ``quick`` (10 seeds, a 3 × 2 × 2 knob grid: a smoke
run) and ``tiny`` (2 seeds, 2 knob points with Δ of both signs, n = 40, 80,
two λ: every table, figure and sentence of the report, for tests and
notebooks; its numbers are noise).
"""

import ml_collections

from ntdh_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  c = ml_collections.ConfigDict()
  c.experiment = "cch_gaussian"
  c.seed = 0  # seeds are seed, seed + 1, ..., seed + num_seeds - 1
  c.num_seeds = 50
  c.ns = [40, 160, 640]  # training rows: one compiled program each
  # The linear_kd stage's static options (its LinearKDConfig), less n.
  c.setup = ml_collections.ConfigDict(dict(
      latent=4, d_teacher=20, d_student=20,
      lambdas=[0.05, 0.1, 0.2, 0.5, 1.0], ridge=0.01, label_noise=0.5,
      mixing_seed=0))
  # Traced knobs (vmapped): their product is the knob grid.
  c.knobs = ml_collections.ConfigDict(dict(
      overlap=[0.0, 0.25, 0.5, 0.75, 1.0],
      teacher_noise=[0.25, 0.5, 1.0, 2.0],
      student_noise=[0.5, 1.0, 2.0]))
  if arg.quick:
    c.num_seeds = 10
    c.knobs.update(overlap=[0.0, 0.5, 1.0], teacher_noise=[0.25, 1.0],
                   student_noise=[0.5, 2.0])
  if arg.tiny:
    c.num_seeds = 2
    c.ns = [40, 80]
    c.setup.lambdas = [0.1, 1.0]
    c.knobs.update(overlap=[0.0, 1.0], teacher_noise=[0.25],
                   student_noise=[1.0])
  return c
