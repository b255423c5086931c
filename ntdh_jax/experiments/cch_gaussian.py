"""CCH end to end in the joint-Gaussian test bed (issue 11, item 1).

The Cross-modal Complementarity Hypothesis (Xie, Xu & Sanguinetti, arXiv
2510.13182) says KD from a teacher with representation H₁ into a student
with representation H₂ helps when Δ = I(H₁; H₂) − I(H₂; Y) > 0. Its theory
is set in a joint-Gaussian linear model; this experiment runs our
**reconstruction** of that setting (the ``linear_kd`` stage,
``shared/notes/companions.md`` A.2 and A.5) — **not** the paper's Theorem 1,
whose exact assumptions were not available. Δ is exact (closed form from the
population covariance) and so is every risk, so the only noise is the
training sample's.

``plan(configs)``: for every n of ``config.ns`` (one compiled program each),
every knob point of ``config.knobs`` (the product of its ``overlap``,
``teacher_noise`` and ``student_noise`` lists: traced, vmapped together)
and every seed, one ``linear_kd`` run with the static options of
``config.setup``.

``report`` writes into the workdir:

* ``report.md``: the setup, the knob grid and its Δ range, and per n the
  sign agreement of Δ and the mean KD gain at the smallest λ (the fraction
  of knob points where sign(Δ) == sign(mean gain over seeds)) next to the
  trivial rule's (always predict the majority sign), the Spearman rank
  correlation of Δ and the mean gain, the λ dependence, the n/d dependence,
  the shrinkage control, and plain sentences saying what the numbers show;
* ``summary.csv``: one line per (n, knob point, λ) with Δ, the MI terms and
  the over-seed mean, std and standard error of the gain;
* ``cch_delta_vs_gain.png`` (Δ against the mean gain at the smallest λ, one
  panel per n, ±1 s.e. bars), ``cch_gain_vs_lambda.png`` (gain against λ
  for four knob points chosen by their Δ) and ``cch_gain_vs_n.png`` (gain,
  sign agreement and Spearman against n/d₂).
"""

from __future__ import annotations

import csv
import itertools
import os
from typing import Sequence

import ml_collections
import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax import plots
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import tables
from ntdh_jax.train import stages
from ntdh_jax.train.program import RunSpec

STAGE = "linear_kd"
# config.knobs key -> the traced hyperparameter it sets.
KNOBS = {"overlap": "cch_overlap", "teacher_noise": "cch_teacher_noise",
         "student_noise": "cch_student_noise"}
FIGURES = ("cch_delta_vs_gain.png", "cch_gain_vs_lambda.png",
           "cch_gain_vs_n.png")


# ------------------------------------------------------------------ plan


def _ns(c) -> list[int]:
  ns = config_lib.check_nonempty(c, "ns")
  for n in ns:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise UserError(f"config.ns must hold integers >= 1 (training rows), "
                      f"got {n!r}.")
  if len(set(ns)) != len(ns):
    raise UserError(f"config.ns repeats a value: {ns}.")
  return ns


def knob_points(c) -> list[dict]:
  """The knob grid: ``{hparam name: value}`` per point, in config order."""
  lists = [config_lib.check_nonempty(c, f"knobs.{k}") for k in KNOBS]
  return [dict(zip(KNOBS.values(), values))
          for values in itertools.product(*lists)]


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  specs = []
  for c in configs:
    config_lib.check_count(c, "num_seeds")
    config_lib.check_count(c, "seed", low=0)
    points = knob_points(c)
    keys = {h: f"knobs.{k}" for k, h in KNOBS.items()}
    for n in _ns(c):
      static = {**c.setup.to_dict(), "n": n}
      for point in points:
        for seed in range(c.seed, c.seed + c.num_seeds):
          specs.append(stages.run_spec(STAGE, static, point, seed,
                                       keys=keys))
  return specs


# ------------------------------------------------------------ statistics


