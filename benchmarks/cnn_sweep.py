"""K CNN students as one vmapped program vs a loop of runs vs plain PyTorch.

    python benchmarks/cnn_sweep.py [--epochs 1] [--k 1,16,64]
        [--only engine|canonical|loop|torch] [--threads N] [--loop-max 8]

The no-KD student stage (``distill: "none"``) on the embedded digits-M view
(``{"name": "digits"}``, 8×8×3 uint8, 1,347 train / 450 test rows) with
the CNN of ``sweeps/configs/digits_kd.py`` (3×3 conv 32 → ReLU → 2×2
max-pool, 3×3 conv 64 → ReLU → 2×2 max-pool, dense 128 → ReLU, linear
head), Adam lr 1e-3, batch 64 (21 steps an epoch, the last partial batch
dropped), one test evaluation at the end (``eval_every = epochs``,
``eval_batch_size`` 512). The K runs differ in their seed only (init and
batch order); every run has lr 1e-3. Timed side by side in one process:

* ``engine``: ``jit(vmap(program.train, in_axes=(0, 0, None)))`` over K
  stacked hparams and keys, the data passed unmapped (``program.load()``).
  Compiled ahead (``lower().compile()``, timed apart and printed), then one
  timed call (``block_until_ready``). No warm-up call: at K = 64 it would
  cost as much as the timed one. XLA's batching rule turns each vmapped
  convolution (and its two gradients) into one grouped convolution
  (``feature_group_count = K``) in the compiled program.
* ``canonical``: the same engine call with the model's
  ``conv_grad="canonical"`` (``ntdh_jax.convolution``): each kernel
  gradient as one canonical convolution, the form XLA:CPU runs fast inside
  the training loop, the K runs' convolutions as separate single-run ones
  instead of one grouped convolution, and the max-pools' gradients taken by
  selects instead of a ``select_and_scatter`` (``ntdh_jax.pooling``); the
  default ``"autodiff"`` is JAX's own rules.
* ``loop``: the single-run ``jit(program.train)``, compiled ahead once
  (the same executable for every K) and run once on another key, then
  called K times on new keys (one ``block_until_ready`` at the end).
* ``torch``: the same training written plainly in PyTorch on the CPU
  (``torch.set_num_threads(--threads)``, default all cores): the same
  layers (NCHW; PyTorch's default init, which the model's
  ``init_scheme="torch"`` copies), ``torch.optim.Adam(lr=1e-3)`` (optax's
  defaults: betas 0.9/0.999, eps 1e-8), a fresh ``randperm`` every epoch
  with the last partial batch dropped, so the same number of steps, and the
  same input form per mini-batch, ``(x/255 − 0.5)/0.5`` from the stored
  uint8 rows. The digits source's default ``student_noise`` is 0, so its
  ``prepare`` draws no noise on this view and neither does this loop. A
  loop over K runs, after one untimed warm-up run of one epoch.

``--loop-max``: a ``loop`` or ``torch`` of more than that many runs is timed
on its first ``--loop-max`` runs and the rate extrapolated (marked ``*``):
their runs are independent and alike, so the rate does not depend on K
(``--loop-max 64`` times all of them). trainings/s = K / seconds. The
default of one epoch (21 steps) keeps the whole benchmark under 10 minutes
on a 2-core CPU (the K = 64 engine call alone takes minutes there): the
ratios are what matter (compile is excluded and every variant's time grows
linearly with the epochs). The mean final test accuracy of each variant is
printed as a check that all three train the same thing (it is low after
one epoch; loop and torch: over their timed runs).

Goal (issue): the engine reaches >= 10× the PyTorch loop's trainings/s at
K = 64; the script prints whether it does.

Memory: the script prints its peak RSS (``resource.getrusage``), which
covers everything the process ran (every K and variant). For the peak of
the K = 64 engine sweep alone, run it alone and read "Maximum resident set
size (kbytes)"::

    /usr/bin/time -v python benchmarks/cnn_sweep.py --k 64 --only engine

XLA runs with its default flags (one CPU device). Other processes skew the
timings: the load average (1 min) is printed before and after. PyTorch's
threads suffer most from a busy machine (they wait on each other): with
other work on the cores, compare ``--only torch --threads 1``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax.train import stages

VARIANTS = ("engine", "canonical", "loop", "torch")
# The vmapped program with the model's conv_grad "autodiff" and "canonical".
ENGINES = ("engine", "canonical")
MODEL = {"name": "cnn", "channels": [32, 64], "dense": 128}
LR, BATCH, EVAL_BATCH = 1e-3, 64, 512
GOAL_K, GOAL_RATIO = 64, 10.0


def static_config(epochs: int, conv_grad: str = "autodiff") -> dict:
  model = {**MODEL, "conv_grad": conv_grad}
  return {"data": {"name": "digits"}, "model": model, "epochs": epochs,
          "eval_every": epochs, "batch_size": BATCH, "optimizer": "adam",
          "eval_batch_size": EVAL_BATCH, "distill": "none"}


def stacked(k: int, first_seed: int):
  """``({"lr": f32[k]}, keys[k])`` of seeds ``first_seed .. + k - 1``."""
  hparams = {"lr": jnp.full((k,), LR, jnp.float32)}
  keys = jax.vmap(jax.random.key)(jnp.arange(first_seed, first_seed + k))
  return hparams, keys


def time_engine(program, data, k: int, seed: int):
  """``(seconds, compile seconds, mean test accuracy)`` of K vmapped runs.

  Compiled ahead (``lower().compile()``), then one timed call: a warm-up
  call would cost as much as the timed one (minutes at K = 64 here).
  """
  hparams, keys = stacked(k, seed)
  start = time.perf_counter()
  train = jax.jit(jax.vmap(program.train, in_axes=(0, 0, None))).lower(
      hparams, keys, data).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  _, history, _ = jax.block_until_ready(train(hparams, keys, data))
  seconds = time.perf_counter() - start
  return seconds, compile_s, float(jnp.mean(history["test_acc"][:, -1]))


def compile_single(program, data, seed: int):
  """The single-run ``jit(program.train)``, compiled ahead and run once
  (untimed, on a key no timed run uses); compiled once for every K."""
  hparams = {"lr": jnp.float32(LR)}
  start = time.perf_counter()
  train = jax.jit(program.train).lower(
      hparams, jax.random.key(seed), data).compile()
  print(f"loop: compile {time.perf_counter() - start:.1f} s",
        file=sys.stderr, flush=True)
  jax.block_until_ready(train(hparams, jax.random.key(seed + 10_000), data))
  return train


def time_loop(train, data, runs: int, seed: int):
  """``(seconds, 0, mean test accuracy)`` of ``runs`` calls of the compiled
  single-run program ``train``."""
  hparams = {"lr": jnp.float32(LR)}
  keys = [jax.random.key(seed + i) for i in range(runs)]
  start = time.perf_counter()
  outs = jax.block_until_ready([train(hparams, key, data) for key in keys])
  seconds = time.perf_counter() - start
  acc = np.mean([float(history["test_acc"][-1]) for _, history, _ in outs])
  return seconds, 0.0, float(acc)


def import_torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("The torch variant needs PyTorch (CPU), installed only for this "
             "benchmark: pip install torch (here: pip install torch==2.13.0, "
             "the CPU wheel; or the extra: pip install -e '.[bench]'), or "
             "skip it with --only engine / --only loop.")
  return torch


class TorchRuns:
  """The same student training written plainly in PyTorch."""

  def __init__(self, data: dict, epochs: int, threads: int):
    torch = self.torch = import_torch()
    torch.set_num_threads(threads)
    # Stored uint8 rows, NHWC -> NCHW once (a uint8 copy; the float conversion
    # happens per mini-batch, as the JAX program's `prepare` does).
    self.x_train = torch.from_numpy(
        np.ascontiguousarray(data["student_train"].transpose(0, 3, 1, 2)))
    self.y_train = torch.from_numpy(data["y_train"].astype(np.int64))
    self.x_test = torch.from_numpy(
        np.ascontiguousarray(data["student_test"].transpose(0, 3, 1, 2)))
    self.y_test = torch.from_numpy(data["y_test"].astype(np.int64))
    self.epochs = epochs
    size = self.x_train.shape[2]  # two 2×2 pools: size // 4 per side
    self.flat = MODEL["channels"][1] * (size // 4) ** 2

  @staticmethod
  def prepare(x):
    return (x.float() / 255.0 - 0.5) / 0.5

  def model(self):
    nn = self.torch.nn
    c1, c2 = MODEL["channels"]
    return nn.Sequential(
        nn.Conv2d(self.x_train.shape[1], c1, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(self.flat, MODEL["dense"]), nn.ReLU(),
        nn.Linear(MODEL["dense"], 10))

  def run(self, seed: int, epochs: int | None = None) -> float:
    """One training; returns its final test accuracy."""
    torch = self.torch
    torch.manual_seed(seed)
    net = self.model()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = self.x_train.shape[0]
    steps = n // BATCH
    net.train()
    for _ in range(self.epochs if epochs is None else epochs):
      order = torch.randperm(n)
      for i in range(steps):
        rows = order[i * BATCH:(i + 1) * BATCH]
        loss = loss_fn(net(self.prepare(self.x_train[rows])),
                       self.y_train[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
      logits = net(self.prepare(self.x_test))
    return float((logits.argmax(1) == self.y_test).float().mean())

  def time(self, runs: int, seed: int):
    """``(seconds, 0, mean test accuracy)`` of ``runs`` trainings."""
    self.run(seed + 10_000, epochs=1)  # warm-up: oneDNN primitives, allocator
    start = time.perf_counter()
    acc = [self.run(seed + i) for i in range(runs)]
    return time.perf_counter() - start, 0.0, float(np.mean(acc))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--k", default="1,16,64",
                      help="comma-separated numbers of runs")
  parser.add_argument("--only", choices=VARIANTS, action="append",
                      help="run only this variant (repeatable)")
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch.set_num_threads (default: all cores)")
  parser.add_argument("--loop-max", type=int, default=8,
                      help="time loop/torch on at most this many runs and "
                      "extrapolate")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  ks = [int(k) for k in args.k.split(",")]
  variants = [v for v in VARIANTS if v in (args.only or VARIANTS)]

  load_start = os.getloadavg()[0]
  program = stages.build_program("student", static_config(args.epochs))
  canonical = stages.build_program(
      "student", static_config(args.epochs, "canonical"))
  data = program.load()
  n_train = data["y_train"].shape[0]
  torch_runs = (TorchRuns(data, args.epochs, args.threads)
                if "torch" in variants else None)
  single = (compile_single(program, data, args.seed)
            if "loop" in variants else None)

  rows = []
  for k in ks:
    row = {}
    for name in variants:
      runs = k if name in ENGINES else min(k, args.loop_max)
      if name in ENGINES:
        out = time_engine(canonical if name == "canonical" else program,
                          data, k, args.seed)
      elif name == "loop":
        out = time_loop(single, data, runs, args.seed)
      else:
        out = torch_runs.time(runs, args.seed)
      seconds, compile_s, acc = out
      row[name] = {"rate": runs / seconds, "seconds": seconds,
                   "compile": compile_s, "acc": acc, "extrapolated": runs < k}
      compiled = f", compile {compile_s:.1f} s" if name in ENGINES else ""
      print(f"K={k} {name}: {runs} runs in {seconds:.2f} s{compiled}, mean "
            f"test acc {acc:.3f}", file=sys.stderr, flush=True)
    rows.append((k, row))
  load_end = os.getloadavg()[0]

  steps = args.epochs * (n_train // BATCH)
  torch_info = ""
  if torch_runs is not None:
    torch_info = (f", torch {torch_runs.torch.__version__} "
                  f"({torch_runs.torch.get_num_threads()} threads)")
  print(f"epochs = {args.epochs} ({steps} Adam steps of {BATCH} per run), "
        f"jax {jax.__version__} {jax.devices()[0].platform} "
        f"x{jax.device_count()}{torch_info}, {os.cpu_count()} cores, "
        f"load average (1 min) {load_start:.2f} before, {load_end:.2f} after")
  header = [f"{v} trainings/s" for v in variants]
  pairs = [(a, b) for a in ENGINES for b in ("loop", "torch")
           if {a, b} <= set(variants)]
  header += [f"{a}/{b}" for a, b in pairs]
  header += [f"{v} acc" for v in variants]
  header += [f"{v} compile s" for v in variants if v in ENGINES]
  print("\n| K | " + " | ".join(header) + " |")
  print("|---" * (len(header) + 1) + "|")
  for k, row in rows:
    cells = [f"{row[v]['rate']:.3f}" + ("*" if row[v]["extrapolated"] else "")
             for v in variants]
    cells += [f"{row[a]['rate'] / row[b]['rate']:.2f}x" for a, b in pairs]
    cells += [f"{row[v]['acc']:.3f}" for v in variants]
    cells += [f"{row[v]['compile']:.1f}" for v in variants if v in ENGINES]
    print(f"| {k} | " + " | ".join(cells) + " |")
  if any(c["extrapolated"] for _, row in rows for c in row.values()):
    print(f"\n* timed on the first {args.loop_max} runs, rate extrapolated.")
  goal = [row for k, row in rows if k == GOAL_K]
  for engine in ENGINES:
    if goal and {engine, "torch"} <= set(goal[0]):
      ratio = goal[0][engine]["rate"] / goal[0]["torch"]["rate"]
      print(f"\nGoal {engine} >= {GOAL_RATIO:.0f}x torch at K = {GOAL_K}: "
            f"{ratio:.2f}x, {'met' if ratio >= GOAL_RATIO else 'NOT met'}.")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  print(f"\nPeak RSS of this process (everything above): {peak / 1024:.0f} "
        "MiB")


if __name__ == "__main__":
  main()
