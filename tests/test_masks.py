"""Tests of ntdh_jax.masks: Algorithm 1 (permutation importance, feature
masks) and Algorithm 2 (sample masks), concrete and traced."""

import fractions
import functools
import math

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import masks
from tests import reference
from tests.fast_jit import fast_jit

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
_TARGET = jnp.asarray(np.random.RandomState(2).normal(size=(24, 3)),
                      jnp.float32)


def _rows_of(a, rows):
  """The entries of ``a`` for a contiguous block of rows, as documented."""
  return jax.lax.dynamic_slice_in_dim(a, rows[0], rows.shape[0])


def _score(x_rows, rows):
  """Per-example score reading columns 0..3 only (column 4 is ignored) and a
  per-row target looked up through ``rows``."""
  h = jnp.tanh(x_rows[:, :4] @ _W[:4])
  return jnp.mean((h - _rows_of(_TARGET, rows)) ** 2, axis=-1)


def _score64(x):
  """``_score`` of a whole [24, 5] input in float64 NumPy."""
  w, target = np.asarray(_W, np.float64), np.asarray(_TARGET, np.float64)
  return np.mean((np.tanh(x[:, :4] @ w[:4]) - target) ** 2, axis=-1)


def _permutation(key, n):
  rows = jax.jit(lambda m, j: jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(key, m), j), n))
  return lambda m, j: np.asarray(rows(m, j))


def _shared_permutation(key, n):
  """The documented ``permutations="shared"`` draw, one repeat at a time
  (the library draws all M at once, vmapped): unit j ignored."""
  rows = jax.jit(lambda m: jax.random.permutation(jax.random.fold_in(key, m),
                                                  n))
  return lambda m, j: np.asarray(rows(m))


_X = jnp.asarray(np.random.RandomState(0).normal(size=(24, 5)), jnp.float32)
_importance = jax.jit(masks.permutation_importance,
                      static_argnames=("score_fn", "num_repeats", "unit_batch",
                                       "row_batch", "permutations"))


def _importance_of(x, unit_batch=15, row_batch=None, permutations="per_unit"):
  """3 repeats × 5 columns; by default all 15 in one step and one block."""
  return _importance(score_fn=_score, x=x, key=KEY, num_repeats=3,
                     unit_batch=unit_batch, row_batch=row_batch,
                     permutations=permutations)


@pytest.mark.parametrize("n", [1, 2, 3, 24, 1347, 65536, 65537])
def test_the_draws_are_jax_random_permutation_bit_for_bit(n):
  """The radix-sorted draw gives jax.random.permutation's permutation, so
  importances, masks and every result built on them are unchanged; 65,537
  rows need three radix passes instead of two."""
  keys = jax.random.split(jax.random.key(n), 3)
  got = jax.jit(jax.vmap(masks._permutation, in_axes=(0, None)),
                static_argnums=1)(keys, n)
  want = jax.vmap(jax.random.permutation, in_axes=(0, None))(keys, n)
  np.testing.assert_array_equal(got, want)
  legacy = jax.random.PRNGKey(n)
  np.testing.assert_array_equal(masks._permutation(legacy, n),
                                jax.random.permutation(legacy, n))


def test_permutation_importance_equals_float64_double_loop():
  """Algorithm 1's double loop over repeats and columns, same permutations."""
  fast = _importance_of(_X)
  want = reference.permutation_importance(_score64, _X, _permutation(KEY, 24),
                                          3)
  assert fast.shape == (3, 5) and fast.dtype == jnp.float32
  np.testing.assert_allclose(fast, want, rtol=1e-6, atol=1e-7)
  # Repeats and columns drew different permutations...
  assert len(np.unique(np.asarray(fast[:, :4]))) == 12
  # ...and permuting the column the score ignores changes nothing.
  np.testing.assert_allclose(fast[:, 4], np.full(3, _score64(
      np.asarray(_X, np.float64)).mean()), rtol=1e-6)