def points(rows) -> list[dict]:
  """One dict per (n, knob point), over its seeds: the knobs, Δ and the MI
  terms (the same for every seed), and ``[len(lambdas)]`` arrays of the
  mean, std and standard error of each per-λ metric."""
  out = []
  key = lambda r: (r["static.n"],) + tuple(r[f"hp.{h}"]
                                           for h in KNOBS.values())
  for (n, *knobs), rs in tables.group_by(rows, key).items():
    lambdas = list(rs[0]["static.lambdas"])
    value = lambda name: np.array([r[f"final.{name}"] for r in rs], float)
    point = {"n": n, "n_over_d": n / rs[0]["static.d_student"],
             "lambdas": lambdas, "seeds": len(rs),
             **dict(zip(KNOBS, knobs))}
    for name in ("delta", "mi_teacher_student", "mi_student_label",
                 "risk_student_opt"):
      point[name] = float(np.mean(value(name)))
    for name in ("delta_fitted", "risk_nokd", "risk_teacher"):
      point[name] = float(np.mean(value(name)))
    for name in ("gain", "rel_gain", "gain_vs_shrink", "risk_kd"):
      per = np.stack([value(f"{name}_{i}") for i in range(len(lambdas))])
      point[name] = per.mean(1)
      point[f"{name}_std"] = per.std(1)
      point[f"{name}_se"] = per.std(1, ddof=1) / np.sqrt(len(rs)) if len(
          rs) > 1 else np.full(len(lambdas), np.nan)
    out.append(point)
  return out


def agreement(pts, metric: str, i: int) -> dict:
  """Over the knob points ``pts`` (one n): how Δ's sign and rank match the
  mean of ``metric`` at λ index ``i``."""
  delta = np.array([p["delta"] for p in pts])
  mean = np.array([p[metric][i] for p in pts])
  se = np.array([p[f"{metric}_se"][i] for p in pts])
  agree = np.sign(delta) == np.sign(mean)
  clear = np.abs(mean) > 2 * se
  positive = float(np.mean(mean > 0))
  return {
      "points": len(pts), "delta_pos": float(np.mean(delta > 0)),
      "gain_pos": positive, "agree": float(np.mean(agree)),
      "majority": max(positive, float(np.mean(mean < 0))),
      "clear": int(clear.sum()),
      "agree_clear": (float(np.mean(agree[clear])) if clear.any()
                      else float("nan")),
      "spearman": tables.spearman(delta, mean),
      "spearman_fitted": tables.spearman([p["delta_fitted"] for p in pts], mean),
      "mean_pos": (float(mean[delta > 0].mean()) if (delta > 0).any()
                   else float("nan")),
      "mean_neg": (float(mean[delta <= 0].mean()) if (delta <= 0).any()
                   else float("nan")),
      "mean_abs": float(np.mean(np.abs(mean))),
      "rel": float(np.mean([p["rel_gain"][i] for p in pts])),
  }


def by_n(pts) -> dict:
  return tables.group_by(pts, lambda p: p["n"])


def chosen(pts) -> list[int]:
  """Indices (into one n's points) of up to four knob points by Δ: the
  smallest, the negative closest to 0, the positive closest to 0, the
  largest."""
  delta = np.array([p["delta"] for p in pts])
  picks = [int(np.argmin(delta))]
  neg, pos = np.flatnonzero(delta <= 0), np.flatnonzero(delta > 0)
  if neg.size:
    picks.append(int(neg[np.argmax(delta[neg])]))
  if pos.size:
    picks.append(int(pos[np.argmin(delta[pos])]))
  picks.append(int(np.argmax(delta)))
  return sorted(set(picks), key=lambda j: delta[j])


def _label(p) -> str:
  return (f"Δ={p['delta']:+.3g} (ω={p['overlap']:g}, σ₁={p['teacher_noise']:g}"
          f", σ₂={p['student_noise']:g})")


# ---------------------------------------------------------------- report


