"""``linear_kd``: the CCH joint-Gaussian test bed, linear teacher and student.

This is a **reconstruction** (``shared/notes/companions.md`` A.2, tagged
[R]) of the setting CCH (Xie, Xu & Sanguinetti, arXiv 2510.13182) analyses:
jointly Gaussian views, linear regression, KD as a quadratic penalty between
the student's and the teacher's predictions. It is **not** the paper's
Theorem 1, whose exact assumptions and constants were not available; it is
a test bed where the criterion Δ = I(H₁; H₂) − I(H₂; Y) is exact and the KD
gain is measured without test-set noise.

Generator (one loading matrix ``L``; sampling and the population covariance
both come from it, so they cannot disagree)::

    z = [s_a; s_b; ε₁; ε₂; ε_y] ~ N(0, I_m),  m = 2k + d₁ + d₂ + 1
    x₁ = A₁ (√ω s_a + √(1−ω) s_b) + σ₁ ε₁     (teacher view, d₁)
    x₂ = A₂ s_a + σ₂ ε₂                       (student view, d₂)
    y  = (β_aᵀ s_a + β_bᵀ s_b) / √2 + σ_y ε_y
    [x₁; x₂; y] = L z,   Σ = L Lᵀ

``s_a`` (``latent`` = k dims) is the part of the latent the student sees;
``s_b`` (k dims) the part it cannot see. ``A₁`` [d₁, k] and ``A₂`` [d₂, k]
have i.i.d. N(0, 1) entries with every row scaled to unit norm, and β_a,
β_b are N(0, I_k) directions of unit norm, all drawn once from
``np.random.default_rng(mixing_seed)`` (the program's ``load()``): every
feature's signal variance is 1 and so is the label's, whatever the knobs.

Traced knobs (``hparams.RANGES``):

* ``cch_overlap`` ω ∈ [0, 1]: the fraction of the teacher's latent signal
  variance that comes from the student's block ``s_a`` — the teacher's
  alignment with the student's latent (ω = 1: the teacher sees what the
  student sees; ω = 0: only what it cannot see, so H₁ ⟂ x₂ and Δ < 0).
* ``cch_teacher_noise`` σ₁ > 0 and ``cch_student_noise`` σ₂ > 0: each
  view's per-feature noise-to-signal standard deviation.

Per run (seed): draw ``n`` rows, fit the ridge teacher
w₁ = (X₁ᵀX₁ + nγI)⁻¹X₁ᵀy and, for λ = 0 and every λ of ``lambdas``, the KD
student minimising (1/n)‖y − X₂w‖² + λ(1/n)‖X₁w₁ − X₂w‖² + (1+λ)γ‖w‖²::

    w₂(λ) = (X₂ᵀX₂ + nγI)⁻¹ X₂ᵀ (y + λ X₁w₁) / (1 + λ)
          = (w₂(0) + λ w_h) / (1 + λ),  w_h = (X₂ᵀX₂ + nγI)⁻¹X₂ᵀX₁w₁

(the teacher is fitted on the same rows, as KD trains both on one paired
set). Every risk is the exact population risk from Σ, no test sample::

    R(w) = E(y − wᵀx₂)² = R* + (w − w₂*)ᵀ Σ₂₂ (w − w₂*),
    w₂* = Σ₂₂⁻¹Σ₂y,  R* = Σ_yy − Σ_y2 w₂*  (the optimal linear student)

and the KD gain R(w₂(0)) − R(w₂(λ)) = (w₂(0) − w₂(λ))ᵀΣ₂₂(w₂(0) + w₂(λ) −
2w₂*), a form without the cancellation of subtracting two risks (float32).

Δ (nats) uses H₁ = w₁*ᵀx₁ with the population teacher w₁* = Σ₁₁⁻¹Σ₁y and
H₂ = w₂*ᵀx₂, the optimal student (notes A.2): ``gaussian_mi`` of the 3 × 3
covariance of (H₁, H₂, Y). ``delta_fitted`` is the same with the run's
fitted teacher w₁ (a learned H₁, as CCH estimates it).

Final metrics (``i`` indexes ``lambdas``): ``delta``,
``mi_teacher_student`` I(H₁;H₂), ``mi_student_label`` I(H₂;Y),
``delta_fitted``, ``risk_teacher`` (the fitted teacher's population risk on
y), ``risk_student_opt`` (R*), ``risk_nokd``, and per λ ``risk_kd_i``,
``gain_i`` (``risk_nokd − risk_kd_i``), ``rel_gain_i`` (``gain_i`` over the
no-KD student's excess risk ``risk_nokd − R*``: 1 = KD reaches the optimal
linear student) and ``gain_vs_shrink_i`` (the risk of the no-KD student
shrunk by 1/(1+λ) — KD from a teacher that predicts 0 — minus
``risk_kd_i``: the gain beyond the shrinkage every KD target mix applies).

Outputs: ``{"teacher": w₁ f32[d₁], "students": f32[1 + len(lambdas), d₂]}``
(λ = 0 first). One segment, no curve (the fit is closed form).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import hparams as hparams_lib
from ntdh_jax.info import gaussian
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common

KNOBS = ("cch_overlap", "cch_teacher_noise", "cch_student_noise")


@dataclasses.dataclass(frozen=True)
class LinearKDConfig:
  """Static options of the linear test bed (one compiled program each).

  Attributes:
    latent: k, the dimension of each latent block (s_a, s_b).
    d_teacher: d₁, the teacher view's dimension.
    d_student: d₂, the student view's dimension.
    n: training rows per run (the teacher and the students share them).
    lambdas: the KD weights λ > 0, increasing (λ = 0 is always fitted).
    ridge: γ > 0 of the teacher and of every student (the student's is
      scaled by 1 + λ, so KD changes the target, not the regularisation).
    label_noise: σ_y >= 0, the label's noise standard deviation.
    mixing_seed: the seed of A₁, A₂, β_a and β_b.
  """
  OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
  latent: int = 4
  d_teacher: int = 20
  d_student: int = 20
  n: int = 160
  lambdas: tuple = (0.05, 0.1, 0.2, 0.5, 1.0)
  ridge: float = 0.01
  label_noise: float = 0.5
  mixing_seed: int = 0

  def __post_init__(self):
    for name in ("latent", "d_teacher", "d_student", "n", "mixing_seed"):
      value = getattr(self, name)
      low = 0 if name == "mixing_seed" else 1
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got "
                         f"{value!r}.")
    lambdas = self.lambdas
    if isinstance(lambdas, list):
      lambdas = tuple(lambdas)
    if (not isinstance(lambdas, tuple) or not lambdas
        or any(isinstance(v, bool) or not isinstance(v, (int, float))
               for v in lambdas)
        or not all(math.isfinite(v) and v > 0 for v in lambdas)
        or any(b <= a for a, b in zip(lambdas, lambdas[1:]))):
      raise ValueError("lambdas must be a non-empty increasing list of "
                       f"finite numbers > 0, got {self.lambdas!r}.")
    object.__setattr__(self, "lambdas", tuple(float(v) for v in lambdas))
    for name, low_open in (("ridge", True), ("label_noise", False)):
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, (int, float))
          or not math.isfinite(value) or value < 0
          or (low_open and value == 0)):
        raise ValueError(f"{name} must be a finite number "
                         f"{'>' if low_open else '>='} 0, got {value!r}.")
      object.__setattr__(self, name, float(value))


def hparams(c: LinearKDConfig) -> dict:
  """``{name: Range}`` of the knobs the program reads."""
  del c
  return {n: hparams_lib.RANGES[n] for n in KNOBS}


def mixing(c: LinearKDConfig) -> dict:
  """The fixed loadings (NumPy float32): ``teacher_loading`` A₁ [d₁, k],
  ``student_loading`` A₂ [d₂, k], ``beta`` [2k] = [β_a; β_b] / √2."""
  rng = np.random.default_rng(c.mixing_seed)

  def rows_unit(shape):
    a = rng.standard_normal(shape)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)

  a1 = rows_unit((c.d_teacher, c.latent))
  a2 = rows_unit((c.d_student, c.latent))
  beta = rows_unit((2, c.latent)).reshape(-1) / np.sqrt(2.0)
  return {"teacher_loading": a1.astype(np.float32),
          "student_loading": a2.astype(np.float32),
          "beta": beta.astype(np.float32)}


def loading(c: LinearKDConfig, arrays, overlap, teacher_noise,
            student_noise):
  """L [d₁ + d₂ + 1, 2k + d₁ + d₂ + 1]: rows [x₁; x₂; y], columns
  [s_a; s_b; ε₁; ε₂; ε_y] (the module docstring's generator)."""
  k, d1, d2 = c.latent, c.d_teacher, c.d_student
  a1 = jnp.asarray(arrays["teacher_loading"])
  a2 = jnp.asarray(arrays["student_loading"])
  beta = jnp.asarray(arrays["beta"])
  dtype = a1.dtype
  overlap = jnp.asarray(overlap, dtype)
  x1 = jnp.concatenate([
      jnp.sqrt(overlap) * a1, jnp.sqrt(1 - overlap) * a1,
      teacher_noise * jnp.eye(d1, dtype=dtype),
      jnp.zeros((d1, d2 + 1), dtype)], axis=1)
  x2 = jnp.concatenate([
      a2, jnp.zeros((d2, k + d1), dtype),
      student_noise * jnp.eye(d2, dtype=dtype),
      jnp.zeros((d2, 1), dtype)], axis=1)
  y = jnp.concatenate([
      beta, jnp.zeros((d1 + d2,), dtype),
      jnp.full((1,), c.label_noise, dtype)])[None, :]
  return jnp.concatenate([x1, x2, y], axis=0)


def blocks(c: LinearKDConfig, sigma):
  """``(Σ₁₁, Σ₁₂, Σ₁y, Σ₂₂, Σ₂y, Σ_yy)`` of Σ = L Lᵀ."""
  d1, d2 = c.d_teacher, c.d_student
  i1, i2, iy = slice(0, d1), slice(d1, d1 + d2), d1 + d2
  return (sigma[i1, i1], sigma[i1, i2], sigma[i1, iy], sigma[i2, i2],
          sigma[i2, iy], sigma[iy, iy])


def criterion(c: LinearKDConfig, sigma, w1, w2):
  """``(I(H₁;H₂), I(H₂;Y))`` in nats for H₁ = w₁ᵀx₁, H₂ = w₂ᵀx₂."""
  s11, s12, s1y, s22, s2y, syy = blocks(c, sigma)
  cov = jnp.array([
      [w1 @ s11 @ w1, w1 @ s12 @ w2, w1 @ s1y],
      [w1 @ s12 @ w2, w2 @ s22 @ w2, w2 @ s2y],
      [w1 @ s1y, w2 @ s2y, syy]])
  return gaussian.gaussian_mi(cov, 0, 1), gaussian.gaussian_mi(cov, 1, 2)


def ridge_fit(x, targets, ridge):
  """(XᵀX + nγI)⁻¹ Xᵀ targets; ``targets`` [n] or [n, t]."""
  n, d = x.shape
  gram = x.T @ x + n * ridge * jnp.eye(d, dtype=x.dtype)
  return jax.scipy.linalg.solve(gram, x.T @ targets, assume_a="pos")


def excess(sigma22, w, w_opt):
  """(w − w*)ᵀ Σ₂₂ (w − w*): a student's risk above R*."""
  e = w - w_opt
  return e @ sigma22 @ e


def risk_gap(sigma22, w_a, w_b, w_opt):
  """R(w_a) − R(w_b) = (w_a − w_b)ᵀ Σ₂₂ (w_a + w_b − 2w*)."""
  return (w_a - w_b) @ sigma22 @ (w_a + w_b - 2 * w_opt)


def draw(c: LinearKDConfig, l_mat, key):
  """``(x₁ [n, d₁], x₂ [n, d₂], y [n])``: n rows of L z, z ~ N(0, I)."""
  d1, d2 = c.d_teacher, c.d_student
  z = jax.random.normal(key, (c.n, l_mat.shape[1]), l_mat.dtype)
  rows = z @ l_mat.T
  return rows[:, :d1], rows[:, d1:d1 + d2], rows[:, d1 + d2]


def fit(c: LinearKDConfig, x1, x2, y):
  """``(w₁, w₂(0), w₂(λ) [len(lambdas), d₂])``: the ridge teacher, the
  student without KD and the KD students, closed form."""
  lam = np.asarray(c.lambdas, np.float32)
  w1 = ridge_fit(x1, y, c.ridge)
  fits = ridge_fit(x2, jnp.stack([y, x1 @ w1], axis=1), c.ridge)
  w0, wh = fits[:, 0], fits[:, 1]
  w_kd = (w0[None, :] + lam[:, None] * wh[None, :]) / (1 + lam[:, None])
  return w1, w0, w_kd


def metric_names(c: LinearKDConfig) -> list[str]:
  """The names of a run's final metrics (the module docstring's list)."""
  per_lambda = ("risk_kd", "gain", "rel_gain", "gain_vs_shrink")
  return ["delta", "mi_teacher_student", "mi_student_label", "delta_fitted",
          "risk_teacher", "risk_student_opt", "risk_nokd"] + [
              f"{name}_{i}" for i in range(len(c.lambdas))
              for name in per_lambda]


def closed_form(c: LinearKDConfig, arrays, knobs, key):
  """One run: ``(final metrics, outputs)`` for ``knobs`` (ω, σ₁, σ₂) and
  the sample of ``key``."""
  lam = np.asarray(c.lambdas, np.float32)
  l_mat = loading(c, arrays, *knobs)
  sigma = l_mat @ l_mat.T
  s11, _, s1y, s22, s2y, syy = blocks(c, sigma)
  w1, w0, w_kd = fit(c, *draw(c, l_mat, key))
  w_shrunk = w0[None, :] / (1 + lam[:, None])

  w1_opt = jnp.linalg.solve(s11, s1y)
  w2_opt = jnp.linalg.solve(s22, s2y)
  risk_opt = syy - s2y @ w2_opt
  excess0 = excess(s22, w0, w2_opt)
  gain = jax.vmap(lambda w: risk_gap(s22, w0, w, w2_opt))(w_kd)
  vs_shrink = jax.vmap(lambda ws, w: risk_gap(s22, ws, w, w2_opt))(
      w_shrunk, w_kd)
  risk_kd = risk_opt + jax.vmap(lambda w: excess(s22, w, w2_opt))(w_kd)
  mi_12, mi_2y = criterion(c, sigma, w1_opt, w2_opt)
  fitted_12, fitted_2y = criterion(c, sigma, w1, w2_opt)
  teacher_err = w1 - w1_opt
  final = {
      "delta": mi_12 - mi_2y,
      "mi_teacher_student": mi_12,
      "mi_student_label": mi_2y,
      "delta_fitted": fitted_12 - fitted_2y,
      "risk_teacher": (syy - s1y @ w1_opt) + teacher_err @ s11 @ teacher_err,
      "risk_student_opt": risk_opt,
      "risk_nokd": risk_opt + excess0,
  }
  for i in range(len(c.lambdas)):
    final[f"risk_kd_{i}"] = risk_kd[i]
    final[f"gain_{i}"] = gain[i]
    final[f"rel_gain_{i}"] = gain[i] / excess0
    final[f"gain_vs_shrink_{i}"] = vs_shrink[i]
  outputs = {"teacher": w1,
             "students": jnp.concatenate([w0[None, :], w_kd], axis=0)}
  return final, outputs


def make(c: LinearKDConfig) -> Program:
  arrays_host = mixing(c)

  def knobs(hparams):
    return tuple(common.hp(hparams, n) for n in KNOBS)

  def run(hparams, key, arrays):
    return closed_form(c, arrays, knobs(hparams),
                       jax.random.fold_in(key, common.DATA_KEY))

  def init(hparams, key, arrays, inputs):
    del hparams, arrays, inputs
    # Placeholders of the segment's results (the carry keeps its structure).
    zero = jnp.zeros((), jnp.float32)
    return {"key": common.raw_key(key),
            "final": {name: zero for name in metric_names(c)},
            "outputs": {
                "teacher": jnp.zeros((c.d_teacher,), jnp.float32),
                "students": jnp.zeros((1 + len(c.lambdas), c.d_student),
                                      jnp.float32)}}

  def segment(carry, hparams, arrays):
    final, outputs = run(hparams, carry["key"], arrays)
    return {**carry, "final": final, "outputs": outputs}, {}

  def finish(carry, hparams, arrays):
    del hparams, arrays
    return carry["final"], carry["outputs"]

  return Program(init, segment, finish, 1, None, lambda: arrays_host)
