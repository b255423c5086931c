"""Tables, figures and ``report.md`` of the NTDH study on a real source.

Every number is the mean ± std over seeds of a run's last evaluation of the
study's score — test accuracy, or for segmentation the mean IoU over
classes — in %; divergences (teacher–student, test set) in nats. Each of the
paper's claims gets a one-line verdict computed from those numbers, beside
the shape the paper claims (its tables' and figures' numbers are not
available to us; ``PAPER`` holds the few numbers its text gives):

* Fig. 7: raising the non-target weight β lowers the student's score
  (negative correlation of the score with β at fixed α);
* Algorithm 1 (Fig. 9): students of teachers whose input was masked by the
  *true* mask beat those of the *random* mask, which beat the *false* mask
  (score averaged over the mask ratios), and the true mask gives the
  lowest teacher–student NCJSD;
* Tables II–III: with the true mask, a method does better than without a
  mask;
* Algorithm 2 (Fig. 11): leaving the most divergent samples (pixels) out of
  the KD term (*true*) beats leaving out random ones, which beats leaving
  out the least divergent (*false*), and the true mask beats unmasked KD;
* Fig. 12: the per-pixel NCJSD is larger on object edges than inside
  objects.

``mask_heatmaps`` gives Fig. 10's images: for one seed and ratio, which
input pixels each mask removes, and the pixel importance they come from.
``ncjsd_maps`` gives Fig. 12's: the per-pixel teacher–student NCJSD on test
images, over their valid pixels only.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import plots
from ntdh_jax.experiments import tables
from ntdh_jax.train import sweep
from ntdh_jax.train.stages import common

KINDS = ("true", "random", "false")


@dataclasses.dataclass(frozen=True)
class Score:
  """The study's headline metric: ``key`` (a ``history.*`` metric, a
  fraction) and its ``name`` (reported in %)."""
  key: str
  name: str


ACCURACY = Score("test_acc", "accuracy")
MIOU = Score("test_miou", "mIoU")


def score_of(rows) -> Score:
  """mIoU when the runs are per-pixel segmentation (they report
  ``test_miou``), else accuracy."""
  return MIOU if any("history.test_miou" in r for r in rows) else ACCURACY


@dataclasses.dataclass(frozen=True)
class Paper:
  """What the paper gives for one dataset: the number of its KD-methods
  table, and each modality's result alone as its text states it (the
  figures' and tables' numbers are not available to us)."""
  table: str = "Table II"
  alone: str = ("none: the paper has no digits → digits-M experiment (its "
                "MNIST → MNIST-M claims are the shapes below)")


# By ``config.data.name``; the unimodal numbers are from the paper's text.
PAPER: dict[str, Paper] = {
    "digits": Paper(),
    "mnist_pair": Paper(alone="student (MNIST-M) without KD 69.1 %"),
    "ravdess": Paper(table="Table III",
                     alone="teacher (audio) 74.6 %, student (image) 71.4 %"),
    "nyu_depth_v2_labeled": Paper(
        alone="mIoU RGB 24.4 %, depth 24.7 %, on semantic scene completion "
              "(AIC-Net): not comparable with our 2-D segmentation"),
    "semantic_kitti": Paper(
        alone="mIoU LiDAR 60.5 %, camera image 58.4 % (PMF, LiDAR paired "
              "with the camera): not comparable with our two LiDAR channel "
              "groups"),
}

# The shape of each claim as the paper states it, beside our verdicts.
CLAIMS = {
    "fig7": "the score falls as β grows, on every dataset (Fig. 7a–d)",
    "fig9": "true > random > false",
    "alg1_ncjsd": "the true mask lowers the teacher–student NCJSD",
    "table": "each method's true-mask row beats its w/o-mask row",
    "fig11": "leaving the most divergent pixels out of KD (true) does best, "
             "the least divergent (false) worst",
    "fig11_kd": "Algorithm 2 improves on plain KD",
    "fig12": "the non-target divergence concentrates on object edges",
}


def _verdict(ok: bool, what: str, claim: str) -> str:
  return (f"{tables.verdict(ok, what)} Paper (shape; its numbers are not "
          f"available to us): {CLAIMS[claim]}.")


def _score(rows, score: Score):
  return tables.stats(rows, score.key, 100)


def _metrics(runs, score: Score) -> dict[str, tuple[float, float, int]]:
  """``tables.stats`` of the score (in %), NCJSD and TCJSD over ``runs``."""
  return {m: tables.stats(runs, m, 100 if m == score.key else 1)
          for m in (score.key, "ncjsd", "tcjsd")}


def _series(xs, st) -> tuple:
  """A ``plots.band_panel`` series: ``(xs, means, stds)`` of ``tables.stats``
  results ``st`` at ``xs``."""
  return xs, [s[0] for s in st], [s[1] for s in st]


def distilled(rows, method: str, kind: str = "none", ratio: float = 0.0,
              sample_mask: tuple[str, float] | None = None,
              **hp) -> list[dict]:
  """KD students of distillation term ``method`` (``static.distill``) whose
  teacher is the unmasked one (``kind="none"``) or the one masked by
  Algorithm 1's ``kind`` mask at ``ratio``, with hyperparameters ``hp``;
  distilled on every sample (``sample_mask=None``) or with Algorithm 2's
  ``(kind, ratio)`` sample mask.

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
  if sample_mask is None:
    hp_mask, mask = {}, "none"
  else:
    hp_mask, mask = {"mask_kind": masks.MASK_KINDS.index(sample_mask[0]),
                     "mask_ratio": sample_mask[1]}, "ncjsd"
  hp = {**hp, **hp_mask}
  return [r for r in rows if r["stage"] == "student"
          and r.get("static.distill") == method
          and r.get("static.sample_mask") == mask
          and teachers.get(r["needs"].get("teacher")) == (kind, ratio)
          and all(r.get(f"hp.{k}") == v for k, v in hp.items())]


