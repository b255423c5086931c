"""Algorithm 1's permutation importance: batched vs a Python loop, side by side.

    python benchmarks/permutation_importance.py [--n 6000] [--d 50] [--m 10]
        [--unit-batches 10,50] [--no-all-at-once]
        [--digits-repeats 10] [--digits-size 8] [--digits-loop-repeats 1]
        [--digits-unit-batch 2] [--digits-rounds 2] [--digits-fc-repeats 1]
        [--digits-fc-hidden 1024,256] [--digits-fc-unit-batch 10]
        [--digits-fc-rounds 2] [--no-synthetic]

The importance of every teacher input feature: for each repeat m < M and
column j < D, the batch-mean NCJSD between the teacher on its input with
column j permuted and the student on its own input; teacher and student are
the reference MLP 50-16-16-4 with random weights, on random float32 inputs
and labels. Column j of repeat m is permuted with key ``fold_in(fold_in(key,
m), j)`` (``permutations="per_unit"``, the library's default) or, where a
row says "shared", with one permutation per repeat, key ``fold_in(key, m)``,
shared by all D columns (``permutations="shared"``: M sorts instead of M·D;
each column's M scores keep their distribution, only different columns'
scores become correlated, see ``masks.permutation_importance``). The score
is per example, ``score(x_rows, rows) -> f32[B]`` over a contiguous block of
rows (the student logits and labels of those rows sliced at ``rows[0]``), as
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
* ``library, shared, unit_batch U``: the library with
  ``permutations="shared"``, for each U of ``--unit-batches``.
* ``library, shared, first layer, unit_batch U``: the same with
  ``first_layer=Net.first_layer(teacher)`` (the teacher's ``hidden_0``
  kernel and bias) and the score running the teacher from its first
  pre-activation (``Net.apply(..., from_first_layer=True)``): ``h = x W + b``
  once, each (repeat, column) the rank-1 update ``h + (x[perm, j] − x[:, j])
  W[j]``, no permuted copy of x and no ``[n, d] @ [d, 16]`` product per
  score. Same permutations as the shared loop; checked against it at rtol
  1e-5 (``FIRST_LAYER_RTOL``: the update rounds differently from
  ``x' @ W``; differences measured ~2e-7 relative).
* ``loop``: a Python loop over (m, j) of a jitted single-permutation score
  (``jax.random.permutation`` of the same key, column j replaced, mean of
  the per-example score over all rows). The issue's baseline: every ratio
  column is loop / row.
* ``loop, shared``: the loop with the shared permutations: one jitted draw
  per repeat (``jax.random.permutation(fold_in(key, m), n)``, one at a
  time, unlike the library's vmapped draw), then a jitted score per column.
  It computes the shared rows' matrix, which is checked against it.
* ``draws``: the M·D permutations alone, drawn as the library draws them
  (``masks._permutation``: ``jax.random.permutation``'s rounds and keys,
  each round's key–value sort replaced by two single-operand ``uint32``
  sorts of an LSD radix sort, which XLA:CPU runs about 5x faster):
  what any implementation drawing these permutations pays at least here;
  ``jax.random.permutation``: the same permutations drawn by it, alone
  (both vmapped over all M·D at once), checked equal.
* ``scores alone``: the M·D scores with no random permutation (column j
  replaced by itself shifted one row down), in ``lax.map`` steps of 10 as
  the library takes them: what any implementation evaluating the score M·D
  times pays at least, the teacher MLP and the NCJSD on M·D·N rows. Once the
  permutations are shared the library is close to it (the last lines print
  shared / scores alone), so loop / shared can only grow as far as loop /
  scores alone: no choice of permutations removes the scores themselves.
* ``scores after first alone``: the same M·D scores taken from the first
  pre-activation (``h`` plus column j's shift times ``W[j]``): the floor of
  the first-layer rows, what is left once the first layer's product is
  shared by all scores.

Memory: each compiled program's XLA temp buffers
(``compiled.memory_analysis().temp_size_in_bytes``, arguments and outputs
excluded), the scratch a call needs on top of its inputs; the loop's is one
single-permutation call's. This is XLA's buffer assignment, not a measured
RSS.

Pixel-level digits (``--digits-repeats`` M', 0 skips it): the importance of
every pixel of the ``digits`` source's teacher view (``ntdh_jax.data``,
scikit-learn's digits, ``u8[1347, s, s, 1]`` train rows prepared as the
joint stage prepares them: noise 0.9, scaled to [-1, 1]), a unit being one
pixel: s² = 64 units at the default ``--digits-size 8`` (28 gives 784 units
of 28×28 inputs, about 150× the work: an accelerator's run). Teacher and
student are ``sweeps/configs/digits_kd.py``'s CNN (3×3 conv 32 and 64,
2×2 max-pool, dense 128) with random weights, the student on the digits-M
view; the score is the per-example NCJSD as above. The library runs at
``--digits-unit-batch`` 2: the CNN's first activations are 11 MiB per
1347-row copy (8·8·32 float32 per row), so two copies stay in a 32 MiB L3
cache where the default ten do not (on 2 loaded cores, 64 scores took
1.2–1.4 s at unit_batch 1 or 2, 2.1–2.2 s at 10, 2.6 s in the loop).
Compiled ahead, the full run, the library with ``permutations="shared"``
over all M'·s² scores, is timed once and set beside the loop
extrapolated linearly from its first repeats. Then, side by side in
``--digits-rounds`` rounds (best of), the same three implementations as
above (shared library, loop, shared loop) on the first
``--digits-loop-repeats`` repeats only (s² scores each). The shared library
is checked against the shared loop (allclose 1e-5) and the full run against
its first repeats.

Pixel-level digits with NTDH's MNIST MLP (``--digits-fc-repeats`` M'', 0
skips it): the same teacher view, teacher and student ``mnist_fc`` with
``--digits-fc-hidden`` (default 1024, 256, as ``sweeps/configs/
ntdh_digits.py``; random weights), the score the per-example NCJSD. Side by
side on M'' repeats (64 scores each at size 8), best of
``--digits-fc-rounds``: the shared library from the input and from the
teacher's first layer (``first_layer``, a rank-1 update of the 1024-wide
pre-activation per pixel; one channel per pixel), at
``--digits-fc-unit-batch`` 10 (the library's default; 2 was slower here,
unlike the CNN's), vs the two loops; both shared matrices checked
against the shared loop's (rtol 1e-5). Here the first layer (64 → 1024)
is a fifth of the MLP's multiply-adds and the 1024 → 256 layer most of
the rest, which every score still pays; at 28 × 28 (784 → 1024) the first
layer would be three quarters.

Checks every implementation gives the loop's matrix (allclose 1e-6, the
first-layer rows rtol 1e-5; the shared rows the shared loop's) and the
library's draws equal ``jax.random.permutation``'s. Prints the
times, loop / each (goal: the library >= 10x) and the temp memory, and the
unpermuted baseline (``masks.mean_score``). ``--no-synthetic`` runs the
digits parts only.
"""

