"""The advisor's report: what ``advisor.diagnose`` found, as files a user
keeps next to their training.

``write(diagnosis, out_dir, sources)`` writes into ``out_dir``:

* ``report.md``: the verdict and its evidence, the divergences with their
  intervals, the accuracies, the per-class table (most divergent first),
  the CCH terms, the mask files and how to load them, the rule;
* ``diagnosis.json``: every number of the diagnosis (``to_json``);
* ``ranking.npy``: the valid entries' flat indices into ``ncjsd.npy``,
  most divergent first; ``ncjsd.npy``: each entry's NCJSD (the logits'
  leading shape, 0 where ignored);
* ``keep_25.npy``, ``keep_50.npy``, ...: one Algorithm 2 keep mask per
  ratio (``f32``, the logits' leading shape, 1 = keep the entry in the KD
  term), named by the percentage excluded;
* ``divergences.png`` (the per-entry TCJSD and NCJSD), ``per_class.png``
  and, with features, ``cch_delta.png``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Optional

import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import advisor
from ntdh_jax.info.cch import STANDARD_ERRORS

REPORT = "report.md"
JSON = "diagnosis.json"
RANKING = "ranking.npy"
NCJSD = "ncjsd.npy"
DIVERGENCES_FIGURE = "divergences.png"
PER_CLASS_FIGURE = "per_class.png"
CCH_FIGURE = "cch_delta.png"
# More rows or bars than this hide the classes that matter; the rest are in
# diagnosis.json.
MAX_CLASSES_SHOWN = 30
_NAMES = {"tcjsd": "TCJSD", "ncjsd": "NCJSD", "tckl": "TCKL", "nckl": "NCKL",
          "kl": "KL(teacher ‖ student)"}


def keep_file(ratio: float) -> str:
  """The keep mask's file name: ``keep_25.npy`` for ratio 0.25."""
  return f"keep_{100 * ratio:.10g}.npy"


def _keep_files(diagnosis) -> dict:
  files = {r: keep_file(r) for r in sorted(diagnosis.keep)}
  if len(set(files.values())) < len(files):
    raise ValueError(f"diagnosis.keep has ratios {sorted(diagnosis.keep)} "
                     "too close to name their mask files apart.")
  return files


def write(diagnosis: advisor.Diagnosis, out_dir: str,
          sources: Optional[Mapping[str, str]] = None) -> list[str]:
  """Writes the report of ``diagnosis`` into ``out_dir`` (module docstring).

  Args:
    diagnosis: ``advisor.diagnose``'s result.
    out_dir: the folder, created if missing; files already there of the
      same names are replaced.
    sources: optional ``{input: where it came from}``, e.g.
      ``{"teacher": "T.npy"}``, listed in the report and the JSON.

  Returns:
    The paths written, ``report.md`` first.

  Raises:
    ValueError: ``out_dir`` is an existing file; two ratios of
      ``diagnosis.keep`` give the same file name.
    TypeError: ``diagnosis`` is not a ``Diagnosis``.
  """
  if not isinstance(diagnosis, advisor.Diagnosis):
    raise TypeError("diagnosis must be an ntdh_jax.advisor.Diagnosis, got "
                    f"{type(diagnosis).__name__}.")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir} is an existing file, not a folder; "
                     "give a folder for the report.")
  keep_files = _keep_files(diagnosis)
  os.makedirs(out_dir, exist_ok=True)

  def path(name):
    return os.path.join(out_dir, name)

  written = [path(REPORT), path(JSON)]
  with open(path(REPORT), "w", encoding="utf-8") as f:
    f.write(markdown(diagnosis, out_dir, sources))
  with open(path(JSON), "w", encoding="utf-8") as f:
    f.write(to_json(diagnosis, sources))
  arrays = {RANKING: diagnosis.ranking, NCJSD: diagnosis.ncjsd}
  arrays.update({keep_files[r]: np.asarray(m, np.float32)
                 for r, m in diagnosis.keep.items()})
  for name, array in arrays.items():
    np.save(path(name), array)
    written.append(path(name))
  written.append(_divergences_figure(diagnosis, path(DIVERGENCES_FIGURE)))
  written.append(_per_class_figure(diagnosis, path(PER_CLASS_FIGURE)))
  if diagnosis.cch is not None:
    written.append(_cch_figure(diagnosis, path(CCH_FIGURE)))
  return written


# -- diagnosis.json --------------------------------------------------------


