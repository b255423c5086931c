"""A tiny but real teacher -> student pipeline for testing the sweep engine.

Data: 96 fixed points in 6 dimensions, 3 classes (NumPy seed 0). The teacher
is a softmax regression on all 6 features; the student sees only the first
``features`` columns (the weaker modality) and learns from the labels and
the teacher's logits: ``(1 - alpha) CE + alpha T^2 KL(teacher_T || student_T)``.
Both train with ``optax.inject_hyperparams(optax.sgd)`` so the learning rate
is a traced hyperparameter.

Importing this module registers the ``toy`` experiment (used by the CLI
tests); ``TRACES`` counts how often each program piece is traced.
"""

from __future__ import annotations

import collections
import csv
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ntdh_jax import experiments
from ntdh_jax.train.program import Program, RunSpec

NUM_CLASSES = 3
TEACHER_FEATURES = 6
TRACES = collections.Counter()


def _data():
  rng = np.random.RandomState(0)
  centres = rng.normal(size=(NUM_CLASSES, TEACHER_FEATURES)) * 1.5
  labels = rng.randint(0, NUM_CLASSES, size=96)
  x = centres[labels] + rng.normal(size=(96, TEACHER_FEATURES))
  return {"x": x.astype(np.float32), "y": labels.astype(np.int32)}


DATA = _data()  # the programs' ``load()``: one object, placed once per device


def _logits(params, x):
  return x @ params["w"] + params["b"]


def _metrics(params, x, y):
  logits = _logits(params, x)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  accuracy = (logits.argmax(-1) == y).mean()
  return {"loss": ce, "accuracy": accuracy}


def _sgd_program(stage: str, features: int, segments: int, steps: int,
                 loss_fn, extra_init, input_spec) -> Program:
  """Full-batch SGD for ``steps`` steps per segment on ``x[:, :features]``."""

  def init(hp, key, data, inputs):
    TRACES[stage, "init"] += 1
    params = {"w": 0.01 * jax.random.normal(key, (features, NUM_CLASSES)),
              "b": jnp.zeros(NUM_CLASSES)}
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])
    return {"params": params, "opt": tx.init(params),
            "extra": extra_init(inputs, data)}

  def segment(carry, hp, data):
    TRACES[stage, "segment"] += 1
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=hp["lr"])
    x, y = data["x"][:, :features], data["y"]

    def step(c, _):
      grads = jax.grad(loss_fn)(c["params"], x, y, c["extra"], hp)
      updates, opt = tx.update(grads, c["opt"], c["params"])
      return dict(c, params=optax.apply_updates(c["params"], updates),
                  opt=opt), None
    carry, _ = jax.lax.scan(step, carry, None, length=steps)
    return carry, _metrics(carry["params"], x, y)

  def finish(carry, hp, data):
    TRACES[stage, "finish"] += 1
    return (_metrics(carry["params"], data["x"][:, :features], data["y"]),
            carry["params"])

  return Program(init=init, segment=segment, finish=finish,
                 num_segments=segments, input_spec=input_spec,
                 load=lambda: DATA)


def _ce(params, x, y, extra, hp):
  del extra, hp
  return optax.softmax_cross_entropy_with_integer_labels(
      _logits(params, x), y).mean()


def _kd(params, x, y, teacher_logits, hp):
  t = hp["temperature"]
  student = _logits(params, x)
  ce = optax.softmax_cross_entropy_with_integer_labels(student, y).mean()
  kl = optax.kl_divergence(jax.nn.log_softmax(student / t),
                           jax.nn.softmax(teacher_logits / t)).mean()
  return (1 - hp["alpha"]) * ce + hp["alpha"] * t ** 2 * kl


def teacher_spec(teacher_features: int = TEACHER_FEATURES):
  return {"w": jax.ShapeDtypeStruct((teacher_features, NUM_CLASSES),
                                    jnp.float32),
          "b": jax.ShapeDtypeStruct((NUM_CLASSES,), jnp.float32)}


