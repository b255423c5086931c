"""Tests of ntdh_jax.masks: Algorithm 1 (permutation importance, feature
masks) and Algorithm 2 (sample masks), concrete and traced."""

import fractions
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import masks

KEY = jax.random.PRNGKey(0)
RATIOS = (0.0, 0.1, 0.5, 0.9)
# Compiled once per (kind, size): eager op-by-op dispatch is far slower.
_feature_mask = jax.jit(masks.feature_keep_mask, static_argnames="kind")
_sample_mask = jax.jit(masks.sample_keep_mask, static_argnames="kind")
_normalise = jax.jit(masks.normalise_importance)


def _num_removed(ratio, size):
  """floor(ratio · size) in exact arithmetic on the decimal ``ratio``."""
  return math.floor(fractions.Fraction(str(ratio)) * size)


def _distinct_scores(size, seed):
  """``f32[size]`` of distinct values in a random order (no ties to break)."""
  order = np.random.RandomState(seed).permutation(size)
  return jnp.asarray(order / size, jnp.float32)


# -------------------------------------------------- permutation importance

_W = jnp.asarray(np.random.RandomState(1).normal(size=(5, 3)), jnp.float32)


def _score(x):
  """A non-linear score reading columns 0..3 only (column 4 is ignored)."""
  return jnp.mean(jnp.tanh(x[:, :4] @ _W[:4]) ** 2)


def _importance_loop(score_fn, x, key, num_repeats):
  """Algorithm 1 written as the plain double loop over repeats and columns."""
  x = np.asarray(x)
  n, d = x.shape
  rows_of = jax.jit(lambda m, j: jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(key, m), j), n))
  out = np.zeros((num_repeats, d), np.float32)
  for m in range(num_repeats):
    for j in range(d):
      rows = np.asarray(rows_of(m, j))
      permuted = x.copy()
      permuted[:, j] = x[rows, j]
      out[m, j] = score_fn(jnp.asarray(permuted))
  return out


def test_permutation_importance_equals_double_loop():
  """The vmapped M×D computation is Algorithm 1's double loop, same keys."""
  x = jnp.asarray(np.random.RandomState(0).normal(size=(24, 5)), jnp.float32)
  fast = jax.jit(masks.permutation_importance, static_argnums=(0, 3))(
      _score, x, KEY, 3)
  slow = _importance_loop(jax.jit(_score), x, KEY, 3)
  assert fast.shape == (3, 5) and fast.dtype == jnp.float32
  np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)
  # Repeats and columns drew different permutations...
  assert len(np.unique(np.asarray(fast[:, :4]))) == 12
  # ...and permuting the column the score ignores changes nothing.
  np.testing.assert_allclose(fast[:, 4], np.full(3, jax.jit(_score)(x)),
                             rtol=1e-6)


def test_permutation_importance_rejects_bad_input():
  """A non-[N, D] input or fewer than one repeat is a ValueError."""
  with pytest.raises(ValueError, match="x must be"):
    masks.permutation_importance(_score, jnp.ones((5,)), KEY, 2)
  with pytest.raises(ValueError, match="x must be"):
    masks.permutation_importance(_score, jnp.ones((0, 5)), KEY, 2)
  with pytest.raises(ValueError, match="num_repeats"):
    masks.permutation_importance(_score, jnp.ones((4, 5)), KEY, 0)


# --------------------------------------------------------- normalisation


def test_normalise_importance_is_min_max_of_the_repeat_mean():
  """Mean over repeats, then (v − min)/(max − min): exactly 0 and 1 at the ends."""
  scores = np.random.RandomState(2).normal(size=(4, 9)).astype(np.float32)
  out = _normalise(jnp.asarray(scores))
  mean = scores.astype(np.float64).mean(axis=0)
  expected = (mean - mean.min()) / (mean.max() - mean.min())
  assert out.shape == (9,)
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
  assert out[np.argmin(mean)] == 0.0 and out[np.argmax(mean)] == 1.0