def _number(x):
  """A float as JSON allows it: NaN is null, ±inf the strings "Infinity"
  and "-Infinity" (which ``float()`` reads back)."""
  x = float(x)
  if math.isnan(x):
    return None
  if math.isinf(x):
    return "Infinity" if x > 0 else "-Infinity"
  return x


def _plain(obj):
  """``obj`` as JSON values: mappings, sequences and arrays become objects
  and lists, every float goes through ``_number``."""
  if isinstance(obj, Mapping):
    return {str(k): _plain(v) for k, v in obj.items()}
  if isinstance(obj, np.ndarray):
    return _plain(obj.tolist())
  if isinstance(obj, (list, tuple)):
    return [_plain(v) for v in obj]
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    return _number(obj)
  return obj


def _interval(interval: advisor.Interval) -> dict:
  return interval._asdict()


def _term(term) -> dict:
  return {"values": term.values, "mean": term.mean, "std": term.std}


def to_json(diagnosis: advisor.Diagnosis,
            sources: Optional[Mapping[str, str]] = None) -> str:
  """``diagnosis.json``'s text: every number of the diagnosis.

  Standard JSON (``json.loads`` and any other parser read it): NaN is
  written as ``null`` and ±inf as the strings ``"Infinity"`` /
  ``"-Infinity"`` (``float()`` reads both back), never as the bare
  ``NaN``/``Infinity`` tokens Python's ``json`` would emit. A ``null`` in
  a field that holds numbers is NaN (a class with no example, the ratio of
  two zero divergences); ``mask_ratio``, ``cch_verdict`` and ``cch`` are
  ``null`` when they are ``None``. Intervals are ``{"value", "low",
  "high"}``; per-class rows are ``[value, low, high]`` per class; ratios
  key ``kept_ncjsd`` and ``files.keep`` as ``str(float(ratio))``. The
  per-entry arrays are in the ``.npy`` files, not here.
  """
  d = diagnosis
  cch = None
  if d.cch is not None:
    cch = {
        "teacher_student": _term(d.cch.teacher_student),
        "student_label": _term(d.cch.student_label),
        "gap": _term(d.cch.gap),
        "interval": list(d.cch.interval),
        "interval_rule": f"mean ∓ {STANDARD_ERRORS:g}·std/√repeats",
        # cch_gap's own sign rule (Δ's interval against 0); the advisor's
        # vote is cch_verdict, on the rule's thresholds.
        "verdict": d.cch.verdict,
        "estimator": d.cch.estimator,
        "unit": d.cch.unit,
        "n": d.cch.n,
        "classes": d.cch.classes,
        "repeats": len(d.cch.rows),
        "rows_per_repeat": d.cch.rows.shape[1],
        "dropped_features": dict(zip(("teacher", "student"),
                                     d.dropped_features)),
    }
  out = {
      "verdict": d.verdict,
      "ntdh_verdict": d.ntdh_verdict,
      "cch_verdict": d.cch_verdict,
      "mask_ratio": d.mask_ratio,
      "evidence": list(d.evidence),
      "n": d.n,
      "entries": d.entries,
      "classes": d.classes,
      "temperature": d.temperature,
      "bootstrap": d.bootstrap,
      "level": d.level,
      "seed": d.seed,
      "divergences": {k: _interval(v) for k, v in d.divergences.items()},
      "accuracy": {k: _interval(v) for k, v in d.accuracy.items()},
      "ratio": _interval(d.ratio),
      "per_class": d.per_class._asdict(),
      "kept_ncjsd": {str(float(r)): v for r, v in sorted(
          d.kept_ncjsd.items())},
      "cch": cch,
      "rule": d.rule._asdict(),
      "sources": {str(k): str(v) for k, v in (sources or {}).items()},
      "files": {"ranking": RANKING, "ncjsd": NCJSD,
                "keep": {str(float(r)): name for r, name in
                         _keep_files(d).items()}},
  }
  return json.dumps(_plain(out), indent=1, ensure_ascii=False,
                    allow_nan=False) + "\n"


# -- report.md ---------------------------------------------------------------


def _unit(d) -> str:
  return "examples" if d.ncjsd.ndim == 1 else "entries"


def _one(d) -> str:
  return "example" if d.ncjsd.ndim == 1 else "entry"


def _pct(ratio: float) -> str:
  return f"{100 * ratio:.10g} %"


