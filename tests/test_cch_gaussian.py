"""The CCH joint-Gaussian test bed (``linear_kd`` stage, ``cch_gaussian``
experiment): closed forms against independent float64 NumPy, vmap, the
sweep end to end at the tiny config, and config errors."""

import csv
import itertools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import cch_gaussian
from ntdh_jax.info import gaussian
from ntdh_jax.train import stages
from ntdh_jax.train import sweep
from ntdh_jax.train.stages import linear_kd as lk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "sweeps", "configs", "cch_gaussian.py")
# Small and fast; n > d so the fits are well posed.
STATIC = {"latent": 2, "d_teacher": 6, "d_student": 5, "n": 40,
          "lambdas": (0.1, 1.0), "ridge": 0.02, "label_noise": 0.5}
CONFIG_OBJ = lk.LinearKDConfig(**STATIC)
KNOBS = (0.6, 0.5, 0.8)  # ω, σ₁, σ₂
# One run as one compiled function (knobs traced; the config static).
closed_form = jax.jit(lk.closed_form, static_argnums=0)


def _hp(overlap, teacher_noise, student_noise):
  return dict(zip(lk.KNOBS, (overlap, teacher_noise, student_noise)))


def _numpy_generator(c, knobs, z):
  """The module docstring's generator written out in float64 NumPy (not
  through ``loading``): rows [x₁, x₂, y] for latent/noise draws ``z``."""
  mix = {k: v.astype(np.float64) for k, v in lk.mixing(c).items()}
  omega, s1, s2 = knobs
  k, d1, d2 = c.latent, c.d_teacher, c.d_student
  sa, sb = z[:, :k], z[:, k:2 * k]
  e1, e2 = z[:, 2 * k:2 * k + d1], z[:, 2 * k + d1:2 * k + d1 + d2]
  ey = z[:, -1]
  x1 = (np.sqrt(omega) * sa + np.sqrt(1 - omega) * sb) @ mix[
      "teacher_loading"].T + s1 * e1
  x2 = sa @ mix["student_loading"].T + s2 * e2
  y = np.concatenate([sa, sb], 1) @ mix["beta"] + c.label_noise * ey
  return np.concatenate([x1, x2, y[:, None]], 1)


def _numpy_sigma(c, knobs):
  """Σ of the generator in float64 from its definition (Cov = E[rows rowsᵀ]
  with rows linear in z: the generator applied to the identity)."""
  m = 2 * c.latent + c.d_teacher + c.d_student + 1
  l_mat = _numpy_generator(c, knobs, np.eye(m)).T
  return l_mat @ l_mat.T


@pytest.fixture(scope="module")
def run():
  """One run of the small config: ``(final, outputs, rows drawn)``."""
  key = jax.random.key(3)
  final, outputs = closed_form(CONFIG_OBJ, lk.mixing(CONFIG_OBJ), KNOBS,
                                key)
  assert sorted(final) == sorted(lk.metric_names(CONFIG_OBJ))
  l_mat = lk.loading(CONFIG_OBJ, lk.mixing(CONFIG_OBJ), *KNOBS)
  rows = lk.draw(CONFIG_OBJ, l_mat, key)
  to_np = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float64), t)
  return to_np(final), to_np(outputs), to_np(rows)


def test_mixing_gives_unit_signal_variance():
  mix = lk.mixing(CONFIG_OBJ)
  np.testing.assert_allclose(np.linalg.norm(mix["teacher_loading"], axis=1),
                             1, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(mix["student_loading"], axis=1),
                             1, atol=1e-6)
  np.testing.assert_allclose(np.sum(mix["beta"] ** 2), 1, atol=1e-6)


