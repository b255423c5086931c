"""KSG mutual information: JAX (sorted, brute) vs scikit-learn vs a k-d tree.

    python benchmarks/ksg.py [--ns 2000,20000] [--dims 1,8] [--k 3]
                             [--repeats 5]

The same estimate, KSG algorithm 1 (Kraskov et al. 2004) with k neighbours
in the max-norm, on identical correlated Gaussians (x, y each d-dim,
per-dimension correlation 0.5, true MI −d/2 · log 0.75), timed side by side
in one process, best of ``--repeats`` (of 2 for rows whose runs take over
10 s; JAX's programs compiled and run once before timing):

* ``jax``: ``ntdh_jax.info.ksg`` under ``jax.jit`` with its default
  ``method="auto"``, compiled ahead (``lower().compile()``), float32, on
  whatever backend jax runs on (the table says which): at d = 1 the sorted
  method (``info.plane``: sorted orders, candidate windows and a proof,
  O(N log N)), at d > 1 the blockwise brute force, O(N² · d).
* ``brute``: the same call with ``method="brute"``, at d = 1 only (at d > 1
  it is the ``jax`` column), so the algorithm's share of the speed-up shows.
* ``sklearn``: ``sklearn.feature_selection.mutual_info_regression(x, y,
  n_neighbors=k)``, float64, k-d/ball trees, O(N log N) at low dimension;
  it takes one y column, so d = 1 only.
* ``tree``: the estimator written with ``scipy.spatial.cKDTree`` (p = inf,
  ``workers=-1``: every CPU core), float64: standardise, jitter, (k+1)
  nearest neighbours in the joint space, ball counts in each marginal. The
  reference where scikit-learn cannot go (d > 1).

All three standardise the columns and add a tiny jitter, so the estimates
agree to ~1e-3 (the Î columns; scikit-learn clips negatives to 0; the
sorted and brute methods give the same counts). Prints a markdown table
with each time and the ratios other / jax (> 1: JAX is faster). Goal:
>= 5x scikit-learn at N = 20,000, d = 1. At d = 8 (a 16-d joint space,
where trees degrade) the brute force is compared with the k-d tree. The
tree at N = 20,000, d = 8 takes 8–40 s a run on 2 cores, depending on the
machine and its load (most of the benchmark's time).
"""

import argparse
import os
import time

import jax
import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression

from ntdh_jax import info


def correlated(n, d, rho=0.5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d))
  y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
  return x.astype(np.float32), y.astype(np.float32)


def tree_ksg(x, y, k, seed=0):
  """KSG algorithm 1 with cKDTree (max-norm), float64."""
  rng = np.random.default_rng(seed)
  z = np.concatenate([x, y], axis=1).astype(np.float64)
  z = (z - z.mean(axis=0)) / z.std(axis=0)
  z += 1e-10 * rng.standard_normal(z.shape)
  x, y = z[:, :x.shape[1]], z[:, x.shape[1]:]
  # k + 1 neighbours: the query point itself comes first.
  dist, _ = cKDTree(z).query(z, k + 1, p=np.inf, workers=-1)
  radius = np.nextafter(dist[:, -1], 0)  # strictly closer than eps
  counts = [cKDTree(v).query_ball_point(v, radius, p=np.inf, workers=-1,
                                        return_length=True) - 1
            for v in (x, y)]
  return (digamma(k) + digamma(len(z))
          - np.mean(digamma(counts[0] + 1) + digamma(counts[1] + 1)))


def best_time(fn, repeats):
  """Best of ``repeats`` runs, or of 2 once they have taken 10 s (the slow
  brute-force and d = 8 tree rows)."""
  times = []
  while len(times) < repeats and not (len(times) >= 2 and sum(times) > 10):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times), float(result)


def jax_time(x, y, k, method, repeats):
  """Best time and Î of ``info.ksg(method=method)``, compiled ahead."""
  estimate = jax.jit(lambda x, y: info.ksg(x, y, k=k, method=method).mean)
  compiled = estimate.lower(x, y).compile()
  compiled(x, y).block_until_ready()  # first-run allocations
  return best_time(lambda: compiled(x, y), repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ns", default="2000,20000")
  parser.add_argument("--dims", default="1,8")
  parser.add_argument("--k", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  k = args.k

  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} "
        f"({jax.default_backend()}), {os.cpu_count()} CPU cores, load "
        f"{os.getloadavg()[0]:.2f}; k = {k}, best of {args.repeats}\n")
  print("| N | d | jax s | brute s | sklearn s | tree s | brute/jax | "
        "sklearn/jax | tree/jax | Î jax | Î sklearn | Î tree | truth |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for n in map(int, args.ns.split(",")):
    for d in map(int, args.dims.split(",")):
      x, y = correlated(n, d)
      t_jax, mi_jax = jax_time(x, y, k, "auto", args.repeats)
      t_tree, mi_tree = best_time(lambda: tree_ksg(x, y, k), args.repeats)
      if d == 1:
        t_brute, _ = jax_time(x, y, k, "brute", args.repeats)
        t_sk, mi_sk = best_time(
            lambda: mutual_info_regression(x, y[:, 0], n_neighbors=k,
                                           random_state=0)[0], args.repeats)
        d1_cells = (f"{t_brute:.4f}", f"{t_sk:.4f}", f"{t_brute / t_jax:.1f}x",
                    f"{t_sk / t_jax:.2f}x", f"{mi_sk:.4f}")
      else:
        d1_cells = ("—",) * 5
      truth = -d / 2 * np.log(0.75)
      print(f"| {n} | {d} | {t_jax:.4f} | {d1_cells[0]} | {d1_cells[1]} | "
            f"{t_tree:.3f} | {d1_cells[2]} | {d1_cells[3]} | "
            f"{t_tree / t_jax:.2f}x | {mi_jax:.4f} | {d1_cells[4]} | "
            f"{mi_tree:.4f} | {truth:.4f} |", flush=True)
  print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
