"""Fused ``decompose`` vs NumPy and vs the log-softmax floor, side by side.

    python benchmarks/divergences.py [--log2n 20] [--classes 100] [--repeats 5]

Three implementations of the same work on identical float32 inputs, timed in
one process, best of ``--repeats``:

* ``decompose``: ``jit(ntdh_jax.divergences.decompose)``, all five metrics.
* ``numpy``: the same five metrics written in vectorised NumPy float32.
* ``floor``: ``jit`` of ``jax.nn.log_softmax`` of both logit arrays, a cost
  any implementation must pay (it reads both arrays and exponentiates each
  element once).

Prints the times and the ratios numpy/decompose (goal >= 5x) and
decompose/floor (goal <= 2x).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import divergences


def numpy_decompose(teacher_logits, student_logits, labels):
  """The five NTDH metrics in NumPy float32 (stable log-softmax form)."""
  rows = np.arange(len(labels))

  def parts(z):
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    pk = p[rows, labels]
    nontarget = p.copy()
    nontarget[rows, labels] = 0.0
    phat = nontarget / (1.0 - pk)[:, None]
    return log_p, p, pk, phat

  def kl_terms(p, log_p, log_q):
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(p > 0, p * (log_p - log_q), 0.0)

  log_pt, pt, pkt, phat_t = parts(teacher_logits)
  log_ps, _, pks, phat_s = parts(student_logits)
  kl = (pt * (log_pt - log_ps)).sum(axis=1)
  bt = np.stack([pkt, 1 - pkt], axis=1)
  bs = np.stack([pks, 1 - pks], axis=1)
  with np.errstate(divide="ignore"):
    log_bt, log_bs = np.log(bt), np.log(bs)
    log_phat_t, log_phat_s = np.log(phat_t), np.log(phat_s)
    bm, pm = 0.5 * (bt + bs), 0.5 * (phat_t + phat_s)
    log_bm, log_pm = np.log(bm), np.log(pm)
  tckl = kl_terms(bt, log_bt, log_bs).sum(axis=1)
  nckl = kl_terms(phat_t, log_phat_t, log_phat_s).sum(axis=1)
  tcjsd = 0.5 * (kl_terms(bt, log_bt, log_bm)
                 + kl_terms(bs, log_bs, log_bm)).sum(axis=1)
  ncjsd = 0.5 * (kl_terms(phat_t, log_phat_t, log_pm)
                 + kl_terms(phat_s, log_phat_s, log_pm)).sum(axis=1)
  return kl, tckl, nckl, tcjsd, ncjsd


def best_time(fn, repeats):
  fn()  # compile / warm caches
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--log2n", type=int, default=20)
  parser.add_argument("--classes", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  n, c = 2**args.log2n, args.classes
  rng = np.random.default_rng(0)
  t = (3 * rng.standard_normal((n, c))).astype(np.float32)
  s = (3 * rng.standard_normal((n, c))).astype(np.float32)
  y = rng.integers(0, c, n).astype(np.int32)
  tj, sj, yj = map(jnp.asarray, (t, s, y))

  fused = jax.jit(lambda a, b, k: divergences.decompose(
      teacher_logits=a, student_logits=b, labels=k))
  floor = jax.jit(lambda a, b: (jax.nn.log_softmax(a), jax.nn.log_softmax(b)))

  check = fused(tj, sj, yj)
  want = numpy_decompose(t[:4096], s[:4096], y[:4096])
  for got, ref in zip(check[:5], want):
    np.testing.assert_allclose(np.asarray(got[:4096]), ref, rtol=1e-3,
                               atol=1e-4)

  t_fused = best_time(lambda: fused(tj, sj, yj), args.repeats)
  t_floor = best_time(lambda: floor(tj, sj), args.repeats)
  t_numpy = best_time(lambda: numpy_decompose(t, s, y), max(1, args.repeats // 2))

  print(f"N = 2^{args.log2n} = {n}, C = {c}, float32, "
        f"{jax.devices()[0].platform} x{jax.device_count()}, "
        f"best of {args.repeats}")
  print(f"| implementation | time (s) | ratio |")
  print(f"|---|---|---|")
  print(f"| decompose (fused, jit) | {t_fused:.3f} | 1.00 |")
  print(f"| log_softmax floor (jit) | {t_floor:.3f} | "
        f"decompose/floor = {t_fused / t_floor:.2f}x (goal <= 2) |")
  print(f"| NumPy float32 | {t_numpy:.3f} | "
        f"numpy/decompose = {t_numpy / t_fused:.1f}x (goal >= 5) |")


if __name__ == "__main__":
  main()
