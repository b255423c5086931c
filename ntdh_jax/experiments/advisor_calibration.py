"""How often is the advisor right? Its verdict against measured KD gains.

``ntdh_jax.diagnose`` forecasts from a trained teacher and a student trained
without KD whether KD will help. This experiment measures how good that
forecast is on studies where the gain is known, calibrating the verdict's
thresholds on some of them and validating on the others (issue 14).

``plan(configs)``: for every part of ``config.parts`` (a study: a paired
data source, a traced knob swept over ``conditions``, networks and
training, as the ``cch`` experiment's configs), every condition and seed:
a teacher, a student without KD, a student with ``kd``, and one KD student
per ``config.mask_ratios`` entry with Algorithm 2's "true" sample mask at
that ratio (the stage's per-batch NCJSD ranking, as the NTDH paper trains).

``report`` computes the teacher's and the no-KD student's logits and
penultimate features on the test split (``cch.representations``), diagnoses
each (condition, seed) pair with ``diagnose`` (cached in
``advisor_points.json``: a rerun or a killed report recomputes nothing
already done) and compares:

* **truth** per condition, from the measured gains over the seeds: "KD
  likely helps" when the mean gain minus two standard errors is above 0,
  "likely hurts" when the mean plus two standard errors is below 0,
  "neutral" otherwise;
* **calibration**: on the parts named by ``config.calibrate_on``, each
  signal's two thresholds (NTDH: on the mean NCJSD; CCH: on Δ) are chosen
  by exhaustive search over the midpoints of the observed values, to
  maximise the share of (condition, seed) diagnoses whose vote equals their
  condition's truth (ties: the widest neutral band, then the smallest
  thresholds); the ``kl_floor`` guard keeps ``DEFAULT_RULE``'s value;
* **validation**, per part (the calibration parts marked in-sample): the
  accuracy of NTDH alone, CCH alone and combined against always answering
  the part's commonest truth (the bar a forecast must clear), and
  Spearman's ρ of the score (−NCJSD, Δ, their sum in units of each one's
  calibration spread) with the measured mean gain over conditions;
* the **mask** advice: the ratio ``recommend_mask`` picks per pair against
  the ratio of ``(0, *mask_ratios)`` with the best measured mean gain of its
  condition.

It writes ``report.md``, ``summary.csv`` (one line per pair) and
``advisor_calibration.png`` (each signal against the gain, per part, with
the calibrated thresholds).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from typing import Sequence

import ml_collections
import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import advisor
from ntdh_jax import experiments
from ntdh_jax import masks
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import cch
from ntdh_jax.experiments import tables
from ntdh_jax.train import checkpoint
from ntdh_jax.train import stages
from ntdh_jax.train.program import RunSpec

CACHE = "advisor_points.json"
SIGNALS = ("ntdh", "cch", "combined")
_STANDARD_ERRORS = 2.0  # the truth's band around 0, in standard errors


# ------------------------------------------------------------------ plan


def _check(c) -> None:
  if not c.parts:
    raise UserError("config.parts must name at least one study.")
  unknown = sorted(set(c.calibrate_on) - set(c.parts))
  if unknown or not c.calibrate_on:
    raise UserError(f"config.calibrate_on must be a non-empty list of "
                    f"config.parts' names {sorted(c.parts)}, got "
                    f"{list(c.calibrate_on)}.")
  ratios = list(c.mask_ratios)
  if any(not 0 < r < 1 for r in ratios) or len(set(ratios)) != len(ratios):
    raise UserError(f"config.mask_ratios must be distinct fractions in "
                    f"(0, 1), got {ratios}.")


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  specs = []
  for c in configs:
    _check(c)
    for name, p in c.parts.items():
      # Two seeds at least: a condition's truth needs its gain's spread.
      fixed = cch.check_study(c, f"parts.{name}.", min_seeds=2)
      runs = cch.study_runs(p, fixed, prefix=f"parts.{name}.",
                            tags={"part": name})
      for teacher, no_kd, distilled in runs:
        specs += [teacher, no_kd, distilled(extra_tags={"mask_ratio": 0.0})]
        specs += [distilled(
            extra_static={"sample_mask": "ncjsd"},
            extra_hparams={"mask_ratio": r,
                           "mask_kind": masks.kind_code("true")},
            extra_tags={"mask_ratio": r},
            extra_keys={"mask_ratio": "mask_ratios"})
                  for r in c.mask_ratios]
  return specs


# ---------------------------------------------------------------- points


def _groups(rows, config) -> dict:
  """``{part: {(condition, seed): {"teacher", "no_kd", ("kd", r)...:
  row}}}`` of the finished runs. Runs are matched to the plan by id, not by
  their tags: two parts may share a run (the unblurred condition of both
  digits parts), whose row carries the tags of one of them only."""
  by_id = {r["run_id"]: r for r in rows}
  groups = {}
  for spec in plan([config]):
    row = by_id.get(spec.run_id)
    if row is None:
      continue
    tags = json.loads(spec.tags)
    role = tags["role"]
    if role == "kd":
      role = ("kd", float(tags["mask_ratio"]))
    groups.setdefault(tags["part"], {}).setdefault(
        (tags["condition"], spec.seed), {})[role] = row
  return groups


def _cache_key(group, d) -> str:
  text = json.dumps([group["teacher"]["run_id"], group["no_kd"]["run_id"],
                     d.to_dict()], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _diagnosis(features, d) -> dict:
  """The numbers of ``diagnose`` the calibration needs (the verdicts are
  re-derived with the calibrated thresholds)."""
  result = advisor.diagnose(
      features["teacher_logits"], features["student_logits"],
      features["labels"], features["teacher"], features["student"],
      ratios=tuple(d.mask_ratios), bootstrap=d.bootstrap, level=d.level,
      seed=d.seed, mi_repeats=d.mi_repeats, mi_subsample=d.mi_subsample)
  out = {f"{name}.{part}": getattr(result.divergences[name], part)
         for name in ("ncjsd", "tcjsd", "kl") for part in ("value", "low",
                                                            "high")}
  out.update({"delta.value": result.cch.gap.mean,
              "delta.low": result.cch.interval[0],
              "delta.high": result.cch.interval[1],
              "kept_ncjsd": {str(r): v for r, v in result.kept_ncjsd.items()}})
  return out


def points(rows, config, workdir: str) -> list[dict]:
  """One dict per (part, condition, seed) with its measured accuracies and
  gains and its diagnosis."""
  path = os.path.join(workdir, CACHE)
  cache = {}
  if os.path.exists(path):
    with open(path) as f:
      cache = json.load(f)
  d = ml_collections.ConfigDict({**config.diagnose.to_dict(),
                                 "mask_ratios": list(config.mask_ratios)})
  ratios = [0.0] + list(config.mask_ratios)
  out = []
  planned = _groups(rows, config)
  for part, p in config.parts.items():
    groups = {k: g for k, g in sorted(planned.get(part, {}).items())
              if {"teacher", "no_kd", *(("kd", r) for r in ratios)} <= set(g)}
    pending = [g for g in groups.values() if _cache_key(g, d) not in cache]
    for g, features in zip(pending, cch.representations(rows, p, workdir,
                                                        pending)):
      cache[_cache_key(g, d)] = _diagnosis(features, d)
      # Written after every diagnosis: a killed report loses none.
      checkpoint.write_atomic(path, json.dumps(cache, sort_keys=True))
    for (condition, seed), g in groups.items():
      acc = {role: 100 * tables.last(g[role], "test_acc")
             for role in ("teacher", "no_kd")}
      kd_acc = {r: 100 * tables.last(g[("kd", r)], "test_acc")
                for r in ratios}
      out.append({"part": part, "condition": condition, "seed": seed,
                  "teacher_acc": acc["teacher"], "student_acc": acc["no_kd"],
                  "kd_gain": kd_acc[0.0] - acc["no_kd"],
                  **{f"gain@{r:g}": kd_acc[r] - acc["no_kd"]
                     for r in config.mask_ratios},
                  # Sorted: the same columns whether computed now or read
                  # back from the cache's JSON.
                  **dict(sorted(cache[_cache_key(g, d)].items()))})
  return out


# ------------------------------------------------------------- the truth


def truth(gains) -> str:
  """A condition's measured verdict from its seeds' gains."""
  g = np.asarray(gains, float)
  half = _STANDARD_ERRORS * g.std(ddof=1) / math.sqrt(len(g))
  if g.mean() - half > 0:
    return advisor.HELPS
  if g.mean() + half < 0:
    return advisor.HURTS
  return advisor.NEUTRAL


def _gain(r: float) -> str:
  """A point's column of the gain of KD with Algorithm 2's mask at ``r``."""
  return "kd_gain" if r == 0 else f"gain@{r:g}"


def conditions(pts) -> dict:
  """``{(part, condition): {"truth", "gain", "best_ratio", "mask_gain"}}``:
  the truth and mean gain of plain KD, and the mean gain at each mask ratio
  (0 = plain KD) with the best of them."""
  out = {}
  for key, ps in tables.group_by(pts, lambda p: (p["part"], p["condition"])
                                 ).items():
    ratios = [0.0] + sorted(float(k.split("@")[1]) for k in ps[0] if
                            k.startswith("gain@"))
    mean = {r: float(np.mean([p[_gain(r)] for p in ps])) for r in ratios}
    gains = [p["kd_gain"] for p in ps]
    out[key] = {"truth": truth(gains), "gain": mean[0.0],
                "best_ratio": max(ratios, key=lambda r: (mean[r], -r)),
                "mask_gain": mean}
  return out


# ------------------------------------------------------------ the rule


def _column(pts, name: str) -> np.ndarray:
  return np.array([p[name] for p in pts], float)


def _interval(pts, name: str) -> advisor.Interval:
  return advisor.Interval(*(_column(pts, f"{name}.{e}")
                            for e in ("value", "low", "high")))


def _votes(pts, signal: str, helps: float, hurts: float):
  """``signal``'s votes on every point with thresholds ``helps``, ``hurts``
  (the advisor's own vote functions, the KL floor of ``DEFAULT_RULE``)."""
  if signal == "ntdh":
    rule = advisor.DEFAULT_RULE._replace(ncjsd_helps=helps, ncjsd_hurts=hurts)
    return advisor.ntdh_vote(_interval(pts, "ncjsd"), _interval(pts, "kl"),
                             rule)
  rule = advisor.DEFAULT_RULE._replace(delta_helps=helps, delta_hurts=hurts)
  return advisor.cch_vote(_interval(pts, "delta")[1:], rule)


def verdicts(pts, rule: advisor.Rule) -> dict:
  """``{signal: votes}`` of every point under ``rule``."""
  ntdh = _votes(pts, "ntdh", rule.ncjsd_helps, rule.ncjsd_hurts)
  cch_v = _votes(pts, "cch", rule.delta_helps, rule.delta_hurts)
  return {"ntdh": ntdh, "cch": cch_v,
          "combined": np.array([advisor.combine(a, b)
                                for a, b in zip(ntdh, cch_v)], object)}


def _thresholds(pts, signal: str, truths) -> tuple[float, float]:
  """The (helps, hurts) pair of ``signal`` with the most right votes (ties:
  the widest neutral band, then the smallest thresholds)."""
  column = "ncjsd" if signal == "ntdh" else "delta"
  values = np.unique(np.round(np.concatenate(
      [[p[f"{column}.{e}"] for p in pts] for e in ("low", "high")]), 6))
  cuts = np.round(np.concatenate([[values[0] - 1e-3],
                                  (values[1:] + values[:-1]) / 2,
                                  [values[-1] + 1e-3]]), 6)
  if signal == "ntdh":
    cuts = np.clip(cuts, 0.0, math.log(2))
  best, best_key = None, None
  for a, b in itertools.combinations_with_replacement(cuts, 2):
    helps, hurts = (a, b) if signal == "ntdh" else (b, a)
    right = np.mean(_votes(pts, signal, helps, hurts) == truths)
    key = (right, abs(b - a), -a, -b)
    if best_key is None or key > best_key:
      best, best_key = (float(helps), float(hurts)), key
  return best


def calibrate(pts, conds) -> advisor.Rule:
  """The rule fitted on ``pts`` (module docstring)."""
  truths = np.array([conds[(p["part"], p["condition"])]["truth"]
                     for p in pts], object)
  n_helps, n_hurts = _thresholds(pts, "ntdh", truths)
  d_helps, d_hurts = _thresholds(pts, "cch", truths)
  return advisor.Rule(ncjsd_helps=n_helps, ncjsd_hurts=n_hurts,
                      delta_helps=d_helps, delta_hurts=d_hurts,
                      kl_floor=advisor.DEFAULT_RULE.kl_floor)


def scores(pts, calibration_pts) -> dict:
  """``{signal: f64[points]}``: larger = KD should help more; the combined
  score sums the two in units of their spread on the calibration parts."""
  ntdh, delta = -_column(pts, "ncjsd.value"), _column(pts, "delta.value")
  spread = {name: np.std(_column(calibration_pts, column)) or 1.0
            for name, column in (("ntdh", "ncjsd.value"),
                                 ("cch", "delta.value"))}
  return {"ntdh": ntdh, "cch": delta,
          "combined": ntdh / spread["ntdh"] + delta / spread["cch"]}


def validation(pts, conds, rule, votes, calibration_pts) -> dict:
  """Per part and signal (``votes``: ``verdicts(pts, rule)``): accuracy,
  the majority bar, ρ over the conditions' means and over the points; plus
  the mask advice under ``rule``."""
  score = scores(pts, calibration_pts)
  out = {}
  parts = sorted({p["part"] for p in pts}, key=[p["part"] for p in pts].index)
  for part in parts:
    idx = np.array([p["part"] == part for p in pts])
    sub = [p for p, i in zip(pts, idx) if i]
    truths = np.array([conds[(part, p["condition"])]["truth"] for p in sub],
                      object)
    values, counts = np.unique(truths, return_counts=True)
    row = {"points": len(sub), "majority": float(counts.max() / len(sub)),
           "truths": dict(zip(values.tolist(), counts.tolist()))}
    keys = sorted({p["condition"] for p in sub})
    gains = np.array([conds[(part, c)]["gain"] for c in keys])
    for signal in SIGNALS:
      s = score[signal][idx]
      means = np.array([s[[p["condition"] == c for p in sub]].mean()
                        for c in keys])
      row[signal] = {
          "accuracy": float(np.mean(votes[signal][idx] == truths)),
          "rho_conditions": tables.spearman(means, gains),
          "rho_points": tables.spearman(s, [p["kd_gain"] for p in sub])}
    advice = [advisor.recommend_mask(
        {float(r): v for r, v in p["kept_ncjsd"].items()}, rule) for p in sub]
    best = [conds[(part, p["condition"])]["best_ratio"] for p in sub]
    mask_gain = [conds[(part, p["condition"])]["mask_gain"] for p in sub]
    chosen = [0.0 if a is None else a for a in advice]
    row["mask"] = {
        "right": float(np.mean([a == b for a, b in zip(chosen, best)])),
        "never_mask": float(np.mean([b == 0.0 for b in best])),
        "regret": float(np.mean([m[b] - m[a] for m, a, b in
                                 zip(mask_gain, chosen, best)])),
        "none": int(sum(a is None for a in advice))}
    out[part] = row
  return out


# ---------------------------------------------------------------- report


def _figure(pts, rule, parts, path: str) -> str:
  fig = Figure(figsize=(10, 4 * len(parts)))
  axes = fig.subplots(len(parts), 2, squeeze=False)
  for row, part in zip(axes, parts):
    sub = [p for p in pts if p["part"] == part]
    for ax, (column, label, lines) in zip(row, (
        ("ncjsd.value", "mean NCJSD, teacher vs no-KD student (nats)",
         (rule.ncjsd_helps, rule.ncjsd_hurts)),
        ("delta.value", "Δ = I(H₁;H₂) − I(H₂;Y), KSG (nats)",
         (rule.delta_helps, rule.delta_hurts)))):
      conds = sorted({p["condition"] for p in sub})
      for i, c in enumerate(conds):
        ps = [p for p in sub if p["condition"] == c]
        ax.scatter([p[column] for p in ps], [p["kd_gain"] for p in ps],
                   s=14, color=f"C{i % 10}", label=f"{c:g}")
      for x, style in zip(lines, ("--", ":")):
        ax.axvline(x, color="k", ls=style, lw=0.9)
      ax.axhline(0, color="grey", lw=0.8)
      ax.set_xlabel(label)
      ax.set_ylabel("KD gain (points)")
      ax.set_title(f"{part}: helps (--) / hurts (:) thresholds")
      ax.grid(alpha=0.3)
      ax.legend(fontsize="x-small", title=sub[0]["knob"], ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def _write_csv(pts, votes, conds, path: str) -> None:
  lines = []
  for i, p in enumerate(pts):
    c = conds[(p["part"], p["condition"])]
    lines.append({k: p[k] for k in p if k != "kept_ncjsd"}
                 | {"truth": c["truth"], "best_ratio": c["best_ratio"]}
                 | {f"vote.{s}": votes[s][i] for s in SIGNALS})
  tables.write_lines(path, lines)


def _part_table(pts, conds, part, knob) -> str:
  rows = []
  for c in sorted({p["condition"] for p in pts if p["part"] == part}):
    ps = [p for p in pts if p["part"] == part and p["condition"] == c]
    stat = conds[(part, c)]
    rows.append([f"{c:g}"] + [tables.fmt(np.mean(v), np.std(v), digits=d)
                              for v, d in (
        ([p["teacher_acc"] for p in ps], 2),
        ([p["student_acc"] for p in ps], 2),
        ([p["kd_gain"] for p in ps], 2),
        ([p["ncjsd.value"] for p in ps], 3),
        ([p["delta.value"] for p in ps], 3))]
                + [stat["truth"], ", ".join(
                    f"{r:.0%}: {g:+.2f}" for r, g in stat["mask_gain"].items())])
  return tables.markdown(
      [knob, "teacher", "student (no KD)", "KD gain", "NCJSD", "Δ KSG",
       "truth", "gain by mask ratio"], rows)


def _report(rows, config, workdir):
  pts = points(rows, config, workdir)
  if not pts:
    return
  for p in pts:
    p["knob"] = config.parts[p["part"]].knob
  conds = conditions(pts)
  calibration_pts = [p for p in pts if p["part"] in config.calibrate_on]
  rule = calibrate(calibration_pts, conds)
  votes = verdicts(pts, rule)
  result = validation(pts, conds, rule, votes, calibration_pts)
  parts = list(result)
  _write_csv(pts, votes, conds, os.path.join(workdir, "summary.csv"))
  figure = _figure(pts, rule, parts,
                   os.path.join(workdir, "advisor_calibration.png"))
  same = rule == advisor.DEFAULT_RULE
  text = [
      "# How often is the advisor right?\n",
      f"Parts: {', '.join(f'`{p}`' for p in parts)}; the rule is calibrated "
      f"on {', '.join(f'`{p}`' for p in config.calibrate_on)} and validated "
      "on the others. Per (condition, seed) pair, `ntdh_jax.diagnose` reads "
      "the teacher's and the no-KD student's test-split logits and "
      "penultimate features; the truth of a condition comes from the "
      f"measured gains of its {len({p['seed'] for p in pts})} seeds (mean ∓ "
      f"{_STANDARD_ERRORS:g} standard errors above 0: helps; below: hurts; "
      "else neutral).\n",
      f"Calibrated rule: NCJSD helps below **{rule.ncjsd_helps:.6g}**, hurts "
      f"above **{rule.ncjsd_hurts:.6g}**; Δ helps above "
      f"**{rule.delta_helps:.6g}**, hurts below **{rule.delta_hurts:.6g}**; "
      f"kl_floor {rule.kl_floor:g}. The library's `DEFAULT_RULE` "
      + ("is this rule." if same else
         f"differs: {advisor.DEFAULT_RULE}."),
      "",
      "## Accuracy and rank correlation\n",
      "Accuracy: the share of pairs whose vote equals their condition's "
      "truth; majority: always answering the part's commonest truth (the "
      "bar); ρ: Spearman of the score (−NCJSD; Δ; their sum in calibration "
      "spreads) with the measured gain over the conditions' means, and over "
      "the pairs.\n",
      tables.markdown(
          ["part", "pairs", "truths", "majority"]
          + [f"{s} {m}" for s in SIGNALS for m in ("acc.", "ρ cond.",
                                                   "ρ pairs")],
          [[part + (" (calibration)" if part in config.calibrate_on else ""),
            str(r["points"]),
            ", ".join(f"{k}: {v}" for k, v in r["truths"].items()),
            f"{r['majority']:.2f}"]
           + [x for s in SIGNALS for x in (
               f"{r[s]['accuracy']:.2f}", f"{r[s]['rho_conditions']:+.2f}",
               f"{r[s]['rho_points']:+.2f}")]
           for part, r in result.items()]),
      "",
  ]
  for part, r in result.items():
    if part in config.calibrate_on:
      continue
    for s in SIGNALS:
      text.append("- " + tables.verdict(
          r[s]["accuracy"] > r["majority"],
          f"{part}, {s}: accuracy {r[s]['accuracy']:.2f} against the "
          f"majority bar {r['majority']:.2f}, ρ over conditions "
          f"{r[s]['rho_conditions']:+.2f}."))
  text += [
      "",
      "## The mask advice\n",
      "Per pair, the ratio `recommend_mask` picks (the smallest of 0 and "
      f"{list(config.mask_ratios)} whose kept entries' NCJSD is below the "
      "helps threshold; none qualifying counts as 0) against the ratio "
      "with the best measured mean gain of the condition (KD students "
      "trained with Algorithm 2's mask at each ratio); regret = best mean "
      "gain − the chosen ratio's, in points.\n",
      tables.markdown(
          ["part", "right", "best is no mask", "mean regret",
           "no ratio qualifies"],
          [[part, f"{r['mask']['right']:.2f}", f"{r['mask']['never_mask']:.2f}",
            f"{r['mask']['regret']:.2f}", str(r["mask"]["none"])]
           for part, r in result.items()]),
      "",
      "## Per part\n"]
  for part in parts:
    text += [f"### {part}\n",
             _part_table(pts, conds, part, config.parts[part].knob), ""]
  text.append(f"![signals vs gain]({os.path.basename(figure)})")
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(text) + "\n")


experiments.register("advisor", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
