"""CCH on learned representations, and choosing a teacher modality.

The Cross-modal Complementarity Hypothesis (Xie, Xu & Sanguinetti, arXiv
2510.13182): KD from a teacher with representation H₁ into a student with
representation H₂ helps when Δ = I(H₁; H₂) − I(H₂; Y) > 0, and the largest
positive Δ among candidate teacher modalities picks the teacher (none
positive: do not distil). H₁ and H₂ are learned, so unimodal networks come
first: the teacher on its view and the student *without* KD on its view;
the criterion is a priori only relative to the KD run.

``plan(configs)``: for every value of ``config.conditions`` (the data
source's traced knob ``config.knob``: the NTDH γ, or a Gaussian blur width
on the digits or digits-M view as CCH blurs MNIST/MNIST-M) and every seed,
a teacher, a student without KD and a student distilled by ``config.kd``
from that teacher — the ``kd`` experiment's three runs.

``report`` computes, per (condition, seed), the penultimate features of the
teacher and of the no-KD student on the test split (as the stages evaluate:
the run's key, its test-time input), estimates Δ with each estimator of
``config.mi.estimators`` (``ntdh_jax.info.cch_gap``; estimates are cached in
``cch_mi.json`` under the workdir, so a rerun reuses them), and NTDH's signal,
the test-set NCJSD between the teacher and the no-KD student (lower:
more shared non-target knowledge). It writes ``report.md``, ``summary.csv``
(one line per condition, seed and estimator) and ``cch_delta_vs_gain.png``:

* Δ against the measured KD gain (accuracy with KD − without), the sign
  agreement and the Spearman rank correlation of Δ and the gain over the
  conditions (study 2);
* with ``config.candidates = "teacher"`` (the conditions are candidate
  teachers for one student), per seed the teacher each criterion picks —
  the largest Δ, the smallest NCJSD — against the one with the largest
  measured gain, and how often each picked it (study 3).

Absolute MI differs between estimators (CCH's reviewers): compare signs and
rankings within one estimator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import config as config_lib
from ntdh_jax import data as data_lib
from ntdh_jax import divergences
from ntdh_jax import experiments
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import kd
from ntdh_jax.experiments import tables
from ntdh_jax.info import cch as cch_lib
from ntdh_jax.train import checkpoint
from ntdh_jax.train import stages
from ntdh_jax.train import sweep
from ntdh_jax.train.program import RunSpec
from ntdh_jax.train.stages import common

CANDIDATES = ("teacher", "student")
CACHE = "cch_mi.json"
_STATIC = ("distill", "kd_form", "sample_mask")


# ------------------------------------------------------------------ plan


def check_study(root, prefix: str = "", min_seeds: int = 1) -> dict:
  """The study config ``root`` (or ``root[prefix]``, ``prefix`` a dotted key
  ending in ``.``) checked — seeds, conditions, a traced ``knob`` of its
  data source and ``fixed_knobs`` for exactly the other knobs — and its
  fixed knobs ``{name: value}``; errors name the full config key."""
  c = root
  for part in prefix.split(".")[:-1]:
    c = c[part]
  config_lib.check_count(root, f"{prefix}num_seeds", low=min_seeds)
  config_lib.check_count(root, f"{prefix}seed", low=0)
  config_lib.check_nonempty(root, f"{prefix}conditions")
  knobs = data_lib.get(c.data.name).hparams
  if c.knob not in knobs:
    raise UserError(
        f"config.{prefix}knob must be a traced knob of data source "
        f"{c.data.name!r}: one of {sorted(knobs)}, got {c.knob!r}.")
  fixed = dict(c.fixed_knobs)
  others = set(knobs) - {c.knob}
  if set(fixed) != others:
    raise UserError(
        f"config.{prefix}fixed_knobs must set exactly the knobs of "
        f"{c.data.name!r} other than config.{prefix}knob, {sorted(others)}; "
        f"got {sorted(fixed)}.")
  return fixed


def _checked(c) -> dict:
  """The config's knobs ``{name: value}`` besides ``c.knob``, checked."""
  fixed = check_study(c)
  if c.candidates not in CANDIDATES:
    raise UserError(f"config.candidates must be one of {list(CANDIDATES)}, "
                    f"got {c.candidates!r}.")
  unknown = sorted(set(c.mi.estimators) - set(cch_lib.ESTIMATORS))
  if unknown or not c.mi.estimators:
    raise UserError(
        f"config.mi.estimators must be a non-empty list of "
        f"{sorted(cch_lib.ESTIMATORS)}, got {list(c.mi.estimators)}.")
  return fixed


