"""Tables, figures and ``report.md`` of the NTDH study on a real source.

Every number is the mean ± std over seeds of a run's last evaluation;
accuracies are in %, divergences (teacher–student, test set) in nats. Each
of the paper's claims gets a one-line verdict computed from those numbers:

* Fig. 7: raising the non-target weight β lowers the student's accuracy
  (negative correlation of accuracy with β at fixed α);
* Algorithm 1 (Fig. 9): students of teachers whose input was masked by the
  *true* mask beat those of the *random* mask, which beat the *false* mask
  (accuracy averaged over the mask ratios), and the true mask gives the
  lowest teacher–student NCJSD;
* Table II: with the true mask, a method does better than without a mask.

``mask_heatmaps`` gives Fig. 10's images: for one seed and ratio, which
input pixels each mask removes, and the pixel importance they come from.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import plots
from ntdh_jax.experiments import tables
from ntdh_jax.train import sweep

KINDS = ("true", "random", "false")


def _verdict(ok: bool, what: str) -> str:
  return f"**{'reproduced' if ok else 'not reproduced'}** — {what}"


def _acc(rows):
  return tables.stats(rows, "test_acc", 100)


def distilled(rows, method: str, kind: str = "none", ratio: float = 0.0,
              **hp) -> list[dict]:
  """KD students of distillation term ``method`` (``static.distill``) whose
  teacher is the unmasked one (``kind="none"``) or the one masked by
  Algorithm 1's ``kind`` mask at ``ratio``, with hyperparameters ``hp``.

  Selected by what each run is, not by its tags: one run serves several
  parts (DKD at α = 1, β = 8 is in Fig. 7 and in Table II), and the engine
  keeps the tags of the part that planned it first.
  """
  teachers = {}
  for r in tables.select(rows, "teacher"):
    if r.get("tag.role") == "masked_teacher":
      teachers[r["run_id"]] = (r["tag.kind"], r["tag.ratio"])
    else:
      teachers[r["run_id"]] = ("none", 0.0)
  return [r for r in rows if r["stage"] == "student"
          and r.get("static.distill") == method
          and teachers.get(r["needs"].get("teacher")) == (kind, ratio)
          and all(r.get(f"hp.{k}") == v for k, v in hp.items())]


# --------------------------------------------------------------- Fig. 7

def _weights(rows, config, workdir, out) -> list[str]:
  w = config.weights
  panels, verdicts = [], []
  for varied, other in (("alpha", "beta"), ("beta", "alpha")):
    held = w[f"fixed_{other}"]
    values = sorted(set(w[f"{varied}s"]) | {w[f"fixed_{varied}"]})
    by_value = {v: distilled(rows, "dkd", **{varied: v, other: held})
                for v in values}
    st = [_acc(by_value[v]) for v in values]
    nc = [tables.stats(by_value[v], "ncjsd") for v in values]
    out.append(f"\n### Fig. 7 — {varied} varied, {other} = {held}: DKD "
               "student (α·TCKL + β·NCKL)\n")
    out.append(tables.markdown(
        [varied, "student acc (%)", "NCJSD", "seeds"],
        [[v, tables.fmt(*s), tables.fmt(*n, digits=3), s[2]]
         for v, s, n in zip(values, st, nc)]))
    panels.append(dict(series={"KD student": (values, [s[0] for s in st],
                                              [s[1] for s in st])},
                       xlabel=varied, ylabel="student test accuracy (%)",
                       title=f"{varied} varied ({other} = {held})"))
    if varied == "beta" and len(values) > 1:
      trend = float(np.corrcoef(values, [s[0] for s in st])[0, 1])
      verdicts.append(_verdict(
          trend < 0, f"Fig. 7: raising β lowers the student's accuracy "
          f"(correlation of accuracy with β: {trend:+.2f}; "
          f"{st[0][0]:.2f} % at β = {values[0]}, {st[-1][0]:.2f} % at "
          f"β = {values[-1]})."))
  path = plots.save_grid(os.path.join(workdir, "fig7_weights.png"), [panels],
                         suptitle="α·TCKL + β·NCKL")
  out.append(f"\n![weights]({os.path.basename(path)})\n")
  return verdicts


# --------------------------------------------------------------- Alg. 1

def _alg1(rows, config, workdir, out) -> list[str]:
  a = config.alg1
  teachers = tables.select(rows, "teacher", role="masked_teacher")
  ratios = sorted(a.ratios)
  lines, acc, nc, mean = [], {}, {}, {}
  for kind in a.kinds:
    st = {m: [tables.stats(distilled(rows, "kl", kind, x), m,
                           100 if m == "test_acc" else 1) for x in ratios]
          for m in ("test_acc", "ncjsd", "tcjsd")}
    t_acc = [_acc([r for r in teachers if r["tag.kind"] == kind
                   and r["tag.ratio"] == x]) for x in ratios]
    for i, x in enumerate(ratios):
      lines.append([kind, x, tables.fmt(*t_acc[i]),
                    tables.fmt(*st["test_acc"][i]),
                    tables.fmt(*st["ncjsd"][i], digits=3),
                    tables.fmt(*st["tcjsd"][i], digits=3)])
    acc[kind] = (ratios, [s[0] for s in st["test_acc"]],
                 [s[1] for s in st["test_acc"]])
    nc[kind] = (ratios, [s[0] for s in st["ncjsd"]],
                [s[1] for s in st["ncjsd"]])
    mean[kind] = (float(np.mean(acc[kind][1])), float(np.mean(nc[kind][1])))
  out.append("\n### Algorithm 1 (Fig. 9): teacher input masked by pixel "
             "importance, KD student\n")
  out.append(tables.markdown(["mask", "ratio", "masked teacher acc (%)",
                              "student acc (%)", "NCJSD", "TCJSD"], lines))
  path = plots.save_grid(
      os.path.join(workdir, "fig9_alg1.png"),
      [[dict(series=acc, xlabel="mask ratio",
             ylabel="student test accuracy (%)", title="accuracy"),
        dict(series=nc, xlabel="mask ratio", ylabel="teacher–student NCJSD",
             title="NCJSD")]], suptitle="Algorithm 1")
  out.append(f"\n![alg1]({os.path.basename(path)})\n")
  if set(mean) != set(KINDS):
    return []
  a = {k: mean[k][0] for k in KINDS}
  n = {k: mean[k][1] for k in KINDS}
  return [
      _verdict(a["true"] > a["random"] > a["false"],
               "Fig. 9: student accuracy true > random > false mask "
               f"(mean over ratios: {a['true']:.2f} / {a['random']:.2f} / "
               f"{a['false']:.2f} %)."),
      _verdict(n["true"] < n["random"] < n["false"],
               "Algorithm 1 lowers the non-target divergence: NCJSD true < "
               f"random < false ({n['true']:.3f} / {n['random']:.3f} / "
               f"{n['false']:.3f})."),
  ]


def mask_heatmaps(rows, workdir: str, ratio: float,
                  seed: int | None = None) -> dict[str, np.ndarray]:
  """Fig. 10's images for one seed (default: the first) and mask ratio:
  ``{"importance": f32[H, W], "true" | "random" | "false": f32[H, W]}``
  where a mask image is 1 on the pixels the mask *removes* and 0 on those
  it keeps (the stored ``feature_mask`` is the keep mask)."""
  masked = tables.select(rows, "teacher", role="masked_teacher")
  if not masked:
    return {}
  seed = min(r["seed"] for r in masked) if seed is None else seed
  found = {r["tag.kind"]: r for r in masked
           if r["seed"] == seed and r["tag.ratio"] == ratio}
  joint = [r for r in tables.select(rows, "joint") if r["seed"] == seed][:1]
  outputs = sweep.run_outputs(workdir, rows, list(found.values()) + joint)
  # The stored feature_mask is the keep mask; the image shows what goes.
  images = {kind: 1.0 - np.asarray(out["feature_mask"], np.float32)[..., 0]
            for kind, out in zip(found, outputs)}
  if joint:
    images["importance"] = np.asarray(outputs[-1]["importance"],
                                      np.float32)[..., 0]
  return images


def _heatmap_figure(images, ratio, path) -> str:
  names = [n for n in ("importance",) + KINDS if n in images]
  fig = Figure(figsize=(3 * len(names), 3.2))
  axes = fig.subplots(1, len(names), squeeze=False)[0]
  for ax, name in zip(axes, names):
    im = ax.imshow(images[name], cmap="viridis" if name == "importance"
                   else "gray_r", vmin=0, vmax=1)
    ax.set_title("pixel importance" if name == "importance"
                 else f"{name} mask: removed")
    ax.set_xticks([])
    ax.set_yticks([])
    if name == "importance":
      fig.colorbar(im, ax=ax, fraction=0.046)
  fig.suptitle(f"Fig. 10 — pixels each mask removes at ratio {ratio}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


# --------------------------------------------------------------- Table II

def _table2(rows, config, out) -> list[str]:
  no_kd = _acc(tables.select(rows, "student", role="no_kd"))
  t = config.table2
  columns = [("none", 0.0)] + [(k, r) for r in t.ratios for k in t.kinds]
  lines, wins = [], []
  for method in t.methods:
    hp = {"alpha": t.dkd_alpha, "beta": t.dkd_beta} if method == "dkd" else {}
    cells = {c: _acc(distilled(rows, method, *c, **hp)) for c in columns}
    lines.append([method, tables.fmt(*no_kd)]
                 + [tables.fmt(*cells[c]) for c in columns])
    trues = [cells[("true", r)][0] for r in t.ratios if "true" in t.kinds]
    if trues:
      wins.append((method, max(trues) > cells[("none", 0.0)][0]))
  header = (["method", "w/o KD", "w/o mask"]
            + [f"{k[0].upper()} {int(100 * r)} %" for k, r in columns[1:]])
  out.append("\n### Table II — KD methods × Algorithm 1 masks: student "
             "accuracy (%)\n")
  out.append("T / R / F: the teacher retrained on its input masked by the "
             "true / random / false mask at that ratio (Algorithm 1), the "
             "student distilled from it. Feature methods act on the "
             "penultimate features (their papers' wiring); DKD at "
             f"α = {t.dkd_alpha}, β = {t.dkd_beta}.\n")
  out.append(tables.markdown(header, lines))
  if not wins:
    return []
  helped = [m for m, ok in wins if ok]
  return [_verdict(len(helped) > len(wins) / 2,
                   f"Table II: a true mask beats no mask for "
                   f"{len(helped)} of {len(wins)} methods "
                   f"({', '.join(helped) or 'none'}).")]


# --------------------------------------------------------------- report

# A condition of the tidy table (summary.csv): what a run is, read from its
# row (not its tags, which a run shared by two parts has from one of them).
CONDITION = {
    "stage": lambda r: r["stage"], "role": lambda r: r.get("tag.role"),
    "method": lambda r: r.get("static.distill"),
    "kind": lambda r: r.get("tag.kind"), "ratio": lambda r: r.get("tag.ratio"),
    "mask_ratio": lambda r: r.get("hp.mask_ratio"),
    "alpha": lambda r: r.get("hp.alpha"), "beta": lambda r: r.get("hp.beta")}


def write(rows, config, workdir) -> str:
  """Writes report.md, summary.csv and the PNG figures; returns the
  report's path."""
  teacher = _acc(tables.select(rows, "teacher", role="teacher"))
  student = _acc(tables.select(rows, "student", role="no_kd"))
  out = [f"# The NTDH study on `{config.data.name}` — report\n",
         f"Teacher `{config.teacher_model.name}` on the teacher view, "
         f"students `{config.model.name}` on the student view; mean ± std "
         f"over {config.num_seeds} seeds of the last evaluation.\n",
         f"Modality strength (each view alone): teacher {tables.fmt(*teacher)}"
         f" %, student without KD {tables.fmt(*student)} %.\n"]
  verdicts = []
  if "weights" in config.parts:
    verdicts += _weights(rows, config, workdir, out)
  if "alg1" in config.parts:
    verdicts += _alg1(rows, config, workdir, out)
    ratio = 0.5 if 0.5 in config.alg1.ratios else config.alg1.ratios[0]
    images = mask_heatmaps(rows, workdir, ratio)
    if images:
      path = _heatmap_figure(images, ratio,
                             os.path.join(workdir, "fig10_masks.png"))
      out.append(f"\n![masks]({os.path.basename(path)})\n")
  if "table2" in config.parts:
    verdicts += _table2(rows, config, out)
  out[3:3] = ["## Verdicts\n"] + [f"* {v}" for v in verdicts] + [""]
  tables.write_csv(os.path.join(workdir, "summary.csv"),
                   tables.tidy(rows, CONDITION), CONDITION)
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
  return path