def test_shared_permutations_equal_float64_double_loop():
  """permutations="shared": the double loop with one permutation per repeat,
  fold_in(key, m), moving every column in that repeat."""
  shared = _importance_of(_X, permutations="shared")
  want = reference.permutation_importance(
      _score64, _X, _shared_permutation(KEY, 24), 3)
  assert shared.shape == (3, 5) and shared.dtype == jnp.float32
  np.testing.assert_allclose(shared, want, rtol=1e-6, atol=1e-7)
  # Not the per-unit draws, and the repeats still drew different rows...
  assert not np.allclose(shared, _importance_of(_X))
  assert len(np.unique(np.asarray(shared[:, :4]))) == 12
  # ...while the ignored column keeps the unpermuted score.
  np.testing.assert_allclose(shared[:, 4], np.full(3, _score64(
      np.asarray(_X, np.float64)).mean()), rtol=1e-6)


@pytest.mark.parametrize("permutations", masks.PERMUTATIONS)
@pytest.mark.parametrize("unit_batch,row_batch", [(1, 5), (4, 7)])
def test_batched_importance_equals_unbatched(unit_batch, row_batch,
                                             permutations):
  """Blocks of units (15 pairs in steps of 4: a remainder step) and of rows
  (24 rows in blocks of 5 or 7: a partial last block) give the one-block
  result up to float32 round-off."""
  whole = _importance_of(_X, permutations=permutations)
  batched = _importance_of(_X, unit_batch=unit_batch, row_batch=row_batch,
                           permutations=permutations)
  np.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-7)


def test_shared_importance_vmaps_over_keys():
  """Vmapped over keys (e.g. seeds of a sweep), each row is that key's
  unvmapped result."""
  keys = jax.random.split(KEY, 3)
  run = lambda x, key: masks.permutation_importance(
      _score, x, key, 2, unit_batch=4, row_batch=7, permutations="shared")
  together = jax.jit(jax.vmap(run, in_axes=(None, 0)))(_X, keys)
  one = jax.jit(run)
  for i, key in enumerate(keys):
    np.testing.assert_allclose(together[i], one(_X, key), rtol=1e-6,
                               atol=1e-7)


def test_single_block_is_the_full_batch_mean_bit_for_bit():
  """One row block: exactly jnp.mean of the per-example score of the whole
  permuted input, i.e. what the unbatched implementation returned."""
  n, d = _X.shape

  @jax.jit
  def unbatched(x, key):
    def one(m, j):
      rows = jax.random.permutation(
          jax.random.fold_in(jax.random.fold_in(key, m), j), n)
      permuted = x.at[:, j].set(jnp.take(x[:, j], rows))
      return jnp.mean(_score(permuted, jnp.arange(n)))
    return jax.vmap(lambda m: jax.vmap(lambda j: one(m, j))(jnp.arange(d)))(
        jnp.arange(3))

  np.testing.assert_array_equal(_importance_of(_X), unbatched(_X, KEY))
  np.testing.assert_array_equal(
      jax.jit(masks.mean_score, static_argnums=0)(_score, _X),
      jax.jit(lambda x: jnp.mean(_score(x, jnp.arange(n))))(_X))


def test_mean_score_in_blocks_matches_float64():
  want = _score64(np.asarray(_X, np.float64)).mean()
  for row_batch in (None, 5, 24, 100):
    got = jax.jit(masks.mean_score, static_argnames=("score_fn", "row_batch"))(
        _score, _X, row_batch=row_batch)
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, want, rtol=1e-6)


_PIXELS = jnp.asarray(np.random.RandomState(3).normal(size=(6, 3, 4, 2)),
                      jnp.float32)  # [N, H, W, C]
_PIXEL_W = jnp.asarray(np.random.RandomState(4).normal(size=(2,)),
                       jnp.float32)


def _pixel_score(x_rows, rows):
  """Reads every pixel except (0, 0); per-example, so shape [B]."""
  del rows
  weighted = jnp.tanh(x_rows @ _PIXEL_W)  # [B, H, W]
  return jnp.sum(weighted ** 2, axis=(1, 2)) - weighted[:, 0, 0] ** 2