import argparse
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import data as data_lib
from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import models

# first_layer's h + Δ·W[j] against the loop's x' @ W: float32 rounding of a
# different order (measured: relative differences ~2e-7 at n = 6000).
FIRST_LAYER_RTOL = 1e-5


def permutation_key(key, m, j):
  return jax.random.fold_in(jax.random.fold_in(key, m), j)


def grid(m: int, d: int):
  """Every (repeat, column) pair, repeat-major, as two ``i32[m·d]``."""
  return jnp.repeat(jnp.arange(m), d), jnp.tile(jnp.arange(d), m)


def permute_unit(x, perm, j):
  """``x`` with unit j (a column of ``[N, D]``, a position of ``[N, ..., C]``,
  as ``masks.permutation_importance`` defines units) taken from rows
  ``perm``."""
  units = x.reshape(x.shape[0], -1, 1 if x.ndim == 2 else x.shape[-1])
  return units.at[:, j].set(jnp.take(units[:, j], perm, axis=0)).reshape(
      x.shape)


def shared_permutation(key, m, n: int):
  """Repeat m's permutation under ``permutations="shared"``."""
  return jax.random.permutation(jax.random.fold_in(key, m), n)


def ncjsd_score(apply, t_params, s_params, x_s, y, teacher_apply=None):
  """Per-example NCJSD of a block of (permuted) teacher rows against the
  student on its own rows, ``apply(params, x) -> logits``; the teacher's
  logits by ``teacher_apply`` where given (e.g. from its first
  pre-activation rows)."""
  s_logits = apply(s_params, x_s)
  teacher_apply = teacher_apply or apply

  def score(x_rows, rows):
    pick = lambda a: jax.lax.dynamic_slice_in_dim(a, rows[0], x_rows.shape[0])
    return divergences.decompose(
        teacher_logits=teacher_apply(t_params, x_rows),
        student_logits=pick(s_logits), labels=pick(y)).ncjsd

  return score