def _distilled(student, static, method, hp, seed, teacher, tags, keys,
               extra_static=None, extra_hparams=None, extra_tags=None,
               extra_keys=None) -> RunSpec:
  return stages.run_spec(
      "student", {**student, **static, **(extra_static or {})},
      {**hp, **method, **(extra_hparams or {})}, seed,
      needs={"teacher": teacher.run_id},
      tags={**tags, "role": "kd", **(extra_tags or {})},
      keys={**keys, **(extra_keys or {})})


def study_runs(c, fixed: dict, *, prefix: str = "", tags=None):
  """The runs of study config ``c`` (data, teacher_model, model, train,
  knob, conditions, kd, seed, num_seeds; ``fixed`` its other knobs, checked)
  per condition and seed: yields ``(teacher, no_kd, distilled)``, the
  teacher's and the no-KD student's ``RunSpec`` and ``distilled(
  extra_static=, extra_hparams=, extra_tags=, extra_keys=)``, a student
  distilled by ``c.kd`` from that teacher with anything extra (Algorithm 2's
  mask, say). Every run is tagged ``condition``, ``role`` and ``tags``;
  ``prefix`` goes before the config keys named by errors."""
  optim = {"lr": c.train.lr, "momentum": c.train.momentum}
  keys = {"lr": f"{prefix}train.lr", "momentum": f"{prefix}train.momentum",
          c.knob: f"{prefix}conditions",
          **{k: f"{prefix}fixed_knobs.{k}" for k in fixed}}
  method = c.kd.to_dict()
  static = {k: method.pop(k) for k in _STATIC if k in method}
  keys.update({k: f"{prefix}kd.{k}" for k in method})
  student = {**kd.stage_static(c, c.model),
             "teacher_model": c.teacher_model.to_dict()}
  for value in c.conditions:
    hp = {**optim, **fixed, c.knob: value}
    for seed in range(c.seed, c.seed + c.num_seeds):
      run_tags = {**(tags or {}), "condition": value}
      teacher = stages.run_spec(
          "teacher", kd.stage_static(c, c.teacher_model), hp, seed,
          tags={**run_tags, "role": "teacher"}, keys=keys)
      no_kd = stages.run_spec(
          "student", {**student, "distill": "none"}, hp, seed,
          tags={**run_tags, "role": "no_kd"}, keys=keys)
      yield teacher, no_kd, functools.partial(
          _distilled, student, static, method, hp, seed, teacher, run_tags,
          keys)


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  specs = []
  for c in configs:
    for teacher, no_kd, distilled in study_runs(c, _checked(c)):
      specs += [teacher, no_kd, distilled()]
  return specs


# ------------------------------------------------------- representations


def _pairs(rows) -> dict:
  """``{(condition, seed): {"teacher", "no_kd", "kd"}: row}`` of complete
  triples."""
  pairs = {}
  for r in rows:
    pairs.setdefault((r["tag.condition"], r["seed"]), {})[r["tag.role"]] = r
  return {k: v for k, v in sorted(pairs.items()) if len(v) == 3}


@functools.lru_cache(maxsize=4)
def _feature_fn(data_json: str, teacher_json: str, student_json: str,
                batch_size: int):
  """``(arrays, t_out, s_vars, hp, seed) -> (H₁, H₂, labels, ncjsd,
  teacher accuracy, student accuracy, teacher logits, student logits)`` on
  the test split, jitted once per configuration."""
  data = common.Data(json.loads(data_json))
  t_net = common.network(json.loads(teacher_json), data.spec)
  s_net = common.network(json.loads(student_json), data.spec)

  @jax.jit
  def features(arrays, t_out, s_vars, hp, seed):
    key = jax.random.PRNGKey(seed)  # the run's key, as the sweep draws it
    v = data.views(arrays, hp, key)
    eval_key = jax.random.fold_in(key, common.EVAL_KEY)

    def batch(rows):
      xt = data.input(common.take(v.teacher_test, rows), "teacher", hp,
                      eval_key) * t_out["feature_mask"]
      xs = data.input(common.take(v.student_test, rows), "student", hp,
                      eval_key)
      t_logits, h1 = common.apply_eval(t_net, t_out["variables"], xt)
      s_logits, h2 = common.apply_eval(s_net, s_vars, xs)
      y = common.take(v.y_test, rows)
      ncjsd = divergences.decompose(teacher_logits=t_logits,
                                    student_logits=s_logits, labels=y).ncjsd
      right = [jnp.argmax(l, axis=-1) == y for l in (t_logits, s_logits)]
      return h1, h2, ncjsd, *right, t_logits, s_logits

    h1, h2, ncjsd, t_right, s_right, t_logits, s_logits = common.batched_map(
        batch, data.n_test, batch_size)
    return (h1, h2, v.y_test, jnp.mean(ncjsd), jnp.mean(t_right),
            jnp.mean(s_right), t_logits, s_logits)

  return data, features