def _pixel_score64(x):
  weighted = np.tanh(x @ np.asarray(_PIXEL_W, np.float64))
  return np.sum(weighted ** 2, axis=(1, 2)) - weighted[:, 0, 0] ** 2


def test_pixel_importance_permutes_whole_pixels():
  """[N, H, W, C] input: one importance per pixel, all channels moved
  together, shape [M, H, W, 1]; batched equals the float64 loop."""
  want = reference.permutation_importance(_pixel_score64, _PIXELS,
                                          _permutation(KEY, 6), 2)
  got = _importance(score_fn=_pixel_score, x=_PIXELS, key=KEY, num_repeats=2,
                    unit_batch=8, row_batch=4)
  chex.assert_shape(got, (2, 3, 4, 1))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # The pixel the score ignores keeps the unpermuted score.
  baseline = _pixel_score64(np.asarray(_PIXELS, np.float64)).mean()
  np.testing.assert_allclose(got[:, 0, 0, 0], [baseline] * 2, rtol=1e-6)
  # The importance makes a feature mask that broadcasts against an example.
  mask = jax.eval_shape(lambda g: masks.feature_keep_mask(
      masks.normalise_importance(g), 0.5, "true", KEY), got)
  chex.assert_shape(jax.eval_shape(jnp.multiply, mask, _PIXELS),
                    _PIXELS.shape)


def test_shared_pixel_importance_equals_float64_double_loop():
  """[N, H, W, C]: every pixel of repeat m moves (all channels) by the same
  permutation."""
  want = reference.permutation_importance(
      _pixel_score64, _PIXELS, _shared_permutation(KEY, 6), 2)
  got = _importance(score_fn=_pixel_score, x=_PIXELS, key=KEY, num_repeats=2,
                    unit_batch=8, row_batch=4, permutations="shared")
  chex.assert_shape(got, (2, 3, 4, 1))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# A score beginning with a linear map of the flattened example: Algorithm 1
# on an MLP teacher, computed from the input or from the first layer's output.
_BIAS = jnp.asarray(np.random.RandomState(6).normal(size=(3,)), jnp.float32)


def _first_layer_of(x):
  """``(kernel f32[D, 3], bias)`` for ``x``'s D values per example."""
  d = math.prod(x.shape[1:])
  return (jnp.asarray(np.random.RandomState(d).normal(size=(d, 3)),
                      jnp.float32), _BIAS)


def _after_first_layer(h_rows, rows):
  return jnp.mean((jnp.tanh(h_rows) - _rows_of(_TARGET, rows)) ** 2, axis=-1)


def _through_first_layer(x_rows, rows):
  kernel, bias = _first_layer_of(x_rows)
  return _after_first_layer(
      jnp.reshape(x_rows, (x_rows.shape[0], -1)) @ kernel + bias, rows)


@pytest.mark.parametrize("x, permutations, unit_batch, row_batch", [
    (_X, "per_unit", 4, 7),  # 15 pairs in steps of 4, 24 rows in 4 blocks
    (_PIXELS, "shared", 5, 4),  # [N, H, W, C]: each pixel's C channels
])
def test_first_layer_path_equals_the_plain_score(x, permutations, unit_batch,
                                                 row_batch):
  """first_layer: score_fn on the first pre-activation, updated by rank K per
  unit, gives the plain importance of score_fn ∘ first layer (same
  permutations) up to float32 rounding, in blocks of units and rows (partial
  last blocks); so does mean_score."""

  # One cheaply compiled program per path (they are compared with each
  # other only): the importance and the baseline.
  @functools.partial(fast_jit, static_argnums=0)
  def run(score, x, first_layer):
    return (masks.permutation_importance(
        score, x, KEY, 2, unit_batch=unit_batch, row_batch=row_batch,
        permutations=permutations, first_layer=first_layer),
            masks.mean_score(score, x, row_batch=row_batch,
                             first_layer=first_layer))

  want, want_mean = run(_through_first_layer, x, None)
  got, got_mean = run(_after_first_layer, x, _first_layer_of(x))
  assert got.shape == want.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert len(np.unique(np.asarray(got))) > got.size // 2  # units differ
  np.testing.assert_allclose(got_mean, want_mean, rtol=1e-6)