def test_population_sigma_is_the_generator_covariance():
  """Σ = L Lᵀ of the stage equals the covariance of the documented
  generator, exactly (NumPy float64) and against the sample covariance of
  200,000 draws."""
  sigma = np.asarray(lk.loading(CONFIG_OBJ, lk.mixing(CONFIG_OBJ), *KNOBS),
                     np.float64)
  sigma = sigma @ sigma.T
  np.testing.assert_allclose(sigma, _numpy_sigma(CONFIG_OBJ, KNOBS),
                             atol=1e-6)
  m = sigma.shape[0] + 2 * CONFIG_OBJ.latent
  rows = _numpy_generator(CONFIG_OBJ, KNOBS,
                          np.random.default_rng(0).standard_normal(
                              (200_000, m)))
  # Entries are O(1); the sample covariance's s.e. is ~ sqrt(2 / N) ≈ 0.003.
  np.testing.assert_allclose(np.cov(rows.T), sigma, atol=0.02)


def test_kd_student_is_the_stacked_least_squares(run):
  """The closed form w₂(λ) = (X₂ᵀX₂ + nγI)⁻¹X₂ᵀ(y + λX₁w₁)/(1+λ) minimises
  (1/n)‖y − X₂w‖² + λ(1/n)‖X₁w₁ − X₂w‖² + (1+λ)γ‖w‖²: the float64 NumPy
  least squares of the stacked system; the teacher likewise."""
  _, outputs, (x1, x2, y) = run
  c = CONFIG_OBJ
  n = c.n

  def lstsq(blocks_a, blocks_b):
    return np.linalg.lstsq(np.concatenate(blocks_a),
                           np.concatenate(blocks_b), rcond=None)[0]

  w1 = lstsq([x1 / np.sqrt(n), np.sqrt(c.ridge) * np.eye(c.d_teacher)],
             [y / np.sqrt(n), np.zeros(c.d_teacher)])
  np.testing.assert_allclose(outputs["teacher"], w1, rtol=1e-4, atol=1e-5)
  h = x1 @ outputs["teacher"]
  for lam, got in zip((0.0,) + c.lambdas, outputs["students"]):
    want = lstsq(
        [x2 / np.sqrt(n), np.sqrt(lam / n) * x2,
         np.sqrt((1 + lam) * c.ridge) * np.eye(c.d_student)],
        [y / np.sqrt(n), np.sqrt(lam / n) * h, np.zeros(c.d_student)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=lam)


def test_delta_is_the_population_correlations_mi(run):
  """Δ and its MI terms against ``correlation_mi`` of the correlations of
  H₁ = w₁*ᵀx₁, H₂ = w₂*ᵀx₂ and Y computed independently in float64."""
  final, outputs, _ = run
  sigma = _numpy_sigma(CONFIG_OBJ, KNOBS)
  d1, d2 = CONFIG_OBJ.d_teacher, CONFIG_OBJ.d_student
  i1, i2, iy = np.arange(d1), d1 + np.arange(d2), d1 + d2
  s = lambda a, b: sigma[np.ix_(np.atleast_1d(a), np.atleast_1d(b))]
  w1 = np.linalg.solve(s(i1, i1), s(i1, iy)).ravel()
  w2 = np.linalg.solve(s(i2, i2), s(i2, iy)).ravel()

  def rho(a, wa, b, wb):
    cov = wa @ s(a, b) @ wb
    return cov / np.sqrt((wa @ s(a, a) @ wa) * (wb @ s(b, b) @ wb))

  one = np.ones(1)
  mi_12 = float(gaussian.correlation_mi(rho(i1, w1, i2, w2)))
  mi_2y = float(gaussian.correlation_mi(rho(i2, w2, iy, one)))
  assert final["mi_teacher_student"] == pytest.approx(mi_12, abs=2e-5)
  assert final["mi_student_label"] == pytest.approx(mi_2y, abs=2e-5)
  assert final["delta"] == pytest.approx(mi_12 - mi_2y, abs=4e-5)
  # With the run's fitted teacher in place of w₁*.
  fitted = float(gaussian.correlation_mi(
      rho(i1, outputs["teacher"], i2, w2))) - mi_2y
  assert final["delta_fitted"] == pytest.approx(fitted, abs=4e-5)


def test_delta_is_negative_without_overlap():
  """ω = 0: the teacher sees only the latent block the student cannot, so
  I(H₁;H₂) = 0 and Δ = −I(H₂;Y) < 0."""
  final, _ = closed_form(CONFIG_OBJ, lk.mixing(CONFIG_OBJ),
                         (0.0, 0.5, 0.8), jax.random.key(0))
  assert float(final["mi_teacher_student"]) == pytest.approx(0, abs=1e-6)
  assert float(final["delta"]) < 0


def test_risks_match_monte_carlo(run):
  """Every population risk against the mean squared error on 400,000 fresh
  draws (s.e. ≈ risk · sqrt(2 / N) ≈ 0.002); gains are risk differences."""
  final, outputs, _ = run
  c = CONFIG_OBJ
  m = 2 * c.latent + c.d_teacher + c.d_student + 1
  rows = _numpy_generator(c, KNOBS, np.random.default_rng(1).standard_normal(
      (400_000, m)))
  x1, x2, y = (rows[:, :c.d_teacher],
               rows[:, c.d_teacher:c.d_teacher + c.d_student], rows[:, -1])
  mse = lambda pred: float(np.mean((y - pred) ** 2))
  assert final["risk_teacher"] == pytest.approx(
      mse(x1 @ outputs["teacher"]), abs=0.01)
  assert final["risk_nokd"] == pytest.approx(
      mse(x2 @ outputs["students"][0]), abs=0.01)
  sigma = _numpy_sigma(c, KNOBS)
  i2 = slice(c.d_teacher, c.d_teacher + c.d_student)
  w_opt = np.linalg.solve(sigma[i2, i2], sigma[i2, -1])
  assert final["risk_student_opt"] == pytest.approx(mse(x2 @ w_opt),
                                                    abs=0.01)
  for i, lam in enumerate(c.lambdas):
    w = outputs["students"][1 + i]
    assert final[f"risk_kd_{i}"] == pytest.approx(mse(x2 @ w), abs=0.01)
    gain = final["risk_nokd"] - final[f"risk_kd_{i}"]
    assert final[f"gain_{i}"] == pytest.approx(gain, abs=1e-5)
    excess = final["risk_nokd"] - final["risk_student_opt"]
    assert final[f"rel_gain_{i}"] == pytest.approx(gain / excess, rel=1e-3)
    shrunk = outputs["students"][0] / (1 + lam)
    exact = lambda w: (w - w_opt) @ sigma[i2, i2] @ (w - w_opt)
    assert final[f"gain_vs_shrink_{i}"] == pytest.approx(
        exact(shrunk) - exact(w), abs=1e-5)


def test_vmapped_runs_equal_looped_and_trace_once():
  """The program vmapped over knob points and seeds gives each run's
  numbers; new knob values reuse the one trace."""
  program = stages.build_program("linear_kd", STATIC)
  data = program.load()
  train = jax.jit(jax.vmap(chex.assert_max_traces(program.train, n=1),
                           in_axes=(0, 0, None)))
  grid = list(itertools.product((0.0, 1.0), (0.3, 2.0)))
  hp = {name: jnp.asarray(values, jnp.float32) for name, values in zip(
      lk.KNOBS, zip(*[(o, t, 0.7) for o, t in grid]))}
  seeds = jnp.arange(len(grid))
  final, _, outputs = train(hp, jax.vmap(jax.random.key)(seeds), data)
  single = jax.jit(program.train)
  for j in range(len(grid)):
    one, _, out = single(
        {k: v[j] for k, v in hp.items()}, jax.random.key(j), data)
    for name in one:
      np.testing.assert_allclose(final[name][j], one[name], rtol=2e-4,
                                 atol=1e-6, err_msg=name)
    np.testing.assert_allclose(outputs["students"][j], out["students"],
                               rtol=2e-4, atol=1e-6)
  moved = {k: v + 0.1 for k, v in hp.items()}
  train(moved, jax.vmap(jax.random.key)(seeds), data)  # no second trace


def test_plan_is_one_program_per_n():
  full = config_lib.load_config(CONFIG)
  assert full.num_seeds >= 50 and len(full.ns) >= 3
  base, configs, _ = config_lib.load_sweep(CONFIG + ":quick")
  specs = cch_gaussian.plan(configs)
  points = len(cch_gaussian.knob_points(base))
  assert len(specs) == len(base.ns) * points * base.num_seeds
  assert len({s.signature for s in specs}) == len(base.ns)
  assert len({s.run_id for s in specs}) == len(specs)


@pytest.mark.parametrize("override, message", [
    ("knobs.overlap=0,1.5",
     r"config.knobs.overlap \(hyperparameter 'cch_overlap' of stage "
     r"'linear_kd'\) must be a finite number in \[0, 1\], got 1.5"),
    ("knobs.teacher_noise=0",
     r"config.knobs.teacher_noise \(hyperparameter 'cch_teacher_noise' .* "
     r"must be a finite number > 0, got 0"),
    ("knobs.student_noise=nan", r"config.knobs.student_noise .* got nan"),
    ("ns=40,0", r"config.ns must hold integers >= 1"),
    ("num_seeds=0", r"config.num_seeds must be an integer >= 1"),
    ("setup.lambdas=1.0,0.5", r"lambdas must be a non-empty increasing"),
    ("setup.ridge=0", r"ridge must be a finite number > 0"),
])
def test_bad_config_values_are_refused_before_the_workdir(tmp_path, override,
                                                          message):
  base, configs, fingerprint = config_lib.load_sweep(CONFIG + ":tiny",
                                                     [override])
  workdir = tmp_path / "never"
  with pytest.raises(UserError, match=message):
    experiments.run(configs, str(workdir), base=base, progress=False,
                    fingerprint=fingerprint)
  assert not workdir.exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cch_gaussian"))
  base, configs, fingerprint = config_lib.load_sweep(CONFIG + ":tiny")
  rows = experiments.run(configs, workdir, base=base, progress=False,
                         fingerprint=fingerprint)
  return workdir, base, configs, fingerprint, rows


def test_tiny_study_writes_report_summary_and_figures(tiny):
  workdir, base, _, _, rows = tiny
  points = len(cch_gaussian.knob_points(base))
  assert len(rows) == len(base.ns) * points * base.num_seeds
  for name in ("report.md", "summary.csv", *cch_gaussian.FIGURES):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "summary.csv")) as f:
    summary = list(csv.DictReader(f))
  assert len(summary) == len(base.ns) * points * len(base.setup.lambdas)
  assert {int(r["n"]) for r in summary} == set(base.ns)
  deltas = {float(r["delta"]) for r in summary}
  assert min(deltas) < 0 < max(deltas)  # the tiny grid spans both signs
  report = open(os.path.join(workdir, "report.md")).read()
  assert "not the paper's Theorem 1" in report
  for section in ("## What the numbers show", "sign agreement",
                  "Shrinkage control", "n/d dependence", "λ dependence",
                  *cch_gaussian.FIGURES):
    assert section in report, section


def test_rerun_resumes_without_training(tiny, monkeypatch):
  workdir, base, configs, fingerprint, rows = tiny

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")

  monkeypatch.setattr(sweep, "_run_chunk", no_training)
  os.remove(os.path.join(workdir, "report.md"))
  again = experiments.run(configs, workdir, base=base, progress=False,
                          fingerprint=fingerprint)
  by_id = lambda rs: sorted(rs, key=lambda r: r["run_id"])
  assert by_id(again) == by_id(rows)
  assert os.path.getsize(os.path.join(workdir, "report.md")) > 0


def test_static_config_is_normalised():
  assert stages.normalise("linear_kd", {}) == stages.normalise(
      "linear_kd", {"lambdas": [0.05, 0.1, 0.2, 0.5, 1]})
  with pytest.raises(ValueError, match="unknown keys"):
    stages.normalise("linear_kd", {"d": 3})
