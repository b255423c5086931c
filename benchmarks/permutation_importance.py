"""Algorithm 1's permutation importance: batched vs a Python loop, side by side.

    python benchmarks/permutation_importance.py [--n 6000] [--d 50] [--m 10]
        [--unit-batches 10,50] [--batch 50] [--no-all-at-once]

The importance of every teacher input feature: for each repeat m < M and
column j < D, the batch-mean NCJSD between the teacher on its input with
column j permuted (key ``fold_in(fold_in(key, m), j)``) and the student on
its own input; teacher and student are the reference MLP 50-16-16-4 with
random weights, on random float32 inputs and labels. The score is per
example, ``score(x_rows, rows) -> f32[B]`` over a contiguous block of rows
(the student logits and labels of those rows sliced at ``rows[0]``), as
``masks.permutation_importance`` takes it. Timed in one process, best of
``--repeats``, every program compiled ahead (``lower().compile()``):

* ``library, unit_batch U``: ``jit(ntdh_jax.masks.permutation_importance)``
  with ``unit_batch = U`` for each U of ``--unit-batches`` (10 is the
  library's default): ``lax.map`` over the M·D (repeat, column) pairs, U of
  them vmapped per step, rows in blocks of the default ``row_batch`` (at
  n = 6000, d = 50 and U <= 55, all rows in one block).
* ``library, all at once``: the same with ``unit_batch = M·D`` and
  ``row_batch = N``: one vmap over all M·D permuted copies of the input,
  which is what the library computed before scores were batched (skip with
  ``--no-all-at-once``).
* ``loop``: a Python loop over (m, j) of a jitted single-permutation score
  (``jax.random.permutation`` of the same key, column j replaced, mean of
  the per-example score over all rows).
* ``prototype``: the same scores from the same permutations, bit for bit, but
  each ``jax.random.permutation`` round's stable key-value sort is replaced
  by two single-operand ``uint32`` sorts (an LSD radix sort on words packing
  a key digit above the element's position, which XLA:CPU sorts about 5x
  faster), in ``lax.map`` blocks of ``--batch`` scores over all rows: the
  library at ``unit_batch = --batch`` but for the sort.
* ``floor``: the M·D permutations alone, made as the prototype makes them:
  what any implementation drawing these permutations pays at least here;
  ``jax.random.permutation``: the same permutations drawn as the library
  draws them, alone (both vmapped over all M·D at once).

Memory: each compiled program's XLA temp buffers
(``compiled.memory_analysis().temp_size_in_bytes``, arguments and outputs
excluded), the scratch a call needs on top of its inputs; the loop's is one
single-permutation call's. This is XLA's buffer assignment, not a measured
RSS.

Checks every implementation gives the loop's matrix (allclose 1e-6) and the
prototype's permutations equal ``jax.random.permutation``'s. Prints the
times, loop / each (goal: the library >= 10x) and the temp memory, and the
unpermuted baseline (``masks.mean_score``).
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import models

ROUND_EXPONENT = 3  # jax.random.permutation's rounds: 2^(32·rounds) >= n^3


def stable_argsort_u32(bits):
  """``argsort(bits, stable=True)`` of ``u32[n]`` by single-operand sorts.

  Each pass sorts words ``digit << p | position`` (p bits hold a position),
  all distinct, so the sort is stable; digits are taken from the low bits up
  (LSD radix), ``ceil(32 / (32 - p))`` passes, two for n <= 65536.
  """
  n = bits.shape[0]
  p = max(1, (n - 1).bit_length())
  width = 32 - p
  positions = jnp.arange(n, dtype=jnp.uint32)
  order = jnp.arange(n, dtype=jnp.int32)
  for shift in range(0, 32, width):
    digit = (bits[order] >> shift) & jnp.uint32((1 << width) - 1)
    words = jax.lax.sort((digit << p) | positions)
    order = order[(words & jnp.uint32((1 << p) - 1)).astype(jnp.int32)]
  return order


def fast_permutation(key, n: int):
  """``jax.random.permutation(key, n)``, same rounds and keys, faster sorts."""
  rounds = int(np.ceil(ROUND_EXPONENT * np.log(max(1, n))
                       / np.log(np.iinfo(np.uint32).max)))
  order = jnp.arange(n)
  for _ in range(rounds):
    key, subkey = jax.random.split(key)
    order = order[stable_argsort_u32(
        jax.random.bits(subkey, (n,), jnp.uint32))]
  return order


def permutation_key(key, m, j):
  return jax.random.fold_in(jax.random.fold_in(key, m), j)


def grid(m: int, d: int):
  """Every (repeat, column) pair, repeat-major, as two ``i32[m·d]``."""
  return jnp.repeat(jnp.arange(m), d), jnp.tile(jnp.arange(d), m)


def prototype_importance(score_fn, x, key, m: int, batch: int):
  """``masks.permutation_importance`` with ``fast_permutation``, in blocks
  of ``batch`` (repeat, column) pairs, all rows at once."""
  n, d = x.shape
  rows = jnp.arange(n, dtype=jnp.int32)

  def permuted_score(mj):
    perm = fast_permutation(permutation_key(key, *mj), n)
    return jnp.mean(score_fn(
        x.at[:, mj[1]].set(jnp.take(x[:, mj[1]], perm)), rows))

  return jax.lax.map(permuted_score, grid(m, d),
                     batch_size=batch).reshape(m, d)


def best_times(calls: dict, repeats: int) -> dict:
  """``{name: (best seconds, output)}``; one untimed call of each first,
  then rounds of one call of each, so drifting machine load hits all alike."""
  outs = {name: np.asarray(jax.block_until_ready(call()))
          for name, call in calls.items()}
  best = dict.fromkeys(calls, float("inf"))
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      best[name] = min(best[name], time.perf_counter() - start)
  return {name: (best[name], outs[name]) for name in calls}


def compile_(fn, *args, static=None):
  """``jit(fn)`` compiled ahead for ``args`` (``static``: keyword arguments
  baked in)."""
  fn = functools.partial(fn, **static) if static else fn
  return jax.jit(fn).lower(*args).compile()


def temp_mib(compiled) -> float:
  """XLA temp buffers of a compiled program, MiB (nan if not reported)."""
  stats = compiled.memory_analysis()
  if stats is None:
    return float("nan")
  return stats.temp_size_in_bytes / 2**20


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=6000)
  parser.add_argument("--d", type=int, default=50)
  parser.add_argument("--m", type=int, default=10, help="repeats M")
  parser.add_argument("--unit-batches", default="10,50",
                      help="library: unit_batch values, comma-separated")
  parser.add_argument("--row-batch", type=int, default=None,
                      help="library: row_batch (default: the library's)")
  parser.add_argument("--batch", type=int, default=50,
                      help="prototype: scores per lax.map block")
  parser.add_argument("--all-at-once", default=True,
                      action=argparse.BooleanOptionalAction,
                      help="also time one vmap over all M·D copies")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  n, d, m = args.n, args.d, args.m
  unit_batches = [int(u) for u in args.unit_batches.split(",")]

  model = models.reference_mlp()
  k_xt, k_xs, k_y, k_t, k_s, key = jax.random.split(jax.random.key(0), 6)
  x_teacher = jax.random.normal(k_xt, (n, d), jnp.float32)
  x_student = jax.random.normal(k_xs, (n, d), jnp.float32)
  labels = jax.random.randint(k_y, (n,), 0, model.num_classes)
  teacher = model.init(k_t, x_teacher[:1])
  student = model.init(k_s, x_student[:1])

  def score_fn(t_params, s_params, x_s, y):
    """Per-example NCJSD of a block of (permuted) teacher rows."""
    s_logits = model.apply(s_params, x_s)

    def score(x_rows, rows):
      pick = lambda a: jax.lax.dynamic_slice_in_dim(a, rows[0],
                                                    x_rows.shape[0])
      return divergences.decompose(
          teacher_logits=model.apply(t_params, x_rows),
          student_logits=pick(s_logits), labels=pick(y)).ncjsd

    return score

  def library(t_params, s_params, x_t, x_s, y, key, *, unit_batch,
              row_batch):
    return masks.permutation_importance(
        score_fn(t_params, s_params, x_s, y), x_t, key, m,
        unit_batch=unit_batch, row_batch=row_batch)

  def baseline(t_params, s_params, x_t, x_s, y):
    return masks.mean_score(score_fn(t_params, s_params, x_s, y), x_t)

  def one(t_params, s_params, x_t, x_s, y, key, i, j):
    perm = jax.random.permutation(permutation_key(key, i, j), n)
    return jnp.mean(score_fn(t_params, s_params, x_s, y)(
        x_t.at[:, j].set(jnp.take(x_t[:, j], perm)),
        jnp.arange(n, dtype=jnp.int32)))

  def prototype(t_params, s_params, x_t, x_s, y, key):
    return prototype_importance(score_fn(t_params, s_params, x_s, y), x_t,
                                key, m, args.batch)

  def permutations(key, fast):
    make = fast_permutation if fast else jax.random.permutation
    return jax.vmap(lambda i, j: make(permutation_key(key, i, j), n))(
        *grid(m, d))

  data = (teacher, student, x_teacher, x_student, labels, key)
  variants = {f"unit_batch {u}": dict(unit_batch=u, row_batch=args.row_batch)
              for u in unit_batches}
  if args.all_at_once:
    variants["all at once"] = dict(unit_batch=m * d, row_batch=n)
  compiled = {f"library, {name}": compile_(library, *data, static=static)
              for name, static in variants.items()}
  compiled["loop"] = compile_(one, *data, 0, 0)
  compiled["prototype"] = compile_(prototype, *data)
  compiled["floor"] = compile_(permutations, key, static={"fast": True})
  compiled["permutations"] = compile_(permutations, key,
                                      static={"fast": False})
  base = float(compile_(baseline, *data[:5])(*data[:5]))

  calls = {name: functools.partial(c, *data) for name, c in compiled.items()
           if name.startswith("library")}
  calls["loop"] = lambda: jnp.stack([
      jnp.stack([compiled["loop"](*data, i, j) for j in range(d)])
      for i in range(m)])
  calls["prototype"] = functools.partial(compiled["prototype"], *data)
  calls["floor"] = functools.partial(compiled["floor"], key)
  calls["permutations"] = functools.partial(compiled["permutations"], key)
  timed = best_times(calls, args.repeats)
  out = {name: o for name, (_, o) in timed.items()}
  np.testing.assert_array_equal(out["floor"], out["permutations"])
  for name in timed:
    if name.startswith("library") or name == "prototype":
      np.testing.assert_allclose(out[name], out["loop"], rtol=1e-6,
                                 atol=1e-6, err_msg=name)

  titles = {
      **{f"library, {name}": (
          f"masks.permutation_importance, unit_batch={s['unit_batch']}"
          + (f", row_batch={s['row_batch']}" if s["row_batch"] else "")
          + (" (all at once: the old single vmap)" if name == "all at once"
             else "")) for name, s in variants.items()},
      "loop": "loop over (m, j), jitted single score",
      "prototype": f"prototype: radix-sorted permutations, blocks of "
                   f"{args.batch}",
      "floor": f"its {m * d} permutations alone (floor)",
      "permutations": f"jax.random.permutation x {m * d} alone"}
  print(f"n = {n}, d = {d}, M = {m}: {m * d} permuted scores, float32, "
        f"{jax.devices()[0].platform} x{jax.device_count()}, "
        f"best of {args.repeats}; all matrices agree (allclose 1e-6)")
  imp = out["loop"]
  print(f"unpermuted baseline NCJSD (masks.mean_score) {base:.6f}; "
        f"permuted scores in [{imp.min():.6f}, {imp.max():.6f}]")
  print("\n| implementation | time (s) | loop / this | XLA temp (MiB) |")
  print("|---|---|---|---|")
  loop = timed["loop"][0]
  for name, (seconds, _) in timed.items():
    goal = " (goal >= 10)" if name.startswith("library") else ""
    print(f"| {titles[name]} | {seconds:.3f} | {loop / seconds:.1f}x{goal} | "
          f"{temp_mib(compiled[name]):.1f} |")
  print("\nloop: temp memory of one single-permutation call.")


if __name__ == "__main__":
  main()
