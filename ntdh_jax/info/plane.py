"""Exact KSG neighbour counts of one-column x and y by sorting, not O(N²).

KSG (``ntdh_jax.info.ksg``) needs, for every point z_i = (x_i, y_i), the
distance ε_i to its k-th nearest neighbour in the max-norm and the counts
n_x(i), n_y(i) of points strictly closer than ε_i in each marginal. With one
column each, the max-norm ball is a square, and both can be found from
sorted orders instead of N² distances:

* **Marginal counts.** The points with |x_j − x_i| ≤ r form one contiguous
  run of the x-sorted order, because float32 subtraction is monotone; its
  two ends are found by binary search with the brute force's own test
  ``|x_i − x_j| <= nextafter(ε_i, 0)``, so the counts are the same integers.
* **ε_i, by candidates and a proof of completeness.** Any set of candidate
  neighbours gives an upper bound ε̂_i (the (k+1)-th smallest candidate
  distance, i itself included at 0). It is exact when every point left out
  is provably at distance ≥ ε̂_i: all points beyond the last candidate in a
  sorted order are, by the same monotonicity, at least as far in that
  column as the first point beyond it. Rows whose bound is not proved move
  to the next, wider, tier:

  1. *strips* (every row): the x-sorted points cut into strips of S ≈ √N
     (a power of two), each strip sorted by y; the candidates are the
     2m + 1 points nearest in y within each of the 2r + 1 strips around i
     (r = 2, m = 6: 65 candidates). Proof: the strips beyond are ≥ ε̂ away
     in x and, in each strip, the first point beyond the window is ≥ ε̂
     away in y. It proves ~94 % of a correlated Gaussian's rows (ρ = 0.5,
     N = 20,000), fewer as ρ → 1, where the square's points crowd into a
     strip's y window.
  2. *windows* (the rest: tails, where the square is a thin band of one
     marginal, and near-deterministic data): the 2w + 1 nearest points in
     the sorted order of the sparser marginal around i, w = 128, then 512,
     then 2048; proof: the first point beyond each end is ≥ ε̂ away in that
     column.
  3. *brute force* against all N points, for whatever is left (none on
     Gaussians; heavy tails and far clusters can leave a few).

  Tiers 2–3 run in ``lax.while_loop``s over blocks of the rows still
  unproved, so they cost time in proportion to those rows, not to N, and
  nothing when tier 1 proved every row.

The distances compared are computed exactly as the brute force computes
them (``max(|x_i − x_j|, |y_i − y_j|)`` in float32, selections and integer
counts), so the counts equal the brute force's bit for bit on the same
standardised inputs (``tests/test_info_plane.py``). Sorting uses
``sorting.argsort_f32`` (radix passes of single-operand ``uint32`` sorts,
several times faster than a key–value sort on XLA:CPU). Time is
O(N log N) plus the tiers' work: ~11 ms at N = 20,000, ρ = 0.5, on one
CPU core, against ~0.6 s for the brute force (``benchmarks/ksg.py``).
Memory is O(N): the sorted copies, tier 1's per-row registers, and one
block of a later tier (at most 512 × 257 or 8 × N values).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntdh_jax import sorting


# The largest k for which ``ksg(method="auto")`` counts here: the tiers'
# work grows with k, and at k = 50 (N = 3,000) the brute force is faster.
AUTO_MAX_K = 10


class _Strips(NamedTuple):
  """The x-sorted points cut into B strips of S, each sorted by y (padding
  at +inf, rank N), flattened strip after strip."""
  x: jax.Array      # f32[B · S]
  y: jax.Array      # f32[B · S]
  rank: jax.Array   # i32[B · S], the point's position in the y order
  below: jax.Array  # i32[B, B + 1], members of strip t with rank < g · S


class _Sorted(NamedTuple):
  """Both sorted orders of the points. Row 0 is the y order, row 1 the x
  order, so the window tier picks a row per point."""
  along: jax.Array   # f32[2, N]: [y in y order, x in x order]
  across: jax.Array  # f32[2, N]: [x in y order, y in x order]
  y_rank: jax.Array  # i32[N], the y-order position of each x-order point

  @property
  def x(self):  # x in x order
    return self.along[1]

  @property
  def y(self):  # y in x order
    return self.across[1]

  @property
  def y_sorted(self):  # y in y order
    return self.along[0]


# Tier 1's (r, m), the window tiers' (w, rows per while-loop block) and the
# brute force's block (module docstring): chosen by timing correlated
# Gaussians (ρ = 0–0.99), Cauchy and clustered data at N = 20,000.
_STRIPS = (2, 6)
_WINDOWS = ((128, 512), (512, 64), (2048, 8))   # (w, rows per block)
_BRUTE_BLOCK = 8
# Tier 1's strip loop is unrolled into one fusion (~10 % faster at
# N = 20,000) up to this k; XLA's compile time grows steeply with the
# unrolled network's depth (33 s at k = 5 against 2.6 s at k = 3).
_UNROLLED_MAX_K = 3


def _first_true(pred, lo, hi, steps: int):
  """Per entry, the first i in [lo, hi) where ``pred(i)`` holds, else hi;
  ``pred`` must be False…True on [lo, hi) and ``steps`` ≥ log2(hi − lo) + 1."""
  def halve(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    found = (mid < hi) & pred(mid)  # mid = hi only once lo = hi
    return jnp.where(found, lo, jnp.minimum(mid + 1, hi)), jnp.where(
        found, mid, hi)
  return jax.lax.fori_loop(0, steps, halve, (lo, hi))[0]


def _steps(n: int) -> int:
  return max(1, n.bit_length()) + 1


def _insert(least, value):
  """``least``, the k smallest values so far in order (ties kept), with
  ``value`` pushed in: one min and one max per entry, elementwise, so XLA
  fuses a whole network with the gathers that feed it."""
  kept = []
  for current in least:
    kept.append(jnp.minimum(current, value))
    value = jnp.maximum(current, value)
  return kept


def kth_smallest(distances, k: int):
  """The k-th smallest entry of each row of ``f32[..., C]`` (ties counted),
  via ``top_k``; ``ksg``'s brute force and this module's long-row tiers
  share it.

  ``min`` over the k values ``top_k`` returns, not its last column: XLA
  rewrites a top_k whose only use is one column into a full sort, which
  made the whole estimator ~40× slower on CPU.
  """
  return -jnp.min(jax.lax.top_k(-distances, k)[0], axis=-1)


def _distance(qx, qy, cx, cy):
  """The max-norm distance, computed as the brute force computes it."""
  return jnp.maximum(jnp.abs(qx - cx), jnp.abs(qy - cy))


def _beyond(q, bound: int, value_at, edge, limit: int, eps):
  """True where the first point beyond a window, ``value_at(edge)`` (none
  if ``edge`` is outside [0, limit)), is ≥ ``eps`` from ``q`` in a sorted
  order, so all points further on are too; ``bound`` is −1 for the low
  side, +1 for the high side."""
  other = value_at(jnp.clip(edge, 0, limit - 1))
  gap = (q - other) if bound < 0 else (other - q)
  return (edge < 0) | (edge >= limit) | (gap >= eps)


def _strip_tier(rows, s: _Sorted, strips: _Strips, k: int, r: int, m: int):
  """``(ε̂ f32[F], proved bool[F])`` of x-order rows ``i32[F]`` from the
  2m + 1 y-nearest points of the 2r + 1 strips around each row."""
  n = s.x.shape[0]
  num = strips.below.shape[0]
  size = strips.x.shape[0] // num
  qx, qy, q_rank = s.x[rows], s.y[rows], s.y_rank[rows]
  home = rows // size
  member = lambda start, j: jnp.clip(start + j, start, start + size - 1)

  def visit(o, state):
    """Pushes strip home + o's window through the network and keeps its
    nearest y gap beyond the window."""
    least, gap = state
    strip = home + o
    real = (strip >= 0) & (strip < num)
    strip = jnp.clip(strip, 0, num - 1)
    start = strip * size
    # The row's place among the strip's y ranks, from the block counts and
    # one look at the next member. Only the window's position depends on
    # it, never the proof's validity: a misplaced window just fails to
    # prove and sends the row to the next tier.
    at = strips.below[strip, q_rank // size]
    at = at + (strips.rank[member(start, at)] < q_rank)
    least = list(least)
    for w in range(-m, m + 1):
      j = at + w
      d = _distance(qx, qy, strips.x[member(start, j)],
                    strips.y[member(start, j)])
      least = _insert(least, jnp.where(real & (j >= 0) & (j < size), d,
                                       jnp.inf))
    low, high = at - m - 1, at + m + 1
    below = jnp.where(real & (low >= 0), qy - strips.y[member(start, low)],
                      jnp.inf)
    above = jnp.where(real & (high < size),
                      strips.y[member(start, high)] - qy, jnp.inf)
    return tuple(least), jnp.minimum(gap, jnp.minimum(below, above))

  inf = jnp.full(rows.shape, jnp.inf, s.x.dtype)
  least, gap = jax.lax.fori_loop(-r, r + 1, visit, ((inf,) * (k + 1), inf),
                                 unroll=k <= _UNROLLED_MAX_K)
  eps = least[-1]
  x_at = lambda j: s.x[j]
  proved = (_beyond(qx, -1, x_at, (home - r) * size - 1, n, eps)
            & _beyond(qx, +1, x_at, (home + r + 1) * size, n, eps)
            & (eps < jnp.inf) & (gap >= eps))
  return eps, proved


def _window_tier(rows, s: _Sorted, k: int, w: int):
  """``(ε̂, proved)`` from the 2w + 1 nearest points in one sorted order:
  that of the sparser marginal around the row (wider spacing of its 2h
  nearest values), whose band |Δ| < ε holds fewer points."""
  n = s.x.shape[0]
  h = min(8, n - 1)
  y_at = s.y_rank[rows]
  spread = lambda v, at: (v[jnp.minimum(at + h, n - 1)]
                          - v[jnp.maximum(at - h, 0)])
  by_x = spread(s.x, rows) >= spread(s.y_sorted, y_at)
  order = by_x.astype(jnp.int32)[:, None]  # the row of s.along, s.across
  a, b = s.along, s.across
  at = jnp.where(by_x, rows, y_at)
  qa, qb = a[order[:, 0], at], b[order[:, 0], at]
  pos = at[:, None] + jnp.arange(-w, w + 1, dtype=jnp.int32)        # [F, C]
  valid = (pos >= 0) & (pos < n)
  pos = jnp.clip(pos, 0, n - 1)
  # max(|Δa|, |Δb|) is the brute force's max(|Δx|, |Δy|) in either order.
  d = jnp.where(valid, _distance(qa[:, None], qb[:, None], a[order, pos],
                                 b[order, pos]), jnp.inf)
  eps = kth_smallest(d, k + 1)
  a_at = lambda j: a[order[:, 0], j]
  return eps, (_beyond(qa, -1, a_at, at - w - 1, n, eps)
               & _beyond(qa, +1, a_at, at + w + 1, n, eps) & (eps < jnp.inf))


def _brute_tier(rows, s: _Sorted, k: int):
  """``(ε, True)`` against all N points, as the brute force finds it."""
  d = _distance(s.x[rows][:, None], s.y[rows][:, None], s.x, s.y)  # [F, N]
  return kth_smallest(d, k + 1), jnp.ones(rows.shape, bool)


def _retry(tier, block: int, eps, proved):
  """Runs ``tier(rows) -> (ε̂, proved)`` on the unproved rows, ``block`` at
  a time, and merges what it proves; nothing when all are proved."""
  n = eps.shape[0]

  def run(state):
    eps, proved = state
    todo = ~proved
    # The unproved rows first, in order (a cumulative sum and a scatter:
    # half the time of jnp.nonzero on XLA:CPU); zeros after them.
    slot = jnp.where(todo, jnp.cumsum(todo) - 1, n + block)
    pending = jnp.zeros(n + block, jnp.int32).at[slot].set(
        jnp.arange(n, dtype=jnp.int32), mode="drop")
    count = jnp.sum(todo)

    def step(state):
      b, eps, proved = state
      rows = jax.lax.dynamic_slice(pending, (b * block,), (block,))
      new, ok = tier(rows)
      # Padding past the pending rows and unproved rows write nothing.
      target = jnp.where(ok & (b * block + jnp.arange(block) < count), rows, n)
      return (b + 1, eps.at[target].set(new, mode="drop"),
              proved.at[target].set(True, mode="drop"))

    return jax.lax.while_loop(lambda state: state[0] * block < count, step,
                              (0, eps, proved))[1:]

  return jax.lax.cond(jnp.all(proved), lambda state: state, run, (eps, proved))


def _strip_size(n: int) -> int:
  """S: the power of two nearest √N, at least 8."""
  return 1 << max(3, round(math.log2(n) / 2))


def _strips(s: _Sorted, size: int) -> _Strips:
  n = s.x.shape[0]
  num = -(-n // size)
  pad = num * size - n
  fill = lambda v, value: jnp.concatenate([v, jnp.full(pad, value, v.dtype)])
  x, y, rank = fill(s.x, jnp.inf), fill(s.y, jnp.inf), fill(s.y_rank, n)
  bits = max(1, (size - 1).bit_length())
  # One single-operand sort per strip: rank above the in-strip position.
  words = (rank.reshape(num, size).astype(jnp.uint32) << bits) | jnp.arange(
      size, dtype=jnp.uint32)
  within = (jax.lax.sort(words, dimension=1)
            & jnp.uint32((1 << bits) - 1)).astype(jnp.int32)
  at = (jnp.arange(num, dtype=jnp.int32)[:, None] * size + within).reshape(-1)
  # below[t, g]: strip t's members in rank blocks 0 … g − 1 (blocks of S).
  strip = jnp.arange(num * size, dtype=jnp.int32) // size
  counts = jnp.zeros((num, num + 1), jnp.int32).at[strip, rank // size + 1].add(
      1, mode="drop")
  return _Strips(x[at], y[at], rank[at], jnp.cumsum(counts, axis=1))


def counts(x, y, k: int):
  """``(n_x i32[N], n_y i32[N])``: KSG's marginal counts (the brute force's
  ``#{j ≠ i : |x_j − x_i| ≤ nextafter(ε_i, 0)}``, likewise y) of
  ``f32[N]`` x and y, N > k, in their original order."""
  n = x.shape[0]
  by_x, by_y = sorting.argsort_f32(x), sorting.argsort_f32(y)
  y_rank = jnp.zeros(n, jnp.int32).at[by_y].set(jnp.arange(n, dtype=jnp.int32))
  s = _Sorted(jnp.stack([y[by_y], x[by_x]]), jnp.stack([x[by_y], y[by_x]]),
              y_rank[by_x])
  strips = _strips(s, _strip_size(n))
  rows = jnp.arange(n, dtype=jnp.int32)
  eps, proved = _strip_tier(rows, s, strips, k, *_STRIPS)
  for w, block in _WINDOWS:
    eps, proved = _retry(lambda r, w=w: _window_tier(r, s, k, w),
                         min(block, n), eps, proved)
  eps, proved = _retry(lambda r: _brute_tier(r, s, k), min(_BRUTE_BLOCK, n),
                       eps, proved)
  radius = jnp.nextafter(eps, 0.0)
  steps = _steps(n)

  def run(values, at, query):
    """#{j ≠ at : |query − values[j]| ≤ radius} in sorted ``values``."""
    first = _first_true(lambda j: query - values[j] <= radius,
                        jnp.zeros_like(at), at, steps)
    past = _first_true(lambda j: values[j] - query > radius, at,
                       jnp.full_like(at, n), steps)
    return past - first - 1

  n_x = run(s.x, rows, s.x)
  n_y = run(s.y_sorted, s.y_rank, s.y)
  unsort = lambda v: jnp.zeros_like(v).at[by_x].set(v)
  return unsort(n_x), unsort(n_y)
