"""K student-with-KD runs as one vmapped program vs a Python loop of runs.

    python benchmarks/sweep.py [--epochs 1000] [--ks 1,16,64,256] [--repeats 1]

The NTDH synthetic student (reference MLP 50-16-16-4, full-batch SGD with
momentum, CE + λ·KL at temperature T) distilled from one teacher trained
first, both built by ``ntdh_jax.train.stages.build_program`` (model
``{"name": "mlp", ...}``, data ``{"name": "ntdh"}``). The dataset
(``program.load()``, the standardised base arrays) is an argument of every
call, placed on the device once and passed unmapped; the teacher's outputs
(``{"variables", "feature_mask"}``) are every run's ``inputs``
(``{"teacher": ...}``), also unmapped. The K configs differ in ``lr``,
``temperature`` and ``kd_weight`` and share ``gamma`` and the seed, so they
train on the same views. Timed side by side in one process, best of
``--repeats`` (programs are compiled before timing):

* ``vmapped``: ``jit(vmap(program.train, in_axes=(0, 0, None, None)))``
  over all K configs, each with its own (identical) key and gamma, as the
  sweep engine stacks them.
* ``loop``: a Python loop of the single-run ``jit(program.train)``. Loops of
  more than ``--loop-max`` runs are timed on their first ``--loop-subset``
  runs and the rate extrapolated (marked ``*``).
* ``shared``, a prototype: the same vmap with the key, ``gamma`` and
  ``momentum`` passed unbatched (``in_axes=None``). The views each run draws
  from the base data (noise columns from the key, informative columns from
  gamma) are then unbatched, so JAX's dot_general batching rule
  folds the run axis of the first layer into one wide matmul
  ``[N, 50] @ [50, 16·K]`` (and its weight gradient), and the teacher forward
  runs once instead of K times. ``shared/B`` is the same in blocks of
  ``--block`` runs (``lax.map(..., batch_size=B)``, the engine's
  ``vmap_size``) so a block's activations stay in cache.

FLOPs per run, matmuls only, as executed: every epoch is one full-batch step
over N = 6000 samples costing, per sample, forward 2·(50·16 + 16·16 + 16·4) =
2240, backward 2240 for the weight gradients plus 2·(16·16 + 16·4) = 640 for
the input gradients of layers 2 and 3 (the input gradient of layer 1 is never
formed: the data are not differentiated), 5120 in all (the "backward = 2 ×
forward" convention would say 6720, 1.31× more). The one segment adds the
teacher forward on the 6000 training samples and the teacher and student
forwards on the 4000 test samples, 2240 per sample each. Every variant is
credited with the same per-run count (``shared`` computes the teacher forward
once for all runs). Peak: the best float32 ``jnp.dot`` of square matrices of
a few sizes, measured before the runs and after each K.

Goals: the vmapped program reaches >= 50 % of the float32 matmul peak at
K >= 64, and beats the loop. Prints markdown tables, then the student's
matmul shapes in the compiled programs. ``--xla-option`` passes XLA debug
options to every compile, e.g. ``xla_cpu_experimental_ynn_fusion_type=``
(empty: no YNNPACK fusions, dots go to XLA:CPU's other back-end).
"""

import argparse
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax.train import stages

N_TRAIN, N_TEST = 6000, 4000
LAYERS = ((50, 16), (16, 16), (16, 4))
SHARED = ("gamma", "momentum")
TEST_ACC_TOL = 0.02


def flops_per_run(epochs: int, segments: int = 1,
                  distill: bool = True) -> int:
  """Matmul FLOPs of one run (module docstring). ``segments``: evaluations
  (one per ``eval_every`` epochs); ``distill``: a KD student, whose every
  segment also runs the frozen teacher forward on the training and test
  samples; ``False``: a teacher or a student without KD, whose segment
  evaluates its own network on the test samples only."""
  forward = 2 * sum(a * b for a, b in LAYERS)
  backward = forward + 2 * sum(a * b for a, b in LAYERS[1:])
  evaluated = N_TRAIN + 2 * N_TEST if distill else N_TEST
  return (epochs * N_TRAIN * (forward + backward)
          + segments * evaluated * forward)


