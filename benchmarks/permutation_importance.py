"""Algorithm 1's permutation importance: vmapped vs a Python loop, side by side.

    python benchmarks/permutation_importance.py [--n 6000] [--d 50] [--m 10]

The importance of every teacher input feature: for each repeat m < M and
column j < D, the batch-mean NCJSD between the teacher on its input with
column j permuted (key ``fold_in(fold_in(key, m), j)``) and the student on
its own input; teacher and student are the reference MLP 50-16-16-4 with
random weights, on random float32 inputs and labels. Timed in one process,
best of ``--repeats``:

* ``vmapped``: ``jit(ntdh_jax.masks.permutation_importance)``, all M·D
  scores as one vmapped computation.
* ``loop``: a Python loop over (m, j) of a jitted single-permutation score
  (``jax.random.permutation`` of the same key, column j replaced, scored).
* ``prototype``: the same scores from the same permutations, bit for bit, but
  each ``jax.random.permutation`` round's stable key-value sort is replaced
  by two single-operand ``uint32`` sorts (an LSD radix sort on words packing
  a key digit above the element's position, which XLA:CPU sorts about 5x
  faster), and the M·D scores run in ``lax.map`` blocks of ``--batch``, so
  only that many permuted copies of the input exist at a time.
* ``floor``: the M·D permutations alone, made as the prototype makes them:
  what any implementation drawing these permutations pays at least here;
  ``jax.random.permutation``: the same permutations drawn as the library
  draws them, alone.

Checks both implementations give the loop's matrix (allclose 1e-6) and the
prototype's permutations equal ``jax.random.permutation``'s. Prints the
times and loop / each (goal: vmapped >= 10x).
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
  """``masks.permutation_importance`` with ``fast_permutation``, in blocks."""
  n, d = x.shape

  def permuted_score(mj):
    rows = fast_permutation(permutation_key(key, *mj), n)
    return score_fn(x.at[:, mj[1]].set(jnp.take(x[:, mj[1]], rows)))

  return jax.lax.map(permuted_score, grid(m, d),
                     batch_size=batch).reshape(m, d)


def best_times(calls: dict, repeats: int) -> dict:
  """``{name: (best seconds, output)}``; one untimed call of each compiles,
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=6000)
  parser.add_argument("--d", type=int, default=50)
  parser.add_argument("--m", type=int, default=10, help="repeats M")
  parser.add_argument("--batch", type=int, default=50,
                      help="prototype: scores per lax.map block")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  n, d, m = args.n, args.d, args.m

  model = models.reference_mlp()
  k_xt, k_xs, k_y, k_t, k_s, key = jax.random.split(jax.random.key(0), 6)
  x_teacher = jax.random.normal(k_xt, (n, d), jnp.float32)
  x_student = jax.random.normal(k_xs, (n, d), jnp.float32)
  labels = jax.random.randint(k_y, (n,), 0, model.num_classes)
  teacher = model.init(k_t, x_teacher[:1])
  student = model.init(k_s, x_student[:1])

  def score_fn(t_params, s_params, x_s, y):
    s_logits = model.apply(s_params, x_s)
    return lambda x: jnp.mean(divergences.decompose(
        teacher_logits=model.apply(t_params, x), student_logits=s_logits,
        labels=y).ncjsd)

  @jax.jit
  def vmapped(t_params, s_params, x_t, x_s, y, key):
    return masks.permutation_importance(
        score_fn(t_params, s_params, x_s, y), x_t, key, m)

  @jax.jit
  def one(t_params, s_params, x_t, x_s, y, key, i, j):
    rows = jax.random.permutation(permutation_key(key, i, j), n)
    return score_fn(t_params, s_params, x_s, y)(
        x_t.at[:, j].set(jnp.take(x_t[:, j], rows)))

  @jax.jit
  def prototype(t_params, s_params, x_t, x_s, y, key):
    return prototype_importance(score_fn(t_params, s_params, x_s, y), x_t,
                                key, m, args.batch)

  @functools.partial(jax.jit, static_argnames="fast")
  def permutations(key, fast):
    make = fast_permutation if fast else jax.random.permutation
    return jax.vmap(lambda i, j: make(permutation_key(key, i, j), n))(
        *grid(m, d))

  data = (teacher, student, x_teacher, x_student, labels, key)
  timed = best_times({
      "loop": lambda: jnp.stack([jnp.stack([one(*data, i, j)
                                            for j in range(d)])
                                 for i in range(m)]),
      "vmapped": lambda: vmapped(*data),
      "prototype": lambda: prototype(*data),
      "floor": lambda: permutations(key, fast=True),
      "permutations": lambda: permutations(key, fast=False)}, args.repeats)
  out = {name: o for name, (_, o) in timed.items()}
  np.testing.assert_array_equal(out["floor"], out["permutations"])
  for name in ("vmapped", "prototype"):
    np.testing.assert_allclose(out[name], out["loop"], rtol=1e-6, atol=1e-6)

  titles = {
      "loop": "loop over (m, j), jitted single score",
      "vmapped": "vmapped (masks.permutation_importance)",
      "prototype": f"prototype: radix-sorted permutations, blocks of "
                   f"{args.batch}",
      "floor": f"its {m * d} permutations alone (floor)",
      "permutations": f"jax.random.permutation x {m * d} alone"}
  print(f"n = {n}, d = {d}, M = {m}: {m * d} permuted scores, float32, "
        f"{jax.devices()[0].platform} x{jax.device_count()}, "
        f"best of {args.repeats}; all three matrices agree (allclose 1e-6)")
  print("| implementation | time (s) | loop / this |")
  print("|---|---|---|")
  loop = timed["loop"][0]
  for name, (seconds, _) in timed.items():
    goal = " (goal >= 10)" if name == "vmapped" else ""
    print(f"| {titles[name]} | {seconds:.3f} | "
          f"{loop / seconds:.1f}x{goal} |")

if __name__ == "__main__":
  main()