def _span(low: float, high: float) -> str:
  return f"[{low:.4f}, {high:.4f}]"


def _headline(d: advisor.Diagnosis) -> str:
  """The report's first line: the verdict in bold and what to mask."""
  unit = _unit(d)
  if d.mask_ratio is None:
    tried = ", ".join(_pct(r) for r in sorted(d.keep))
    advice = (f"no mask ratio tried ({tried}) brings the kept {unit}' mean "
              f"NCJSD below {d.rule.ncjsd_helps:g}")
  elif d.mask_ratio == 0:
    advice = (f"no mask needed: the mean NCJSD is below "
              f"{d.rule.ncjsd_helps:g} unmasked")
  else:
    advice = (f"mask the top {_pct(d.mask_ratio)} most divergent {unit} out "
              f"of the KD term (`{keep_file(d.mask_ratio)}`)")
  return f"**Verdict: {d.verdict}** — {advice}."


def _class_order(d) -> np.ndarray:
  """Classes with examples, largest NCJSD first (ties by class index)."""
  present = np.flatnonzero(d.per_class.count > 0)
  return present[np.argsort(-d.per_class.ncjsd[present, 0], kind="stable")]


def markdown(d: advisor.Diagnosis, out_dir: str = ".",
             sources: Optional[Mapping[str, str]] = None) -> str:
  """``report.md``'s text; ``out_dir`` is where the loading example points."""
  pct = _pct(d.level)
  unit = _unit(d)
  votes = f"NTDH votes *{d.ntdh_verdict}*; " + (
      "CCH: no features given." if d.cch_verdict is None
      else f"CCH votes *{d.cch_verdict}*.")
  lines = [
      "# Will distillation help? The advisor's diagnosis", "",
      _headline(d), "", votes, "",
      "This verdict is a forecast from networks already trained, not a "
      "measurement of the KD gain: how often it was right on our sweeps is "
      "the calibration table in the README (\"Will distillation help?\"); "
      "read it before trusting the verdict.", "",
      "## Evidence", ""]
  lines += [f"- {line}" for line in d.evidence]

  lines += ["", "## Inputs", ""]
  lines += [f"- {what}: `{where}`" for what, where in (sources or {}).items()]
  lines += [
      f"- N = {d.n} examples, {d.entries} valid "
      f"{unit if unit == 'examples' else 'entries (pixels)'} ranked, C = "
      f"{d.classes} classes; temperature {d.temperature:g}",
      f"- intervals: {pct} percentile bootstrap over the examples, "
      f"{d.bootstrap} resamples, seed {d.seed}"]

  lines += ["", "## Divergences (teacher ‖ student, nats) and accuracy", "",
            f"| | mean | {pct} interval |", "|---|---:|---|"]
  for name, iv in d.divergences.items():
    lines.append(f"| {_NAMES.get(name, name)} | {iv.value:.4f} | "
                 f"{_span(iv.low, iv.high)} |")
  for role, iv in d.accuracy.items():
    lines.append(f"| {role} accuracy | {iv.value:.4f} | "
                 f"{_span(iv.low, iv.high)} |")
  r = d.ratio
  lines += [f"| NCJSD / TCJSD | {r.value:.4g} | [{r.low:.4g}, {r.high:.4g}] |",
            "", "NCJSD / TCJSD above 1: the modalities disagree more on the "
            "non-target classes than on the target (NaN: identical "
            "predictions)."]

  order = _class_order(d)
  lines += ["", "## Per class (most divergent first)", "",
            "Where the modalities disagree: the mean non-target divergence of "
            f"each class's {unit}.", "",
            f"| class | {unit} | NCJSD | {pct} interval | NCKL | {pct} "
            "interval |", "|---:|---:|---:|---|---:|---|"]
  pc = d.per_class
  for c in order[:MAX_CLASSES_SHOWN]:
    lines.append(
        f"| {c} | {pc.count[c]} | {pc.ncjsd[c, 0]:.4f} | "
        f"{_span(*pc.ncjsd[c, 1:])} | {pc.nckl[c, 0]:.4f} | "
        f"{_span(*pc.nckl[c, 1:])} |")
  if len(order) > MAX_CLASSES_SHOWN:
    lines.append(f"\n{len(order) - MAX_CLASSES_SHOWN} more classes in "
                 f"`{JSON}` (`per_class`).")
  empty = np.flatnonzero(pc.count == 0)
  if len(empty):
    lines.append(f"\nNo {unit} of class {', '.join(map(str, empty))}.")

  lines += ["", "## CCH: Δ = I(H1; H2) − I(H2; Y)", ""]
  lines += _cch_lines(d)

  lines += _mask_lines(d, out_dir)
  lines += _rule_lines(d, pct)
  lines += ["", "## Figures", "",
            f"![per-entry divergences]({DIVERGENCES_FIGURE})", "",
            f"![per-class NCJSD]({PER_CLASS_FIGURE})"]
  if d.cch is not None:
    lines += ["", f"![CCH gap]({CCH_FIGURE})"]
  return "\n".join(lines) + "\n"


