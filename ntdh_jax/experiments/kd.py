"""Teacher → student distillation across two modalities of a paired source.

``plan(configs)``: for every seed, a teacher (``config.teacher_model`` on
the teacher view), a student without KD and one student per entry of
``config.methods`` (``config.model`` on the student view), each distilled
from that seed's teacher. With the same network on both views, the teacher
and the no-KD student also measure the two modalities' strength (NTDH's
Assumption 2 asks for them to be comparable).

``report`` writes ``report.md``: accuracies, the gain over no KD and the
teacher–student divergences on the test set (mean ± std over seeds).
"""

from __future__ import annotations

import os
from typing import Sequence

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.experiments import tables
from ntdh_jax.train import stages
from ntdh_jax.train.program import RunSpec

# The students a KD study distils by default (``config.methods``): Hinton KD
# (CE + KL at T = 4) and DKD with its paper's defaults (α = 1, β = 8, T = 4).
METHODS = {
    "kd": {"distill": "kl", "kd_form": "additive", "temperature": 4.0,
           "kd_weight": 1.0},
    "dkd": {"distill": "dkd", "kd_form": "additive", "temperature": 4.0,
            "alpha": 1.0, "beta": 8.0, "kd_weight": 1.0},
}
_DIVERGENCES = ("tcjsd", "ncjsd", "tckl", "nckl")
_STATIC = ("distill", "kd_form", "sample_mask")


def stage_static(c, model) -> dict:
  """The static config of a stage run on ``c.data`` with ``model`` and the
  training options ``c.train``."""
  t = c.train
  return {"data": c.data.to_dict(), "model": dict(model), "epochs": t.epochs,
          "eval_every": t.eval_every, "batch_size": t.batch_size,
          "optimizer": t.optimizer, "eval_batch_size": t.eval_batch_size}


def plan(configs: Sequence[ml_collections.ConfigDict]) -> list[RunSpec]:
  specs = []
  for c in configs:
    config_lib.check_count(c, "num_seeds")
    config_lib.check_count(c, "seed", low=0)
    optim = {"lr": c.train.lr, "momentum": c.train.momentum}
    keys = {"lr": "train.lr", "momentum": "train.momentum"}
    student_static = {**stage_static(c, c.model),
                      "teacher_model": c.teacher_model.to_dict()}
    for seed in range(c.seed, c.seed + c.num_seeds):
      teacher = stages.run_spec(
          "teacher", stage_static(c, c.teacher_model), optim, seed,
          tags={"role": "teacher"}, keys=keys)
      specs.append(teacher)
      specs.append(stages.run_spec(
          "student", {**student_static, "distill": "none"}, optim, seed,
          tags={"role": "no_kd", "method": "none"}, keys=keys))
      for name, method in c.methods.items():
        method = method.to_dict()
        static = {k: method.pop(k) for k in _STATIC if k in method}
        specs.append(stages.run_spec(
            "student", {**student_static, **static}, {**optim, **method},
            seed, needs={"teacher": teacher.run_id},
            tags={"role": "kd", "method": name},
            keys={**keys, **{k: f"methods.{name}.{k}" for k in method}}))
  return specs


def summary(rows) -> list[dict]:
  """One line per condition: accuracy and divergences, mean ± std."""
  no_kd = tables.stats(tables.select(rows, role="no_kd"), "test_acc", 100)[0]
  lines = []
  for role, method, label in (
      [("teacher", None, "teacher (teacher view)"),
       ("no_kd", "none", "student without KD")]
      + [("kd", m, f"student + {m}") for m in sorted(
          {r.get("tag.method") for r in tables.select(rows, role="kd")})]):
    rs = tables.select(rows, role=role, **({"method": method}
                                           if role == "kd" else {}))
    acc = tables.stats(rs, "test_acc", 100)
    line = {"condition": label, "acc": acc,
            "gain": acc[0] - no_kd if role == "kd" else float("nan")}
    line.update({d: tables.stats(rs, d) for d in _DIVERGENCES})
    lines.append(line)
  return lines


def _report(rows, config, workdir):
  lines = summary(rows)
  teacher, student = lines[0]["acc"], lines[1]["acc"]
  text = [
      f"# Cross-modal KD on `{config.data.name}` — report\n",
      f"Teacher `{config.teacher_model.name}` on the "
      "teacher view, students "
      f"`{config.model.name}` on the student view; mean ± std over "
      f"{config.num_seeds} seeds of the last evaluation. Accuracy in %, "
      "divergences in nats between the teacher and the student on the test "
      "set.\n",
      tables.markdown(
          ["condition", "test acc", "gain over no KD"]
          + [d.upper() for d in _DIVERGENCES],
          [[l["condition"], tables.fmt(*l["acc"]),
            "–" if l["gain"] != l["gain"] else f"{l['gain']:+.2f}"]
           + [tables.fmt(*l[d], digits=3) for d in _DIVERGENCES]
           for l in lines]),
      "",
      f"Modality strength (each view alone): teacher view "
      f"{teacher[0]:.2f} %, student view {student[0]:.2f} % "
      f"(gap {teacher[0] - student[0]:+.2f} points"
      + ("; same network on both views)." if
         config.teacher_model.to_dict() == config.model.to_dict() else ")."),
  ]
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(text) + "\n")


experiments.register("kd", experiments.ExperimentDef(
    plan=plan, build_program=stages.build_program, report=_report))