def build_program(stage: str, static: dict) -> Program:
  """``teacher``: static ``{segments, steps}``; ``student``: also
  ``features`` (and ``teacher_features``, to provoke a mismatch);
  ``ensemble``: a student of two upstream runs (roles ``teacher`` and
  ``peer``), distilled from their mean logits."""
  if stage == "teacher":
    return _sgd_program(stage, TEACHER_FEATURES, static["segments"],
                        static["steps"], _ce, lambda inputs, data: (), None)
  if stage == "ensemble":
    return _sgd_program(
        stage, static["features"], static["segments"], static["steps"], _kd,
        lambda inputs, data: 0.5 * (_logits(inputs["teacher"], data["x"])
                                    + _logits(inputs["peer"], data["x"])),
        {"teacher": teacher_spec(), "peer": teacher_spec()})
  teacher_features = static.get("teacher_features", TEACHER_FEATURES)
  return _sgd_program(
      stage, static["features"], static["segments"], static["steps"], _kd,
      lambda inputs, data: _logits(inputs["teacher"],
                                   data["x"][:, :teacher_features]),
      {"teacher": teacher_spec(teacher_features)})


def specs(teacher_lrs=(0.5, 1.0), student_lrs=(0.3,), alphas=(0.0, 0.5),
          seeds=(0, 1), segments=4, steps=3, features=2):
  """Teachers for each (lr, seed), a student per (teacher, lr, alpha), and
  per seed an ensemble student of that seed's first teacher and the next
  seed's (two upstream runs, two roles)."""
  teacher_static = {"segments": segments, "steps": steps}
  student_static = dict(teacher_static, features=features)
  out, first = [], []
  for seed in seeds:
    for teacher_lr in teacher_lrs:
      teacher = RunSpec.make("teacher", teacher_static, {"lr": teacher_lr},
                             seed, tags={"role": "teacher"})
      if teacher_lr == teacher_lrs[0]:
        first.append(teacher)
      out.append(teacher)
      for lr in student_lrs:
        for alpha in alphas:
          out.append(RunSpec.make(
              "student", student_static,
              {"lr": lr, "alpha": alpha, "temperature": 2.0}, seed,
              needs={"teacher": teacher.run_id}, tags={"role": "student"}))
  if len(first) > 1:
    for i, teacher in enumerate(first):
      peer = first[(i + 1) % len(first)]
      out.append(RunSpec.make(
          "ensemble", student_static,
          {"lr": 0.3, "alpha": 0.5, "temperature": 2.0}, teacher.seed,
          needs={"teacher": teacher.run_id, "peer": peer.run_id},
          tags={"role": "ensemble"}))
  return out


def get_config() -> ml_collections.ConfigDict:
  """Base config of the ``toy`` experiment (sweeps override these fields)."""
  config = ml_collections.ConfigDict()
  config.experiment = "toy"
  config.teacher_lr = 0.5
  config.student_lr = 0.3
  config.alpha = 0.5
  config.seeds = 2
  config.segments = 4
  config.steps = 3
  config.features = 2
  return config


# The sweep the CLI tests launch: 3 teachers, 12 students and 3 ensemble
# students (each distilled from two teachers).
SWEEP_CONFIG = '''
from tests import toy_programs

def get_config(arg=None):
  c = toy_programs.get_config()
  c.seeds = 3
  c.segments = 6
  return c

def get_hyper(h):
  return h.product([h.sweep("config.alpha", [0.0, 0.5]),
                    h.sweep("config.student_lr", [0.3, 0.6])])
'''


def plan(configs):
  out = []
  for c in configs:
    out += specs(teacher_lrs=(c.teacher_lr,), student_lrs=(c.student_lr,),
                 alphas=(c.alpha,), seeds=tuple(range(c.seeds)),
                 segments=c.segments, steps=c.steps, features=c.features)
  return out


def report(rows, config, workdir):
  """Writes the students' final accuracy per alpha to ``toy_report.csv``."""
  del config
  with open(os.path.join(workdir, "toy_report.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run_id", "alpha", "accuracy"])
    for row in rows:
      if row["stage"] == "student":
        writer.writerow([row["run_id"], row["hp.alpha"],
                         row["final.accuracy"]])


experiments.register("toy", experiments.ExperimentDef(
    plan=plan, build_program=build_program, report=report))