def _cch_lines(d) -> list:
  c = d.cch
  if c is None:
    return ["No features given (`teacher_features`, `student_features`): "
            "the verdict is NTDH's alone."]
  repeats = len(c.rows)
  lines = [
      f"Estimator {c.estimator}; {repeats} repeats of {c.rows.shape[1]} of "
      f"the {c.n} examples; unit {c.unit}.", "",
      "| | mean | std |", "|---|---:|---:|"]
  for name, term in (("I(H1; H2), teacher–student", c.teacher_student),
                     ("I(H2; Y), student–label", c.student_label),
                     ("Δ", c.gap)):
    lines.append(f"| {name} | {term.mean:.4f} | {term.std:.4f} |")
  low, high = c.interval
  dropped_t, dropped_s = d.dropped_features
  lines += [
      "", f"Interval (Δ mean ∓ {STANDARD_ERRORS:g}·std/√{repeats}, the "
      f"repeat-to-repeat spread, not the bootstrap): {_span(low, high)} → "
      f"CCH votes *{d.cch_verdict}*.", "",
      f"Constant feature columns dropped (they carry no information): "
      f"{dropped_t} of the teacher's, {dropped_s} of the student's."]
  return lines


def _mask_lines(d, out_dir) -> list:
  files = _keep_files(d)
  lines = ["", "## Masks for your training (Algorithm 2)", "",
           f"Each file holds one weight per {_one(d)} in the logits' leading "
           f"shape {tuple(d.ncjsd.shape)}: 1 = keep it in the KD term, 0 = "
           "leave it out (the most divergent; ignored entries are 0 too). "
           "The cross-entropy term is unchanged.", "",
           "| excluded | kept mean NCJSD | file |", "|---:|---:|---|"]
  for ratio, value in sorted(d.kept_ncjsd.items()):
    name = f"`{files[ratio]}`" if ratio in files else "(no mask)"
    lines.append(f"| {_pct(ratio)} | {value:.4f} | {name} |")
  example = files[d.mask_ratio] if d.mask_ratio else files[min(files)]
  lines += [
      "", f"`{RANKING}`: the valid entries' flat indices into `{NCJSD}`, "
      "most divergent first (`np.unravel_index(ranking, ncjsd.shape)` for "
      "segmentation); a mask of ratio r excludes the first "
      "floor(r · entries).", "",
      "```python",
      "import numpy as np",
      f"keep = np.load({os.path.join(out_dir, example)!r})  # f32, 1 = keep",
      "# in the training step, for the batch's example indices `idx`:",
      "w = keep[idx]",
      "kd_term = (w * kd_per_example).sum() / np.maximum(w.sum(), 1)",
      "```"]
  return lines


def _rule_lines(d, pct) -> list:
  rule = d.rule
  return [
      "", "## The rule", "",
      "| threshold | value |", "|---|---:|",
      f"| NCJSD helps below | {rule.ncjsd_helps:g} |",
      f"| NCJSD hurts above | {rule.ncjsd_hurts:g} |",
      f"| Δ helps above | {rule.delta_helps:g} |",
      f"| Δ hurts below | {rule.delta_hurts:g} |",
      f"| KL floor | {rule.kl_floor:g} |", "",
      f"**NTDH** votes on the {pct} interval of the mean NCJSD: *helps* when "
      "the whole interval lies below the first threshold (the modalities "
      "share their non-target knowledge), *hurts* when it lies above the "
      "second, *neutral* otherwise — and *neutral* when the mean KL's "
      "interval lies below the floor (the student already predicts what "
      "the teacher does).", "",
      "**CCH** votes on Δ's interval: *helps* above its first threshold "
      "(the teacher shares more with the student than the student knows "
      "about the label), *hurts* below the second, *neutral* otherwise.", "",
      "**Combined**: the votes when they agree, the decided one when the "
      "other is neutral, *neutral* when they conflict; NTDH's alone without "
      "features.", "",
      "**Mask**: the smallest ratio (0 included) whose kept entries' mean "
      "NCJSD lies below NTDH's *helps* threshold."]


