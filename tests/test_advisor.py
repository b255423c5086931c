"""Tests of ntdh_jax.advisor (``diagnose``, the verdict rule).

The point values are checked against the float64 NumPy reference of the
divergences (``tests/reference.py``) and the bootstrap intervals against a
NumPy re-implementation of the documented resampling: ``default_rng(seed)``,
``integers(0, N, N)`` per resample, every mean over the valid entries of the
resampled examples (an example's pixels move together), percentile
intervals. The verdicts are checked on constructed teachers whose answer is
known (the student itself, a class permutation of it, one independent of the
labels, a close one sharing its non-target structure) and CCH on features
whose Δ has a known sign; then the ranking and keep masks, determinism,
ranges and identities, and every bad input.

Runtime: most diagnoses share one ``[300, 10]`` shape and every CCH call
one ``(5 repeats, 150 rows, 2 + 2 widths)`` KSG program, compiled once.
"""

import math
import warnings

import chex
import jax
import numpy as np
import pytest

import ntdh_jax
from ntdh_jax import advisor
from ntdh_jax.advisor import HELPS
from ntdh_jax.advisor import HURTS
from ntdh_jax.advisor import NEUTRAL
from tests import reference

LN2 = math.log(2.0)
N, C = 300, 10
METRICS = ("tcjsd", "ncjsd", "tckl", "nckl", "kl")
FAST = dict(bootstrap=100)  # where the intervals are not the point
# float32 divergences against the float64 reference (test_divergences).
RTOL, ATOL = 2e-5, 2e-6
# Round thresholds for the tests of the rule's mechanics, independent of the
# calibrated DEFAULT_RULE (which changes when the calibration is rerun).
RULE = advisor.Rule(ncjsd_helps=0.15, ncjsd_hurts=0.35, delta_helps=0.5,
                    delta_hurts=-0.5)


# -- the NumPy re-implementation of the bootstrap ----------------------------


def _draws(seed, n, bootstrap):
  """The documented resamples: example indices, with replacement."""
  rng = np.random.default_rng(seed)
  return [rng.integers(0, n, n) for _ in range(bootstrap)]


def _mean(values, valid):
  """Mean over the valid entries (NaN if none), float64."""
  chosen = np.asarray(values, np.float64)[valid]
  return chosen.mean() if chosen.size else np.nan


def _percentiles(samples, level):
  tail = 100 * (1 - level) / 2
  samples = np.asarray(samples, np.float64)
  if np.isnan(samples).all():
    return np.nan, np.nan
  return tuple(np.nanpercentile(samples, [tail, 100 - tail]))


def _boot(values, valid, draws, level):
  """(point, low, high) of the mean of ``values[N, ...]`` over ``valid``:
  each resample gathers whole examples (all their entries) with repeats."""
  point = _mean(values, valid)
  samples = [_mean(values[idx], valid[idx]) for idx in draws]
  return (point, *_percentiles(samples, level))


def _boot_ratio(num, den, valid, draws, level):
  point = _mean(num, valid) / _mean(den, valid)
  samples = [_mean(num[i], valid[i]) / _mean(den[i], valid[i]) for i in draws]
  return (point, *_percentiles(samples, level))


def _boot_per_class(values, labels, valid, draws, level, classes):
  """``[C, 3]``: each class's (point, low, high) mean over its entries."""
  out = []
  for c in range(classes):
    of_class = valid & (labels == c)
    out.append(_boot(values, of_class, draws, level))
  return np.array(out)


def _assert_interval(got, want, rtol=RTOL, atol=ATOL, name=""):
  np.testing.assert_allclose(np.array(tuple(got)), np.array(want),
                             rtol=rtol, atol=atol, err_msg=name)


# -- data ----------------------------------------------------------------------


def _random_pair(seed, shape, classes, scale=3.0):
  rng = np.random.default_rng(seed)
  return (scale * rng.normal(size=(*shape, classes))).astype(np.float32), (
      scale * rng.normal(size=(*shape, classes))).astype(np.float32)


@pytest.fixture(scope="module")
def golden_cls():
  """Random ``[N, C]`` logits at T = 2 (the temperature is used)."""
  t, s = _random_pair(1, (N,), C)
  y = np.random.default_rng(2).integers(0, C, N)
  d = advisor.diagnose(t, s, y, temperature=2.0, bootstrap=200, level=0.9,
                       seed=3, ratios=(0.1, 0.25, 0.5, 0.75))
  return t, s, y, d


IGNORE = 255
SEG_SHAPE = (24, 4, 4)
SEG_C = 5


