"""UCMKD's unpaired batches and robustness pools (``data/unpaired.py``)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntdh_jax
from ntdh_jax.data import unpaired
from tests.fast_jit import fast_jit

C = 5
# Classes of 6, 9, 2, 13 and 4 rows, shuffled: uneven, every class splittable.
SIZES = np.array([6, 9, 2, 13, 4])
LABELS = np.random.RandomState(0).permutation(
    np.repeat(np.arange(C), SIZES)).astype(np.int32)
N = LABELS.shape[0]
KEY = jax.random.PRNGKey(0)
# The code's presets (ratio 0.7 / 0.5 / 0.3 is the audio teacher's share, so
# the image student's is 0.3 / 0.5 / 0.7; imbalance 5 / 10 / 50), and more.
SETTINGS = [(1.0, 1.0), (0.3, 5.0), (0.5, 10.0), (0.7, 50.0), (0.5, 1.0),
            (1.0, 10.0), (0.25, 2.0), (0.9, 3.0), (0.05, 1.5)]
RUNS = len(SETTINGS)  # every call of _pools_runs maps this many runs


def _pools(key, share, imbalance, labels=LABELS):
  return unpaired.pools(labels, key, student_share=share, imbalance=imbalance,
                        num_classes=C)


@fast_jit
@chex.assert_max_traces(n=1)
def _pools_runs(keys, shares, imbalances):
  """``pools`` vmapped over runs, hyperparameters traced (one trace, ever)."""
  return jax.vmap(lambda k, s, i: unpaired.pools(
      LABELS, k, student_share=s, imbalance=i, num_classes=C))(
          keys, shares, imbalances)


def _class_counts(mask, labels=LABELS):
  return np.bincount(labels[np.asarray(mask)], minlength=C)


def _round(x):
  return math.floor(x + 0.5)


def test_pairings():
  assert unpaired.PAIRINGS == ("paired", "class_paired", "unpaired")


# ------------------------------------------------------------------ pools


@pytest.mark.parametrize("share, imbalance", SETTINGS)
def test_pool_counts_equal_the_pools_counts(share, imbalance):
  student, teacher = unpaired.pool_counts(LABELS, share, imbalance, C)
  assert student.dtype == teacher.dtype == np.int32
  assert student.shape == teacher.shape == (C,)
  for seed in range(3):  # counts do not depend on the key
    p = _pools(jax.random.PRNGKey(seed), share, imbalance)
    chex.assert_shape([p.student, p.teacher], (N,))
    assert p.student.dtype == p.teacher.dtype == jnp.bool_
    np.testing.assert_array_equal(_class_counts(p.student), student)
    np.testing.assert_array_equal(_class_counts(p.teacher), teacher)


def test_traced_pools_counts_equal_pool_counts():
  """The float32 arithmetic of traced hyperparameters gives the host's
  numbers, for every setting in one vmapped program."""
  shares, imbalances = (np.array(v, np.float32) for v in zip(*SETTINGS))
  keys = jax.random.split(KEY, len(SETTINGS))
  runs = _pools_runs(keys, shares, imbalances)
  for i, (share, imbalance) in enumerate(SETTINGS):
    student, teacher = unpaired.pool_counts(LABELS, share, imbalance, C)
    np.testing.assert_array_equal(_class_counts(runs.student[i]), student)
    np.testing.assert_array_equal(_class_counts(runs.teacher[i]), teacher)


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5, 0.7, 0.95])
def test_mismatch_gives_disjoint_covering_pools_non_empty_in_every_class(
    share):
  runs = _pools_runs(jax.random.split(KEY, RUNS),
                     np.full(RUNS, share, np.float32),
                     np.ones(RUNS, np.float32))
  for student, teacher in zip(np.asarray(runs.student),
                              np.asarray(runs.teacher)):
    assert not np.any(student & teacher)
    assert np.all(student | teacher)
    assert np.all(_class_counts(student) >= 1)
    assert np.all(_class_counts(teacher) >= 1)
    k = np.clip([_round(share * n) for n in SIZES], 1, SIZES - 1)
    np.testing.assert_array_equal(_class_counts(student), k)


def test_imbalance_follows_the_exponential_profile():
  share, imbalance = 0.7, 50.0
  student, teacher = unpaired.pool_counts(LABELS, share, imbalance, C)
  k = np.clip([_round(share * n) for n in SIZES], 1, SIZES - 1)
  want = [max(1, _round(k[c] * imbalance ** (-c / (C - 1))))
          for c in range(C)]
  np.testing.assert_array_equal(student, want)
  np.testing.assert_array_equal(teacher, SIZES - k)  # unaffected
  # Without mismatch the tail is over whole classes: 13 rows of class 3 at
  # 50^(-3/4) = 0.0532 keep round(0.69) = 1; class 0 keeps all 6.
  student, teacher = unpaired.pool_counts(LABELS, 1.0, imbalance, C)
  # 9 · 50^(-1/4) = 3.38 -> 3; 2 · 50^(-1/2) = 0.28 -> 1 (at least one).
  np.testing.assert_array_equal(student, [6, 3, 1, 1, 1])
  np.testing.assert_array_equal(teacher, SIZES)


def test_imbalance_keeps_a_prefix_of_the_same_rank():
  """Same key: the imbalanced student pool is a subset of the balanced one,
  and the teacher's pool does not move."""
  key = jax.random.PRNGKey(3)
  balanced = _pools(key, 0.5, 1.0)
  tail = _pools(key, 0.5, 10.0)
  assert np.all(np.asarray(balanced.student) | ~np.asarray(tail.student))
  np.testing.assert_array_equal(tail.teacher, balanced.teacher)
  assert np.asarray(tail.student).sum() < np.asarray(balanced.student).sum()


