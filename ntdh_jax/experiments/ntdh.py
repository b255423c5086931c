"""The NTDH study on the synthetic data: Fig. 3, Figs. 6–7, Alg. 1, Alg. 2.

``plan(configs)`` turns each config into the runs of the selected parts
(``config.parts``, those a preset lists in its own ``parts``), for every
preset of ``config.presets`` and every seed (``config.num_seeds`` replicates
from ``config.seed``):

* ``fig3``: for every γ, a teacher, a student without KD and a KD student
  (CE + λ·KL at temperature T) distilled from that teacher.
* ``weights``: KD students with the decoupled objective α·TCKL + β·NCKL,
  α swept at fixed β and β swept at fixed α, at every γ.
* ``alg1``: at each ``mask_gammas`` γ, the joint Dist + CE + CE training and
  permutation importance, then for each mask kind and ratio a teacher
  retrained on the masked input and a KD student distilled from it.
* ``alg2``: at each ``sample_gammas`` γ, KD students whose distillation term
  skips the r % most (true), least (false) or random NCJSD samples.

Teachers are shared: a teacher run is identified by its configuration and
seed alone, so ``fig3``, ``weights`` and ``alg2`` distil from the same
trained teachers and the engine trains each once.

``report`` writes ``tables.md`` material, figures and ``report.md`` through
``ntdh_jax.experiments.ntdh_report``.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax import masks
from ntdh_jax.train import stages
from ntdh_jax.train.program import RunSpec

PARTS = ("fig3", "weights", "alg1", "alg2")


def _base_static(c, preset) -> dict:
  return {"data": c.data.to_dict(), "model": c.model.to_dict(),
          "epochs": preset.epochs, "eval_every": preset.eval_every,
          "batch_size": preset.batch_size, "optimizer": preset.optimizer}


def _data_hparams(c, gap) -> dict:
  return {"overlap": gap} if c.data.name == "mfh" else {"gamma": gap}


class _Planner:
  """Builds the runs of one config for one preset and one seed.

  Each run's hyperparameters are checked by ``stages.run_spec``; ``keys``
  tells it which config key each one came from, for the error message.
  """

  def __init__(self, c: ml_collections.ConfigDict, preset: str, seed: int):
    self.c, self.seed = c, seed
    values = c.presets[preset]
    self.static = _base_static(c, values)
    self.optim = {"lr": values.lr, "momentum": values.momentum}
    self.kd = {"temperature": c.temperature, "kd_weight": c.kd_weight}
    self.keys = {"lr": f"presets.{preset}.lr",
                 "momentum": f"presets.{preset}.momentum",
                 "temperature": "temperature", "kd_weight": "kd_weight"}
    self.tags = {"preset": preset}
    self.specs: list[RunSpec] = []

  def add(self, stage, static, hparams, keys, needs=None, **tags) -> RunSpec:
    spec = stages.run_spec(stage, static, hparams, self.seed, needs=needs,
                           tags={**self.tags, **tags},
                           keys={**self.keys, **keys})
    self.specs.append(spec)
    return spec

  def teacher(self, gap, gap_key, **static) -> RunSpec:
    return self.add("teacher", {**self.static, **static},
                    {**_data_hparams(self.c, gap), **self.optim},
                    _gap_keys(gap_key), role="teacher", gap=gap)

  def student(self, gap, gap_key, part, teacher=None, extra_static=None,
              extra_hparams=None, keys=None, **tags) -> RunSpec:
    static = {**self.static, "kd_form": self.c.kd_form,
              **(extra_static or {})}
    hparams = {**_data_hparams(self.c, gap), **self.optim}
    if teacher is not None:
      hparams.update(self.kd)
    hparams.update(extra_hparams or {})
    return self.add("student", static, hparams,
                    {**_gap_keys(gap_key), **(keys or {})},
                    needs=None if teacher is None else {
                        "teacher": teacher.run_id},
                    part=part, gap=gap, **tags)

  def fig3(self):
    for gap in self.c.gaps:
      teacher = self.teacher(gap, "gaps")
      self.student(gap, "gaps", "fig3", role="no_kd",
                   extra_static={"distill": "none"})
      self.student(gap, "gaps", "fig3", teacher, role="kd",
                   extra_static={"distill": "kl"})

  def weights(self):
    w = self.c.weights
    grid = sorted({(a, w.fixed_beta) for a in w.alphas}
                  | {(w.fixed_alpha, b) for b in w.betas})
    for gap in self.c.gaps:
      teacher = self.teacher(gap, "gaps")
      for alpha, beta in grid:
        self.student(gap, "gaps", "weights", teacher, role="kd",
                     extra_static={"distill": "dkd"},
                     extra_hparams={"alpha": alpha, "beta": beta},
                     keys={"alpha": "weights.alphas or weights.fixed_alpha",
                           "beta": "weights.betas or weights.fixed_beta"})

  def alg1(self):
    a = self.c.alg1
    for gap in a.gaps:
      joint = self.add(
          "joint", {**self.static, "joint_distance": a.distance,
                    "importance_repeats": a.repeats,
                    "importance_form": a.importance_form},
          {**_data_hparams(self.c, gap), "lr": a.lr, "momentum": a.momentum},
          {**_gap_keys("alg1.gaps"), "lr": "alg1.lr",
           "momentum": "alg1.momentum"},
          role="joint", part="alg1", gap=gap)
      for kind in a.kinds:
        for ratio in a.ratios:
          teacher = self.add(
              "teacher", {**self.static, "feature_mask": "importance"},
              {**_data_hparams(self.c, gap), **self.optim,
               "mask_ratio": ratio, "mask_kind": masks.kind_code(kind)},
              {**_gap_keys("alg1.gaps"), "mask_ratio": "alg1.ratios",
               "mask_kind": "alg1.kinds"},
              needs={"joint": joint.run_id}, role="masked_teacher",
              part="alg1",
              gap=gap, kind=kind, ratio=ratio)
          self.student(gap, "alg1.gaps", "alg1", teacher, role="kd",
                       extra_static={"distill": "kl"}, kind=kind,
                       ratio=ratio)

  def alg2(self):
    a = self.c.alg2
    for gap in a.gaps:
      teacher = self.teacher(gap, "alg2.gaps")
      for kind in a.kinds:
        for ratio in a.ratios:
          self.student(gap, "alg2.gaps", "alg2", teacher, role="kd",
                       extra_static={"distill": "kl", "sample_mask": "ncjsd"},
                       extra_hparams={"mask_ratio": ratio,
                                      "mask_kind": masks.kind_code(kind)},
                       keys={"mask_ratio": "alg2.ratios",
                             "mask_kind": "alg2.kinds"},
                       kind=kind, ratio=ratio)


def _gap_keys(key: str) -> dict:
  return {"gamma": key, "overlap": key}


# Lists a selected part loops over: empty, the part would plan nothing.
_PART_LISTS = {"fig3": ("gaps",),
               "weights": ("gaps", "weights.alphas", "weights.betas"),
               "alg1": ("alg1.gaps", "alg1.kinds", "alg1.ratios"),
               "alg2": ("alg2.gaps", "alg2.kinds", "alg2.ratios")}


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  """Every run of the selected parts for every config point."""
  specs = []
  for c in configs:
    config_lib.check_study(c, PARTS, _PART_LISTS)
    if "alg1" in c.parts:
      config_lib.check_count(c, "alg1.repeats")
    for preset in c.presets:
      parts = [p for p in c.parts if p in c.presets[preset].parts]
      for seed in range(c.seed, c.seed + c.num_seeds):
        planner = _Planner(c, preset, seed)
        for part in parts:
          getattr(planner, part)()
        specs += planner.specs
  return specs


def _report(rows, config, workdir):
  from ntdh_jax.experiments import ntdh_report  # matplotlib only when reporting
  ntdh_report.write(rows, config, workdir)


experiments.register("ntdh_synthetic", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