def representations(rows, config, workdir: str, pairs) -> Iterator[dict]:
  """The teacher's and the no-KD student's test-set features of each
  (condition, seed) triple in ``pairs`` (values of ``_pairs``), one dict
  each: ``{"teacher": f32[N, D₁], "student": f32[N, D₂], "labels": i32[N],
  "teacher_logits", "student_logits": f32[N, C], "ncjsd": float,
  "teacher_acc", "student_acc": float}`` (the accuracies
  re-evaluated from the same pass, which the tests compare with the runs'
  own). The stored outputs (parameters) are read up front, each chunk
  once; the features are computed as they are consumed, so only one
  pair's are in memory at a time."""
  data, features = _feature_fn(
      json.dumps(config.data.to_dict(), sort_keys=True),
      json.dumps(config.teacher_model.to_dict(), sort_keys=True),
      json.dumps(config.model.to_dict(), sort_keys=True),
      config.train.eval_batch_size)
  outputs = sweep.run_outputs(
      workdir, rows, [p[role] for p in pairs for role in ("teacher", "no_kd")])
  for pair, t_out, s_out in zip(pairs, outputs[::2], outputs[1::2]):
    hp = {k: jnp.float32(pair["teacher"][f"hp.{k}"])
          for k in data.source.hparams}
    h1, h2, labels, ncjsd, t_acc, s_acc, t_logits, s_logits = features(
        data.load(), t_out, s_out["variables"], hp, pair["teacher"]["seed"])
    yield {"teacher": np.asarray(h1), "student": np.asarray(h2),
           "labels": np.asarray(labels), "teacher_logits": np.asarray(t_logits),
           "student_logits": np.asarray(s_logits), "ncjsd": float(ncjsd),
           "teacher_acc": float(t_acc), "student_acc": float(s_acc)}


# ------------------------------------------------------------- estimates


def _cache_key(pair, estimator: str, mi) -> str:
  options = {k: v for k, v in mi.to_dict().items() if k != "estimators"}
  text = json.dumps([pair["teacher"]["run_id"], pair["no_kd"]["run_id"],
                     estimator, options], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _live(h, what: str):
  """``h`` without its constant columns (ReLU units dead on the whole test
  set); a ``UserError`` if every one is."""
  try:
    return cch_lib.drop_constant_columns(h, what)[0]
  except ValueError as e:
    raise UserError(f"{e} (on the test split)") from e


def _estimate(features, estimator: str, mi, pair) -> dict:
  result = cch_lib.cch_gap(
      _live(features["teacher"], f"teacher run {pair['teacher']['run_id']}"),
      _live(features["student"], f"student run {pair['no_kd']['run_id']}"),
      features["labels"],
      estimator=estimator, repeats=mi.repeats, subsample=mi.subsample,
      seed=mi.seed, options=mi.options.to_dict().get(estimator))
  return {"i_teacher_student": result.teacher_student.mean,
          "i_student_label": result.student_label.mean,
          "delta": result.gap.mean, "delta_std": result.gap.std}


def points(rows, config, workdir: str) -> list[dict]:
  """One dict per (condition, seed): accuracies (%), the KD gain (points),
  NCJSD and, per estimator, the two MI terms and Δ (nats)."""
  path = os.path.join(workdir, CACHE)
  cache = {}
  if os.path.exists(path):
    with open(path) as f:
      cache = json.load(f)
  out = []
  pairs = _pairs(rows)
  reps = representations(rows, config, workdir, list(pairs.values()))
  for ((condition, seed), pair), features in zip(pairs.items(), reps):
    acc = {role: 100 * tables.last(pair[role], "test_acc")
           for role in ("teacher", "no_kd", "kd")}
    point = {"condition": condition, "seed": seed,
             "teacher_acc": acc["teacher"], "student_acc": acc["no_kd"],
             "kd_acc": acc["kd"], "kd_gain": acc["kd"] - acc["no_kd"]}
    point["ncjsd"] = features["ncjsd"]
    point.update({f"{role}_dead": int(np.sum(np.ptp(features[role], 0) == 0))
                  for role in ("teacher", "student")})
    for estimator in config.mi.estimators:
      key = _cache_key(pair, estimator, config.mi)
      if key not in cache:
        cache[key] = _estimate(features, estimator, config.mi, pair)
        # Written after every estimate: a killed report loses none.
        checkpoint.write_atomic(path, json.dumps(cache, sort_keys=True))
      point.update({f"{estimator}.{k}": v for k, v in cache[key].items()})
    out.append(point)
  return out


# ---------------------------------------------------------------- report


def _mean_std(values) -> tuple[float, float]:
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std())