def first_layer_apply(net: models.Net):
  """``(params, h) -> logits`` of ``net`` from its first pre-activation."""
  return lambda params, h: net.apply(params, h, train=False,
                                     from_first_layer=True)[0]


def single_score(score_fn, t_params, s_params, x_t, x_s, y, perm, j):
  """One loop step: the mean score with unit j of ``x_t`` taken from rows
  ``perm`` (``score_fn(t_params, s_params, x_s, y)`` makes the per-example
  score)."""
  return jnp.mean(score_fn(t_params, s_params, x_s, y)(
      permute_unit(x_t, perm, j),
      jnp.arange(x_t.shape[0], dtype=jnp.int32)))


def per_unit_score(score_fn, t_params, s_params, x_t, x_s, y, key, i, j):
  """``single_score`` with the per-unit permutation of repeat i, unit j."""
  perm = jax.random.permutation(permutation_key(key, i, j), x_t.shape[0])
  return single_score(score_fn, t_params, s_params, x_t, x_s, y, perm, j)


def loops(score_fn, data, repeats: int, num_units: int):
  """The two Python loops over (repeat, unit) < (``repeats``, ``num_units``)
  as ``{name: (call, compiled score)}``: ``"loop"`` (a permutation drawn per
  score) and ``"loop, shared"`` (one jitted draw per repeat).

  ``data = (t_params, s_params, x_t, x_s, y, key)``.
  """
  key, n = data[-1], data[2].shape[0]
  per_unit = compile_(functools.partial(per_unit_score, score_fn), *data, 0, 0)
  shared = compile_(functools.partial(single_score, score_fn), *data[:5],
                    jnp.arange(n, dtype=jnp.int32), 0)
  draw = compile_(shared_permutation, key, 0, static={"n": n})

  def loop():
    return jnp.stack([jnp.stack([per_unit(*data, i, j)
                                 for j in range(num_units)])
                      for i in range(repeats)])

  def shared_loop():
    out = []
    for i in range(repeats):
      perm = draw(key, i)
      out.append(jnp.stack([shared(*data[:5], perm, j)
                            for j in range(num_units)]))
    return jnp.stack(out)

  return {"loop": (loop, per_unit), "loop, shared": (shared_loop, shared)}


def best_times(calls: dict, repeats: int, warm: bool = True) -> dict:
  """``{name: (best seconds, output)}``; one untimed call of each first
  (unless not ``warm``: then the first timed call's output), then rounds of
  one call of each, so drifting machine load hits all alike."""
  outs = {name: np.asarray(jax.block_until_ready(call()))
          for name, call in calls.items()} if warm else {}
  best = dict.fromkeys(calls, float("inf"))
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      out = jax.block_until_ready(call())
      best[name] = min(best[name], time.perf_counter() - start)
      outs.setdefault(name, np.asarray(out))
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


def print_table(rows, loop: float):
  """Markdown rows ``(title, seconds, goal marker, temp MiB)``."""
  print("\n| implementation | time (s) | loop / this | XLA temp (MiB) |")
  print("|---|---|---|---|")
  for title, seconds, goal, mib in rows:
    print(f"| {title} | {seconds:.3f} | {loop / seconds:.1f}x{goal} | "
          f"{mib:.1f} |")