def _num(x, digits=2, signed=False) -> str:
  if x != x:
    return "–"
  return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _sci(x) -> str:
  return "–" if x != x else f"{x:+.2e}"


def write_summary(path: str, pts) -> None:
  fields = ["n", "n_over_d", *KNOBS, "lambda", "delta", "mi_teacher_student",
            "mi_student_label", "delta_fitted", "risk_student_opt",
            "risk_teacher", "risk_nokd", "risk_kd", "gain_mean", "gain_std",
            "gain_se", "rel_gain_mean", "gain_vs_shrink_mean",
            "gain_vs_shrink_se", "seeds"]
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for p in pts:
      for i, lam in enumerate(p["lambdas"]):
        writer.writerow({
            **{k: p[k] for k in ("n", "n_over_d", *KNOBS, "delta",
                                 "mi_teacher_student", "mi_student_label",
                                 "delta_fitted", "risk_student_opt",
                                 "risk_teacher", "risk_nokd", "seeds")},
            "lambda": lam, "risk_kd": p["risk_kd"][i],
            "gain_mean": p["gain"][i], "gain_std": p["gain_std"][i],
            "gain_se": p["gain_se"][i], "rel_gain_mean": p["rel_gain"][i],
            "gain_vs_shrink_mean": p["gain_vs_shrink"][i],
            "gain_vs_shrink_se": p["gain_vs_shrink_se"][i]})


