"""The NTDH study on a real paired source: Fig. 7, Alg. 1 (Figs. 9–10) and
Table II, on digits → digits-M by default or on a prepared dataset.

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

Runs are tagged ``part``, ``role`` (teacher, no_kd, joint, masked_teacher,
kd), ``method``, ``kind``, ``ratio`` for the report
(``ntdh_jax.experiments.ntdh_real_report``).
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax import masks
from ntdh_jax.train import stages
from ntdh_jax.train.program import RunSpec

PARTS = ("weights", "alg1", "table2")
# Lists a selected part loops over: empty, the part would plan nothing.
_PART_LISTS = {"weights": ("weights.alphas", "weights.betas"),
               "alg1": ("alg1.kinds", "alg1.ratios"),
               "table2": ("table2.methods", "table2.kinds", "table2.ratios")}


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
              **tags) -> RunSpec:
    static = {**self.static, "teacher_model": self.c.teacher_model.to_dict(),
              "distill": distill, "kd_form": self.c.kd_form}
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
                    "importance_permutations": a.permutations},
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
      hparams, keys = {}, {}
      if method == "dkd":  # DKD's own defaults, as its paper sets them
        hparams = {"alpha": t.dkd_alpha, "beta": t.dkd_beta}
        keys = {"alpha": "table2.dkd_alpha", "beta": "table2.dkd_beta"}
      self.student(method, self.teacher, hparams, keys, role="kd",
                   part="table2", method=method, kind="none", ratio=0.0)
      for kind in t.kinds:
        for ratio in t.ratios:
          self.student(method, self.masked_teacher(kind, ratio, "table2"),
                       hparams, keys, role="kd", part="table2",
                       method=method, kind=kind, ratio=ratio)


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  """Every run of the selected parts for every config point."""
  specs = []
  for c in configs:
    config_lib.check_study(c, PARTS, _PART_LISTS)
    if "alg1" in c.parts or "table2" in c.parts:
      config_lib.check_count(c, "alg1.repeats")
    for seed in range(c.seed, c.seed + c.num_seeds):
      planner = _Planner(c, seed)
      for part in c.parts:
        getattr(planner, part)()
      specs += planner.specs
  return specs


def _report(rows, config, workdir):
  # matplotlib only when reporting
  from ntdh_jax.experiments import ntdh_real_report  # pylint: disable=import-outside-toplevel
  ntdh_real_report.write(rows, config, workdir)


experiments.register("ntdh_real", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
