"""Issue 15's layout questions, measured: the reference MLP's training step in
the engine's form and in the forms the issue proposes, side by side.

    python benchmarks/mlp_step.py [--k 16] [--epochs 100] [--repeats 3]

The work is the NTDH reference training step (MLP 50-16-16-4, ReLU,
full-batch softmax cross-entropy on N = 6,000 rows, plain SGD at lr 0.01),
``--epochs`` steps for each of ``--k`` runs, in float32 unless said. Every
variant trains the same K runs from the same weights on the same data and is
timed side by side in one process (compiled ahead, best of ``--repeats``,
interleaved):

* ``engine program``: the engine's own ``teacher`` program
  (``stages.build_program``, the ``:fig3`` reference preset) over K runs in
  ``lax.map`` blocks of 16 (``ntdh-sweep``'s default ``vmap_size``), on its
  own data and weights: the row that shows the plain-JAX ``batched/16`` below
  costs what the engine's step costs.
* ``batched/B``: the engine's layout, each run's dense layers vmapped,
  ``[B, N, 50] @ [B, 50, 16]`` and so on, in ``lax.map`` blocks of B runs.
* ``shared input``: runs that see the same input (same seed and γ), the
  input passed unmapped, so layer 1 becomes one ``[N, 50] @ [50, 16·K]``
  matmul (and its weight gradient one ``[50, N] @ [N, 16·K]``); the issue's
  first proposal. Its baseline is ``batched/16`` on that shared input.
* ``bf16 operands``: every matmul's operands in bfloat16, accumulated in
  float32 (``preferred_element_type``).
* ``row tiles/4``: the full batch as 4 tiles of 1,500 rows whose gradients
  are summed (smaller working set per matmul).
* ``features-major``: activations stored ``[16, N]`` (weights on the left),
  so the long axis is the vector axis, the class softmax over 4 rows.

Columns: seconds per training of 1000 epochs (time × 1000 / epochs / K),
the speed-up over ``batched/16``, and the largest relative difference of the
final weights from ``batched/16`` on the same input (0 = the same bits). A
variant whose bits differ cannot be the default: the engine promises the
same bits at a fixed ``vmap_size`` across releases and device counts.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

from ntdh_jax.train import stages

# vs_pytorch.py sits beside this script (not a package): the reference
# preset's static config.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import vs_pytorch  # noqa: E402  pylint: disable=wrong-import-position

N, DIMS, LR = 6000, ((50, 16), (16, 16), (16, 4)), vs_pytorch.LR
BASELINE = "batched/16"


def dense(h, w, b, bf16: bool, features_major: bool):
  if bf16:
    h, w = h.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  if features_major:  # h [d_in, N], w [d_in, d_out] -> [d_out, N]
    return jnp.einsum("io,in->on", w, h,
                      preferred_element_type=jnp.float32) + b[:, None]
  return jnp.dot(h, w, preferred_element_type=jnp.float32) + b


def loss(params, x, y, bf16=False, features_major=False):
  h = x.T if features_major else x
  for i, (w, b) in enumerate(params):
    h = dense(h, w, b, bf16, features_major)
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  axis = 0 if features_major else 1
  log_p = jax.nn.log_softmax(h, axis=axis)
  picked = jnp.take_along_axis(
      log_p, y[None, :] if features_major else y[:, None], axis=axis)
  return -jnp.mean(picked)


def grad(params, x, y, tiles=1, **kw):
  if tiles == 1:
    return jax.grad(loss)(params, x, y, **kw)
  xs, ys = x.reshape(tiles, -1, x.shape[-1]), y.reshape(tiles, -1)

  def add(g, tile):
    return jax.tree.map(lambda a, b: a + b / tiles, g,
                        jax.grad(loss)(params, *tile, **kw)), None
  zero = jax.tree.map(jnp.zeros_like, params)
  return jax.lax.scan(add, zero, (xs, ys))[0]


def train(params, x, y, epochs, **kw):
  def step(p, _):
    return jax.tree.map(lambda a, g: a - LR * g, p, grad(p, x, y, **kw)), None
  return jax.lax.scan(step, params, None, length=epochs)[0]


def variants(epochs: int) -> dict:
  """``{name: (fn(params, x, y) -> params, shares input)}``; ``x`` is
  ``[K, N, 50]``, or ``[N, 50]`` where the input is shared."""
  def blocked(block, **kw):
    return lambda p, x, y: jax.lax.map(
        lambda a: train(*a, epochs, **kw), (p, x, y), batch_size=block)
  return {
      "batched/1": (blocked(1), False),
      "batched/4": (blocked(4), False),
      BASELINE: (blocked(16), False),
      "bf16 operands": (blocked(16, bf16=True), False),
      "row tiles/4": (blocked(16, tiles=4), False),
      "features-major": (blocked(16, features_major=True), False),
      "shared input": (jax.vmap(lambda p, x, y: train(p, x, y, epochs),
                                in_axes=(0, None, 0)), True),
  }


def engine_program(k: int, epochs: int):
  """The engine's teacher program over K runs in blocks of 16."""
  program = stages.build_program("teacher",
                                 vs_pytorch.static_config(epochs, epochs))
  data = jax.device_put(program.load())
  hp = {"gamma": jnp.full(k, 0.5), "lr": jnp.full(k, LR),
        "momentum": jnp.zeros(k)}
  keys = jax.vmap(jax.random.key)(jnp.arange(k))
  fn = lambda hp, keys, data: jax.lax.map(
      lambda a: program.train(a[0], a[1], data), (hp, keys), batch_size=16)
  return fn, (hp, keys, data)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--k", type=int, default=16, help="runs (a multiple "
                      "of 16)")
  parser.add_argument("--epochs", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  if args.k < 16 or args.k % 16 or args.epochs < 1 or args.repeats < 1:
    raise SystemExit("--k must be a multiple of 16; --epochs and --repeats "
                     ">= 1.")
  k, epochs = args.k, args.epochs
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (k, N, DIMS[0][0]), jnp.float32)
  y = jax.random.randint(keys[1], (k, N), 0, DIMS[-1][1])
  params = [(0.3 * jax.random.normal(kk, (k, a, b), jnp.float32),
             jnp.zeros((k, b), jnp.float32))
            for kk, (a, b) in zip(jax.random.split(keys[2], 3), DIMS)]
  shared_x = x[0]
  calls, outputs, shares = {}, {}, {}
  for name, (fn, shared) in variants(epochs).items():
    shares[name] = shared
    a = (params, shared_x if shared else x, y)
    compiled = jax.jit(fn).lower(*a).compile()
    calls[name] = (compiled, a)
  # The baseline on the shared input (broadcast per run), for the bits.
  calls["batched/16, shared input"] = (
      calls[BASELINE][0], (params, jnp.broadcast_to(shared_x, x.shape), y))
  fn, a = engine_program(k, epochs)
  calls["engine program"] = (jax.jit(fn).lower(*a).compile(), a)

  best = {name: float("inf") for name in calls}
  load_start = os.getloadavg()[0]
  for _ in range(args.repeats):
    for name, (compiled, a) in calls.items():
      start = time.perf_counter()
      outputs[name] = jax.block_until_ready(compiled(*a))
      best[name] = min(best[name], time.perf_counter() - start)
  per_training = {n: s * 1000 / epochs / k for n, s in best.items()}

  def rel_diff(name, ref):
    a, b = jax.tree.leaves(outputs[name]), jax.tree.leaves(outputs[ref])
    return max(float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(v)))
               for u, v in zip(a, b))

  print(f"# The reference MLP step, K = {k} runs, {epochs} epochs timed\n")
  print(f"jax {jax.__version__} {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores; load average (1 min) {load_start:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after; best of {args.repeats}\n")
  print("| variant | s per training (1000 epochs) | speed-up over "
        f"{BASELINE} | weights vs {BASELINE} (max rel. diff) |")
  print("|---|---|---|---|")
  base = per_training[BASELINE]
  for name in calls:
    if name == "batched/16, shared input":
      continue
    if name == "engine program":
      diff = "— (own data)"
    else:
      ref = "batched/16, shared input" if shares[name] else BASELINE
      d = rel_diff(name, ref)
      diff = "0 (same bits)" if d == 0 else f"{d:.1e}"
    print(f"| {name} | {per_training[name]:.3f} | "
          f"{base / per_training[name]:.2f}x | {diff} |")
  return per_training


if __name__ == "__main__":
  main()
