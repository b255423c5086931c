"""The NTDH reference unit of work: plain PyTorch vs the engine, side by side.

    python benchmarks/vs_pytorch.py [--epochs 1000] [--ks 1,16,64,256]
        [--torch-threads N] [--torch-max 2] [--engine-max 64]
        [--vmap-size 16] [--cpu-devices N] [--torch-device cpu|cuda]
        [--cnn] [--device-note TEXT]

The unit of work is one NTDH reference run of ``:fig3``'s ``reference``
preset (``sweeps/configs/ntdh_synthetic.py``, planned by
``ntdh_jax.experiments.ntdh``): a teacher, a student without KD and a KD
student distilled from that teacher, three trainings of the MLP 50-16-16-4
(ReLU, PyTorch's default init) on the synthetic data (6,000 × 50 train,
4,000 × 50 test, 4 classes; γ and the seed draw the two views), each 1000
full-batch epochs (``--epochs``) of SGD with the preset's lr 0.01 and
momentum 0 (plain SGD), evaluated on the test set every 100 epochs
(``--eval-every``; the preset's), the KD student's loss CE + λ·KL·T² at
T = 1, λ = 1 (``kd_form`` additive). Unit i has seed ``--seed`` + i and
γ = (0, 0.25, 0.5, 0.75, 1)[i mod 5], the study's gaps. Timed in one
process, float32 on both sides:

* ``engine``: the three ``stages.build_program`` programs (stages
  ``teacher``, ``student`` with ``distill`` ``none`` and ``kl``), each
  trained for K units the way ``ntdh-sweep`` trains a group of K runs
  (``ntdh_jax.train.sweep``'s ``_Group``): the host CPU split into
  ``--cpu-devices`` XLA devices (default one per core, as ``ntdh-sweep
  --cpu_devices``), blocks of ``--vmap-size`` runs (default the engine's
  16) vectorised together, as many devices as there are blocks to fill,
  the width padded to fill them, one shard per device trained in parallel
  (``sharding.map_shards``); ``init``, one ``advance`` call per segment (the
  engine's default ``segments_per_call`` 1; each fetches the segment's
  metrics to the host) and ``finish``; the KD students read their own
  teachers' outputs. Only the engine's checkpoint writes are left out. A
  first pass of one segment compiles every executable (its seconds are
  printed, not counted in the rate); the timed pass then trains teacher, KD
  student and no-KD student from ``init``. Above ``--engine-max`` units
  (default 64) the engine trains ``--engine-short-epochs`` (default one
  evaluation interval, 100) of the ``--epochs`` and its time is scaled by
  their ratio (marked ``†``): every segment is the same executable call on
  the same shapes, so the time is linear in them but for ``init`` and
  ``finish``, which are scaled too (a ``†`` rate is a slight lower bound),
  and 768 trainings of 1000 epochs would take about 15 minutes on 2 cores,
  over this script's 10-minute budget.
* ``PyTorch``: the same three trainings written plainly with ``torch.nn``
  on ``--torch-device`` (the CPU by default; ``cuda`` beside a GPU
  engine), one unit after another (``torch.set_num_threads``: PyTorch's
  default unless ``--torch-threads``): ``nn.Linear`` layers,
  ``torch.optim.SGD`` with the same lr and momentum, ``cross_entropy`` and
  ``kl_div(..., reduction="batchmean", log_target=True)·T²``, the frozen
  teacher's training logits computed once, test accuracy every
  ``eval_every`` epochs. To train the same thing, a unit starts from the
  engine's arrays: its views (``Data.views``, the key and γ the engine's
  program uses) and its initial weights (``program.init``), prepared before
  the clock starts. Nothing in the loop draws random numbers. A PyTorch of
  more than ``--torch-max`` units is timed on its first ``--torch-max`` and
  the rate extrapolated (marked ``*``): its units are independent and alike.
  One untimed unit of two epochs warms it up first.

trainings/s = 3·K / seconds (teacher, no-KD and KD student each count as
one training, as in the issue's "2.75 s per training"). FLOPs: matmuls as
executed, ``benchmarks/sweep.py``'s ``flops_per_run`` for each of the three
(a KD student also runs the frozen teacher forward every segment), the same
count credited to both sides. Peak: ``sweep.matmul_peak``, the best float32
``jnp.dot`` of square matrices, measured before the runs and after them
(the higher of the two).
The floor is a training's FLOPs at that peak. The final test accuracies of
the three roles on the units PyTorch trained (both sides) and the largest
gap between the two sides' KD students there are printed as the check that
both sides do the same work (the same start and data: they differ by float
rounding only; on 2 cores the two sides' accuracies agreed to three decimals
after 20 and after 1000 epochs).

``--cnn`` adds the digits CNN of ``benchmarks/cnn_sweep.py`` (no-KD student,
Adam, batch 64, ``--cnn-epochs`` epochs at ``--cnn-ks``; the engine with the
model's ``conv_grad`` at its default and at ``"canonical"``, rows ``K`` and
``Kc``) from that script's
own pieces (``time_engine``, ``TorchRuns``): the same table with its FLOPs
(convolutions and dense layers, per sample forward, weight gradients and
the input gradients of every layer but the first, over ``n_train // 64 ·
64`` samples an epoch, plus one test forward). Off by default: its K = 64
engine call alone takes minutes on 2 cores.

Goal (issue 15): the engine >= 10× the PyTorch loop's trainings/s on the
same work, within 2× of the floor; the script prints whether it is met.
Never needs a GPU; ``--device-note`` is printed in the header (the machine,
for a run elsewhere). Other processes skew the timings: the load average
(1 min) is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax
import numpy as np

# sweep.py and cnn_sweep.py sit beside this script (not a package).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cnn_sweep  # noqa: E402  pylint: disable=wrong-import-position
import sweep  # noqa: E402  pylint: disable=wrong-import-position

from ntdh_jax import convolution  # noqa: E402
from ntdh_jax.train import sharding  # noqa: E402
from ntdh_jax.train import stages  # noqa: E402
from ntdh_jax.train import sweep as sweep_engine  # noqa: E402
from ntdh_jax.train.stages import common  # noqa: E402

GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the study's gaps
LR, MOMENTUM, TEMPERATURE, KD_WEIGHT = 0.01, 0.0, 1.0, 1.0  # reference preset
ROLES = ("teacher", "no_kd", "kd")
GOAL_RATIO, FLOOR_RATIO = 10.0, 2.0


# ---------------------------------------------------------------- the engine


def static_config(epochs: int, eval_every: int) -> dict:
  """The reference preset's static config (``ntdh.py``'s ``_base_static``)."""
  return {"data": {"name": "ntdh", "random_state": 42},
          "model": {"name": "mlp", "hidden": [16, 16],
                    "init_scheme": "torch"},
          "epochs": epochs, "eval_every": eval_every, "batch_size": 0,
          "optimizer": "sgd"}


def build_programs(epochs: int, eval_every: int) -> dict:
  static = static_config(epochs, eval_every)
  return {"teacher": stages.build_program("teacher", static),
          "no_kd": stages.build_program(
              "student", {**static, "kd_form": "additive",
                          "distill": "none"}),
          "kd": stages.build_program(
              "student", {**static, "kd_form": "additive", "distill": "kl"})}


def unit_hparams(k: int, seed: int):
  """``({role: {name: f32[k]}}, seeds i32[k])`` of units 0 .. k − 1."""
  gamma = np.array([GAMMAS[i % len(GAMMAS)] for i in range(k)], np.float32)
  full = lambda v: np.full(k, v, np.float32)
  base = {"gamma": gamma, "lr": full(LR), "momentum": full(MOMENTUM)}
  hp = {"teacher": base, "no_kd": base,
        "kd": {**base, "temperature": full(TEMPERATURE),
               "kd_weight": full(KD_WEIGHT)}}
  return hp, np.arange(seed, seed + k, dtype=np.int32)


def engine_groups(programs, hparam_names, k: int, vmap_size: int) -> dict:
  """``{role: sweep._Group}``: each program compiled as the sweep engine
  compiles a group of K runs (``run_sweep``'s width, block and mesh rules:
  blocks of ``min(vmap_size, K)`` runs, as many devices as blocks to fill,
  the width padded to fill them), one segment per call."""
  mesh = sharding.sweep_mesh()
  block = min(vmap_size, k)
  group_mesh = sweep_engine._group_mesh(mesh, k, block)
  width = sharding.padded_width(k, group_mesh, block)
  return {role: sweep_engine._Group(p, hparam_names[role], group_mesh, width,
                                    1, block)
          for role, p in programs.items()}


def train_group(group, hp, seeds, inputs, segments: int):
  """The engine's calls for one chunk, less its checkpoint I/O: ``init``,
  ``segments`` one-segment ``advance`` calls (each fetching the segment's
  metrics to the host, as ``_run_chunk`` does), ``finish``. Returns
  ``(test accuracy f32[width], outputs)`` after the last segment."""
  carry = group.init(group.data, hp, seeds, inputs)
  acc = None
  for _ in range(segments):
    carry, metrics = group.advance(1)(group.data, carry, hp)
    acc = sharding.fetch(metrics)["test_acc"][:, -1]
  _, outputs = group.finish(group.data, carry, hp)
  return acc, jax.block_until_ready(outputs)


def time_engine(programs, k: int, seed: int, vmap_size: int,
                segments: int):
  """``(seconds, first-call seconds, {role: test acc f32[k]})`` of K units
  trained by the engine's groups for ``segments`` segments: a one-segment
  pass first compiles every executable (its time is the first-call
  seconds), then the timed pass trains from ``init``. Padding rows repeat
  unit 0, as the engine pads a chunk."""
  hp, seeds = unit_hparams(k, seed)
  groups = engine_groups(programs, {r: sorted(v) for r, v in hp.items()}, k,
                         vmap_size)
  width = groups["teacher"].width
  pad = lambda a: np.concatenate([a, np.repeat(a[:1], width - k, axis=0)])
  mesh = groups["teacher"].mesh
  hp, seeds = sharding.put(jax.tree.map(pad, (hp, seeds)), mesh)

  def units(n):
    out = {}
    out["teacher"], teacher = train_group(groups["teacher"], hp["teacher"],
                                          seeds, None, n)
    out["kd"], _ = train_group(groups["kd"], hp["kd"], seeds,
                               {"teacher": teacher}, n)
    out["no_kd"], _ = train_group(groups["no_kd"], hp["no_kd"], seeds, None,
                                  n)
    return out
  start = time.perf_counter()
  units(1)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  acc = units(segments)
  seconds = time.perf_counter() - start
  return seconds, compile_s, {role: acc[role][:k] for role in ROLES}


# ------------------------------------------------------------------ PyTorch


class TorchUnits:
  """The same three trainings written plainly in PyTorch."""

  def __init__(self, programs, data, epochs: int, eval_every: int,
               device: str = "cpu"):
    self.torch = cnn_sweep.import_torch()
    self.device = self.torch.device(device)
    self.data = data
    self.epochs, self.eval_every = epochs, eval_every
    views = common.Data(static_config(epochs, eval_every)["data"]).views
    # A unit's views and initial weights as the engine's programs make them
    # (the key of ``program.init``, folded into the data key by ``views``).
    self.arrays = jax.jit(lambda hp, key, data: (
        views(data, hp, common.raw_key(key)),
        programs["teacher"].init(hp, key, data, None)["params"]))
    self.warm = False

  def prepare(self, k: int, seed: int) -> list[dict]:
    """Per unit: its views and initial weights (the engine's), as tensors.
    The teacher and both students of a unit start from the same weights
    (same seed, same init key), as in the engine."""
    hp, seeds = unit_hparams(k, seed)
    units = []
    for i, s in enumerate(seeds):
      hp_i = {n: v[i] for n, v in hp["teacher"].items()}
      v, params = self.arrays(hp_i, jax.random.key(int(s)), self.data)
      units.append({
          "x": {"teacher": v.teacher_train, "student": v.student_train},
          "x_test": {"teacher": v.teacher_test, "student": v.student_test},
          "y": v.y_train, "y_test": v.y_test,
          "init": [(params[name]["kernel"].T, params[name]["bias"])
                   for name in ("hidden_0", "hidden_1", "head")]})
    return jax.tree.map(
        lambda a: self.torch.from_numpy(np.array(a)).to(self.device), units)

  def net(self, init):
    nn, torch = self.torch.nn, self.torch
    layers = [nn.Linear(w.shape[1], w.shape[0]) for w, _ in init]
    with torch.no_grad():
      for layer, (w, b) in zip(layers, init):
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(),
                         layers[2]).to(self.device)

  def fit(self, net, x, y, x_test, y_test, epochs, teacher_logits=None):
    """Full-batch SGD; returns the last evaluation's test accuracy."""
    torch = self.torch
    f = torch.nn.functional
    y, y_test = y.long(), y_test.long()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    if teacher_logits is not None:
      t_log_p = f.log_softmax(teacher_logits / TEMPERATURE, dim=1)
    acc = float("nan")
    for epoch in range(1, epochs + 1):
      logits = net(x)
      loss = f.cross_entropy(logits, y)
      if teacher_logits is not None:
        kl = f.kl_div(f.log_softmax(logits / TEMPERATURE, dim=1), t_log_p,
                      reduction="batchmean", log_target=True)
        loss = loss + KD_WEIGHT * TEMPERATURE**2 * kl
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      if epoch % self.eval_every == 0 or epoch == epochs:
        with torch.no_grad():
          acc = float((net(x_test).argmax(1) == y_test).float().mean())
    return acc

  def run(self, unit, epochs=None) -> dict:
    """One unit: teacher, KD student from it, no-KD student."""
    epochs = self.epochs if epochs is None else epochs
    torch = self.torch
    teacher = self.net(unit["init"])
    acc = {"teacher": self.fit(
        teacher, unit["x"]["teacher"], unit["y"], unit["x_test"]["teacher"],
        unit["y_test"], epochs)}
    with torch.no_grad():
      t_logits = teacher(unit["x"]["teacher"])
    for role, logits in (("kd", t_logits), ("no_kd", None)):
      acc[role] = self.fit(
          self.net(unit["init"]), unit["x"]["student"], unit["y"],
          unit["x_test"]["student"], unit["y_test"], epochs, logits)
    return acc

  def time(self, units: list[dict]):
    """``(seconds, {role: test acc f64[len(units)]})``; every evaluation
    reads its accuracy back to the host, which also waits for a GPU."""
    if not self.warm:  # oneDNN primitives, the allocator
      self.run(units[0], epochs=2)
      self.warm = True
    start = time.perf_counter()
    accs = [self.run(u) for u in units]
    seconds = time.perf_counter() - start
    return seconds, {r: np.array([a[r] for a in accs]) for r in ROLES}


# ---------------------------------------------------------------- digits CNN


def cnn_flops_per_run(epochs: int, data: dict) -> int:
  """Matmul/convolution FLOPs of one ``cnn_sweep`` training: per sample the
  forward (3×3 SAME convolutions, 2×2 pools, dense, head), the weight
  gradients (as many) and the input gradients of every layer but the first;
  ``n_train // 64`` steps of 64 an epoch, then one test forward."""
  _, height, width, channels = data["student_train"].shape
  layers = []  # (FLOPs of one sample's forward, is the first layer)
  for out in cnn_sweep.MODEL["channels"]:
    layers.append(2 * height * width * 9 * channels * out)
    height, width, channels = height // 2, width // 2, out
  dense = cnn_sweep.MODEL["dense"]
  layers += [2 * height * width * channels * dense, 2 * dense * 10]
  forward = sum(layers)
  backward = forward + sum(layers[1:])
  n_train, n_test = len(data["y_train"]), len(data["y_test"])
  steps = n_train // cnn_sweep.BATCH
  return (epochs * steps * cnn_sweep.BATCH * (forward + backward)
          + n_test * forward)


def run_cnn(args):
  """Rows of the digits CNN comparison, from ``cnn_sweep``'s pieces: per K,
  the engine with the model's ``conv_grad`` at its default (``autodiff``)
  and at ``canonical`` (K labelled ``c``), PyTorch timed once."""
  programs = {grad: stages.build_program(
      "student", cnn_sweep.static_config(args.cnn_epochs, grad))
              for grad in convolution.CONV_GRADS}
  data = programs["autodiff"].load()
  torch_runs = cnn_sweep.TorchRuns(data, args.cnn_epochs,
                                   cnn_sweep.import_torch().get_num_threads())
  rows = []
  for k in parse_ks(args.cnn_ks):
    runs = min(k, args.cnn_torch_max)
    t_seconds, _, t_acc = torch_runs.time(runs, args.seed)
    for grad, program in programs.items():
      seconds, compile_s, acc = cnn_sweep.time_engine(program, data, k,
                                                      args.seed)
      rows.append({"k": f"{k}c" if grad == "canonical" else k,
                   "engine": k / seconds, "torch": runs / t_seconds,
                   "compile": compile_s, "extrapolated": runs < k,
                   "acc": {"engine": acc, "torch": t_acc}})
      print(f"CNN K={k} conv_grad {grad}: engine {k} runs in {seconds:.2f} "
            f"s (compile {compile_s:.1f} s), PyTorch {runs} in "
            f"{t_seconds:.2f} s", file=sys.stderr, flush=True)
  return rows, cnn_flops_per_run(args.cnn_epochs, data)


# ------------------------------------------------------------------ printing


def parse_ks(text: str) -> list[int]:
  ks = [int(k) for k in text.split(",")]
  if not ks or min(ks) < 1:
    raise SystemExit(f"K values must be >= 1, got {text!r}.")
  return ks


def print_table(rows, flop_per_training: float, peak: float):
  print("| K | engine trainings/s | PyTorch trainings/s | ratio | GFLOP/s "
        "| % of peak | setup s |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    gflops = r["engine"] * flop_per_training / 1e9
    star = "*" if r["extrapolated"] else ""
    dagger = "†" if r.get("shortened") else ""
    print(f"| {r['k']} | {r['engine']:.3f}{dagger} | {r['torch']:.3f}{star} | "
          f"{r['engine'] / r['torch']:.2f}x | {gflops:.1f} | "
          f"{100 * gflops / peak:.1f} | {r['compile']:.1f} |")


def print_floor_and_goal(rows, flop_per_training: float, peak: float):
  floor_s = flop_per_training / (peak * 1e9)
  best = max(rows, key=lambda r: r["engine"])
  from_floor = floor_s * best["engine"]
  print(f"\nFloor: {flop_per_training / 1e9:.3g} GFLOP per training / "
        f"{peak:.0f} GFLOP/s = {floor_s:.3g} s per training "
        f"({1 / floor_s:.3g} trainings/s). Engine at its best (K = "
        f"{best['k']}): {1 / best['engine']:.3g} s per training, "
        f"{1 / from_floor:.2f}x the floor's time (goal <= {FLOOR_RATIO:.0f}x:"
        f" {'met' if 1 / from_floor <= FLOOR_RATIO else 'NOT met'}).")
  top = max(rows, key=lambda r: r["engine"] / r["torch"])
  ratio = top["engine"] / top["torch"]
  print(f"Goal engine >= {GOAL_RATIO:.0f}x the PyTorch loop: best "
        f"{ratio:.2f}x at K = {top['k']}, "
        f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}.")
  if any(r["extrapolated"] for r in rows):
    print("\n* PyTorch timed on its first units, rate extrapolated.")


def print_accuracies(rows, torch_max: int):
  print("\nFinal test accuracy, engine / PyTorch, mean over the units PyTorch "
        f"trained (the first min(K, {torch_max}): the same seeds, γ, views "
        "and initial weights on both sides); KD gap: the largest |engine − "
        "PyTorch| of one KD student there; last column: the engine's KD "
        "students over all K:\n")
  print("| K | teacher | student without KD | KD student | KD gap "
        "| engine KD, all K |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    engine, torch_acc = r["acc"]["engine"], r["acc"]["torch"]
    n = len(torch_acc["kd"])
    cells = [f"{engine[role][:n].mean():.3f} / {torch_acc[role].mean():.3f}"
             for role in ROLES]
    gap = f"{np.max(np.abs(engine['kd'][:n] - torch_acc['kd'])):.3f}"
    if r["shortened"]:  # engine after fewer epochs: not the same training
      gap = "–"
    dagger = "†" if r["shortened"] else ""
    print(f"| {r['k']}{dagger} | " + " | ".join(cells)
          + f" | {gap} | {engine['kd'].mean():.3f} |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=1000)
  parser.add_argument("--eval-every", type=int, default=100,
                      help="epochs per evaluation (the preset's 100; "
                      "min(this, epochs))")
  parser.add_argument("--ks", default="1,16,64,256",
                      help="comma-separated numbers of units per program")
  parser.add_argument("--torch-threads", type=int, default=None,
                      help="torch.set_num_threads (default: PyTorch's)")
  parser.add_argument("--torch-max", type=int, default=2,
                      help="time PyTorch on at most this many units and "
                      "extrapolate")
  parser.add_argument("--engine-max", type=int, default=64,
                      help="time the engine at larger K on "
                      "--engine-short-epochs and scale its time")
  parser.add_argument("--engine-short-epochs", type=int, default=None,
                      help="epochs of a shortened engine run (default: "
                      "one evaluation interval)")
  parser.add_argument("--vmap-size", type=int,
                      default=sweep_engine.DEFAULT_VMAP_SIZE,
                      help="engine: runs vectorised together per device "
                      "(ntdh-sweep's --vmap_size; default %(default)s)")
  parser.add_argument("--cpu-devices", type=int, default=os.cpu_count(),
                      help="XLA CPU devices to split the host into, one per "
                      "core by default as ntdh-sweep does (no effect on GPU)")
  parser.add_argument("--torch-device", default="cpu",
                      help="PyTorch's device: cpu, or cuda beside a GPU "
                      "engine")
  parser.add_argument("--peak-repeats", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cnn", action="store_true",
                      help="also the digits CNN (cnn_sweep.py's workload)")
  parser.add_argument("--cnn-epochs", type=int, default=1)
  parser.add_argument("--cnn-ks", default="1,16,64")
  parser.add_argument("--cnn-torch-max", type=int, default=8)
  parser.add_argument("--device-note", default="",
                      help="free text printed in the header")
  args = parser.parse_args(argv)
  ks = parse_ks(args.ks)
  for name in ("vmap_size", "cpu_devices"):
    if getattr(args, name) < 1:
      raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got "
                       f"{getattr(args, name)}.")
  eval_every = min(args.eval_every, args.epochs)
  if args.epochs % eval_every:
    raise SystemExit(f"--epochs ({args.epochs}) must be a multiple of "
                     f"--eval-every ({eval_every}).")
  segments = args.epochs // eval_every
  short = args.engine_short_epochs or eval_every
  if short % eval_every or not 0 < short <= args.epochs:
    raise SystemExit(f"--engine-short-epochs ({short}) must be a multiple of "
                     f"--eval-every ({eval_every}) in [1, --epochs].")

  if not sharding.split_host_cpu(args.cpu_devices):
    print(f"--cpu-devices {args.cpu_devices} not applied (XLA_FLAGS sets "
          "the count, or JAX's backends already started): "
          f"{jax.device_count()} device(s).", file=sys.stderr)
  torch = cnn_sweep.import_torch()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  load_start = os.getloadavg()[0]
  start_all = time.perf_counter()
  programs = build_programs(args.epochs, eval_every)
  host = programs["teacher"].load()
  torch_units = TorchUnits(programs, host, args.epochs, eval_every,
                           args.torch_device)
  peak = sweep.matmul_peak(args.peak_repeats)
  prepared = torch_units.prepare(min(max(ks), args.torch_max), args.seed)

  rows = []
  for k in ks:
    shortened = k > args.engine_max and short < args.epochs
    timed = short // eval_every if shortened else segments
    seconds, compile_s, acc = time_engine(programs, k, args.seed,
                                          args.vmap_size, timed)
    if shortened:
      print(f"K={k}: engine {short} epochs in {seconds:.2f} s",
            file=sys.stderr, flush=True)
      seconds *= segments / timed
    units = min(k, args.torch_max)
    t_seconds, t_acc = torch_units.time(prepared[:units])
    rows.append({"k": k, "engine": 3 * k / seconds,
                 "torch": 3 * units / t_seconds, "compile": compile_s,
                 "extrapolated": units < k, "shortened": shortened,
                 "acc": {"engine": acc, "torch": t_acc}})
    print(f"K={k}: engine {3 * k} trainings in {seconds:.2f} s (first call "
          f"{compile_s:.1f} s), PyTorch {3 * units} in {t_seconds:.2f} s",
          file=sys.stderr, flush=True)
  cnn = run_cnn(args) if args.cnn else None
  peak = max(peak, sweep.matmul_peak(args.peak_repeats))
  load_end = os.getloadavg()[0]

  flop_unit = (2 * sweep.flops_per_run(args.epochs, segments, distill=False)
               + sweep.flops_per_run(args.epochs, segments, distill=True))
  flop_training = flop_unit / 3
  note = f"; device note: {args.device_note}" if args.device_note else ""
  print(f"# Engine vs plain PyTorch{note}\n")
  print(f"jax {jax.__version__} {jax.devices()[0].platform} "
        f"x{jax.device_count()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} cores; "
        f"float32 matmul peak {peak:.0f} GFLOP/s; load average (1 min) "
        f"{load_start:.2f} before, {load_end:.2f} after; "
        f"{time.perf_counter() - start_all:.0f} s in all"
        + f"; engine on {jax.device_count()} device(s), vmap_size "
        f"{args.vmap_size}; PyTorch on {args.torch_device}")
  print(f"\n## NTDH reference unit (MLP 50-16-16-4, {args.epochs} full-batch "
        f"SGD epochs on 6,000 × 50, eval every {eval_every}; teacher, "
        "student without KD, KD student CE + KL)\n")
  print(f"{flop_training / 1e9:.2f} GFLOP per training ("
        f"{flop_unit / 1e9:.2f} per unit of 3); K = units per program, "
        "3·K trainings.\n")
  print_table(rows, flop_training, peak)
  print("\nsetup: the untimed first pass (one segment of every program), "
        "which compiles the executables.")
  print_floor_and_goal(rows, flop_training, peak)
  if any(r["shortened"] for r in rows):
    print(f"† engine timed on {short} of the {args.epochs} epochs and its "
          f"time scaled by {args.epochs / short:g}: a run's segments are "
          "identical, but the call's fixed costs are scaled too, so a lower "
          "bound; its accuracies are after those epochs.")
  print_accuracies(rows, args.torch_max)
  if cnn:
    cnn_rows, cnn_flop = cnn
    print(f"\n## Digits CNN (cnn_sweep.py: student without KD, "
          f"{args.cnn_epochs} epoch(s) of Adam, batch {cnn_sweep.BATCH})\n")
    print(f"{cnn_flop / 1e9:.3f} GFLOP per training; K = trainings per "
          "program.\n")
    print_table(cnn_rows, cnn_flop, peak)
    print("\nsetup: compiling the vmapped program (cnn_sweep.time_engine). "
          "Kc: the model's conv_grad='canonical' (ntdh_jax.convolution); "
          "K: its default, JAX's autodiff rule.")
    print_floor_and_goal(cnn_rows, cnn_flop, peak)
    print("\nMean final test accuracy, engine / PyTorch: " + ", ".join(
        f"K = {r['k']}: {r['acc']['engine']:.3f} / {r['acc']['torch']:.3f}"
        for r in cnn_rows))
  return rows


if __name__ == "__main__":
  main()
