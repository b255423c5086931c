"""The NTDH study on a real paired source: Fig. 7, Alg. 1 (Figs. 9–10),
Tables II–III, Alg. 2 (Figs. 11–12), on digits → digits-M by default or on
a prepared dataset (MNIST → MNIST-M, RAVDESS, NYU Depth V2, SemanticKITTI).

``plan(configs)`` turns each config into the runs of ``config.parts``, for
every seed (``config.num_seeds`` replicates from ``config.seed``); every
part shares the seed's unmasked teacher and its no-KD student:

* ``weights`` (Fig. 7): students distilled with α·TCKL + β·NCKL, α swept at
  fixed β and β swept at fixed α (``config.weights``).
* ``alg1`` (Figs. 9–10): Algorithm 1 on the teacher view's input pixels
  (or columns): the joint Dist + CE + CE training and the permutation
  importance of every pixel (stage ``joint``), then for each mask kind
  (true / random / false) and ratio a teacher retrained on the masked input
  and a KD student (CE + KL) distilled from it (``config.alg1``).
* ``table2`` (Tables II–III): each method of ``config.table2.methods``
  (FitNet, CRD, RKD, PKT, SP, DKD) distilled from the unmasked teacher
  ("w/o mask") and from each masked teacher of ``config.table2.kinds`` ×
  ``config.table2.ratios`` (shared with ``alg1`` where they coincide: a run
  is identified by its configuration and seed, so the engine trains each
  masked teacher once).
* ``alg2`` (Fig. 11): Algorithm 2 inside the student's jitted step: KD
  students (CE + KL) from the unmasked teacher whose distillation term
  leaves out the ``ratio`` fraction of each batch's samples — of its valid
  pixels, for segmentation — ranked by teacher–student NCJSD (stage
  ``student`` with ``sample_mask="ncjsd"``), for each kind of
  ``config.alg2.kinds`` × ratio of ``config.alg2.ratios``, beside the
  unmasked KD student (``kind="none"``, ``ratio=0``).

Runs are tagged ``part``, ``role`` (teacher, no_kd, joint, masked_teacher,
kd), ``method``, ``kind``, ``ratio`` for the report
(``ntdh_jax.experiments.ntdh_real_report``).

``study_config`` builds a study's config (every part's settings, full or
``quick``) from what differs between datasets — the data, networks and
optimiser — and ``prepared_study`` is a prepared dataset's ``get_config``
(``sweeps/configs/ntdh_{mnist,ravdess,nyu,kitti}.py``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax import data as data_lib
from ntdh_jax import experiments
from ntdh_jax import masks
from ntdh_jax.errors import UserError
from ntdh_jax.train import objectives
from ntdh_jax.train import stages
from ntdh_jax.train.stages import joint
from ntdh_jax.train.program import RunSpec

PARTS = ("weights", "alg1", "table2", "alg2")
# Lists a selected part loops over: empty, the part would plan nothing.
_PART_LISTS = {"weights": ("weights.alphas", "weights.betas"),
               "alg1": ("alg1.kinds", "alg1.ratios"),
               "table2": ("table2.methods", "table2.kinds", "table2.ratios"),
               "alg2": ("alg2.kinds", "alg2.ratios")}
# Mask kinds each part reads, checked by name before any run is planned.
_KIND_LISTS = {"alg1": "alg1.kinds", "table2": "table2.kinds",
               "alg2": "alg2.kinds"}
# Switches: (the parts that read it, section, key, valid values); masked
# teachers (alg1, table2) read Algorithm 1's settings.
_CHOICES = ((("alg1", "table2"), "alg1", "importance_form",
             tuple(joint.IMPORTANCE_FORMS)),
            (("table2",), "table2", "wiring", tuple(objectives.WIRINGS)))


class _Planner:
  """The runs of one config for one seed; ``add`` checks hyperparameters
  (``keys`` names the config key each came from, for the error)."""

  def __init__(self, c: ml_collections.ConfigDict, seed: int):
    self.c, self.seed = c, seed
    t = c.train
    self.static = {"data": c.data.to_dict(), "model": c.model.to_dict(),
                   "epochs": t.epochs, "eval_every": t.eval_every,
                   "batch_size": t.batch_size, "optimizer": t.optimizer,
                   "eval_batch_size": t.eval_batch_size}
    self.teacher_static = {**self.static,
                           "model": c.teacher_model.to_dict()}
    self.optim = {"lr": t.lr, "momentum": t.momentum}
    self.keys = {"lr": "train.lr", "momentum": "train.momentum",
                 "temperature": "temperature", "kd_weight": "kd_weight"}
    self.specs: list[RunSpec] = []
    self._masked: dict[tuple[str, float], RunSpec] = {}
    self._joint: RunSpec | None = None
    self.teacher = self.add("teacher", self.teacher_static, self.optim, {},
                            role="teacher", part="shared")
    self.student("none", None, role="no_kd", part="shared", method="none")

  def add(self, stage, static, hparams, keys, needs=None, **tags) -> RunSpec:
    spec = stages.run_spec(stage, static, hparams, self.seed, needs=needs,
                           tags=tags, keys={**self.keys, **keys})
    self.specs.append(spec)
    return spec

  def student(self, distill, teacher, hparams=None, keys=None,
              sample_mask="none", feature_wiring="features",
              **tags) -> RunSpec:
    static = {**self.static, "teacher_model": self.c.teacher_model.to_dict(),
              "distill": distill, "kd_form": self.c.kd_form,
              "sample_mask": sample_mask, "feature_wiring": feature_wiring}
    hp = dict(self.optim)
    if teacher is not None:
      hp.update(temperature=self.c.temperature, kd_weight=self.c.kd_weight)
    hp.update(hparams or {})
    return self.add("student", static, hp, keys or {},
                    needs=None if teacher is None else {
                        "teacher": teacher.run_id}, **tags)

  def masked_teacher(self, kind: str, ratio: float, part: str) -> RunSpec:
    """The teacher retrained on the input masked by Algorithm 1 (one per
    kind and ratio, whichever part asks first)."""
    if self._joint is None:
      a = self.c.alg1
      self._joint = self.add(
          "joint", {**self.static,
                    "teacher_model": self.c.teacher_model.to_dict(),
                    "joint_distance": a.distance,
                    "importance_repeats": a.repeats,
                    "importance_permutations": a.permutations,
                    "importance_form": a.importance_form,
                    "importance_first_layer": a.first_layer},
          self.optim, {}, role="joint", part="alg1")
    if (kind, ratio) not in self._masked:
      self._masked[kind, ratio] = self.add(
          "teacher", {**self.teacher_static, "feature_mask": "importance"},
          {**self.optim, "mask_ratio": ratio,
           "mask_kind": masks.kind_code(kind)},
          {"mask_ratio": f"{part}.ratios", "mask_kind": f"{part}.kinds"},
          needs={"joint": self._joint.run_id}, role="masked_teacher",
          part=part, kind=kind, ratio=ratio)
    return self._masked[kind, ratio]

  def weights(self):
    w = self.c.weights
    grid = sorted({(a, w.fixed_beta) for a in w.alphas}
                  | {(w.fixed_alpha, b) for b in w.betas})
    for alpha, beta in grid:
      self.student("dkd", self.teacher, {"alpha": alpha, "beta": beta},
                   {"alpha": "weights.alphas or weights.fixed_alpha",
                    "beta": "weights.betas or weights.fixed_beta"},
                   role="kd", part="weights", method="dkd", alpha=alpha,
                   beta=beta)

  def alg1(self):
    a = self.c.alg1
    for kind in a.kinds:
      for ratio in a.ratios:
        self.student("kl", self.masked_teacher(kind, ratio, "alg1"),
                     role="kd", part="alg1", method="kd", kind=kind,
                     ratio=ratio)

  def table2(self):
    t = self.c.table2
    for method in t.methods:
      hparams, keys, wiring = {}, {}, "features"
      if method == "dkd":  # DKD's own defaults, as its paper sets them
        hparams = {"alpha": t.dkd_alpha, "beta": t.dkd_beta}
        keys = {"alpha": "table2.dkd_alpha", "beta": "table2.dkd_beta"}
      elif t.wiring == "logits":  # the authors' train_kd, their weights
        hparams, wiring = objectives.AUTHORS_LOGIT_HPARAMS[method], "logits"
        keys = dict.fromkeys(hparams, "table2.wiring (the authors' values)")
      for kind, ratio in [("none", 0.0)] + [(k, r) for k in t.kinds
                                            for r in t.ratios]:
        teacher = (self.teacher if kind == "none"
                   else self.masked_teacher(kind, ratio, "table2"))
        self.student(method, teacher, hparams, keys,
                     feature_wiring=wiring, role="kd", part="table2",
                     method=method, kind=kind, ratio=ratio)


  def alg2(self):
    a = self.c.alg2
    # The unmasked KD student Fig. 11 compares against.
    self.student("kl", self.teacher, role="kd", part="alg2", method="kd",
                 kind="none", ratio=0.0)
    keys = {"mask_ratio": "alg2.ratios", "mask_kind": "alg2.kinds"}
    for kind in a.kinds:
      for ratio in a.ratios:
        self.student("kl", self.teacher,
                     {"mask_ratio": ratio, "mask_kind": masks.kind_code(kind)},
                     keys, sample_mask="ncjsd", role="kd", part="alg2",
                     method="kd", kind=kind, ratio=ratio)


def _check_parts(c: ml_collections.ConfigDict) -> None:
  """Each selected part has its settings section and valid mask kinds."""
  missing = [p for p in c.parts if p in PARTS and p not in c]
  if missing:
    raise UserError(
        f"config.parts selects {missing}, but the config has no settings "
        f"for {['config.' + p for p in missing]}; this config offers "
        f"{[p for p in PARTS if p in c]}.")
  config_lib.check_study(c, PARTS, _PART_LISTS)
  for readers, section, key, options in _CHOICES:
    if set(readers) & set(c.parts) and c[section][key] not in options:
      raise UserError(f"config.{section}.{key} must be one of "
                      f"{list(options)}, got {c[section][key]!r}.")
  for part, key in _KIND_LISTS.items():
    if part in c.parts:
      unknown = sorted(set(c[part].kinds) - set(masks.MASK_KINDS))
      if unknown:
        raise UserError(f"config.{key} has unknown mask kinds {unknown}; "
                        f"valid: {list(masks.MASK_KINDS)}.")


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  """Every run of the selected parts for every config point."""
  specs = []
  for c in configs:
    _check_parts(c)
    if "alg1" in c.parts or "table2" in c.parts:
      config_lib.check_count(c, "alg1.repeats")
    for seed in range(c.seed, c.seed + c.num_seeds):
      planner = _Planner(c, seed)
      for part in c.parts:
        getattr(planner, part)()
      specs += planner.specs
  return specs


# ------------------------------------------------------------------ configs

KINDS = ["true", "random", "false"]
TABLE2_METHODS = ["fitnet", "crd", "rkd", "pkt", "sp", "dkd"]

# Each part's settings, full (``quick=False``) or a smoke run of the part
# (``quick=True``); the grids are ntdh_digits.py's.
PART_SETTINGS: dict[str, Callable[[bool], dict]] = {
    "weights": lambda quick: dict(
        alphas=[0.0, 1.0, 4.0] if quick else [0.0, 0.5, 1.0, 2.0, 4.0],
        betas=[0.0, 1.0, 8.0] if quick else [0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
        fixed_alpha=1.0, fixed_beta=1.0),
    "alg1": lambda quick: dict(
        distance="ncjsd", repeats=3 if quick else 10,
        # One permutation per repeat shared by all pixels: M sorts, not
        # M·pixels; each pixel's estimate is unchanged in distribution.
        permutations="shared",
        # The importance score: "paper" (textbook NCJSD) or "reference_code"
        # (the authors' ½[KL(M‖P) + KL(M‖Q)]).
        importance_form="paper",
        # True scores an MLP teacher (mnist_fc) from its first
        # pre-activation, a rank-K update per pixel (same numbers up to
        # float32 rounding); the joint stage refuses it for other teachers.
        first_layer=False, kinds=list(KINDS),
        ratios=[0.25, 0.5, 0.75] if quick else [0.1, 0.25, 0.5, 0.75, 0.9]),
    "table2": lambda quick: dict(
        methods=list(TABLE2_METHODS), kinds=list(KINDS),
        ratios=[0.5] if quick else [0.25, 0.5, 0.75],
        # How FitNet/CRD/RKD/PKT/SP are wired: "features" (penultimate
        # features, the methods' own papers) or "logits" (the authors'
        # train_kd: on logits, plus KL, their weights).
        wiring="features",
        # DKD's own defaults, as its paper sets them.
        dkd_alpha=1.0, dkd_beta=8.0),
    "alg2": lambda quick: dict(
        kinds=list(KINDS),
        ratios=[0.25, 0.75] if quick else [0.1, 0.25, 0.5, 0.75, 0.9]),
}


def study_config(*, data: Mapping, model: Mapping, train: Mapping,
                 parts: Sequence[str], part: str = "all", quick: bool = False,
                 teacher_model: Mapping | None = None, quick_epochs: int = 2,
                 eval_batch_size: int = 256,
                 fig12_images: int = 0) -> ml_collections.ConfigDict:
  """The config of an NTDH study on one paired source.

  Args:
    data: the source's config, normalised (every option present, so
      ``--config.data.KEY`` can set any of them).
    model: the student network; ``teacher_model`` the teacher's (default:
      the same architecture).
    train: ``optimizer``, ``lr``, ``momentum``, ``batch_size``, ``epochs``
      (one evaluation, at the end).
    parts: the parts this study offers, each a key of ``PART_SETTINGS``;
      the config holds the settings of these only.
    part: ``"all"`` or one of ``parts`` (the ``:arg`` variant).
    quick: 2 seeds, ``quick_epochs`` epochs and each part's smoke grid
      (``PART_SETTINGS``); else 5 seeds and the full grids.
    eval_batch_size: test examples per evaluation batch (smaller for
      per-pixel outputs, whose activations are per pixel).
    fig12_images: test images in Fig. 12 (per-pixel NCJSD; segmentation
      only), 0 = no Fig. 12.

  Returns:
    The study's ``ConfigDict``: CE + KL at T = 4 with weight 1, additive
    (as the digits study), seeds from 0.
  """
  unknown = sorted(set(parts) - set(PART_SETTINGS))
  if unknown:
    raise ValueError(f"study_config: unknown parts {unknown}; valid: "
                     f"{list(PART_SETTINGS)}.")
  if part != "all" and part not in parts:
    raise ValueError(f"Config argument part={part!r}: this study's parts are "
                     f"{list(parts)} (or 'all').")
  c = ml_collections.ConfigDict()
  c.experiment = "ntdh_real"
  c.parts = list(parts) if part == "all" else [part]
  c.seed = 0
  c.num_seeds = 2 if quick else 5
  c.data = ml_collections.ConfigDict(dict(data))
  c.teacher_model = ml_collections.ConfigDict(dict(teacher_model or model))
  c.model = ml_collections.ConfigDict(dict(model))
  epochs = quick_epochs if quick else train["epochs"]
  c.train = ml_collections.ConfigDict(dict(
      optimizer=train["optimizer"], lr=train["lr"],
      momentum=train["momentum"], batch_size=train["batch_size"],
      epochs=epochs, eval_every=epochs, eval_batch_size=eval_batch_size))
  c.temperature = 4.0
  c.kd_weight = 1.0
  c.kd_form = "additive"
  for name in parts:
    c[name] = ml_collections.ConfigDict(PART_SETTINGS[name](quick))
  if fig12_images:
    c.fig12 = ml_collections.ConfigDict(dict(images=fig12_images))
  return c


def prepared_study(arg: str | None, dataset: str,
                   **settings) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of a study on the prepared ``dataset``.

  ``arg``: ``[PART][,quick][,data_dir=DIR][,config=NAME]`` — a part of
  ``settings["parts"]`` or ``all`` (default), the quick variant, where
  ``ntdh-data prepare`` wrote the dataset (default: TFDS's data dir) and its
  builder config (default: the builder's first). ``settings``: the rest of
  ``study_config``'s arguments.
  """
  a = config_lib.parse_arg(arg, part="all", quick=False, data_dir="",
                           config="")
  data = data_lib.normalise({"name": dataset, "data_dir": a.data_dir or None,
                             "config": a.config or None})
  return study_config(data=data, part=a.part, quick=a.quick, **settings)


def _report(rows, config, workdir):
  # matplotlib only when reporting
  from ntdh_jax.experiments import ntdh_real_report  # pylint: disable=import-outside-toplevel
  ntdh_real_report.write(rows, config, workdir)


experiments.register("ntdh_real", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