@pytest.fixture(scope="module")
def golden_seg():
  """``[N, H, W, C]`` logits, a quarter of the pixels ignored, class 4 never
  a label (its per-class row is NaN)."""
  t, s = _random_pair(4, SEG_SHAPE, SEG_C)
  rng = np.random.default_rng(5)
  y = rng.integers(0, SEG_C - 1, SEG_SHAPE)
  y[rng.random(SEG_SHAPE) < 0.25] = IGNORE
  y[:, 0, 0] = rng.integers(0, SEG_C - 1, SEG_SHAPE[0])  # none all ignored
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    d = advisor.diagnose(t, s, y, ignore_label=IGNORE, bootstrap=200,
                         level=0.95, seed=6)
  return t, s, y, d, caught


@pytest.fixture(scope="module")
def student():
  """A good student: balanced labels, the label's logit 5 above noise."""
  rng = np.random.default_rng(10)
  y = rng.permutation(np.arange(N) % C)
  s = (rng.normal(size=(N, C)) + 5.0 * np.eye(C)[y]).astype(np.float32)
  return s, y


def _close_teacher(s, y, seed=11):
  """More confident on the target, the student's non-target structure up
  to small noise: NCJSD ~ 0, KL above the floor."""
  rng = np.random.default_rng(seed)
  return (s + 1.5 * np.eye(C)[y] + 0.05 * rng.normal(size=s.shape)
          ).astype(np.float32)


PERM = np.roll(np.arange(C), 1)  # a derangement: no class stays in place


def _features(y, seed=12):
  """H₂ = H₁ + 0.3·noise, independent of the labels (Δ ≈ 2.5 nats ≫ 0);
  and H₂' carrying the label (I(H₂'; Y) ≈ ln 10) with H₁ independent of it
  (Δ ≈ −ln 10)."""
  rng = np.random.default_rng(seed)
  h1 = rng.standard_normal((N, 2))
  helps = h1 + 0.3 * rng.standard_normal((N, 2))
  hurts = np.c_[6.0 * y + rng.standard_normal(N), rng.standard_normal(N)]
  return (h1.astype(np.float32), helps.astype(np.float32),
          hurts.astype(np.float32))


@pytest.fixture(scope="module")
def features(student):
  return _features(student[1])


# -- golden values ---------------------------------------------------------------