def test_share_one_gives_every_row_to_both():
  p = _pools(KEY, 1.0, 1.0)
  assert np.all(np.asarray(p.student)) and np.all(np.asarray(p.teacher))


def test_absent_class_has_empty_pools():
  labels = LABELS.copy()
  labels[labels == 2] = 0  # class 2 absent
  student, teacher = unpaired.pool_counts(labels, 0.5, 10.0, C)
  assert student[2] == teacher[2] == 0
  p = _pools(KEY, 0.5, 10.0, labels)
  np.testing.assert_array_equal(_class_counts(p.student, labels), student)
  np.testing.assert_array_equal(_class_counts(p.teacher, labels), teacher)


def test_pools_deterministic_per_key():
  a, b = _pools(KEY, 0.5, 1.0), _pools(KEY, 0.5, 1.0)
  np.testing.assert_array_equal(a.student, b.student)
  np.testing.assert_array_equal(a.teacher, b.teacher)
  c = _pools(jax.random.PRNGKey(1), 0.5, 1.0)
  assert not np.array_equal(a.student, c.student)


def test_pools_jit_and_vmap_equal_eager_and_a_loop():
  shares, imbalances = (np.array(v, np.float32) for v in zip(*SETTINGS))
  keys = jax.random.split(jax.random.PRNGKey(7), RUNS)
  runs = _pools_runs(keys, shares, imbalances)
  for i, (share, imbalance) in enumerate(SETTINGS):
    eager = _pools(keys[i], share, imbalance)
    np.testing.assert_array_equal(runs.student[i], eager.student)
    np.testing.assert_array_equal(runs.teacher[i], eager.teacher)
  # Other traced values (and the earlier tests' calls) reuse the one trace.
  _pools_runs(keys, shares[::-1].copy(), imbalances[::-1].copy())


# ------------------------------------------------------------------ drawing


def test_pool_index_layout():
  p = _pools(KEY, 0.5, 10.0)
  index = unpaired.pool_index(LABELS, p.student, C)
  order, start, count = (np.asarray(x) for x in index[:3])
  assert sorted(order) == list(range(N))
  np.testing.assert_array_equal(LABELS[order], np.sort(LABELS))
  np.testing.assert_array_equal(start, np.cumsum(SIZES) - SIZES)
  np.testing.assert_array_equal(count, _class_counts(p.student))
  assert int(index.size) == count.sum()
  pool = np.asarray(p.student)
  for c in range(C):
    rows = order[start[c]:start[c] + SIZES[c]]
    assert np.all(pool[rows[:count[c]]]) and not np.any(pool[rows[count[c]:]])