def test_normalise_importance_of_constant_scores_is_zero():
  """Equal scores give zeros, not 0/0 = NaN."""
  out = _normalise(jnp.full((4, 9), 0.7, jnp.float32))
  np.testing.assert_array_equal(out, np.zeros(9, np.float32))


# ---------------------------------------------------------- feature masks


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("size", (50, 7))
def test_feature_mask_true_and_false_remove_the_extremes(ratio, size):
  """"true" removes the floor(r·D) least important features, "false" the
  floor(r·D) most important; both keep the rest."""
  importance = _distinct_scores(size, seed=size)
  removed = _num_removed(ratio, size)
  order = np.argsort(np.asarray(importance))  # ascending importance
  for kind, gone in (("true", order[:removed]),
                     ("false", order[size - removed:])):
    mask = _feature_mask(importance, ratio, kind, KEY)
    assert mask.shape == (size,) and mask.dtype == jnp.float32
    expected = np.ones(size, np.float32)
    expected[gone] = 0.0
    np.testing.assert_array_equal(mask, expected, err_msg=kind)


@pytest.mark.parametrize("ratio", RATIOS)
def test_feature_mask_random_removes_a_keyed_subset(ratio):
  """"random" removes floor(r·D) features, ignoring importance; the subset is
  fixed by the key and changes with it."""
  importance = _distinct_scores(50, seed=3)
  removed = _num_removed(ratio, 50)
  a = _feature_mask(importance, ratio, "random", KEY)
  b = _feature_mask(importance, ratio, "random", KEY)
  c = _feature_mask(importance, ratio, "random", jax.random.PRNGKey(1))
  for mask in (a, c):
    assert set(np.unique(np.asarray(mask))) <= {0.0, 1.0}
    assert int(np.sum(np.asarray(mask) == 0)) == removed
  np.testing.assert_array_equal(a, b)
  if 0 < removed < 50:
    assert not np.array_equal(a, c)
    # Not the importance order in disguise.
    true = _feature_mask(importance, ratio, "true", KEY)
    assert not np.array_equal(a, true)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_feature_mask_traced_ratio_under_jit_and_vmap(kind):
  """A traced ratio (jit of vmap over ratios) gives the concrete masks."""
  importance = _distinct_scores(50, seed=4)
  ratios = jnp.asarray(RATIOS, jnp.float32)
  traced = jax.jit(jax.vmap(
      lambda r: masks.feature_keep_mask(importance, r, kind, KEY)))(ratios)
  concrete = np.stack([masks.feature_keep_mask(importance, r, kind, KEY)
                       for r in RATIOS])
  np.testing.assert_array_equal(traced, concrete)


def test_kind_codes_select_the_named_kinds():
  """Kinds may be given as their index in MASK_KINDS; a traced (float, as
  hparams are) code under vmap gives the named kind's mask."""
  assert [int(masks.kind_code(k)) for k in masks.MASK_KINDS] == [0, 1, 2]
  values = _distinct_scores(13, seed=13)
  for fn in (masks.feature_keep_mask, masks.sample_keep_mask):
    traced = jax.jit(jax.vmap(lambda c, fn=fn: fn(values, 0.5, c, KEY)))(
        jnp.arange(3, dtype=jnp.float32))
    for code, kind in enumerate(masks.MASK_KINDS):
      np.testing.assert_array_equal(traced[code], fn(values, 0.5, kind, KEY),
                                    err_msg=f"{fn.__name__} {kind}")
    assert len({tuple(np.asarray(m)) for m in traced}) == 3