def synthetic(args):
  """The n × d table: every implementation, the matrices checked."""
  n, d, m = args.n, args.d, args.m
  unit_batches = [int(u) for u in args.unit_batches.split(",")]

  model = models.reference_mlp()
  k_xt, k_xs, k_y, k_t, k_s, key = jax.random.split(jax.random.key(0), 6)
  x_teacher = jax.random.normal(k_xt, (n, d), jnp.float32)
  x_student = jax.random.normal(k_xs, (n, d), jnp.float32)
  labels = jax.random.randint(k_y, (n,), 0, model.num_classes)
  teacher = model.init(k_t, x_teacher[:1])
  student = model.init(k_s, x_student[:1])
  score_fn = functools.partial(ncjsd_score, model.apply)
  net = models.Net(model)
  # The same score, the teacher run from its first pre-activation.
  score_after_first = functools.partial(
      ncjsd_score, model.apply, teacher_apply=first_layer_apply(net))
  all_rows = jnp.arange(n, dtype=jnp.int32)

  def library(t_params, s_params, x_t, x_s, y, key, *, unit_batch,
              row_batch, permutations, first_layer=False):
    score = score_after_first if first_layer else score_fn
    return masks.permutation_importance(
        score(t_params, s_params, x_s, y), x_t, key, m,
        unit_batch=unit_batch, row_batch=row_batch, permutations=permutations,
        first_layer=net.first_layer(t_params) if first_layer else None)

  def baseline(t_params, s_params, x_t, x_s, y):
    return masks.mean_score(score_fn(t_params, s_params, x_s, y), x_t)

  def scores_alone(t_params, s_params, x_t, x_s, y):
    shifted = jnp.roll(x_t, 1, axis=0)

    def score(pair):
      j = pair % d
      return jnp.mean(score_fn(t_params, s_params, x_s, y)(
          x_t.at[:, j].set(shifted[:, j]), all_rows))

    return jax.lax.map(score, jnp.arange(m * d), batch_size=10).reshape(m, d)

  def scores_after_first_alone(t_params, s_params, x_t, x_s, y):
    kernel, bias = net.first_layer(t_params)
    h = x_t @ kernel + bias
    delta = jnp.roll(x_t, 1, axis=0) - x_t

    def score(pair):
      j = pair % d
      return jnp.mean(score_after_first(t_params, s_params, x_s, y)(
          h + delta[:, j, None] * kernel[j], all_rows))

    return jax.lax.map(score, jnp.arange(m * d), batch_size=10).reshape(m, d)

  def permutations(key, fast):
    make = masks._permutation if fast else jax.random.permutation
    return jax.vmap(lambda i, j: make(permutation_key(key, i, j), n))(
        *grid(m, d))

  data = (teacher, student, x_teacher, x_student, labels, key)
  variants = {f"unit_batch {u}": dict(unit_batch=u, row_batch=args.row_batch,
                                      permutations="per_unit")
              for u in unit_batches}
  if args.all_at_once:
    variants["all at once"] = dict(unit_batch=m * d, row_batch=n,
                                   permutations="per_unit")
  variants.update({f"shared, unit_batch {u}": dict(
      unit_batch=u, row_batch=args.row_batch, permutations="shared")
                   for u in unit_batches})
  variants.update({f"shared, first layer, unit_batch {u}": dict(
      unit_batch=u, row_batch=args.row_batch, permutations="shared",
      first_layer=True) for u in unit_batches})
  compiled = {f"library, {name}": compile_(library, *data, static=static)
              for name, static in variants.items()}
  loop_calls = loops(score_fn, data, m, d)
  compiled.update({name: c for name, (_, c) in loop_calls.items()})
  compiled["draws"] = compile_(permutations, key, static={"fast": True})
  compiled["permutations"] = compile_(permutations, key,
                                      static={"fast": False})
  compiled["scores alone"] = compile_(scores_alone, *data[:5])
  compiled["scores after first alone"] = compile_(scores_after_first_alone,
                                                  *data[:5])
  base = float(compile_(baseline, *data[:5])(*data[:5]))

  calls = {name: functools.partial(c, *data) for name, c in compiled.items()
           if name.startswith("library")}
  calls.update({name: call for name, (call, _) in loop_calls.items()})
  calls["draws"] = functools.partial(compiled["draws"], key)
  calls["permutations"] = functools.partial(compiled["permutations"], key)
  for name in ("scores alone", "scores after first alone"):
    calls[name] = functools.partial(compiled[name], *data[:5])
  timed = best_times(calls, args.repeats)
  out = {name: o for name, (_, o) in timed.items()}
  np.testing.assert_array_equal(out["draws"], out["permutations"])
  for name in timed:
    if name.startswith("library"):
      want = "loop, shared" if "shared" in name else "loop"
      # The first layer's rank-1 update rounds differently from x' @ W.
      tolerance = FIRST_LAYER_RTOL if "first layer" in name else 1e-6
      np.testing.assert_allclose(out[name], out[want], rtol=tolerance,
                                 atol=1e-6, err_msg=name)

  titles = {
      **{f"library, {name}": (
          "masks.permutation_importance, "
          + ("permutations=shared, " if s["permutations"] == "shared" else "")
          + ("first_layer (rank-1 updates), " if s.get("first_layer")
             else "")
          + f"unit_batch={s['unit_batch']}"
          + (f", row_batch={s['row_batch']}" if s["row_batch"] else "")
          + (" (all at once: the old single vmap)" if name == "all at once"
             else "")) for name, s in variants.items()},
      "loop": "loop over (m, j), jitted single score",
      "loop, shared": f"loop over (m, j), shared permutations ({m} draws)",
      "draws": f"its {m * d} permutations alone, as the library draws them "
               f"(floor)",
      "permutations": f"jax.random.permutation x {m * d} alone",
      "scores alone": f"the {m * d} scores alone, no permutation (floor)",
      "scores after first alone": f"the {m * d} scores from the first "
                                  f"pre-activation alone, no permutation "
                                  f"(floor)"}
  print(f"n = {n}, d = {d}, M = {m}: {m * d} permuted scores, float32, "
        f"{jax.devices()[0].platform} x{jax.device_count()}, "
        f"best of {args.repeats}; all matrices agree with their loop's "
        f"(allclose rtol 1e-6, first layer rtol {FIRST_LAYER_RTOL:g}; "
        f"atol 1e-6)")
  imp = out["loop"]
  print(f"unpermuted baseline NCJSD (masks.mean_score) {base:.6f}; "
        f"permuted scores in [{imp.min():.6f}, {imp.max():.6f}]")
  print_table([(titles[name], seconds,
                " (goal >= 10)" if name.startswith("library") else "",
                temp_mib(compiled[name]))
               for name, (seconds, _) in timed.items()], timed["loop"][0])
  print("\nloop: temp memory of one single-permutation call.")
  best = lambda first: min(
      seconds for name, (seconds, _) in timed.items()
      if name.startswith("library, shared")
      and ("first layer" in name) == first)
  shared, first = best(False), best(True)
  print(f"best shared library: loop / shared {timed['loop'][0] / shared:.1f}x "
        f"(goal >= 10), shared loop / shared "
        f"{timed['loop, shared'][0] / shared:.1f}x, shared / scores alone "
        f"{shared / timed['scores alone'][0]:.2f}")
  print(f"best shared library from the first layer: loop / it "
        f"{timed['loop'][0] / first:.1f}x (goal >= 10), shared loop / it "
        f"{timed['loop, shared'][0] / first:.1f}x, it / its scores alone "
        f"{first / timed['scores after first alone'][0]:.2f}")