def test_classification_point_values_match_float64_reference(golden_cls):
  t, s, y, d = golden_cls
  want = reference.metrics(t, s, y, temperature=2.0)
  for name in METRICS:
    np.testing.assert_allclose(d.divergences[name].value, want[name].mean(),
                               rtol=RTOL, atol=ATOL, err_msg=name)
  np.testing.assert_allclose(d.ncjsd, want["ncjsd"], rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(d.tcjsd, want["tcjsd"], rtol=RTOL, atol=ATOL)
  chex.assert_shape([d.ncjsd, d.tcjsd, d.valid], (N,))
  assert d.ncjsd.dtype == np.float32 and d.valid.all()
  assert (d.n, d.entries, d.classes) == (N, N, C)
  assert (d.temperature, d.bootstrap, d.level, d.seed) == (2.0, 200, 0.9, 3)
  assert d.cch is None and d.cch_verdict is None and d.dropped_features == ()
  assert d.rule == advisor.DEFAULT_RULE
  for role, z in (("teacher", t), ("student", s)):
    assert d.accuracy[role].value == np.mean(np.argmax(z, -1) == y)


def test_classification_intervals_match_numpy_bootstrap(golden_cls):
  t, s, y, d = golden_cls
  want = reference.metrics(t, s, y, temperature=2.0)
  valid = np.ones(N, bool)
  draws = _draws(3, N, 200)
  for name in METRICS:
    _assert_interval(d.divergences[name],
                     _boot(want[name], valid, draws, 0.9), name=name)
  # From the diagnosis' own per-entry values the resampling is exact.
  for name, values in (("ncjsd", d.ncjsd), ("tcjsd", d.tcjsd)):
    _assert_interval(d.divergences[name], _boot(values, valid, draws, 0.9),
                     rtol=1e-10, atol=0, name=name)
  _assert_interval(d.ratio, _boot_ratio(d.ncjsd, d.tcjsd, valid, draws, 0.9),
                   rtol=1e-10, atol=0, name="ratio")
  for role, z in (("teacher", t), ("student", s)):
    right = (np.argmax(z, -1) == y).astype(np.float64)
    _assert_interval(d.accuracy[role], _boot(right, valid, draws, 0.9),
                     rtol=1e-12, atol=0, name=role)


def test_classification_per_class_matches_numpy(golden_cls):
  t, s, y, d = golden_cls
  want = reference.metrics(t, s, y, temperature=2.0)
  np.testing.assert_array_equal(d.per_class.count, np.bincount(y, minlength=C))
  assert d.per_class.count.dtype == np.int64
  draws = _draws(3, N, 200)
  valid = np.ones(N, bool)
  for name in ("nckl", "ncjsd"):
    got = getattr(d.per_class, name)
    chex.assert_shape(got, (C, 3))
    direct = [want[name][y == c].mean() for c in range(C)]
    np.testing.assert_allclose(got[:, 0], direct, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        got, _boot_per_class(want[name], y, valid, draws, 0.9, C),
        rtol=RTOL, atol=ATOL, err_msg=name)


def test_segmentation_point_values_and_intervals(golden_seg):
  t, s, y, d, _ = golden_seg
  valid = y != IGNORE
  want = reference.metrics_where(t, s, np.where(valid, y, 0), valid)
  draws = _draws(6, SEG_SHAPE[0], 200)
  for name in METRICS:
    np.testing.assert_allclose(d.divergences[name].value,
                               want[name][valid].mean(), rtol=RTOL, atol=ATOL,
                               err_msg=name)
    _assert_interval(d.divergences[name],
                     _boot(want[name], valid, draws, 0.95), name=name)
  for name, values in (("ncjsd", d.ncjsd), ("tcjsd", d.tcjsd)):
    _assert_interval(d.divergences[name], _boot(values, valid, draws, 0.95),
                     rtol=1e-10, atol=0, name=name)
  for role, z in (("teacher", t), ("student", s)):
    right = (np.argmax(z, -1) == y).astype(np.float64)
    _assert_interval(d.accuracy[role], _boot(right, valid, draws, 0.95),
                     rtol=1e-12, atol=0, name=role)
  chex.assert_shape([d.ncjsd, d.tcjsd, d.valid], SEG_SHAPE)
  np.testing.assert_array_equal(d.valid, valid)
  assert (d.ncjsd[~valid] == 0).all() and (d.tcjsd[~valid] == 0).all()
  np.testing.assert_allclose(d.ncjsd, want["ncjsd"], rtol=RTOL, atol=ATOL)
  assert (d.n, d.entries, d.classes) == (SEG_SHAPE[0], valid.sum(), SEG_C)


def test_segmentation_resamples_whole_examples(golden_seg):
  """A pixel-level bootstrap would give another interval: the example is
  the unit."""
  _, _, y, d, _ = golden_seg
  valid = y != IGNORE
  pixels = d.ncjsd[valid].astype(np.float64)
  rng = np.random.default_rng(6)
  samples = [pixels[rng.integers(0, len(pixels), len(pixels))].mean()
             for _ in range(200)]
  assert abs(_percentiles(samples, 0.95)[0] - d.divergences["ncjsd"].low
             ) > 1e-4


def test_segmentation_per_class_with_an_absent_class(golden_seg):
  t, s, y, d, caught = golden_seg
  valid = y != IGNORE
  want = reference.metrics_where(t, s, np.where(valid, y, 0), valid)
  draws = _draws(6, SEG_SHAPE[0], 200)
  np.testing.assert_array_equal(
      d.per_class.count, np.bincount(y[valid], minlength=SEG_C))
  assert d.per_class.count[SEG_C - 1] == 0
  for name in ("nckl", "ncjsd"):
    got = getattr(d.per_class, name)
    assert np.isnan(got[SEG_C - 1]).all()
    direct = [want[name][valid & (y == c)].mean() for c in range(SEG_C - 1)]
    np.testing.assert_allclose(got[:-1, 0], direct, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        got[:-1], _boot_per_class(want[name], y, valid, draws, 0.95,
                                  SEG_C - 1), rtol=RTOL, atol=ATOL)
  # The documented NaN of an absent class comes without a RuntimeWarning.
  assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], \
      [str(w.message) for w in caught]


# -- constructed cases ------------------------------------------------------------


def test_identical_teacher_and_student(student):
  s, y = student
  d = advisor.diagnose(s, s.copy(), y, **FAST)
  for name in METRICS:
    assert np.abs(tuple(d.divergences[name])).max() < 1e-6, name
  assert math.isnan(d.ratio.value)
  assert np.abs(d.ncjsd).max() < 1e-6 and np.abs(d.tcjsd).max() < 1e-6
  assert np.nanmax(np.abs(d.per_class.nckl)) < 1e-6
  assert np.nanmax(np.abs(d.per_class.ncjsd)) < 1e-6
  # Neutral by the kl_floor guard: without it the NCJSD says "helps".
  assert d.ntdh_verdict == NEUTRAL and d.verdict == NEUTRAL
  assert "nothing to distil" in d.evidence[0]
  no_floor = advisor.DEFAULT_RULE._replace(kl_floor=0.0)
  assert advisor.diagnose(s, s.copy(), y, rule=no_floor,
                          **FAST).ntdh_verdict == HELPS
  assert d.mask_ratio == 0.0