def matmul_peak(repeats: int) -> float:
  """Best float32 GFLOP/s of a jitted square ``jnp.dot`` over a few sizes."""
  calls = {}
  for n in (512, 1024, 2048):
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot).lower(a, b).compile()
    calls[n] = lambda dot=dot, a=a, b=b: dot(a, b)
  return max(2 * n**3 / seconds / 1e9
             for n, (seconds, _) in best_times(calls, repeats).items())


def best_times(calls: dict, repeats: int) -> dict:
  """``{name: (best seconds, last output)}`` of compiled calls, interleaved
  (one call of each per round) so drifting machine load hits all alike."""
  best = {name: (float("inf"), None) for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      out = jax.block_until_ready(call())
      best[name] = (min(best[name][0], time.perf_counter() - start), out)
  return best


def configs(k: int, seed: int) -> dict:
  """``f32[k]`` hyperparameters: lr, temperature and kd_weight drawn per
  config, gamma and momentum the same for all (so is the seed)."""
  rng = np.random.default_rng(seed)
  values = {"gamma": np.full(k, 0.5), "momentum": np.full(k, 0.9),
            "lr": 10 ** rng.uniform(-2, -1, k),
            "temperature": rng.uniform(1, 8, k),
            "kd_weight": rng.uniform(0.1, 1, k)}
  return {name: jnp.asarray(v, jnp.float32) for name, v in values.items()}


def compile_(fn, args, options):
  return jax.jit(fn).lower(*args).compile(compiler_options=options)


def dot_shapes(compiled) -> list[str]:
  """``layer pass: shape`` of each student matmul in the compiled training
  step (outer instructions only: plain dots and library-call fusions)."""
  pattern = re.compile(
      r"^\s*%\S+ = (f32\[[\d,]*\])\S* (?:dot\(|fusion\(.*kind=kCustom)"
      r".*op_name=\"[^\"]*/while/body/[^\"]*?(transpose\(jvp|jvp)\(MLP\)\)?"
      r"/(\w+)/(?:dot_general|transpose)\"")
  found = []
  for line in compiled.as_text().splitlines():
    match = pattern.search(line)
    if match:
      shape, pass_, layer = match.groups()
      item = f"{layer} {'bwd' if pass_ == 'transpose(jvp' else 'fwd'} {shape}"
      if item not in found:
        found.append(item)
  return found


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=1000)
  parser.add_argument("--ks", default="1,16,64,256")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--loop-max", type=int, default=64)
  parser.add_argument("--loop-subset", type=int, default=8)
  parser.add_argument("--block", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--xla-option", action="append", default=[],
                      metavar="NAME=VALUE",
                      help="XLA debug option for every compiled program, e.g."
                      " xla_cpu_experimental_ynn_fusion_type= (repeatable)")
  args = parser.parse_args()
  ks = [int(k) for k in args.ks.split(",")]
  options = dict(o.split("=", 1) for o in args.xla_option)

  static = {"data": {"name": "ntdh"},
            "model": {"name": "mlp", "hidden": [16, 16],
                      "init_scheme": "torch"},
            "epochs": args.epochs, "eval_every": args.epochs,
            "optimizer": "sgd"}
  key = jax.random.key(args.seed)
  teacher_program = stages.build_program("teacher", static)
  program = stages.build_program("student", {**static, "distill": "kl"})
  data = jax.device_put(program.load())
  teacher_hp = {"gamma": jnp.float32(0.5), "lr": jnp.float32(0.05),
                "momentum": jnp.float32(0.9)}
  _, _, teacher = jax.jit(teacher_program.train)(teacher_hp, key, data)
  inputs = {"teacher": teacher}

  peak = matmul_peak(5 * args.repeats + 5)
  hp = configs(max(ks), args.seed)
  runs = [{name: v[i] for name, v in hp.items()} for i in range(max(ks))]
  single = compile_(program.train, (runs[0], key, data, inputs), options)
  rows, dots = [], {}
  for k in ks:
    hp_k = {name: v[:k] for name, v in hp.items()}
    keys = jax.vmap(jax.random.key)(jnp.full((k,), args.seed))
    per_run = {n: v for n, v in hp_k.items() if n not in SHARED}
    shared = {n: hp_k[n][0] for n in SHARED}
    axes = {n: (None if n in SHARED else 0) for n in hp_k}
    compiled = {
        "vmapped": compile_(
            jax.vmap(program.train, in_axes=(0, 0, None, None)),
            (hp_k, keys, data, inputs), options),
        "shared": compile_(
            jax.vmap(program.train, in_axes=(axes, None, None, None)),
            ({**per_run, **shared}, key, data, inputs), options)}
    calls = {"vmapped": lambda: compiled["vmapped"](hp_k, keys, data, inputs),
             "shared": lambda: compiled["shared"]({**per_run, **shared}, key,
                                                  data, inputs)}
    if k > args.block:
      blocked = compile_(
          lambda p, s, key, data, inputs: jax.lax.map(
              lambda r: program.train({**r, **s}, key, data, inputs), p,
              batch_size=args.block),
          (per_run, shared, key, data, inputs), options)
      calls[f"shared/{args.block}"] = lambda: blocked(per_run, shared, key,
                                                      data, inputs)
    looped = k if k <= args.loop_max else min(k, args.loop_subset)
    calls["loop"] = lambda: [single(r, key, data, inputs)
                             for r in runs[:looped]]

    rate, acc = {}, {}
    for name, (seconds, out) in best_times(calls, args.repeats).items():
      rate[name] = (looped if name == "loop" else k) / seconds
      acc[name] = (jnp.stack([history["test_acc"] for _, history, _ in out])
                   if name == "loop" else out[1]["test_acc"])
    for name, a in acc.items():
      gap = float(jnp.max(jnp.abs(a - acc["vmapped"][:len(a)])))
      if gap > TEST_ACC_TOL:
        raise AssertionError(
            f"K={k}: {name} and vmapped final test accuracy differ by {gap}.")
    rows.append((k, rate, looped < k))
    dots[k] = {name: dot_shapes(c) for name, c in compiled.items()}
    peak = max(peak, matmul_peak(5 * args.repeats + 5))

  gflop = flops_per_run(args.epochs) / 1e9
  print(f"epochs = {args.epochs}, {gflop:.2f} GFLOP per run, float32 "
        f"matmul peak {peak:.0f} GFLOP/s, {jax.devices()[0].platform} "
        f"x{jax.device_count()}, best of {args.repeats}"
        + (f", XLA options {options}" if options else ""))
  print("\n| K | vmapped runs/s | loop runs/s | ratio | GFLOP/s | % of peak |")
  print("|---|---|---|---|---|---|")
  for k, rate, extrapolated in rows:
    loop = f"{rate['loop']:.2f}" + ("*" if extrapolated else "")
    print(f"| {k} | {rate['vmapped']:.2f} | {loop} | "
          f"{rate['vmapped'] / rate['loop']:.2f}x | "
          f"{rate['vmapped'] * gflop:.1f} | "
          f"{100 * rate['vmapped'] * gflop / peak:.1f} |")
  if any(extrapolated for *_, extrapolated in rows):
    print(f"\n* loop timed on its first {args.loop_subset} runs, "
          "rate extrapolated.")
  print("\nPrototype: key, gamma, momentum unbatched (shared data); "
        f"shared/{args.block} = blocks of {args.block} runs.\n")
  print("| K | variant | runs/s | vs vmapped | vs loop | GFLOP/s "
        "| % of peak |")
  print("|---|---|---|---|---|---|---|")
  for k, rate, _ in rows:
    for name in (n for n in rate if n.startswith("shared")):
      print(f"| {k} | {name} | {rate[name]:.2f} | "
            f"{rate[name] / rate['vmapped']:.2f}x | "
            f"{rate[name] / rate['loop']:.2f}x | {rate[name] * gflop:.1f} | "
            f"{100 * rate[name] * gflop / peak:.1f} |")
  print(f"\nStudent matmuls in the compiled training step, K = {max(ks)}:")
  for name, shapes in dots[max(ks)].items():
    print(f"  {name}: " + "; ".join(shapes))


if __name__ == "__main__":
  main()