def _scatter_figure(path: str, groups, lam: float) -> None:
  cols = len(groups)
  fig = Figure(figsize=(4.6 * cols + 1, 3.9), layout="constrained")
  axes = fig.subplots(1, cols, squeeze=False)[0]
  for ax, (n, pts) in zip(axes, groups.items()):
    delta = np.array([p["delta"] for p in pts])
    mean = np.array([p["gain"][0] for p in pts])
    se = np.array([p["gain_se"][0] for p in pts])
    overlap = np.array([p["overlap"] for p in pts])
    ax.errorbar(delta, mean, yerr=np.nan_to_num(se), fmt="none",
                ecolor="0.6", elinewidth=0.8, zorder=1)
    dots = ax.scatter(delta, mean, c=overlap, cmap="viridis", vmin=0,
                      vmax=1, s=18, zorder=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    s = agreement(pts, "gain", 0)
    ax.set_title(f"n = {n} (n/d₂ = {pts[0]['n_over_d']:g}): agree "
                 f"{_num(s['agree'])}, ρ_s {_num(s['spearman'])}",
                 fontsize="small")
    ax.set_xlabel("analytic Δ = I(H₁;H₂) − I(H₂;Y) (nats)")
    ax.set_ylabel(f"KD gain at λ = {lam:g} (risk, ±1 s.e.)")
    ax.grid(alpha=0.3)
  fig.colorbar(dots, ax=list(axes), label="overlap ω")
  fig.suptitle("CCH Gaussian test bed (reconstruction): Δ vs measured KD "
               "gain", fontsize="medium")
  fig.savefig(path, dpi=110)


def _lambda_figure(path: str, groups) -> None:
  panels = []
  for n, pts in groups.items():
    series = {_label(pts[j]): (pts[j]["lambdas"], pts[j]["gain"],
                               np.nan_to_num(pts[j]["gain_se"]))
              for j in chosen(pts)}
    panels.append(dict(series=series, xlabel="λ",
                       ylabel="KD gain (risk, ±1 s.e.)",
                       title=f"n = {n} (n/d₂ = {pts[0]['n_over_d']:g})"))
  plots.save_grid(path, [panels], suptitle="KD gain against λ for four "
                  "knob points chosen by Δ")


def _n_figure(path: str, groups, lambdas) -> None:
  first = next(iter(groups.values()))
  ratios = [pts[0]["n_over_d"] for pts in groups.values()]
  series = {}
  for j in chosen(first):
    p0 = first[j]
    same = lambda p: all(p[k] == p0[k] for k in KNOBS)
    picked = [next(p for p in pts if same(p)) for pts in groups.values()]
    series[_label(p0)] = (ratios, [p["gain"][0] for p in picked],
                          [np.nan_to_num(p["gain_se"][0]) for p in picked])
  ends = sorted({0, len(lambdas) - 1})
  stats = {i: [agreement(pts, "gain", i) for pts in groups.values()]
           for i in ends}
  zeros = [0.0] * len(ratios)
  sign = {f"λ = {lambdas[i]:g}": (ratios, [s["agree"] for s in stats[i]],
                                  zeros) for i in ends}
  sign.update({f"majority rule, λ = {lambdas[i]:g}": (
      ratios, [s["majority"] for s in stats[i]], zeros) for i in ends})
  rank = {f"λ = {lambdas[i]:g}": (ratios, [s["spearman"] for s in stats[i]],
                                  zeros) for i in ends}
  plots.save_grid(path, [[
      dict(series=series, xlabel="n / d₂",
           ylabel=f"KD gain at λ = {lambdas[0]:g} (±1 s.e.)",
           title="gain against n/d₂"),
      dict(series=sign, xlabel="n / d₂", ylabel="fraction of knob points",
           title="sign agreement of Δ and the gain"),
      dict(series=rank, xlabel="n / d₂", ylabel="Spearman ρ_s",
           title="rank correlation of Δ and the gain")]],
      suptitle="The n/d dependence")


def _findings(groups, lambdas) -> list[str]:
  """Plain sentences computed from the numbers (whatever they say)."""
  lines = []
  lam0 = lambdas[0]
  for n, pts in groups.items():
    s = agreement(pts, "gain", 0)
    k = s["points"]
    pos = round(s["gain_pos"] * k)
    npos = round(s["delta_pos"] * k)
    text = (f"- **n = {n} (n/d₂ = {pts[0]['n_over_d']:g}), λ = {lam0:g}:** "
            f"KD lowered the risk at {pos}/{k} knob points while Δ > 0 at "
            f"{npos}/{k}; sign(Δ) matched the sign of the mean gain at "
            f"{round(s['agree'] * k)}/{k} ({_num(s['agree'])}), against "
            f"{_num(s['majority'])} for the trivial rule that always "
            "predicts the majority sign. ")
    if s["agree"] > s["majority"]:
      text += "Δ's sign does better than that rule here. "
    else:
      text += ("Δ's sign does **not** predict whether KD helps here better "
               "than that rule. ")
    text += (f"Δ ranks the mean gains with Spearman ρ_s = "
             f"{_num(s['spearman'])}.")
    lines.append(text)
  last = len(lambdas) - 1
  if last:
    for n, pts in groups.items():
      a, b = agreement(pts, "gain", 0), agreement(pts, "gain", last)
      lines.append(
          f"- **λ dependence, n = {n}:** from λ = {lam0:g} to "
          f"{lambdas[last]:g} the fraction of knob points where KD helps "
          f"goes {_num(a['gain_pos'])} → {_num(b['gain_pos'])}, the sign "
          f"agreement {_num(a['agree'])} → {_num(b['agree'])}, Spearman "
          f"{_num(a['spearman'])} → {_num(b['spearman'])}.")
  if len(groups) > 1:
    per = [(n, agreement(pts, "gain", 0)) for n, pts in groups.items()]
    trend = " → ".join(f"{s['mean_abs']:.2e}" for _, s in per)
    rel = " → ".join(_num(s["rel"], 3, signed=True) for _, s in per)
    ns = " → ".join(str(n) for n, _ in per)
    shrinking = all(b[1]["mean_abs"] < a[1]["mean_abs"]
                    for a, b in zip(per, per[1:]))
    how = ("shrinking at every step" if shrinking
           else "not monotonically shrinking")
    lines.append(
        f"- **n/d dependence (λ = {lam0:g}):** as n goes {ns}, the mean "
        f"|gain| over knob points goes {trend} ({how}); the mean gain relative to the no-KD student's excess risk goes "
        f"{rel}.")
  for n, pts in groups.items():
    s = agreement(pts, "gain_vs_shrink", 0)
    lines.append(
        f"- **Shrinkage control, n = {n}, λ = {lam0:g}:** against the no-KD "
        f"student shrunk by 1/(1+λ), KD helps at "
        f"{round(s['gain_pos'] * s['points'])}/{s['points']} knob points; "
        f"sign agreement with Δ {_num(s['agree'])} (majority rule "
        f"{_num(s['majority'])}), Spearman {_num(s['spearman'])}.")
  return lines


def report(rows, config, workdir) -> None:
  pts = points(rows)
  groups = by_n(pts)
  lambdas = pts[0]["lambdas"]
  setup = config.setup
  write_summary(os.path.join(workdir, "summary.csv"), pts)
  _scatter_figure(os.path.join(workdir, FIGURES[0]), groups, lambdas[0])
  _lambda_figure(os.path.join(workdir, FIGURES[1]), groups)
  _n_figure(os.path.join(workdir, FIGURES[2]), groups, lambdas)

  first = next(iter(groups.values()))
  delta = np.array([p["delta"] for p in first])
  knobs = config.knobs
  head = [
      "# CCH in the joint-Gaussian test bed — report\n",
      "**A reconstruction, not the paper's Theorem 1.** CCH (Xie, Xu & "
      "Sanguinetti, arXiv 2510.13182) predicts that cross-modal KD helps "
      "when Δ = I(H₁;H₂) − I(H₂;Y) > 0. This study builds the joint-Gaussian "
      "linear setting of its theory from published summaries "
      "(`shared/notes/companions.md` A.2, A.5; stage `linear_kd`): Δ is "
      "exact, every risk is the exact population risk, and only the "
      "training sample is random.\n",
      "## Setup\n",
      "- Generator: z ~ N(0, I), [x₁; x₂; y] = L z with x₁ = A₁(√ω s_a + "
      "√(1−ω) s_b) + σ₁ε₁ (teacher, d₁ = "
      f"{setup.d_teacher}), x₂ = A₂ s_a + σ₂ε₂ (student, d₂ = "
      f"{setup.d_student}), y = (β_aᵀs_a + β_bᵀs_b)/√2 + σ_y ε_y, latent "
      f"blocks of k = {setup.latent}, σ_y = {setup.label_noise:g}; A₁, A₂, β "
      f"fixed (mixing seed {setup.mixing_seed}), unit signal variance per "
      "feature and for y.",
      "- Teacher: ridge of y on x₁; students: ridge of the soft target "
      "(y + λ·H₁)/(1+λ) on x₂ (KD as a quadratic penalty of weight λ), "
      f"γ = {setup.ridge:g} for both, fitted on the same n rows; λ = 0 is "
      "the student without KD.",
      "- Δ uses the population teacher H₁ = w₁*ᵀx₁ and the optimal linear "
      "student H₂ = w₂*ᵀx₂ (nats). Gain = population risk without KD − "
      "with KD (> 0: KD helps).",
      f"- {config.num_seeds} seeds per knob point; n ∈ {list(groups)}; "
      f"λ ∈ {lambdas}.",
      f"- Knob grid (chosen a priori as regular grids, not tuned on the "
      f"gains): overlap ω ∈ {list(knobs.overlap)} (the fraction of the "
      "teacher's latent signal it shares with the student: ω = 0 makes "
      "H₁ ⟂ x₂, so Δ < 0 there by construction), teacher noise σ₁ ∈ "
      f"{list(knobs.teacher_noise)}, student noise σ₂ ∈ "
      f"{list(knobs.student_noise)}: {len(first)} points, Δ from "
      f"{delta.min():+.3f} to {delta.max():+.3f} nats, Δ > 0 at "
      f"{int((delta > 0).sum())}/{len(first)}.\n",
      "- How to read the gain: the KD student is (w₂(0) + λ·w_h)/(1+λ), "
      "w_h the ridge fit of the teacher's predictions on x₂. Besides pulling "
      "toward the teacher, every λ > 0 shrinks the no-KD fit by 1/(1+λ), "
      "which lowers the risk of a noisy fit to first order in λ whatever the "
      "teacher; in the population limit (n → ∞) w₂(λ) mixes w₂* with the "
      "teacher's projection and KD can only raise the risk. The *shrinkage "
      "control* below (the no-KD student shrunk by 1/(1+λ), i.e. KD from a "
      "teacher that predicts 0) separates the two.\n",
      "## What the numbers show\n",
      *_findings(groups, lambdas),
      "",
      f"## Δ against the KD gain at the smallest λ = {lambdas[0]:g}\n",
      "Sign agreement: the fraction of knob points where sign(Δ) == "
      "sign(mean gain over seeds); *majority rule*: the agreement of "
      "always predicting the commoner sign; *clear*: knob points whose mean "
      "gain is over 2 standard errors from 0, and the agreement among them; "
      "ρ_s: Spearman rank correlation of Δ and the mean gain (*fitted*: "
      "with Δ computed from each run's fitted teacher, averaged over "
      "seeds); *rel. gain*: the gain over the no-KD student's excess risk "
      "(1 = KD reaches the optimal linear student), mean over knob "
      "points.\n",
  ]
  table = []
  for n, p in groups.items():
    s = agreement(p, "gain", 0)
    table.append([n, f"{p[0]['n_over_d']:g}", s["points"],
                  _num(s["delta_pos"]), _num(s["gain_pos"]), _num(s["agree"]),
                  _num(s["majority"]),
                  f"{s['clear']}: {_num(s['agree_clear'])}",
                  _num(s["spearman"], signed=True),
                  _num(s["spearman_fitted"], signed=True),
                  _num(s["rel"], 3, signed=True)])
  head.append(tables.markdown(
      ["n", "n/d₂", "knob points", "Δ > 0", "gain > 0", "sign agreement",
       "majority rule", "clear: agreement", "ρ_s", "ρ_s (fitted Δ)",
       "rel. gain"], table))
  head += ["", "![Δ vs gain](cch_delta_vs_gain.png)", "",
           "## λ and n dependence\n",
           "Per (n, λ): the KD gain's agreement with Δ, and the same against "
           "the *shrinkage control* (the no-KD student shrunk by 1/(1+λ), "
           "i.e. KD from a teacher that predicts 0: every KD target mix "
           "shrinks the student this much, so this isolates what the "
           "teacher's predictions add). Mean gains are in units of the "
           "label's variance (risk).\n"]
  table = []
  for n, p in groups.items():
    for i, lam in enumerate(lambdas):
      s, c = agreement(p, "gain", i), agreement(p, "gain_vs_shrink", i)
      table.append([n, f"{lam:g}", _num(s["gain_pos"]), _num(s["agree"]),
                    _num(s["spearman"], signed=True), _sci(s["mean_pos"]),
                    _sci(s["mean_neg"]), _num(c["gain_pos"]),
                    _num(c["agree"]), _num(c["spearman"], signed=True)])
  head.append(tables.markdown(
      ["n", "λ", "gain > 0", "sign agreement", "ρ_s", "mean gain (Δ > 0)",
       "mean gain (Δ ≤ 0)", "vs shrink: > 0", "vs shrink: agreement",
       "vs shrink: ρ_s"], table))
  head += ["", "![gain vs λ](cch_gain_vs_lambda.png)", "",
           "![n/d dependence](cch_gain_vs_n.png)", "",
           "`summary.csv`: one line per (n, knob point, λ) with Δ, the MI "
           "terms and the gain's mean, std and standard error over seeds."]
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(head) + "\n")


experiments.register("cch_gaussian", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=report))