def test_class_permutation_teacher_hurts(student):
  s, y = student
  d = advisor.diagnose(s[:, PERM], s, y, **FAST)
  assert d.accuracy["teacher"].value == 0.0
  assert d.divergences["tcjsd"].low > 0.4
  assert d.divergences["ncjsd"].low > d.rule.ncjsd_hurts
  assert d.ntdh_verdict == HURTS and d.verdict == HURTS
  assert d.mask_ratio is None  # masking half still leaves a bad teacher
  assert d.evidence[-1] == f"NTDH votes: {HURTS}."


def test_random_teacher_does_not_help(student):
  s, y = student
  rng = np.random.default_rng(13)
  t = (3.0 * rng.normal(size=s.shape)).astype(np.float32)
  d = advisor.diagnose(t, s, y, **FAST)
  assert d.divergences["ncjsd"].low > 0.25
  assert d.ntdh_verdict != HELPS and d.verdict != HELPS


def test_close_teacher_helps_without_mask(student):
  s, y = student
  d = advisor.diagnose(_close_teacher(s, y), s, y, **FAST)
  assert d.divergences["kl"].low > d.rule.kl_floor
  assert d.divergences["ncjsd"].high < d.rule.ncjsd_helps
  assert d.ntdh_verdict == HELPS and d.verdict == HELPS
  assert d.mask_ratio == 0.0
  assert d.ratio.value < 1  # they disagree on the target, not the rest


def test_non_target_only_disagreement_gives_inf_ratio(student):
  """Same target logit, non-target logits reversed: TCJSD ~ 0, NCJSD > 0,
  so the ratio and both ends of its interval are inf."""
  s, _ = student
  y = np.zeros(N, int)
  t = s.copy()
  t[:, 1:] = s[:, 1:][:, ::-1]
  d = advisor.diagnose(t, s, y, **FAST)
  assert d.divergences["tcjsd"].high < 1e-6
  assert d.divergences["ncjsd"].low > 0.01
  assert tuple(d.ratio) == (math.inf, math.inf, math.inf)
  assert "more on the non-target" in d.evidence[1]


def test_mask_recommended_for_a_teacher_with_divergent_outliers(student):
  """40 % of the examples from the permuted teacher: the unmasked NCJSD is
  too high, excluding the most divergent 10 % brings it below."""
  s, y = student
  t = _close_teacher(s, y)
  bad = np.random.default_rng(14).permutation(N)[:int(0.4 * N)]
  t[bad] = s[bad][:, PERM]
  d = advisor.diagnose(t, s, y, ratios=(0.1, 0.25, 0.5), rule=RULE, **FAST)
  assert d.kept_ncjsd[0.0] > d.rule.ncjsd_helps > d.kept_ncjsd[0.1]
  assert d.mask_ratio == 0.1
  assert d.mask_ratio == advisor.recommend_mask(d.kept_ncjsd, d.rule)
  assert "Mask the top 10%" in " ".join(d.evidence)


# -- CCH and the combined verdict -------------------------------------------------


def test_cch_votes_on_features(student, features):
  s, y = student
  h1, helps, hurts = features
  close = _close_teacher(s, y)
  d = advisor.diagnose(close, s, y, h1, helps, **FAST)
  assert d.cch.gap.mean > 0 and d.cch.interval[0] > d.rule.delta_helps
  assert d.cch_verdict == HELPS and d.verdict == HELPS  # agree
  assert d.dropped_features == (0, 0)
  d = advisor.diagnose(close, s, y, h1, hurts, **FAST)
  assert d.cch.gap.mean < 0 and d.cch.interval[1] < d.rule.delta_hurts
  assert d.cch_verdict == HURTS
  assert (d.ntdh_verdict, d.verdict) == (HELPS, NEUTRAL)  # conflict
  d = advisor.diagnose(s[:, PERM], s, y, h1, hurts, **FAST)
  assert (d.ntdh_verdict, d.cch_verdict, d.verdict) == (HURTS, HURTS, HURTS)
  d = advisor.diagnose(s[:, PERM], s, y, h1, helps, **FAST)
  assert (d.ntdh_verdict, d.cch_verdict, d.verdict) == (HURTS, HELPS, NEUTRAL)
  d = advisor.diagnose(s, s.copy(), y, h1, helps, **FAST)  # decided + neutral
  assert (d.ntdh_verdict, d.cch_verdict, d.verdict) == (NEUTRAL, HELPS, HELPS)