def test_first_layer_is_checked_against_x():
  """A kernel whose rows are not x's values per example, a bias of the wrong
  width or a bare kernel raise ValueError naming first_layer."""
  kernel, bias = _first_layer_of(_PIXELS)  # 24 rows: [N, 3, 4, 2]
  call = lambda x, first_layer: masks.permutation_importance(
      _after_first_layer, x, KEY, 1, first_layer=first_layer)
  with pytest.raises(ValueError, match=r"first_layer's kernel must have shape "
                                       r"\[D, F\] with D = 5, the values of "
                                       r"one example of x \(shape \(24, 5\)\), "
                                       r"got \(24, 3\)"):
    call(_X, (kernel, bias))
  with pytest.raises(ValueError, match=r"first_layer's bias must have shape "
                                       r"\(3,\), got \(4,\)"):
    call(_PIXELS, (kernel, jnp.ones(4)))
  with pytest.raises(ValueError, match="first_layer must be a pair"):
    masks.mean_score(_after_first_layer, _PIXELS, first_layer=kernel)


def _largest_array(jaxpr) -> int:
  """Entries of the largest array any equation (at any depth) produces."""
  def sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
      yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
      yield value
    elif isinstance(value, (tuple, list)):
      for v in value:
        yield from sub_jaxprs(v)

  largest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      largest = max(largest, math.prod(getattr(var.aval, "shape", ())))
    for value in eqn.params.values():
      for sub in sub_jaxprs(value):
        largest = max(largest, _largest_array(sub))
  return largest


@pytest.mark.parametrize("permutations", masks.PERMUTATIONS)
def test_memory_is_bounded_by_the_blocks(permutations):
  """No intermediate is larger than the input itself: with 2 units × 8 rows
  a step, 16 permuted examples exist at once, not the M·D = 15 full copies
  (15 × 64 × 5 values) of an all-at-once vmap. The shared permutations add
  one int32[M, N]."""
  x = jnp.ones((64, 5), jnp.float32)
  score = lambda x_rows, rows: jnp.sum(jnp.tanh(x_rows), axis=-1)
  jaxpr = jax.make_jaxpr(lambda x, k: masks.permutation_importance(
      score, x, k, 3, unit_batch=2, row_batch=8,
      permutations=permutations))(x, KEY)
  assert _largest_array(jaxpr.jaxpr) <= x.size
  all_at_once = jax.make_jaxpr(lambda x, k: masks.permutation_importance(
      score, x, k, 3, unit_batch=15, row_batch=64,
      permutations=permutations))(x, KEY)
  assert _largest_array(all_at_once.jaxpr) >= 15 * x.size


@pytest.mark.parametrize("permutations", masks.PERMUTATIONS)
def test_permutation_importance_compiles_once_for_new_values(permutations):
  chex.clear_trace_counter()  # each parametrisation traces `run` anew

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x, key):
    return masks.permutation_importance(_score, x, key, 2, unit_batch=5,
                                        row_batch=7, permutations=permutations)

  for seed in range(2):
    run(_X + seed, jax.random.PRNGKey(seed))