def by_condition(pts, metric: str) -> dict:
  """``{condition: (mean, std)}`` of ``metric`` over seeds."""
  groups = tables.group_by(pts, lambda p: p["condition"])
  return {c: _mean_std([p[metric] for p in ps]) for c, ps in groups.items()}


def agreement(pts, score: str) -> dict:
  """How well ``score`` (a ``points`` column; larger = KD should help more)
  predicts the KD gain: the fraction of (condition, seed) points and of
  condition means where the signs agree, the same for the trivial rule
  that always predicts the commoner sign of the gain (the bar a sign rule
  has to clear), and Spearman's ρ over the condition means."""
  s = np.array([p[score] for p in pts])
  g = np.array([p["kd_gain"] for p in pts])
  ms, mg = (np.array([m for m, _ in by_condition(pts, k).values()])
            for k in (score, "kd_gain"))
  return {"points": float(np.mean(np.sign(s) == np.sign(g))),
          "majority": float(max(np.mean(g > 0), np.mean(g < 0))),
          "conditions": float(np.mean(np.sign(ms) == np.sign(mg))),
          "spearman": tables.spearman(ms, mg)}


def choices(pts, score: str, abstain: bool) -> dict:
  """Teacher choice per seed: the condition with the largest ``score``
  against the one with the largest measured gain. With ``abstain`` (CCH's
  rule) no teacher is picked when no score is positive, which is right
  when no candidate's gain is positive. Returns the seeds, how many picks
  were right, how many abstained, and the mean regret (best gain − gain
  of the pick, 0 for a right abstention, the best gain for a wrong one)."""
  right = abstained = 0
  regret = []
  seeds = tables.group_by(pts, lambda p: p["seed"])
  for ps in seeds.values():
    best = max(ps, key=lambda p: p["kd_gain"])
    pick = max(ps, key=lambda p: p[score])
    if abstain and pick[score] <= 0:
      abstained += 1
      right += best["kd_gain"] <= 0
      regret.append(max(best["kd_gain"], 0.0))
    else:
      right += pick is best
      regret.append(best["kd_gain"] - pick["kd_gain"])
  return {"seeds": len(seeds), "right": right, "abstained": abstained,
          "regret": float(np.mean(regret))}