# --------------------------------------------------------------- Fig. 7

def _weights(rows, config, workdir, out, score) -> list[str]:
  w = config.weights
  panels, verdicts = [], []
  for varied, other in (("alpha", "beta"), ("beta", "alpha")):
    held = w[f"fixed_{other}"]
    values = sorted(set(w[f"{varied}s"]) | {w[f"fixed_{varied}"]})
    by_value = {v: distilled(rows, "dkd", **{varied: v, other: held})
                for v in values}
    st = [_score(by_value[v], score) for v in values]
    nc = [tables.stats(by_value[v], "ncjsd") for v in values]
    out.append(f"\n### Fig. 7 — {varied} varied, {other} = {held}: DKD "
               "student (α·TCKL + β·NCKL)\n")
    out.append(tables.markdown(
        [varied, f"student {score.name} (%)", "NCJSD", "seeds"],
        [[v, tables.fmt(*s), tables.fmt(*n, digits=3), s[2]]
         for v, s, n in zip(values, st, nc)]))
    panels.append(dict(series={"KD student": _series(values, st)},
                       xlabel=varied, ylabel=f"student test {score.name} (%)",
                       title=f"{varied} varied ({other} = {held})"))
    if varied == "beta" and len(values) > 1:
      means = [s[0] for s in st]
      # A score equal at every β has no correlation (NaN: not reproduced).
      trend = (float(np.corrcoef(values, means)[0, 1]) if np.ptp(means) > 0
               else float("nan"))
      verdicts.append(_verdict(
          trend < 0, f"Fig. 7: raising β lowers the student's {score.name} "
          f"(correlation with β: {trend:+.2f}; {st[0][0]:.2f} % at "
          f"β = {values[0]}, {st[-1][0]:.2f} % at β = {values[-1]}).",
          "fig7"))
  path = plots.save_grid(os.path.join(workdir, "fig7_weights.png"), [panels],
                         suptitle="α·TCKL + β·NCKL")
  out.append(f"\n![weights]({os.path.basename(path)})\n")
  return verdicts


# --------------------------------------------------------------- Alg. 1