# -- figures -----------------------------------------------------------------


def _divergences_figure(d, path: str) -> str:
  valid = d.valid
  flat_ncjsd = np.asarray(d.ncjsd).reshape(-1)
  fig = Figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2)
  for ax, name, values in ((axes[0], "tcjsd", d.tcjsd),
                           (axes[1], "ncjsd", d.ncjsd)):
    v = np.asarray(values)[valid]
    ax.hist(v, bins=50, color="C0", alpha=0.7)
    mean = d.divergences[name].value
    ax.axvline(mean, color="k", lw=1.5, label=f"mean {mean:.4f}")
    ax.set_xlabel(f"{_NAMES[name]} per entry (nats)")
    ax.set_ylabel(_unit(d))
    ax.grid(alpha=0.3)
  for i, (ratio, keep) in enumerate(sorted(d.keep.items())):
    # The cut is the smallest NCJSD the mask leaves out.
    removed = int(np.sum(~(np.asarray(keep) > 0) & valid))
    if removed:
      cut = flat_ncjsd[d.ranking[removed - 1]]
      axes[1].axvline(cut, color=f"C{i + 1}", ls="--",
                      label=f"top {_pct(ratio)} excluded (≥ {cut:.3f})")
  for threshold, what in ((d.rule.ncjsd_helps, "helps below"),
                          (d.rule.ncjsd_hurts, "hurts above")):
    axes[1].axvline(threshold, color="grey", ls=":",
                    label=f"rule: {what} {threshold:g}")
  axes[0].set_title("target-class divergence")
  axes[1].set_title("non-target divergence (Algorithm 2 ranks on it)")
  for ax in axes:
    ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _per_class_figure(d, path: str) -> str:
  order = _class_order(d)[:MAX_CLASSES_SHOWN]
  ncjsd = d.per_class.ncjsd[order]
  fig = Figure(figsize=(max(5.0, 0.35 * len(order) + 2), 3.8))
  ax = fig.subplots()
  # A percentile interval of a ratio of sums need not contain the point
  # estimate; matplotlib refuses negative error bars.
  errors = np.clip(np.stack([ncjsd[:, 0] - ncjsd[:, 1],
                             ncjsd[:, 2] - ncjsd[:, 0]]), 0, None)
  x = np.arange(len(order))
  ax.bar(x, ncjsd[:, 0], yerr=errors, capsize=3, color="C0", alpha=0.8)
  ax.set_xticks(x)
  ax.set_xticklabels([str(c) for c in order])
  ax.set_xlabel("class (most divergent first)")
  ax.set_ylabel("mean NCJSD (nats)")
  shown = "" if len(order) == np.sum(d.per_class.count > 0) else (
      f", the {len(order)} most divergent")
  ax.set_title(f"Per-class NCJSD, {_pct(d.level)} intervals{shown}")
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _cch_figure(d, path: str) -> str:
  c = d.cch
  values = np.asarray(c.gap.values, np.float64)
  x = np.arange(1, len(values) + 1)
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  low, high = c.interval
  ax.axhspan(low, high, color="C0", alpha=0.15, label="interval")
  ax.axhline(c.gap.mean, color="C0", lw=1.5, label=f"mean {c.gap.mean:.3f}")
  ax.plot(x, values, "o", color="C0", label="Δ per repeat")
  ax.axhline(d.rule.delta_helps, color="C2", ls="--",
             label=f"helps above {d.rule.delta_helps:g}")
  ax.axhline(d.rule.delta_hurts, color="C3", ls="--",
             label=f"hurts below {d.rule.delta_hurts:g}")
  ax.axhline(0, color="grey", lw=0.8)
  ax.set_xticks(x)
  ax.set_xlabel("repeat")
  ax.set_ylabel(f"Δ = I(H₁;H₂) − I(H₂;Y) ({c.unit})")
  ax.set_title(f"CCH gap ({c.estimator}) → {d.cch_verdict}")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


__all__ = ["CCH_FIGURE", "DIVERGENCES_FIGURE", "JSON", "NCJSD",
           "PER_CLASS_FIGURE", "RANKING", "REPORT", "keep_file",
           "markdown", "to_json", "write"]
