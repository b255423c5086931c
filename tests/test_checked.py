"""Checked mode (``validation.checked``): value checks on traced arguments.

A bad value passed through the user's own ``jax.jit`` cannot raise in the
plain program (it is traced), but ``checked`` raises the eager call's
``ValueError``, word for word; valid inputs give the plain program's bits,
and the checks cost nothing when ``checked`` is not used.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import ntdh_jax
from ntdh_jax import divergences
from ntdh_jax import losses
from ntdh_jax import masks
from ntdh_jax import metrics
from ntdh_jax import validation

KEY = jax.random.PRNGKey(0)
N, C, N_DATA = 4, 5, 12


def _logits(seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(N, C)).astype(np.float32) * 3,
          rng.normal(size=(N, C)).astype(np.float32) * 3)


S, T = _logits()
Y = np.array([0, 1, 2, 3], np.int32)
Y_BAD = np.array([0, 1, 7, 3], np.int32)
WHERE = np.array([True, False, True, True])
NCJSD = np.linspace(0.0, 0.6, 10).astype(np.float32)
IMPORTANCE = np.linspace(0.0, 1.0, 8).astype(np.float32)[::-1].copy()


def _crd_case():
  state = losses.crd_init(KEY, N_DATA, 8)
  rng = np.random.default_rng(1)
  embed = rng.normal(size=(2, N, 8)).astype(np.float32)
  embed /= np.linalg.norm(embed, axis=-1, keepdims=True)
  idx = np.arange(N, dtype=np.int32)
  labels = np.arange(N_DATA, dtype=np.int32) % 3
  cidx = np.asarray(losses.crd_contrast_indices(KEY, labels, 3, idx))
  return state, embed[0], embed[1], idx, cidx


STATE, V_S, V_T, IDX, CIDX = _crd_case()


def _crd(nce_t, momentum):
  return losses.crd_loss(STATE, V_S, V_T, IDX, CIDX, nce_t, momentum)[0]


# name -> (f of its traced arguments, valid arguments, [(bad arguments,
# regex of the error)]). Every value check that a trace would skip.
CASES = {
    "dkd-labels": (lambda y: losses.dkd(S, T, y), (Y,),
                   [((Y_BAD,), r"labels must lie in \[0, 5\); got 7 at "
                               r"flat index 2 \(1 of 4")]),
    "dkd-labels-where": (
        lambda y, w: losses.dkd(S, T, y, where=w),
        (np.array([0, 255, 2, 3], np.int32), WHERE),
        [((np.array([0, 255, -1, 3], np.int32), WHERE),
          r"labels must lie in \[0, 5\) where valid; got -1")]),
    "decompose-labels": (
        lambda y: divergences.decompose(teacher_logits=T, student_logits=S,
                                        labels=y), (Y,),
        [((Y_BAD,), r"labels must lie in \[0, 5\)")]),
    "correct-labels": (lambda y: metrics.correct(T, y), (Y,),
                       [((Y_BAD,), r"labels must lie in \[0, 5\)")]),
    "kd-temperature": (
        lambda temp: losses.kd(S, T, temp), (np.float32(2.0),),
        [((np.float32(v),), "temperature must be > 0 and finite, got "
          + re.escape(text))
         for v, text in ((0.0, "0."), (-1.0, "-1."), (np.inf, "inf."),
                         (np.nan, "nan."))]),
    "dkd-weights": (
        lambda a, b, temp: losses.dkd(S, T, Y, a, b, temp),
        (np.float32(1.0), np.float32(8.0), np.float32(4.0)),
        [((np.float32(np.nan), np.float32(8.0), np.float32(4.0)),
          "alpha must be >= 0 and finite, got nan"),
         ((np.float32(1.0), np.float32(-1.0), np.float32(4.0)),
          "beta must be >= 0 and finite, got -1"),
         ((np.float32(np.inf), np.float32(8.0), np.float32(4.0)),
          "alpha must be >= 0 and finite, got inf"),
         ((np.float32(1.0), np.float32(8.0), np.float32(0.0)),
          "temperature must be > 0 and finite, got 0")]),
    "sample-mask-ratio": (
        lambda r: masks.sample_keep_mask(NCJSD, r, "true", KEY),
        (np.float32(0.5),),
        [((np.float32(v),), r"ratio must lie in \[0, 1\), got " + text)
         for v, text in ((1.0, "1"), (1.5, "1.5"), (-0.1, "-0.1"),
                         (np.nan, "nan"))]),
    "feature-mask-ratio-and-kind": (
        lambda r, k: masks.feature_keep_mask(IMPORTANCE, r, k, KEY),
        (np.float32(0.25), np.float32(1.0)),
        [((np.float32(1.0), np.float32(1.0)), r"ratio must lie in \[0, 1\)"),
         ((np.float32(0.25), np.float32(3.0)),
          r"kind must be one of \('true', 'false', 'random'\) or its index "
          r"0..2, got 3"),
         ((np.float32(0.25), np.float32(0.5)), "kind must be one of")]),
    "crd-hyperparameters": (
        _crd, (np.float32(0.07), np.float32(0.5)),
        [((np.float32(0.0), np.float32(0.5)), "nce_t must be > 0 and finite"),
         ((np.float32(0.07), np.float32(1.0)),
          r"momentum must lie in \[0, 1\)")]),
    "crd-indices": (
        lambda idx, cidx: losses.crd_loss(STATE, V_S, V_T, idx, cidx),
        (IDX, CIDX),
        [((IDX, CIDX + N_DATA), r"contrast_indices must lie in \[0, "
          r"n_data\) = \[0, 12\); got values in"),
         ((IDX, np.concatenate([CIDX[:, 1:2], CIDX[:, 1:]], axis=1)),
          "positive comes first, as crd_contrast_indices draws them\\); "
          "4 rows differ")]),
    "contrast-labels": (
        lambda labels: losses.crd_contrast_indices(KEY, labels, 3),
        (np.arange(N_DATA, dtype=np.int32) % 2,),
        [((np.zeros(N_DATA, np.int32),), "labels must hold at least 2 "
          r"classes \(CRD draws negatives from the other classes\), got 1")]),
}

BAD = [(name, i) for name, case in CASES.items() for i in range(len(case[2]))]


def _eager_message(fn, args):
  with pytest.raises(ValueError) as error:
    fn(*args)
  return str(error.value)


@pytest.mark.parametrize("name,i", BAD)
def test_checked_jit_raises_the_eager_error(name, i):
  """Eagerly the bad value raises; under the user's jit it cannot, and
  ``checked(jax.jit(f))`` raises the same ValueError, word for word."""
  fn, _, bad = CASES[name]
  args, match = bad[i]
  eager = _eager_message(fn, args)
  assert re.search(match, eager), eager
  with pytest.raises(ValueError) as error:
    ntdh_jax.checked(jax.jit(fn))(*args)
  assert str(error.value) == eager


@pytest.mark.parametrize("name", list(CASES))
def test_plain_jit_runs_on_bad_values_and_checked_on_good_is_bit_identical(
    name):
  """The checks are debug checks: without ``checked`` a jitted call with a
  bad traced value runs (the numbers are meaningless, nothing raises); with
  valid values ``checked`` returns the plain program's bits."""
  fn, good, bad = CASES[name]
  plain = jax.jit(fn)
  for args, _ in bad:
    jax.block_until_ready(plain(*args))
  jax.tree.map(np.testing.assert_array_equal,
               validation.checked(plain)(*good), plain(*good))