def _alg1(rows, config, workdir, out, score) -> list[str]:
  teachers = tables.select(rows, "teacher", role="masked_teacher")
  ratios = sorted(config.alg1.ratios)
  lines, acc, nc = [], {}, {}
  for kind in config.alg1.kinds:
    st = [_metrics(distilled(rows, "kl", kind, x), score) for x in ratios]
    for x, s in zip(ratios, st):
      t_acc = _score([r for r in teachers if r["tag.kind"] == kind
                      and r["tag.ratio"] == x], score)
      lines.append([kind, x, tables.fmt(*t_acc), tables.fmt(*s[score.key]),
                    tables.fmt(*s["ncjsd"], digits=3),
                    tables.fmt(*s["tcjsd"], digits=3)])
    acc[kind] = _series(ratios, [s[score.key] for s in st])
    nc[kind] = _series(ratios, [s["ncjsd"] for s in st])
  out.append("\n### Algorithm 1 (Fig. 9): teacher input masked by pixel "
             "importance, KD student\n")
  out.append(tables.markdown(
      ["mask", "ratio", f"masked teacher {score.name} (%)",
       f"student {score.name} (%)", "NCJSD", "TCJSD"], lines))
  path = plots.save_grid(
      os.path.join(workdir, "fig9_alg1.png"),
      [[dict(series=acc, xlabel="mask ratio",
             ylabel=f"student test {score.name} (%)", title=score.name),
        dict(series=nc, xlabel="mask ratio", ylabel="teacher–student NCJSD",
             title="NCJSD")]], suptitle="Algorithm 1")
  out.append(f"\n![alg1]({os.path.basename(path)})\n")
  if set(acc) != set(KINDS):
    return []
  # Mean over the ratios.
  a = {k: float(np.mean(acc[k][1])) for k in KINDS}
  n = {k: float(np.mean(nc[k][1])) for k in KINDS}
  return [
      _verdict(a["true"] > a["random"] > a["false"],
               f"Fig. 9: student {score.name} true > random > false mask "
               f"(mean over ratios: {a['true']:.2f} / {a['random']:.2f} / "
               f"{a['false']:.2f} %).", "fig9"),
      _verdict(n["true"] < n["random"] < n["false"],
               "Algorithm 1 lowers the non-target divergence: NCJSD true < "
               f"random < false ({n['true']:.3f} / {n['random']:.3f} / "
               f"{n['false']:.3f}).", "alg1_ncjsd"),
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

def _table2(rows, config, out, score) -> list[str]:
  no_kd = _score(tables.select(rows, "student", role="no_kd"), score)
  t = config.table2
  name = PAPER.get(config.data.name, Paper()).table
  columns = [("none", 0.0)] + [(k, r) for r in t.ratios for k in t.kinds]
  lines, wins = [], []
  for method in t.methods:
    hp = {"alpha": t.dkd_alpha, "beta": t.dkd_beta} if method == "dkd" else {}
    cells = {c: _score(distilled(rows, method, *c, **hp), score)
             for c in columns}
    lines.append([method, tables.fmt(*no_kd)]
                 + [tables.fmt(*cells[c]) for c in columns])
    trues = [cells[("true", r)][0] for r in t.ratios if "true" in t.kinds]
    if trues:
      wins.append((method, max(trues) > cells[("none", 0.0)][0]))
  header = (["method", "w/o KD", "w/o mask"]
            + [f"{k[0].upper()} {int(100 * r)} %" for k, r in columns[1:]])
  out.append(f"\n### {name} — KD methods × Algorithm 1 masks: student "
             f"{score.name} (%)\n")
  out.append("T / R / F: the teacher retrained on its input masked by the "
             "true / random / false mask at that ratio (Algorithm 1), the "
             f"student distilled from it. {_WIRING[t.wiring]}; DKD at "
             f"α = {t.dkd_alpha}, β = {t.dkd_beta}.\n")
  out.append(tables.markdown(header, lines))
  if not wins:
    return []
  helped = [m for m, ok in wins if ok]
  return [_verdict(len(helped) > len(wins) / 2,
                   f"{name}: a true mask beats no mask for "
                   f"{len(helped)} of {len(wins)} methods "
                   f"({', '.join(helped) or 'none'}).", "table")]


# What Table II's caption says of each table2.wiring.
_WIRING = {
    "features": "Feature methods act on the penultimate features (their "
                "papers' wiring; `table2.wiring=features`)",
    "logits": "Feature methods act on the logits, plus KL at T = 1, with the "
              "authors' weights (their code's train_kd; "
              "`table2.wiring=logits`)"}


# --------------------------------------------------------------- Alg. 2

def _alg2(rows, config, workdir, out, score) -> list[str]:
  ratios = sorted(config.alg2.ratios)
  plain = _metrics(distilled(rows, "kl"), score)
  no_kd = _score(tables.select(rows, "student", role="no_kd"), score)

  def line(name, x, s):
    return [name, x, tables.fmt(*s[score.key]),
            tables.fmt(*s["ncjsd"], digits=3),
            tables.fmt(*s["tcjsd"], digits=3)]

  lines = [["no KD", "–", tables.fmt(*no_kd), "–", "–"],
           line("KD, no mask", 0.0, plain)]
  series, mean, best = {}, {}, {}
  for kind in config.alg2.kinds:
    st = [_metrics(distilled(rows, "kl", sample_mask=(kind, x)), score)
          for x in ratios]
    lines += [line(kind, x, s) for x, s in zip(ratios, st)]
    series[kind] = _series(ratios, [s[score.key] for s in st])
    mean[kind] = float(np.mean(series[kind][1]))
    best[kind] = max(zip(series[kind][1], ratios))
  series["KD, no mask"] = _series(ratios, [plain[score.key]] * len(ratios))
  out.append("\n### Algorithm 2 (Fig. 11): KD students whose distillation "
             "term leaves out the samples (pixels) of largest / random / "
             "smallest teacher–student NCJSD\n")
  out.append("true / random / false: the ratio of each batch's valid "
             "samples (pixels) with the largest / random / smallest NCJSD "
             "left out of the KD term; the teacher is unmasked.\n")
  out.append(tables.markdown(["sample mask", "ratio",
                              f"student {score.name} (%)", "NCJSD", "TCJSD"],
                             lines))
  path = plots.save_grid(
      os.path.join(workdir, "fig11_alg2.png"),
      [[dict(series=series, xlabel="removal ratio",
             ylabel=f"student test {score.name} (%)", title=score.name)]],
      suptitle="Algorithm 2")
  out.append(f"\n![alg2]({os.path.basename(path)})\n")
  verdicts = []
  if set(mean) == set(KINDS):
    verdicts.append(_verdict(
        mean["true"] > mean["random"] > mean["false"],
        f"Fig. 11: student {score.name} true > random > false sample mask "
        f"(mean over ratios: {mean['true']:.2f} / {mean['random']:.2f} / "
        f"{mean['false']:.2f} %).", "fig11"))
  if "true" in best:
    top, at = best["true"]
    verdicts.append(_verdict(
        top > plain[score.key][0],
        f"Fig. 11: the true sample mask at its best ratio ({at}) beats KD "
        f"without a mask ({top:.2f} vs {plain[score.key][0]:.2f} %).",
        "fig11_kd"))
  return verdicts


# --------------------------------------------------------------- Fig. 12

def object_edges(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """``bool[..., H, W]``: the valid pixels with a valid 4-neighbour of
  another class. A neighbour without a label (ignored) is no object's
  boundary, so it makes no edge."""
  edges = np.zeros(labels.shape, bool)
  for axis in (-2, -1):
    size = labels.shape[axis]
    lo = [slice(None)] * labels.ndim
    hi = list(lo)
    lo[axis], hi[axis] = slice(0, size - 1), slice(1, size)
    lo, hi = tuple(lo), tuple(hi)
    differ = (labels[lo] != labels[hi]) & valid[lo] & valid[hi]
    edges[lo] |= differ
    edges[hi] |= differ
  return edges


def _fig12_runs(rows, seed):
  """The teacher and the students Fig. 12 compares it with (no KD, and KD
  without masks where the study has one), for ``seed``."""
  of_seed = lambda rs: [r for r in rs if r["seed"] == seed][:1]
  teacher = of_seed(tables.select(rows, "teacher", role="teacher"))
  students = {"no KD": of_seed(tables.select(rows, "student", role="no_kd")),
              "KD": of_seed(distilled(rows, "kl"))}
  return teacher, {k: v[0] for k, v in students.items() if v}


def ncjsd_maps(rows, config, workdir: str, images: int,
               seed: int | None = None) -> dict:
  """Fig. 12's data: the per-pixel NCJSD between the teacher and each
  student (no KD, and KD without masks where the study has one) of one seed
  (default: the first), on the test set of a segmentation source.

  Each network is applied as in evaluation (the teacher to its input times
  its feature mask); ``divergences.decompose(..., where=valid)`` gives the
  per-pixel NCJSD, so ignored pixels never enter a map or a mean.

  Returns ``{}`` if the study has no teacher and student for the seed, else
  ``{"inputs": f32[K, H, W, C]`` (the teacher's model input of the first K
  = ``images`` test images), ``"labels": i32[K, H, W]``, ``"valid":
  bool[K, H, W]``, ``"edges": bool[K, H, W]`` (``object_edges``),
  ``"ncjsd": {student: f32[K, H, W]}`` (NaN on ignored pixels), and over
  the whole test set ``"edge" / "interior": {student: (mean NCJSD, valid
  pixels)}``.
  """
  if seed is None:
    teachers = tables.select(rows, "teacher", role="teacher")
    seed = min((r["seed"] for r in teachers), default=None)
  teacher, students = _fig12_runs(rows, seed)
  if not teacher or not students:
    return {}
  outputs = sweep.run_outputs(workdir, rows, teacher + list(students.values()))
  data = common.Data(config.data.to_dict())
  t_net = common.network(config.teacher_model.to_dict(), data.spec)
  s_net = common.network(config.model.to_dict(), data.spec)
  # The gap knobs the runs trained with; prepared segmentation sources have
  # none, and their views and inputs do not draw from the key.
  hp = {k: teacher[0][f"hp.{k}"] for k in data.source.hparams}
  key = jax.random.PRNGKey(seed)
  views = data.views(data.load(), hp, key)

  @jax.jit
  def batch(t_out, s_vars, xt, xs, y):
    x = data.input(xt, "teacher", hp, key)
    t_logits, _ = common.apply_eval(t_net, t_out["variables"],
                                    x * t_out["feature_mask"])
    valid = data.valid(y)
    valid = jnp.ones(y.shape, bool) if valid is None else valid
    xs = data.input(xs, "student", hp, key)
    ncjsd = [divergences.decompose(
        teacher_logits=t_logits,
        student_logits=common.apply_eval(s_net, v, xs)[0],
        labels=y, where=valid).ncjsd for v in s_vars]
    return x, valid, jnp.stack(ncjsd)

  y_test = np.asarray(views.y_test)
  t_test, s_test = np.asarray(views.teacher_test), np.asarray(
      views.student_test)
  n, size = len(y_test), config.train.eval_batch_size
  s_vars = [o["variables"] for o in outputs[1:]]
  # [edge, interior] × student × [NCJSD sum, pixels]
  sums = np.zeros((2, len(students), 2))
  shown = {k: [] for k in ("inputs", "labels", "valid", "edges", "ncjsd")}
  for start in range(0, n, size):
    # The last batch is shifted back to end at row n, so every batch has
    # one shape (one compile); rows an earlier batch counted are dropped.
    first = min(start, max(n - size, 0))
    idx = np.arange(first, min(first + size, n))
    new = idx >= start
    x, valid, ncjsd = jax.device_get(batch(
        outputs[0], s_vars, t_test[idx], s_test[idx], y_test[idx]))
    labels, valid, ncjsd = y_test[idx][new], valid[new], ncjsd[:, new]
    edges = object_edges(labels, valid)
    for i, where in enumerate((edges, valid & ~edges)):
      sums[i, :, 0] += ncjsd[:, where].sum(axis=1)
      sums[i, :, 1] += where.sum()
    if sum(len(v) for v in shown["labels"]) < images:
      for k, v in zip(shown, (x[new], labels, valid, edges,
                              np.moveaxis(ncjsd, 0, 1))):
        shown[k].append(v)
  shown = {k: np.concatenate(v)[:images] for k, v in shown.items()}
  pixels = sums[..., 1]
  means = np.where(pixels > 0, sums[..., 0] / np.maximum(pixels, 1), np.nan)
  return {
      "inputs": shown["inputs"], "labels": shown["labels"],
      "valid": shown["valid"], "edges": shown["edges"],
      "ncjsd": {name: np.where(shown["valid"], shown["ncjsd"][:, i], np.nan)
                for i, name in enumerate(students)},
      **{part: {name: (float(means[j, i]), int(pixels[j, i]))
                for i, name in enumerate(students)}
         for j, part in enumerate(("edge", "interior"))},
  }


def _display(x: np.ndarray) -> np.ndarray:
  """A model input shown as an image: RGB scaled to [0, 1], else its first
  channel."""
  if x.shape[-1] == 3:
    low, high = x.min(), x.max()
    return (x - low) / (high - low if high > low else 1.0)
  return x[..., 0]


# Colour maps whose masked entries (ignored pixels) show grey.
_IGNORED_GREY = {name: matplotlib.colormaps[name].with_extremes(bad="0.75")
                 for name in ("gray", "tab20", "magma")}


def _ncjsd_figure(maps, path) -> str:
  """Images × panels (input, labels, edges, one NCJSD map per student);
  transposed for images more than twice as wide as tall (range images), so
  the panels stay readable."""
  students = list(maps["ncjsd"])
  titles = ["teacher input", "labels", "object edges"] + [
      f"NCJSD, {s}" for s in students]
  k = len(maps["labels"])
  height, width = maps["labels"].shape[1:]
  wide = width > 2 * height
  panel_w = 5.0 if wide else 2.8
  panel_h = panel_w * height / width + 0.4  # + the panel's title
  rows, cols = (len(titles), k) if wide else (k, len(titles))
  fig = Figure(figsize=(panel_w * cols + 1.0, panel_h * rows + 0.6))
  grid = fig.subplots(rows, cols, squeeze=False)
  axis = lambda i, j: grid[j, i] if wide else grid[i, j]
  top = max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0
            for m in maps["ncjsd"].values()) or np.log(2)
  for i in range(k):
    valid = maps["valid"][i]
    images = [_display(maps["inputs"][i]),
              np.ma.masked_where(~valid, maps["labels"][i]),
              np.ma.masked_where(~valid, maps["edges"][i])]
    images += [np.ma.masked_invalid(maps["ncjsd"][s][i]) for s in students]
    for j, image in enumerate(images):
      ax = axis(i, j)
      if j < 3:  # an RGB input ignores the colour map
        ax.imshow(image, cmap=_IGNORED_GREY[("gray", "tab20", "gray")[j]],
                  interpolation="nearest")
      else:
        im = ax.imshow(image, cmap=_IGNORED_GREY["magma"], vmin=0, vmax=top,
                       interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"{titles[j]} (test image {i})", fontsize="small")
  maps_axes = [axis(i, j) for i in range(k) for j in range(3, len(titles))]
  fig.colorbar(im, ax=maps_axes, fraction=0.03)
  fig.suptitle("Fig. 12 — per-pixel teacher–student NCJSD (object edges "
               "white; ignored pixels grey)")
  fig.savefig(path, dpi=90)
  return path


def _g(x: float) -> str:
  return "–" if np.isnan(x) else f"{x:.4g}"


def _fig12(rows, config, workdir, out) -> list[str]:
  maps = ncjsd_maps(rows, config, workdir, config.fig12.images)
  if not maps:
    return []
  path = _ncjsd_figure(maps, os.path.join(workdir, "fig12_ncjsd.png"))
  out.append("\n### Fig. 12 — where the non-target divergence is: per-pixel "
             "NCJSD between teacher and student on the test set\n")
  out.append("Object edges: valid pixels with a valid 4-neighbour of "
             "another class; interior: the other valid pixels. One seed.\n")
  lines = [[name, _g(maps["edge"][name][0]), _g(maps["interior"][name][0]),
            _g(maps["edge"][name][0] / maps["interior"][name][0]
               if maps["interior"][name][0] > 0 else float("nan")),
            maps["edge"][name][1], maps["interior"][name][1]]
           for name in maps["ncjsd"]]
  out.append(tables.markdown(["student", "NCJSD on edges",
                              "NCJSD inside objects", "ratio",
                              "edge pixels", "interior pixels"], lines))
  out.append(f"\n![ncjsd]({os.path.basename(path)})\n")
  ok = all(maps["edge"][s][0] > maps["interior"][s][0] for s in maps["ncjsd"])
  means = "; ".join(f"{s} {_g(maps['edge'][s][0])} vs "
                    f"{_g(maps['interior'][s][0])}" for s in maps["ncjsd"])
  return [_verdict(ok, "Fig. 12: the per-pixel NCJSD is larger on object "
                   f"edges than inside objects ({means}).", "fig12")]


# --------------------------------------------------------------- report

# A condition of the tidy table (summary.csv): what a run is, read from its
# row (not its tags, which a run shared by two parts has from one of them).
CONDITION = {
    "stage": lambda r: r["stage"], "role": lambda r: r.get("tag.role"),
    "method": lambda r: r.get("static.distill"),
    "sample_mask": lambda r: r.get("static.sample_mask"),
    "kind": lambda r: r.get("tag.kind"), "ratio": lambda r: r.get("tag.ratio"),
    "mask_ratio": lambda r: r.get("hp.mask_ratio"),
    "alpha": lambda r: r.get("hp.alpha"), "beta": lambda r: r.get("hp.beta")}


def write(rows, config, workdir) -> str:
  """Writes report.md, summary.csv and the PNG figures; returns the
  report's path."""
  score = score_of(rows)
  teacher = _score(tables.select(rows, "teacher", role="teacher"), score)
  student = _score(tables.select(rows, "student", role="no_kd"), score)
  paper = PAPER.get(config.data.name, Paper(alone="none recorded"))
  out = [f"# The NTDH study on `{config.data.name}` — report\n",
         f"Teacher `{config.teacher_model.name}` on the teacher view, "
         f"students `{config.model.name}` on the student view; mean ± std "
         f"over {config.num_seeds} seed{'s' * (config.num_seeds != 1)} of "
         f"the last evaluation of the test {score.name} (%).\n",
         f"Modality strength (each view alone): teacher {tables.fmt(*teacher)}"
         f" %, student without KD {tables.fmt(*student)} %. Paper: "
         f"{paper.alone}.\n"]
  verdicts = []
  if "weights" in config.parts:
    verdicts += _weights(rows, config, workdir, out, score)
  if "alg1" in config.parts:
    verdicts += _alg1(rows, config, workdir, out, score)
    ratio = 0.5 if 0.5 in config.alg1.ratios else config.alg1.ratios[0]
    images = mask_heatmaps(rows, workdir, ratio)
    if images:
      path = _heatmap_figure(images, ratio,
                             os.path.join(workdir, "fig10_masks.png"))
      out.append(f"\n![masks]({os.path.basename(path)})\n")
  if "table2" in config.parts:
    verdicts += _table2(rows, config, out, score)
  if "alg2" in config.parts:
    verdicts += _alg2(rows, config, workdir, out, score)
  # Fig. 12 maps a divergence per pixel: segmentation only.
  if "fig12" in config and score is MIOU:
    verdicts += _fig12(rows, config, workdir, out)
  out[3:3] = (["## Verdicts\n",
               "Ours beside the shape each claim has in the paper; the "
               "paper's own numbers for these figures and tables are not "
               "available to us.\n"]
              + [f"* {v}" for v in verdicts] + [""])
  tables.write_csv(os.path.join(workdir, "summary.csv"),
                   tables.tidy(rows, CONDITION), CONDITION)
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
  return path