def digits_views(size: int):
  """The joint stage's inputs on the ``digits`` source at ``size``: each
  view prepared once, with its noise; ``(x_teacher, x_student, labels,
  num_classes, teacher init key, student init key, permutation key)``."""
  config = {"name": "digits", "size": size}
  source, options = data_lib.parse(config)
  arrays = data_lib.load_arrays(config)
  k_nt, k_ns, k_t, k_s, key = jax.random.split(jax.random.key(1), 5)
  x_teacher = source.prepare(options, arrays["teacher_train"], "teacher", {},
                             k_nt)
  x_student = source.prepare(options, arrays["student_train"], "student", {},
                             k_ns)
  return (x_teacher, x_student, jnp.asarray(arrays["y_train"]),
          source.spec(options).num_classes, k_t, k_s, key)


def digits_fc(args):
  """Pixel-level digits with NTDH's MNIST MLP on both views: the shared
  library from the input and from the teacher's first layer vs the two
  loops, on ``--digits-fc-repeats`` repeats."""
  m = args.digits_fc_repeats
  x_teacher, x_student, labels, num_classes, k_t, k_s, key = digits_views(
      args.digits_size)
  n = x_teacher.shape[0]
  num_units = math.prod(x_teacher.shape[1:-1])
  hidden = [int(w) for w in args.digits_fc_hidden.split(",")]
  net = models.build({"name": "mnist_fc", "hidden": hidden}, num_classes)
  apply = lambda params, x: net.apply(params, x, train=False)[0]
  teacher = net.init(k_t, x_teacher[:1])
  student = net.init(k_s, x_student[:1])
  score_fn = functools.partial(ncjsd_score, apply)
  score_after_first = functools.partial(ncjsd_score, apply,
                                        teacher_apply=first_layer_apply(net))

  def library(t_params, s_params, x_t, x_s, y, key, *, first_layer):
    score = score_after_first if first_layer else score_fn
    return masks.permutation_importance(
        score(t_params, s_params, x_s, y), x_t, key, m,
        unit_batch=args.digits_fc_unit_batch, permutations="shared",
        first_layer=net.first_layer(t_params) if first_layer else None
    ).reshape(m, num_units)

  data = (teacher, student, x_teacher, x_student, labels, key)
  compiled = {name: compile_(library, *data, static={"first_layer": first})
              for name, first in (("shared", False),
                                  ("shared, first layer", True))}
  loop_calls = loops(score_fn, data, m, num_units)
  compiled.update({name: c for name, (_, c) in loop_calls.items()})
  calls = {name: functools.partial(compiled[name], *data)
           for name in ("shared", "shared, first layer")}
  calls.update({name: call for name, (call, _) in loop_calls.items()})
  timed = best_times(calls, args.digits_fc_rounds)
  out = {name: o for name, (_, o) in timed.items()}
  np.testing.assert_allclose(out["shared"], out["loop, shared"], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(out["shared, first layer"], out["loop, shared"],
                             rtol=FIRST_LAYER_RTOL, atol=1e-6)

  size = args.digits_size
  print(f"\npixel-level digits, NTDH's MNIST MLP (mnist_fc {hidden}, random "
        f"weights) as teacher and student: teacher view f32[{n}, {size}, "
        f"{size}, 1], {num_units} pixel units, M = {m} ({m * num_units} "
        f"scores), best of {args.digits_fc_rounds}; the shared matrices "
        f"agree with the shared loop's (allclose rtol 1e-5, first layer rtol "
        f"{FIRST_LAYER_RTOL:g}; atol 1e-6)")
  title = (f"masks.permutation_importance, permutations=shared, unit_batch="
           f"{args.digits_fc_unit_batch}")
  print_table([
      (title, timed["shared"][0], "", temp_mib(compiled["shared"])),
      (title.replace("shared, ", "shared, first_layer (rank-1 updates), "),
       timed["shared, first layer"][0], "",
       temp_mib(compiled["shared, first layer"])),
      ("loop over (m, j), jitted single score", timed["loop"][0], "",
       temp_mib(compiled["loop"])),
      ("loop over (m, j), shared permutations", timed["loop, shared"][0], "",
       temp_mib(compiled["loop, shared"]))], timed["loop"][0])


def digits(args):
  """The pixel-level digits run: the shared library over all repeats, and
  the shared library vs the two loops on the first repeats."""
  m, sample = args.digits_repeats, min(args.digits_loop_repeats,
                                       args.digits_repeats)
  x_teacher, x_student, labels, num_classes, k_t, k_s, key = digits_views(
      args.digits_size)
  n = x_teacher.shape[0]
  num_units = math.prod(x_teacher.shape[1:-1])
  net = models.build({"name": "cnn", "channels": [32, 64], "dense": 128},
                     num_classes)
  apply = lambda params, x: net.apply(params, x, train=False)[0]
  teacher = net.init(k_t, x_teacher[:1])
  student = net.init(k_s, x_student[:1])
  score_fn = functools.partial(ncjsd_score, apply)

  def library(t_params, s_params, x_t, x_s, y, key, *, repeats):
    return masks.permutation_importance(
        score_fn(t_params, s_params, x_s, y), x_t, key, repeats,
        unit_batch=args.digits_unit_batch,
        permutations="shared").reshape(repeats, num_units)

  data = (teacher, student, x_teacher, x_student, labels, key)
  full = compile_(library, *data, static={"repeats": m})
  compiled = {"shared": compile_(library, *data, static={"repeats": sample})}
  loop_calls = loops(score_fn, data, sample, num_units)
  compiled.update({name: c for name, (_, c) in loop_calls.items()})
  # The full run: one long call, so no warm-up.
  (full_seconds, importance), = best_times({"full": functools.partial(
      full, *data)}, 1, warm=False).values()
  # Side by side on the first repeats, in rounds (drifting load hits all).
  calls = {"shared": functools.partial(compiled["shared"], *data)}
  calls.update({name: call for name, (call, _) in loop_calls.items()})
  timed = best_times(calls, args.digits_rounds)
  out = {name: o for name, (_, o) in timed.items()}
  np.testing.assert_allclose(out["shared"], out["loop, shared"], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(importance[:sample], out["shared"], rtol=1e-6,
                             atol=1e-7)

  size = args.digits_size
  loop = timed["loop"][0]
  print(f"\npixel-level digits: teacher view f32[{n}, {size}, {size}, 1], "
        f"{num_units} pixel units, digits CNN teacher and student (random "
        f"weights)")
  print(f"full run, masks.permutation_importance(permutations=\"shared\", "
        f"unit_batch={args.digits_unit_batch}), M = {m}, {m * num_units} "
        f"scores: {full_seconds:.3f} s, timed once "
        f"(the loop extrapolated from {sample} repeat(s), x{m / sample:g}: "
        f"{loop * m / sample:.3f} s, "
        f"{loop * m / sample / full_seconds:.1f}x); XLA temp "
        f"{temp_mib(full):.1f} MiB")
  print(f"side by side on the first {sample} repeat(s) ({sample * num_units} "
        f"scores), best of {args.digits_rounds}; the shared matrices agree "
        f"(allclose 1e-5)")
  print_table([
      (f"masks.permutation_importance, permutations=shared, unit_batch="
       f"{args.digits_unit_batch}", timed["shared"][0], "",
       temp_mib(compiled["shared"])),
      ("loop over (m, j), jitted single score", loop, "",
       temp_mib(compiled["loop"])),
      ("loop over (m, j), shared permutations", timed["loop, shared"][0], "",
       temp_mib(compiled["loop, shared"]))], loop)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=6000)
  parser.add_argument("--d", type=int, default=50)
  parser.add_argument("--m", type=int, default=10, help="repeats M")
  parser.add_argument("--unit-batches", default="10,50",
                      help="library: unit_batch values, comma-separated")
  parser.add_argument("--row-batch", type=int, default=None,
                      help="library: row_batch (default: the library's)")
  parser.add_argument("--all-at-once", default=True,
                      action=argparse.BooleanOptionalAction,
                      help="also time one vmap over all M·D copies")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--digits-repeats", type=int, default=10,
                      help="pixel-level digits: repeats M' (0: skip it)")
  parser.add_argument("--digits-size", type=int, default=8,
                      choices=(8, 28), help="digits image side")
  parser.add_argument("--digits-loop-repeats", type=int, default=1,
                      help="digits: repeats timed side by side with the loops")
  parser.add_argument("--digits-unit-batch", type=int, default=2,
                      help="digits: the library's unit_batch")
  parser.add_argument("--digits-rounds", type=int, default=2,
                      help="digits: best of this many side-by-side rounds")
  parser.add_argument("--digits-fc-repeats", type=int, default=1,
                      help="digits with mnist_fc: repeats (0: skip it)")
  parser.add_argument("--digits-fc-hidden", default="1024,256",
                      help="digits with mnist_fc: hidden widths")
  parser.add_argument("--digits-fc-unit-batch", type=int, default=10,
                      help="digits with mnist_fc: the library's unit_batch")
  parser.add_argument("--digits-fc-rounds", type=int, default=2,
                      help="digits with mnist_fc: best of this many rounds")
  parser.add_argument("--no-synthetic", dest="synthetic", default=True,
                      action="store_false", help="skip the n x d table")
  args = parser.parse_args()
  if args.synthetic:
    synthetic(args)
  if args.digits_repeats > 0:
    digits(args)
  if args.digits_fc_repeats > 0:
    digits_fc(args)


if __name__ == "__main__":
  main()