def test_permutation_importance_rejects_bad_input():
  """A non-[N, ...] input, fewer than one repeat, bad block sizes, a
  score_fn that is not per-example or an unknown permutations mode raise,
  naming the argument."""
  with pytest.raises(ValueError, match="x must be"):
    masks.permutation_importance(_score, jnp.ones((5,)), KEY, 2)
  with pytest.raises(ValueError, match="x must be"):
    masks.permutation_importance(_score, jnp.ones((0, 5)), KEY, 2)
  with pytest.raises(ValueError, match="num_repeats"):
    masks.permutation_importance(_score, jnp.ones((4, 5)), KEY, 0)
  with pytest.raises(ValueError, match="unit_batch"):
    masks.permutation_importance(_score, jnp.ones((4, 5)), KEY, 1,
                                 unit_batch=0)
  with pytest.raises(TypeError, match="row_batch"):
    masks.permutation_importance(_score, jnp.ones((4, 5)), KEY, 1,
                                 row_batch=2.0)
  with pytest.raises(ValueError, match="score_fn's output"):
    jax.eval_shape(lambda x: masks.permutation_importance(
        lambda x_rows, rows: jnp.mean(x_rows), x, KEY, 1), jnp.ones((4, 5)))
  with pytest.raises(ValueError,
                     match=r"permutations must be one of \('per_unit', "
                           r"'shared'\), got 'per_feature'"):
    masks.permutation_importance(_score, jnp.ones((4, 5)), KEY, 1,
                                 permutations="per_feature")


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


def test_normalise_importance_of_pixel_scores():
  """[M, H, W, 1] -> [H, W, 1], min-max over all pixels."""
  scores = np.random.RandomState(5).normal(size=(3, 2, 4, 1)).astype(
      np.float32)
  out = _normalise(jnp.asarray(scores))
  chex.assert_shape(out, (2, 4, 1))
  mean = scores.astype(np.float64).mean(axis=0)
  np.testing.assert_allclose(out, (mean - mean.min()) / np.ptp(mean),
                             rtol=0, atol=1e-6)


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


def test_feature_mask_refuses_a_batch_axis_on_importance():
  """[1, D] (or [N, D]) importance, a batch-shaped mistake, would be ranked
  as D (or N·D) units; only [D] and [..., 1] unit shapes are accepted."""
  importance = _distinct_scores(10, seed=5)
  for bad in (importance[None], jnp.stack([importance, importance]),
              importance[:0], importance[0]):
    with pytest.raises(ValueError, match=r"importance must have shape \[D\]"
                       r" \(one score per feature\) or \[\.\.\., 1\]"):
      masks.feature_keep_mask(bad, 0.5, "true", KEY)
  with pytest.raises(TypeError, match="importance must be a floating"):
    masks.feature_keep_mask(jnp.arange(10), 0.5, "true", KEY)
  for fine in (importance, importance[:, None], importance[None, :, None]):
    assert masks.feature_keep_mask(fine, 0.5, "true", KEY).shape == fine.shape


def test_masks_refuse_lists_and_non_numeric_ratios():
  """Lists and str or NaN ratios raise errors that name the argument."""
  values = _distinct_scores(10, seed=5)
  with pytest.raises(TypeError, match="importance must be an array"):
    masks.feature_keep_mask(values.tolist(), 0.5, "true", KEY)
  with pytest.raises(TypeError, match="ncjsd must be an array"):
    masks.sample_keep_mask(values.tolist(), 0.5, "true", KEY)
  with pytest.raises(TypeError, match="scores must be an array"):
    masks.normalise_importance([values.tolist()])
  for fn in (masks.feature_keep_mask, masks.sample_keep_mask):
    with pytest.raises(TypeError, match="ratio must be a number"):
      fn(values, "0.5", "true", KEY)
    with pytest.raises(ValueError, match=r"ratio must lie in \[0, 1\), got "
                       "nan"):
      fn(values, np.nan, "true", KEY)


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


# ------------------------------------------- shapes beyond [N] and where


def test_feature_mask_on_pixel_importance():
  """Importance [H, W, 1] gives a mask of that shape: the flat mask,
  reshaped."""
  importance = _distinct_scores(24, seed=14)
  for kind in masks.MASK_KINDS:
    mask = masks.feature_keep_mask(importance.reshape(4, 6, 1), 0.25, kind,
                                   KEY)
    chex.assert_shape(mask, (4, 6, 1))
    assert int(np.sum(np.asarray(mask) == 0)) == 6
    np.testing.assert_array_equal(
        mask.reshape(-1), masks.feature_keep_mask(importance, 0.25, kind, KEY))


