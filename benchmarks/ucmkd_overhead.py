"""UCMKD's training-time overhead: seconds per epoch of each student method
against plain cross-entropy (the paper reports 1.2×–2.9× for its bi-level
step, Table 9; its complexity analysis ≤ 3×).

    python benchmarks/ucmkd_overhead.py [--ks 1,8] [--repeats 5] [--quick]

The digits study's setting (``sweeps/configs/ucmkd_digits.py``): data
``digits_blur`` 8×8 (teacher view grey digits, student view digits-M),
student and teacher ``mnist_fc`` [256, 128] (``leaky_logits`` False), batch
64, Adam, gradient clip 5.0, cosine cost, ε 0.1, 100 Sinkhorn iterations,
pairing ``class_paired`` (the reference code's unpaired loader). The runs
are the ones ``experiments.ucmkd.plan`` makes for the study's methods
(``experiments.ucmkd.METHODS``): ``ce``, ``kd``, ``fa``, ``sumall``,
``bilevel`` (the code's form: first-order hypergradient, inner AdamW) and
``bilevel_paper`` (the paper's: hypergradient unrolled through the inner
steps, inner SGD, FA differentiated with the plan held fixed, ratio κ);
n₁ = n₂ = 1. The frozen teacher is a ``teacher`` program trained first
(``--teacher-epochs``; its quality does not change the step's cost).

What is timed, per method and K (vmapped runs, each with its own key): one
call of the stage's ``segment`` with ``eval_every`` = 1, i.e. one training
epoch (n // 64 steps) plus the student's test pass, as
``jit(vmap(segment))`` with the data unmapped (as the sweep engine runs
it), compiled ahead and called once as a warm-up before timing; the median
of ``--repeats`` calls, the methods interleaved within each round so
drifting machine load hits all alike. Printed: seconds per epoch per run
(the call's time / K) and the ratio to ``ce`` at the same K.

Goal: measure the bi-level step's overhead here against the paper's 1.2–2.9×
(an MLP this small makes the 100-iteration Sinkhorn, not the network, the
step's main cost, so the overhead is an upper end).
"""

import argparse
import concurrent.futures
import os
import statistics
import time

import jax
import jax.numpy as jnp

from ntdh_jax.experiments import ucmkd
from ntdh_jax.train import stages

DATA = {"name": "digits_blur", "size": 8, "teacher_noise": 0.0,
        "student_noise": 0.0}
MODEL = {"name": "mnist_fc", "hidden": [256, 128], "leaky_logits": False}
CLEAN = {"student_share": 1.0, "imbalance": 1.0,
         "knobs": {"teacher_blur": 0.0, "student_blur": 0.0}}
METHODS = ("ce", "kd", "fa", "sumall", "bilevel", "bilevel_paper")
LABELS = {"bilevel": "bilevel (first-order, AdamW)",
          "bilevel_paper": "bilevel (unrolled, SGD, Danskin FA)"}
PAIRING = "class_paired"


def specs(methods, teacher_epochs):
  """The study's teacher run and one student run per method."""
  c = ucmkd.study_config("tiny", data=DATA, model=MODEL,
                         presets={"clean": CLEAN}, methods=list(methods),
                         pairings=[PAIRING])
  c.teacher.epochs = c.teacher.eval_every = teacher_epochs
  c.student.epochs = c.student.eval_every = 1
  planned = ucmkd.plan([c])
  teacher = next(s for s in planned if s.stage == "teacher")
  students = {s.tags_dict["method"]: s for s in planned
              if s.stage == "ucmkd"}
  return teacher, students


def stacked(hparams, k):
  return {n: jnp.full((k,), v, jnp.float32) for n, v in hparams.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ks", default="1,8",
                      help="vmapped runs per program, comma-separated")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--teacher-epochs", type=int, default=1)
  parser.add_argument("--quick", action="store_true",
                      help="K = 1 only, 3 repeats")
  args = parser.parse_args()
  ks = [1] if args.quick else [int(k) for k in args.ks.split(",")]
  repeats = 3 if args.quick else args.repeats
  methods = args.methods.split(",")
  if "ce" not in methods:
    methods = ["ce"] + methods

  start = time.perf_counter()
  teacher_spec, student_specs = specs(methods, args.teacher_epochs)
  teacher_program = stages.build_program("teacher", teacher_spec.static_dict)
  data = jax.device_put(teacher_program.load())
  key = jax.random.key(0)
  hp = {n: jnp.float32(v) for n, v in teacher_spec.hparams_dict.items()}
  _, _, teacher = jax.jit(teacher_program.train)(hp, key, data)
  inputs = {"teacher": teacher}

  steps = len(data["y_train"]) // 64
  # Every method's carry has one structure (the student network, Adam, the
  # teacher's outputs, the pools): one init at max(K), sliced per K.
  init_spec = student_specs["ce"]
  init_program = stages.build_program("ucmkd", init_spec.static_dict)
  all_keys = jax.random.split(key, max(ks))
  carry = jax.jit(jax.vmap(init_program.init, in_axes=(0, 0, None, None)))(
      stacked(init_spec.hparams_dict, max(ks)), all_keys, data, inputs)
  lowered = {}
  for k in ks:
    carry_k = jax.tree.map(lambda x, k=k: x[:k], carry)
    for m in methods:
      spec = student_specs[m]
      program = stages.build_program("ucmkd", spec.static_dict)
      hp_k = stacked(spec.hparams_dict, k)
      lowered[(m, k)] = (jax.jit(jax.vmap(
          program.segment, in_axes=(0, 0, None))).lower(carry_k, hp_k, data),
                         carry_k, hp_k)
  # XLA compiles in parallel threads.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    compiled = dict(zip(lowered, pool.map(lambda low: low[0].compile(),
                                          lowered.values())))
  calls = {}
  for name, (_, carry_k, hp_k) in lowered.items():
    calls[name] = (lambda segment=compiled[name], carry=carry_k, hp=hp_k:
                   segment(carry, hp, data))
    jax.block_until_ready(calls[name]())  # warm-up
  setup = time.perf_counter() - start

  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - t0)
  per_run = {(m, k): statistics.median(t) / k for (m, k), t in times.items()}

  print(f"UCMKD student epoch ({DATA['name']} 8×8, mnist_fc [256, 128], "
        f"batch 64, {steps} steps/epoch, pairing {PAIRING}), {jax.devices()[0].platform} x{jax.device_count()}, median of "
        f"{repeats}; compile and warm-up {setup:.0f} s, excluded\n")
  head = " | ".join(f"s/epoch K={k} | ×CE K={k}" for k in ks)
  print(f"| method | {head} |")
  print("|---|" + "---|---|" * len(ks))
  for m in methods:
    cells = " | ".join(
        f"{per_run[(m, k)]:.3f} | {per_run[(m, k)] / per_run[('ce', k)]:.2f}×"
        for k in ks)
    print(f"| {LABELS.get(m, m)} | {cells} |")


if __name__ == "__main__":
  main()