def test_checked_vmap_checks_every_mapped_call():
  """Under vmap (eager, or jitted inside checked) one bad temperature among
  good ones raises its error; an all-good batch gives vmap's bits."""
  batched = jax.vmap(lambda temp: losses.dkd(S, T, Y, 1.0, 8.0, temp))
  good = np.array([1.0, 2.0, 4.0], np.float32)
  for fn in (batched, jax.jit(batched)):
    checked = validation.checked(fn)
    np.testing.assert_array_equal(checked(good), fn(good))
    with pytest.raises(ValueError,
                       match="temperature must be > 0 and finite, got -2"):
      checked(np.array([1.0, -2.0, 4.0], np.float32))


def test_checked_sees_through_scan_and_lax_map_in_jit():
  """Labels out of range in one step of a scanned (or lax.map-ped) loss
  raise; valid ones give the plain program's bits."""
  def scanned(labels):  # [steps, N]
    def step(total, y):
      return total + losses.dkd(S, T, y), None
    return jax.lax.scan(step, jnp.float32(0.0), labels)[0]

  def mapped(ratios):
    return jax.lax.map(
        lambda r: masks.sample_keep_mask(NCJSD, r, "false", KEY), ratios)

  labels = np.stack([Y, Y[::-1]])
  np.testing.assert_array_equal(validation.checked(jax.jit(scanned))(labels),
                                jax.jit(scanned)(labels))
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    validation.checked(jax.jit(scanned))(np.stack([Y, Y_BAD]))
  with pytest.raises(ValueError, match=r"ratio must lie in \[0, 1\)"):
    validation.checked(jax.jit(mapped))(np.array([0.5, 1.0], np.float32))


def test_checked_passes_static_errors_through():
  """Shape, dtype and type errors are raised while tracing, as without it."""
  with pytest.raises(TypeError, match="temperature must be a number"):
    validation.checked(lambda s: losses.kd(s, T, "2.0"))(S)
  with pytest.raises(ValueError, match="labels must have shape"):
    validation.checked(lambda y: losses.dkd(S, T, y))(Y[:3])


def test_constants_inside_jit_are_still_checked_while_tracing():
  """A concrete (closed-over) bad value is checked at trace time, with or
  without checked mode."""
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    jax.jit(lambda s: losses.dkd(s, T, Y_BAD))(S)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    jax.jit(lambda s: losses.kd(s, T, 0.0))(S)


def _compiled(fn, args):
  """The optimised HLO's instructions with names removed, sorted: source
  locations and jax's name counters differ between two tracings, the
  program (every instruction, its shapes and attributes) does not."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  text = re.sub(r", metadata=\{[^}]*\}", "", text)
  text = re.sub(r"%[\w.\-]+|[\w.\-]+(?=: )", "", text[text.index("\n\n%"):])
  return sorted(text.splitlines())


@pytest.mark.parametrize("name", ["dkd-labels-where", "dkd-weights",
                                  "feature-mask-ratio-and-kind",
                                  "crd-indices"])
def test_debug_checks_leave_the_compiled_program_unchanged(name, monkeypatch):
  """Without checked mode the compiled program is the one without any
  checks: same instructions, so the same cost and the same bits."""
  fn, good, _ = CASES[name]
  # New function objects, so neither compilation reuses the other's trace.
  with_checks = _compiled(lambda *a: fn(*a), good)
  monkeypatch.setattr(checkify, "debug_check", lambda *a, **k: None)
  without = _compiled(lambda *a: fn(*a), good)
  assert with_checks == without