def test_cch_matches_cch_gap_and_drops_constant_columns(student, features):
  s, y = student
  h1, helps, _ = features
  close = _close_teacher(s, y)
  d = advisor.diagnose(close, s, y, h1, helps, seed=4, **FAST)
  direct = advisor.cch_lib.cch_gap(h1, helps, y, seed=4)
  _assert_trees_equal(d.cch, direct)
  padded = np.c_[h1, np.full(N, 2.0, np.float32)]
  dropped = advisor.diagnose(close, s, y, padded, helps, seed=4, **FAST)
  assert dropped.dropped_features == (1, 0)
  _assert_trees_equal(dropped.cch, d.cch)


# The combined verdict, written out: agree → that; decided + neutral →
# decided; conflict → neutral; no CCH → NTDH's.
COMBINED = {
    (HELPS, HELPS): HELPS, (HELPS, NEUTRAL): HELPS, (HELPS, HURTS): NEUTRAL,
    (NEUTRAL, HELPS): HELPS, (NEUTRAL, NEUTRAL): NEUTRAL,
    (NEUTRAL, HURTS): HURTS,
    (HURTS, HELPS): NEUTRAL, (HURTS, NEUTRAL): HURTS, (HURTS, HURTS): HURTS,
    (HELPS, None): HELPS, (NEUTRAL, None): NEUTRAL, (HURTS, None): HURTS,
}


@pytest.mark.parametrize("ntdh, cch", list(COMBINED))
def test_combine(ntdh, cch):
  assert advisor.combine(ntdh, cch) == COMBINED[(ntdh, cch)]


def test_votes_need_the_whole_interval_past_the_threshold():
  rule = RULE
  kl = advisor.Interval(1.0, 0.5, 1.5)

  def ntdh(low, high):
    return advisor.ntdh_vote(advisor.Interval(low, low, high), kl, rule)

  assert ntdh(0.0, 0.149) == HELPS
  assert ntdh(0.0, 0.15) == NEUTRAL  # touching the threshold is not below
  assert ntdh(0.1, 0.4) == NEUTRAL
  assert ntdh(0.351, 0.6) == HURTS
  assert ntdh(0.35, 0.6) == NEUTRAL
  low_kl = advisor.Interval(0.001, 0.0, 0.009)
  assert advisor.ntdh_vote(advisor.Interval(0.3, 0.36, 0.4), low_kl,
                           rule) == NEUTRAL
  at_floor = advisor.Interval(0.005, 0.0, 0.01)
  assert advisor.ntdh_vote(advisor.Interval(0.01, 0.0, 0.1), at_floor,
                           rule) == HELPS
  assert advisor.cch_vote((0.51, 2.0), rule) == HELPS
  assert advisor.cch_vote((0.5, 2.0), rule) == NEUTRAL
  assert advisor.cch_vote((-2.0, -0.51), rule) == HURTS
  assert advisor.cch_vote((-2.0, 0.7), rule) == NEUTRAL
  many = advisor.vote([0.0, 0.1, 0.4], [0.1, 0.4, 0.5], 0.15, 0.35, False)
  assert list(many) == [HELPS, NEUTRAL, HURTS]


def test_recommend_mask_picks_the_smallest_qualifying_ratio():
  rule = RULE
  assert advisor.recommend_mask({0.5: 0.01, 0.0: 0.3, 0.25: 0.1}, rule) == 0.25
  assert advisor.recommend_mask({0.0: 0.1, 0.25: 0.05}, rule) == 0.0
  assert advisor.recommend_mask({0.0: 0.3, 0.25: 0.2, 0.5: 0.15}, rule) is None
  assert advisor.recommend_mask({0.0: 0.3, 0.5: 0.149, 0.25: 0.16},
                                rule) == 0.5


# -- ranking and masks -----------------------------------------------------------