def _step(key, share, imbalance):
  """One run's step: pools, indexes, B = 4000 rows and their partners by
  each pairing (traced hyperparameters)."""
  k_pools, k_rows, k_pair = jax.random.split(key, 3)
  p = unpaired.pools(LABELS, k_pools, student_share=share,
                     imbalance=imbalance, num_classes=C)
  student = unpaired.pool_index(LABELS, p.student, C)
  teacher = unpaired.pool_index(LABELS, p.teacher, C)
  rows = unpaired.draw_rows(k_rows, student, 4000)
  return p, rows, {pairing: unpaired.partners(k_pair, rows, LABELS, pairing,
                                              teacher)
                   for pairing in unpaired.PAIRINGS}


_draw_and_pair = fast_jit(_step)


def test_draw_rows_is_uniform_over_the_pool():
  """Chi-square goodness of fit against the uniform law on the pool: the
  pool holds m = 23 rows (4, 6, 1, 9, 3 by class), so with 4000 draws (≈ 174
  per row) the statistic is about chi-square with 22 degrees of freedom
  (mean 22, sd 6.6); a correct sampler exceeds 80 with probability 1.6e-8,
  while drawing classes equally and then a row within the class (the easy
  mistake) gives an expected 2849 here."""
  p, rows, _ = _draw_and_pair(KEY, np.float32(0.7), np.float32(1.0))
  pool, rows = np.asarray(p.student), np.asarray(rows)
  assert rows.shape == (4000,) and rows.dtype == np.int32
  assert np.all(pool[rows])
  members = np.flatnonzero(pool)
  assert len(members) == 23
  observed = np.bincount(rows, minlength=N)[members]
  expected = len(rows) / len(members)
  assert ((observed - expected) ** 2 / expected).sum() < 80


def test_partners_class_paired_stays_in_class_and_teacher_pool():
  keys = jax.random.split(jax.random.PRNGKey(11), 4)
  for key, (share, imbalance) in zip(keys, [(0.3, 5.0), (0.5, 10.0),
                                            (0.7, 50.0), (1.0, 1.0)]):
    p, rows, pairs = _draw_and_pair(key, np.float32(share),
                                    np.float32(imbalance))
    rows, partner = np.asarray(rows), np.asarray(pairs["class_paired"])
    np.testing.assert_array_equal(LABELS[partner], LABELS[rows])
    assert np.all(np.asarray(p.teacher)[partner])
    # every class is drawn, and each class's partners cover its teacher pool
    assert set(LABELS[rows]) == set(range(C))
    np.testing.assert_array_equal(
        np.unique(partner[LABELS[rows] == 3]),
        np.flatnonzero(np.asarray(p.teacher) & (LABELS == 3)))
    np.testing.assert_array_equal(pairs["paired"], rows)


def test_partners_unpaired_ignore_labels():
  """Same-class share ≈ Σ_c p_c q_c (student-class and teacher-pool class
  frequencies), not 1: with both pools every row, Σ (n_c / N)² = 0.236.
  4000 pairs give a standard error below 0.007; the tolerance is 0.03."""
  p, rows, pairs = _draw_and_pair(jax.random.PRNGKey(5), np.float32(1.0),
                                  np.float32(1.0))
  rows, partner = np.asarray(rows), np.asarray(pairs["unpaired"])
  assert np.all(np.asarray(p.teacher)[partner])
  same = np.mean(LABELS[partner] == LABELS[rows])
  expected = np.sum((SIZES / N) ** 2)
  assert abs(same - expected) < 0.03
  # partners' class frequencies do not depend on the student's class
  for c in (0, 3):
    freq = np.bincount(LABELS[partner[LABELS[rows] == c]], minlength=C)
    freq = freq / freq.sum()
    np.testing.assert_allclose(freq, SIZES / N, atol=0.08)


def test_draws_deterministic_per_key_and_jit_equals_eager():
  a = _draw_and_pair(KEY, np.float32(0.5), np.float32(10.0))
  b = _draw_and_pair(KEY, np.float32(0.5), np.float32(10.0))
  c = _draw_and_pair(jax.random.PRNGKey(1), np.float32(0.5),
                     np.float32(10.0))
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a[1], c[1])
  assert not np.array_equal(a[2]["unpaired"], c[2]["unpaired"])
  # eager, step by step, with the same keys
  k_pools, k_rows, k_pair = jax.random.split(KEY, 3)
  p = _pools(k_pools, 0.5, 10.0)
  student = unpaired.pool_index(LABELS, p.student, C)
  teacher = unpaired.pool_index(LABELS, p.teacher, C)
  rows = unpaired.draw_rows(k_rows, student, 4000)
  np.testing.assert_array_equal(rows, a[1])
  for pairing in unpaired.PAIRINGS:
    np.testing.assert_array_equal(
        unpaired.partners(k_pair, rows, LABELS, pairing, teacher),
        a[2][pairing])