def _figure(pts, config, path: str) -> str:
  estimators = list(config.mi.estimators)
  fig = Figure(figsize=(5 * len(estimators), 4))
  axes = fig.subplots(1, len(estimators), squeeze=False)[0]
  conditions = sorted({p["condition"] for p in pts})
  colours = {c: f"C{i % 10}" for i, c in enumerate(conditions)}
  for ax, est in zip(axes, estimators):
    delta = by_condition(pts, f"{est}.delta")
    gain = by_condition(pts, "kd_gain")
    for c in conditions:
      ps = [p for p in pts if p["condition"] == c]
      ax.scatter([p[f"{est}.delta"] for p in ps], [p["kd_gain"] for p in ps],
                 s=12, alpha=0.4, color=colours[c])
      ax.errorbar(delta[c][0], gain[c][0], xerr=delta[c][1], yerr=gain[c][1],
                  marker="o", color=colours[c], capsize=3,
                  label=f"{config.knob} = {c:g}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"Δ = I(H₁;H₂) − I(H₂;Y), {est} (nats)")
    ax.set_ylabel("KD gain (accuracy points)")
    ax.set_title(f"CCH gap vs KD gain — {est}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _write_csv(pts, config, path: str) -> None:
  lines = []
  for p in pts:
    base = {k: p[k] for k in ("condition", "seed", "teacher_acc",
                              "student_acc", "kd_acc", "kd_gain", "ncjsd",
                              "teacher_dead", "student_dead")}
    for est in config.mi.estimators:
      lines.append({**base, "estimator": est, **{
          k: p[f"{est}.{k}"] for k in ("i_teacher_student",
                                       "i_student_label", "delta",
                                       "delta_std")}})
  tables.write_lines(path, lines)


def _report(rows, config, workdir):
  pts = points(rows, config, workdir)
  if not pts:
    return
  for p in pts:
    p["-ncjsd"] = -p["ncjsd"]
  _write_csv(pts, config, os.path.join(workdir, "summary.csv"))
  figure = _figure(pts, config, os.path.join(workdir,
                                             "cch_delta_vs_gain.png"))
  estimators = list(config.mi.estimators)
  cols = {"teacher_acc": 2, "student_acc": 2, "kd_acc": 2, "kd_gain": 2,
          "ncjsd": 3, **{f"{e}.delta": 3 for e in estimators}}
  stats = {k: by_condition(pts, k) for k in cols}
  seeds = len({p["seed"] for p in pts})
  text = [
      f"# CCH on learned representations — `{config.data.name}`\n",
      f"Conditions: `{config.knob}` ∈ {list(config.conditions)} "
      f"(candidate {config.candidates}s); teacher `{config.teacher_model.name}`"
      f" on the teacher view, students `{config.model.name}` on the student "
      f"view, KD: `{config.kd.distill}`. H₁, H₂: the penultimate features of "
      "the teacher and of the student trained *without* KD, on the test "
      f"split; Y: its labels. Mean ± std over {seeds} seeds; accuracy in %, the KD gain "
      "in points, MI and NCJSD (teacher vs no-KD student) in nats. Each Δ is "
      f"the mean of {config.mi.repeats} repeats on {config.mi.subsample:g} of "
      "the rows (`ntdh_jax.info.cch_gap`); features constant on the whole "
      "test split (dead ReLU units: "
      f"{np.mean([p['teacher_dead'] for p in pts]):.1f} of the teacher's, "
      f"{np.mean([p['student_dead'] for p in pts]):.1f} of the student's on "
      "average) carry no information and are dropped first.\n",
      tables.markdown(
          [config.knob, "teacher", "student (no KD)", "student + KD",
           "KD gain", "NCJSD"] + [f"Δ {e}" for e in estimators],
          [[f"{c:g}"] + [tables.fmt(*stats[k][c], digits=d)
                         for k, d in cols.items()]
           for c in sorted(stats["kd_gain"])]),
      "",
      "## Does the criterion predict the KD gain?\n",
      "Sign agreement of the score and the gain over the (condition, seed) "
      "points and over the condition means; the *majority rule*'s agreement "
      "over the points (always predicting the commoner sign of the gain: "
      "the bar a sign rule has to clear); Spearman's ρ of the condition "
      "means (NaN with one condition). NTDH's score is −NCJSD (less "
      "non-target disagreement, more to gain); NCJSD is never negative, so "
      "only its ranking is a prediction.\n",
  ]
  scores = {f"Δ {e}": f"{e}.delta" for e in estimators}
  rank = {name: agreement(pts, score) for name, score in scores.items()}
  rank["−NCJSD (NTDH)"] = agreement(pts, "-ncjsd")
  text.append(tables.markdown(
      ["score", "signs agree (points)", "majority rule (points)",
       "signs agree (conditions)", "Spearman ρ"],
      [[name] + ([f"{a['points']:.2f}", f"{a['majority']:.2f}",
                  f"{a['conditions']:.2f}"]
                 if name in scores else ["–", "–", "–"])
       + [f"{a['spearman']:+.2f}"] for name, a in rank.items()]))
  text.append("")
  for name in scores:
    a = rank[name]
    text.append("- " + tables.verdict(
        a["points"] > a["majority"] and a["spearman"] > 0,
        f"{name}: KD helps where Δ > 0 and hurts where Δ < 0 — "
        f"{a['points']:.0%} of the points agree in sign (the majority rule: "
        f"{a['majority']:.0%}), ρ = {a['spearman']:+.2f}."))
  if config.candidates == "teacher":
    picks = {name: choices(pts, score, abstain=True)
             for name, score in scores.items()}
    picks["NCJSD (NTDH, smallest)"] = choices(pts, "-ncjsd", abstain=False)
    text += [
        "",
        "## Choosing the teacher\n",
        f"Per seed, each criterion picks one of the {len(config.conditions)} "
        "candidate teachers (CCH: the largest Δ, none if no Δ > 0; NTDH: the "
        "smallest NCJSD); right = the pick has the largest measured KD gain "
        "(or CCH abstained and no gain was positive); regret = best gain − "
        "the pick's gain, in points.\n",
        tables.markdown(
            ["criterion", "right", "abstained", "mean regret"],
            [[name, f"{p['right']} / {p['seeds']}", str(p["abstained"]),
              f"{p['regret']:.2f}"] for name, p in picks.items()])]
  text += ["", f"![Δ vs KD gain]({os.path.basename(figure)})"]
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(text) + "\n")


experiments.register("cch", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