def _check_ranking_and_masks(d):
  flat = d.ncjsd.reshape(-1)
  valid = d.valid.reshape(-1)
  ranking = d.ranking
  assert ranking.dtype == np.int64 and len(ranking) == d.entries
  np.testing.assert_array_equal(np.sort(ranking), np.flatnonzero(valid))
  ranked = flat[ranking]
  assert (np.diff(ranked) <= 0).all()  # most divergent first
  ties = np.diff(ranked) == 0
  assert (np.diff(ranking)[ties] > 0).all()  # ties in index order
  for ratio, keep in d.keep.items():
    chex.assert_shape(keep, d.ncjsd.shape)
    assert keep.dtype == np.float32
    assert set(np.unique(keep)) <= {0.0, 1.0}
    keep = keep.reshape(-1)
    assert (keep[~valid] == 0).all()
    excluded = np.flatnonzero(valid & (keep == 0))
    k = math.floor(ratio * d.entries)
    assert len(excluded) == k, ratio
    if 0 < k < d.entries and ranked[k - 1] > ranked[k]:
      np.testing.assert_array_equal(excluded, np.sort(ranking[:k]))
    np.testing.assert_allclose(d.kept_ncjsd[ratio], flat[keep > 0].mean(),
                               rtol=1e-6)
  assert d.kept_ncjsd[0.0] == d.divergences["ncjsd"].value
  assert sorted(d.kept_ncjsd) == [0.0, *sorted(d.keep)]


def test_ranking_and_masks_classification(golden_cls):
  d = golden_cls[3]
  assert sorted(d.keep) == [0.1, 0.25, 0.5, 0.75]
  _check_ranking_and_masks(d)


def test_ranking_and_masks_segmentation_skip_ignored_pixels(golden_seg):
  d = golden_seg[3]
  assert sorted(d.keep) == list(advisor.DEFAULT_RATIOS)
  _check_ranking_and_masks(d)
  ignored = np.flatnonzero(~d.valid.reshape(-1))
  assert len(ignored) and not np.isin(ignored, d.ranking).any()


def test_keep_mask_is_the_library_mask(golden_seg):
  d = golden_seg[3]
  for ratio, keep in d.keep.items():
    want = advisor.masks.sample_keep_mask(
        d.ncjsd, ratio, "true", jax.random.PRNGKey(d.seed), where=d.valid)
    np.testing.assert_array_equal(keep, want)


def test_ranking_with_ties(student):
  s, y = student
  _check_ranking_and_masks(advisor.diagnose(s, s.copy(), y, **FAST))


# -- determinism -----------------------------------------------------------------


def _assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


def test_same_seed_same_diagnosis_other_seed_other_intervals(student,
                                                             features):
  s, y = student
  h1, helps, _ = features
  t = _close_teacher(s, y)
  kwargs = dict(bootstrap=200, ratios=(0.25, 0.5))
  first = advisor.diagnose(t, s, y, h1, helps, seed=0, **kwargs)
  again = advisor.diagnose(t, s, y, h1, helps, seed=0, **kwargs)
  _assert_trees_equal(first, again)
  other = advisor.diagnose(t, s, y, h1, helps, seed=1, **kwargs)
  for name in METRICS:
    assert other.divergences[name].value == first.divergences[name].value
    assert other.divergences[name][1:] != first.divergences[name][1:], name
  for name in ("nckl", "ncjsd"):
    a, b = getattr(first.per_class, name), getattr(other.per_class, name)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    assert (a[:, 1:] != b[:, 1:]).any()
  assert other.ratio.value == first.ratio.value
  for name in ("ncjsd", "tcjsd", "ranking"):
    np.testing.assert_array_equal(getattr(other, name), getattr(first, name))
  _assert_trees_equal(other.keep, first.keep)  # no ties: the key is unused
  assert other.kept_ncjsd == first.kept_ncjsd
  assert (other.cch.rows != first.cch.rows).any()
  assert other.seed == 1


# -- ranges and identities -------------------------------------------------------


@pytest.mark.parametrize("case", ["golden_cls", "golden_seg"])
def test_ranges_and_intervals_contain_points(case, request):
  d = request.getfixturevalue(case)[3]
  for values in (d.ncjsd, d.tcjsd):
    assert values.min() >= -1e-6 and values.max() <= LN2 + 1e-6
  for name in ("ncjsd", "tcjsd"):
    assert -1e-6 <= d.divergences[name].low
    assert d.divergences[name].high <= LN2 + 1e-6
  for interval in (*d.divergences.values(), *d.accuracy.values(), d.ratio):
    assert interval.low <= interval.value <= interval.high, interval
  for name in ("nckl", "ncjsd"):
    rows = getattr(d.per_class, name)[d.per_class.count >= 20]
    assert len(rows) and (rows[:, 1] <= rows[:, 0]).all()
    assert (rows[:, 0] <= rows[:, 2]).all()
  for value in d.kept_ncjsd.values():
    assert 0 <= value <= LN2