def test_vmapped_draws_equal_a_loop():
  keys = jax.random.split(jax.random.PRNGKey(2), 3)
  shares = np.array([0.3, 0.5, 1.0], np.float32)
  imbalances = np.array([5.0, 1.0, 50.0], np.float32)

  @fast_jit
  def runs(keys, shares, imbalances):
    return jax.vmap(_step)(keys, shares, imbalances)

  batched = runs(keys, shares, imbalances)
  for i in range(3):
    one = _draw_and_pair(keys[i], shares[i], imbalances[i])
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], batched), one)


# ------------------------------------------------------------------ errors


def _raises(match, fn, *args, **kwargs):
  with pytest.raises(ValueError, match=match):
    fn(*args, **kwargs)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5, float("nan")])
def test_bad_student_share(share):
  _raises("student_share", unpaired.pool_counts, LABELS, share, 1.0, C)
  _raises("student_share", _pools, KEY, share, 1.0)


@pytest.mark.parametrize("imbalance", [0.5, 0.0, float("inf"),
                                       float("nan")])
def test_bad_imbalance(imbalance):
  _raises("imbalance", unpaired.pool_counts, LABELS, 0.5, imbalance, C)
  _raises("imbalance", _pools, KEY, 0.5, imbalance)


def test_bad_labels():
  _raises("labels", unpaired.pool_counts, LABELS.reshape(1, -1), 0.5, 1.0, C)
  _raises("labels", unpaired.pool_counts, LABELS[:0], 0.5, 1.0, C)
  high = LABELS.copy()
  high[3] = C
  _raises(r"labels must lie in \[0, 5\)", unpaired.pool_counts, high, 0.5,
          1.0, C)
  _raises("labels", _pools, KEY, 0.5, 1.0, -LABELS - 1)
  with pytest.raises(TypeError, match="labels"):
    unpaired.pool_counts(LABELS.astype(np.float32), 0.5, 1.0, C)
  _raises("num_classes", unpaired.pool_counts, LABELS, 0.5, 1.0, 0)


def test_one_row_class_under_mismatch():
  labels = np.array([0, 0, 1, 2, 2, 2, 3, 3, 4, 4], np.int32)
  _raises("labels: class 1 has one row", unpaired.pool_counts, labels, 0.5,
          1.0, C)
  _raises("labels: class 1 has one row", _pools, KEY, 0.5, 1.0, labels)
  # No mismatch: fine. Traced: the row is in both pools (the code's fallback).
  student, teacher = unpaired.pool_counts(labels, 1.0, 1.0, C)
  np.testing.assert_array_equal(teacher, [2, 1, 3, 2, 2])
  p = jax.jit(lambda s: _pools(KEY, s, 1.0, labels))(0.5)
  assert bool(p.student[2]) and bool(p.teacher[2])


def test_traced_bad_value_raises_under_checked():
  run = ntdh_jax.checked(jax.jit(lambda s, i: _pools(KEY, s, i)))
  _raises("student_share must lie in", run, 1.5, 1.0)
  _raises("imbalance must be >= 1", run, 0.5, 0.5)


def test_bad_drawing_arguments():
  p = _pools(KEY, 0.5, 1.0)
  index = unpaired.pool_index(LABELS, p.teacher, C)
  rows = jnp.arange(4, dtype=jnp.int32)
  _raises(r"pairing must be one of \('paired', 'class_paired', 'unpaired'\)",
          unpaired.partners, KEY, rows, LABELS, "random", index)
  _raises("batch_size", unpaired.draw_rows, KEY, index, 0)
  _raises("pool must have shape", unpaired.pool_index, LABELS,
          p.teacher[:-1], C)
  _raises("student_rows", unpaired.partners, KEY, rows[None], LABELS,
          "class_paired", index)
  with pytest.raises(TypeError, match="index"):
    unpaired.draw_rows(KEY, tuple(index), 4)
  with pytest.raises(TypeError, match="pool"):
    unpaired.pool_index(LABELS, p.teacher.astype(jnp.int32), C)