_SEG = (2, 3, 5)  # [B, H, W] pixels


def _pixel_case(seed):
  rng = np.random.RandomState(seed)
  ncjsd = jnp.asarray(rng.permutation(30).reshape(_SEG) / 30, jnp.float32)
  where = rng.rand(*_SEG) < 0.6
  # Ignored pixels carry garbage scores, which must not matter.
  ncjsd = jnp.where(where, ncjsd, jnp.asarray([np.nan, np.inf, -np.inf,
                                               1e9, -1.0])[
                                                   np.arange(30).reshape(
                                                       _SEG) % 5])
  return ncjsd, jnp.asarray(where)


_pixel_mask = jax.jit(masks.sample_keep_mask, static_argnames="kind")


@pytest.mark.parametrize("ratio", RATIOS + (0.99,))
def test_per_pixel_sample_mask_counts_only_valid_pixels(ratio):
  """floor(r · n_valid) valid pixels removed; ignored pixels are never kept
  and their scores never enter the ranking."""
  ncjsd, where = _pixel_case(int(ratio * 100))
  valid = np.asarray(where)
  n_valid = int(valid.sum())
  removed = _num_removed(ratio, n_valid)
  scores = np.asarray(ncjsd)[valid]
  order = np.argsort(scores)  # ascending NCJSD among valid pixels
  for kind, gone in (("true", order[n_valid - removed:]),
                     ("false", order[:removed])):
    mask = np.asarray(_pixel_mask(ncjsd, ratio, kind, KEY, where=where))
    assert mask.shape == _SEG
    np.testing.assert_array_equal(mask[~valid], 0.0)
    expected = np.ones(n_valid, np.float32)
    expected[gone] = 0.0
    np.testing.assert_array_equal(mask[valid], expected, err_msg=kind)
  random = np.asarray(_pixel_mask(ncjsd, ratio, "random", KEY, where=where))
  np.testing.assert_array_equal(random[~valid], 0.0)
  assert int(np.sum(random[valid] == 0)) == removed


def test_sample_mask_with_traced_where_and_ratio():
  """Under jit ∘ vmap, n_valid (and the kind's code) is traced; the masks
  equal those of each batch alone."""
  cases = [_pixel_case(s) for s in (20, 21)]
  ncjsd = jnp.stack([c[0] for c in cases])
  where = jnp.stack([c[1] for c in cases])
  masked = jax.jit(jax.vmap(lambda v, w, r, code: masks.sample_keep_mask(
      v, r, code, KEY, where=w), in_axes=(0, 0, None, None)))
  for code, kind in enumerate(masks.MASK_KINDS):
    traced = masked(ncjsd, where, 0.5, jnp.float32(code))
    for b in range(2):
      np.testing.assert_array_equal(
          traced[b], _pixel_mask(ncjsd[b], 0.5, kind, KEY, where=where[b]))


def test_all_true_where_equals_no_where():
  """Today's 1-D masks are unchanged when every sample is valid."""
  ncjsd = _distinct_scores(13, seed=15)
  for kind in masks.MASK_KINDS:
    np.testing.assert_array_equal(
        _sample_mask(ncjsd, 0.5, kind, KEY),
        _pixel_mask(ncjsd, 0.5, kind, KEY, where=jnp.ones(13, bool)))


def test_sample_mask_rejects_bad_where():
  ncjsd = _distinct_scores(10, seed=16)
  with pytest.raises(ValueError, match="where must have"):
    masks.sample_keep_mask(ncjsd, 0.5, "true", KEY, where=jnp.ones(9, bool))
  with pytest.raises(TypeError, match="where must be a boolean"):
    masks.sample_keep_mask(ncjsd, 0.5, "true", KEY, where=jnp.ones(10))