def test_kl_identity(golden_cls):
  """KL = TCKL + (1 − p_k^t)·NCKL: the diagnosis' mean KL (assembled from the
  identity) equals the direct float64 KL over all C classes, and, as NCKL >=
  0 and 1 − p_k^t <= 1, TCKL <= KL <= TCKL + NCKL in every resample."""
  t, s, y, d = golden_cls
  pt = reference.softmax(t / 2.0)
  ps = reference.softmax(s / 2.0)
  want = reference.metrics(t, s, y, temperature=2.0)
  direct = reference.kl(pt, ps).mean()
  div = d.divergences
  np.testing.assert_allclose(div["kl"].value, direct, rtol=RTOL)
  np.testing.assert_allclose(
      div["kl"].value,
      div["tckl"].value + np.mean(want["teacher_nontarget_mass"]
                                  * want["nckl"]), rtol=RTOL)
  eps = 1e-6
  for i in range(3):  # order statistics keep a per-resample domination
    assert div["tckl"][i] <= div["kl"][i] + eps
    assert div["kl"][i] <= div["tckl"][i] + div["nckl"][i] + eps


# -- bad input -------------------------------------------------------------------


def _base(n=20, classes=4):
  rng = np.random.default_rng(20)
  t, s = _random_pair(21, (n,), classes)
  return t, s, rng.permutation(np.arange(n) % classes)


def _bad_calls():
  t, s, y = _base()
  h = np.random.default_rng(22).normal(size=(20, 2)).astype(np.float32)
  seg_t, _ = _random_pair(23, (20, 2, 2), 4)
  seg_y = np.zeros((20, 2, 2), int)
  all_ignored = seg_y.copy()
  all_ignored[3] = IGNORE
  nan_t, inf_s = t.copy(), s.copy()
  nan_t[2, 1] = np.nan
  inf_s[5, 0] = -np.inf
  inf_h = h.copy()
  inf_h[1, 1] = np.inf
  rng = np.random.default_rng(24)
  t12, s12 = t[:12], s[:12]
  y12 = np.arange(12) % 2
  h12 = rng.normal(size=(12, 2)).astype(np.float32)
  d = advisor.DEFAULT_RULE
  v, te, ty = ValueError, TypeError, "teacher_logits"
  return {
      "shapes": (v, "student_logits", (t, s[:, :3], y), {}),
      "rank 1": (v, ty, (t[0], s[0], y[:1]), {}),
      "C < 3": (v, ty, (t[:, :2], s[:, :2], y % 2), {}),
      "labels shape": (v, "labels", (t, s, y[:-1]), {}),
      "labels 2-d": (v, "labels", (t, s, y[:, None]), {}),
      "labels >= C": (v, "labels", (t, s, np.r_[y[:-1], 4]), {}),
      "labels < 0": (v, "labels", (t, s, np.r_[y[:-1], -1]), {}),
      "labels float": (te, "labels", (t, s, y.astype(np.float32)), {}),
      "logits int": (te, ty, (t.astype(np.int32), s, y), {}),
      "logits list": (te, ty, (t.tolist(), s, y), {}),
      "ignore_label in range": (v, "ignore_label", (t, s, y),
                                dict(ignore_label=3)),
      "ignore_label 0": (v, "ignore_label", (t, s, y), dict(ignore_label=0)),
      "ignore_label float": (te, "ignore_label", (t, s, y),
                             dict(ignore_label=255.0)),
      "all ignored": (v, "labels: example 3", (seg_t, seg_t, all_ignored),
                      dict(ignore_label=IGNORE)),
      "nan teacher": (v, ty, (nan_t, s, y), {}),
      "inf student": (v, "student_logits", (t, inf_s, y), {}),
      "inf teacher_features": (v, "teacher_features", (t, s, y, inf_h, h),
                               {}),
      "inf student_features": (v, "student_features", (t, s, y, h, inf_h),
                               {}),
      "teacher_features only": (v, "student_features", (t, s, y, h, None),
                                {}),
      "student_features only": (v, "teacher_features", (t, s, y, None, h),
                                {}),
      "features N": (v, "student_features", (t, s, y, h, h[:-1]), {}),
      "features 3-d": (v, "teacher_features", (t, s, y, h[:, :, None], h),
                       {}),
      "features int": (te, "student_features",
                       (t, s, y, h, h.astype(np.int32)), {}),
      "features constant": (v, "teacher_features",
                            (t, s, y, np.ones_like(h), h), {}),
      "features with pixel labels": (v, "labels", (seg_t, seg_t, seg_y, h,
                                                   h), {}),
      "N < 10": (v, ty, (t[:9], s[:9], y[:9]), {}),
      "too few rows for MI": (v, "subsample", (t12, s12, y12, h12, h12 + 1),
                              dict(mi_subsample=0.5)),
      "bootstrap 99": (v, "bootstrap", (t, s, y), dict(bootstrap=99)),
      "bootstrap float": (te, "bootstrap", (t, s, y), dict(bootstrap=200.0)),
      "level 0": (v, "level", (t, s, y), dict(level=0.0)),
      "level 1": (v, "level", (t, s, y), dict(level=1)),
      "level 95": (v, "level", (t, s, y), dict(level=95)),
      "level nan": (v, "level", (t, s, y), dict(level=math.nan)),
      "ratios empty": (v, "ratios", (t, s, y), dict(ratios=())),
      "ratios 0": (v, "ratios", (t, s, y), dict(ratios=(0.0, 0.5))),
      "ratios 1": (v, "ratios", (t, s, y), dict(ratios=(0.25, 1.0))),
      "ratios negative": (v, "ratios", (t, s, y), dict(ratios=(-0.1,))),
      "ratios scalar": (te, "ratios", (t, s, y), dict(ratios=0.25)),
      "seed float": (te, "seed", (t, s, y), dict(seed=1.0)),
      "seed str": (te, "seed", (t, s, y), dict(seed="0")),
      "seed bool": (te, "seed", (t, s, y), dict(seed=True)),
      "seed negative": (v, "seed", (t, s, y), dict(seed=-1)),
      "seed huge": (v, "seed", (t, s, y), dict(seed=2**64)),
      "temperature 0": (v, "temperature", (t, s, y), dict(temperature=0.0)),
      "temperature < 0": (v, "temperature", (t, s, y),
                          dict(temperature=-1.0)),
      "temperature inf": (v, "temperature", (t, s, y),
                          dict(temperature=math.inf)),
      "temperature nan": (v, "temperature", (t, s, y),
                          dict(temperature=math.nan)),
      "rule helps > hurts": (v, "ncjsd_helps", (t, s, y),
                             dict(rule=d._replace(ncjsd_helps=0.4))),
      "rule hurts > ln 2": (v, "ncjsd_hurts", (t, s, y),
                            dict(rule=d._replace(ncjsd_hurts=0.8))),
      "rule helps < 0": (v, "ncjsd_helps", (t, s, y),
                         dict(rule=d._replace(ncjsd_helps=-0.1))),
      "rule delta": (v, "delta_hurts", (t, s, y),
                     dict(rule=d._replace(delta_hurts=1.0))),
      "rule kl_floor": (v, "kl_floor", (t, s, y),
                        dict(rule=d._replace(kl_floor=-0.01))),
      "rule nan": (v, "delta_helps", (t, s, y),
                   dict(rule=d._replace(delta_helps=math.nan))),
      "rule inf": (v, "delta_hurts", (t, s, y),
                   dict(rule=d._replace(delta_hurts=-math.inf))),
      "rule tuple": (te, "rule", (t, s, y), dict(rule=tuple(d))),
  }