def test_feature_mask_rejects_bad_kind_and_ratio():
  """Unknown kinds and ratios outside [0, 1) raise a ValueError naming them."""
  importance = _distinct_scores(10, seed=5)
  for kind in ("top", 3, -1, 0.5):
    with pytest.raises(ValueError, match="kind"):
      masks.feature_keep_mask(importance, 0.5, kind, KEY)
  for ratio in (1.0, -0.1, 1.5):
    with pytest.raises(ValueError, match="ratio"):
      masks.feature_keep_mask(importance, ratio, "true", KEY)
  with pytest.raises(ValueError, match="ratio"):
    masks.feature_keep_mask(importance, jnp.full((2,), 0.5), "true", KEY)


def test_mask_count_is_exact_when_ratio_times_size_is_whole():
  """ratio·size = 53 removes exactly 53 entries (features and samples)."""
  values = _distinct_scores(100, seed=6)
  feature = masks.feature_keep_mask(values, 0.53, "true", KEY)
  sample = masks.sample_keep_mask(values, 0.53, "true", KEY)
  assert int(np.sum(np.asarray(feature) == 0)) == 53
  assert int(np.sum(np.asarray(sample) == 0)) == 53


# ----------------------------------------------------------- sample masks


@pytest.mark.parametrize("ratio", RATIOS)
def test_sample_mask_excludes_the_extremes_of_ncjsd(ratio):
  """"true" drops the floor(r·N) largest NCJSD, "false" the smallest,
  "random" floor(r·N) samples of the key's choosing."""
  ncjsd = _distinct_scores(13, seed=7)
  removed = _num_removed(ratio, 13)
  order = np.argsort(np.asarray(ncjsd))  # ascending NCJSD
  for kind, gone in (("true", order[13 - removed:]), ("false", order[:removed])):
    mask = _sample_mask(ncjsd, ratio, kind, KEY)
    assert mask.shape == (13,) and mask.dtype == jnp.float32
    expected = np.ones(13, np.float32)
    expected[gone] = 0.0
    np.testing.assert_array_equal(mask, expected, err_msg=kind)
  random = np.asarray(_sample_mask(ncjsd, ratio, "random", KEY))
  assert set(np.unique(random)) <= {0.0, 1.0}
  assert int(np.sum(random == 0)) == removed
  if 0 < removed < 13:
    other = _sample_mask(ncjsd, ratio, "random", jax.random.PRNGKey(9))
    assert not np.array_equal(random, other)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_sample_mask_ratio_zero_keeps_all(kind):
  """r = 0 keeps every sample, whatever the kind."""
  ncjsd = _distinct_scores(13, seed=8)
  np.testing.assert_array_equal(_sample_mask(ncjsd, 0.0, kind, KEY),
                                np.ones(13, np.float32))


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_sample_mask_traced_ratio_under_vmap(kind):
  """vmap over traced ratios (and over batches) matches the concrete masks."""
  ncjsd = jnp.stack([_distinct_scores(13, seed=s) for s in (10, 11)])
  ratios = jnp.asarray(RATIOS, jnp.float32)
  fn = jax.jit(jax.vmap(jax.vmap(
      lambda v, r: masks.sample_keep_mask(v, r, kind, KEY),
      in_axes=(None, 0)), in_axes=(0, None)))
  traced = fn(ncjsd, ratios)
  assert traced.shape == (2, len(RATIOS), 13)
  for b in range(2):
    for i, r in enumerate(RATIOS):
      np.testing.assert_array_equal(
          traced[b, i], masks.sample_keep_mask(ncjsd[b], r, kind, KEY))


def test_sample_mask_rejects_bad_kind_and_ratio():
  """Unknown kinds and ratios outside [0, 1) raise a ValueError naming them."""
  ncjsd = _distinct_scores(10, seed=12)
  for kind in ("largest", 3):
    with pytest.raises(ValueError, match="kind"):
      masks.sample_keep_mask(ncjsd, 0.5, kind, KEY)
  for ratio in (1.0, -0.5):
    with pytest.raises(ValueError, match="ratio"):
      masks.sample_keep_mask(ncjsd, ratio, "false", KEY)