BAD = _bad_calls()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_naming_the_argument(case):
  error, name, args, kwargs = BAD[case]
  with pytest.raises(error, match=name):
    advisor.diagnose(*args, **{"bootstrap": 100, **kwargs})


def test_valid_base_passes():
  """The bad calls differ from a valid one only in what they name."""
  t, s, y = _base()
  d = advisor.diagnose(t, s, y, **FAST)
  assert d.n == 20 and d.verdict in advisor.VERDICTS


# -- the package -----------------------------------------------------------------


def test_reachable_from_the_package():
  assert ntdh_jax.diagnose is advisor.diagnose
  assert ntdh_jax.Diagnosis is advisor.Diagnosis
  assert {"diagnose", "Diagnosis"} <= set(ntdh_jax.__all__)
  with pytest.raises(AttributeError, match="no_such_name"):
    getattr(ntdh_jax, "no_such_name")


def test_bootstrap_in_blocks_of_resamples_gives_the_same_intervals(
    golden_seg, monkeypatch):
  """Resample counts are formed a few resamples at a time (memory bounded
  for large N·B); the blocks draw the same resamples in the same order."""
  t, s, y, _, _ = golden_seg
  whole = advisor.diagnose(t, s, y, ignore_label=IGNORE, bootstrap=101)
  # 3 resamples per block, the last block of 2.
  monkeypatch.setattr(advisor, "_WEIGHT_BLOCK", 3 * SEG_SHAPE[0] + 1)
  blocks = advisor.diagnose(t, s, y, ignore_label=IGNORE, bootstrap=101)
  for name in advisor.METRICS:
    np.testing.assert_allclose(blocks.divergences[name],
                               whole.divergences[name], rtol=1e-12)
  np.testing.assert_allclose(blocks.per_class.ncjsd, whole.per_class.ncjsd,
                             rtol=1e-12)
  np.testing.assert_allclose(blocks.ratio, whole.ratio, rtol=1e-12)
