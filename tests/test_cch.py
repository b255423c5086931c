"""Tests of ntdh_jax.info.cch (``cch_gap``, the CCH verdict) and the
``ntdh-cch`` command.

The verdicts are checked on constructed features whose answer is known
(H₂ a noisy copy of H₁ with labels independent of both: KD helps; H₂
carrying the label and H₁ independent of it: it does not), with every
estimator; Δ against closed forms; each repeat against the estimators
called directly on its rows; the subsampling, units, determinism, bad input
and the command line.

Most tests share one set of shapes (``N`` rows, 2-d features, 2 balanced
classes), so they share compiled programs; the trained estimators run a
few dozen steps (``OPTIONS``). The file takes about 30 s of CPU time
(2 cores), most of it compiling the four estimators (latent MI's ~10 s).
"""

import math
import os
import re
import subprocess
import sys
import warnings

import chex
import jax
import numpy as np
import pytest

from ntdh_jax import cch_cli
from ntdh_jax.info import CCHResult
from ntdh_jax.info import cch_gap
from ntdh_jax.info import correlation_mi
from ntdh_jax.info import ksg
from ntdh_jax.info import ksg_discrete
from ntdh_jax.info.cch import DOES_NOT_HELP
from ntdh_jax.info.cch import HELPS
from ntdh_jax.info.cch import INCONCLUSIVE
from ntdh_jax.info.cch import Term
from ntdh_jax.info.cch import verdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 256
REPEATS = 3
# Short trainings: enough for the sign of Δ on the constructed cases (their
# |Δ| is 0.3 nats or more), far too short for accurate MI.
OPTIONS = {
    "ksg": {},
    "mine": dict(hidden=(16,), steps=100, batch_size=32, num_segments=2,
                 lr=3e-3),
    "infonce": dict(hidden=(16,), embed=8, steps=100, batch_size=32,
                    num_segments=2, lr=3e-3),
    "latent": dict(hidden=8, latent_dim=2, batch_size=32, epochs=20,
                   patience=5, lr=3e-3),
}


def _balanced_labels(rng, n=N, classes=2):
  return rng.permutation(np.arange(n) % classes)


def helps_case(seed=0):
  """H₂ = H₁ + 0.3·noise (I(H₁; H₂) = log(1 + 1/0.09) = 2.49 nats over the
  two dimensions), labels independent of both (I(H₂; Y) = 0): Δ ≫ 0."""
  rng = np.random.default_rng(seed)
  h1 = rng.standard_normal((N, 2))
  h2 = h1 + 0.3 * rng.standard_normal((N, 2))
  return h1.astype(np.float32), h2.astype(np.float32), _balanced_labels(rng)


def hurts_case(seed=0):
  """H₂'s first column separates the two classes (6 standard deviations
  apart: I(H₂; Y) ≈ log 2 = 0.69 nats), H₁ independent of H₂
  (I(H₁; H₂) = 0): Δ ≈ −0.69."""
  rng = np.random.default_rng(seed)
  y = _balanced_labels(rng)
  h2 = np.c_[6.0 * y + rng.standard_normal(N), rng.standard_normal(N)]
  h1 = rng.standard_normal((N, 2))
  return h1.astype(np.float32), h2.astype(np.float32), y


H1, H2, Y = helps_case()


# -- verdicts on constructed cases ---------------------------------------------


@pytest.mark.parametrize("estimator", list(OPTIONS))
def test_verdicts_on_constructed_cases(estimator):
  helps = cch_gap(*helps_case(), estimator=estimator, repeats=REPEATS,
                  options=OPTIONS[estimator])
  assert isinstance(helps, CCHResult)
  assert helps.verdict == HELPS, helps
  assert helps.interval[0] > 0
  hurts = cch_gap(*hurts_case(), estimator=estimator, repeats=REPEATS,
                  options=OPTIONS[estimator])
  assert hurts.verdict == DOES_NOT_HELP, hurts
  assert hurts.interval[1] < 0
  for result in (helps, hurts):
    assert result.estimator == estimator and result.unit == "nats"
    assert (result.n, result.classes) == (N, 2)
    chex.assert_shape(result.rows, (REPEATS, N // 2))
    for term in (result.teacher_student, result.student_label, result.gap):
      chex.assert_shape(term.values, (REPEATS,))
      assert np.all(np.isfinite(term.values))
  if estimator == "ksg":
    # KSG and Ross near the truth at M = 128 rows: KSG under-estimates the
    # high-MI copy (2.03–2.10 of 2.49 here) and over-estimates the
    # independent pair when one column is bimodal (0.07–0.16 of 0).
    assert abs(helps.teacher_student.mean - math.log(1 + 1 / 0.09)) < 0.5
    assert abs(helps.student_label.mean) < 0.1
    assert abs(hurts.teacher_student.mean) < 0.2
    assert abs(hurts.student_label.mean - math.log(2)) < 0.02


def _mixture_mi(mu):
  """I(M; Y) of Y = ±1 equiprobable and M | Y ~ N(Y·mu, 1), by quadrature:
  log 2 − E[H(Y | M)], P(Y = 1 | m) = σ(2·mu·m)."""
  m = np.linspace(-mu - 12, mu + 12, 200_001)
  pdf = 0.5 * (np.exp(-(m - mu) ** 2 / 2)
               + np.exp(-(m + mu) ** 2 / 2)) / math.sqrt(2 * math.pi)
  p = 1 / (1 + np.exp(-2 * mu * m))
  entropy = -(p * np.log(p) + (1 - p) * np.log1p(-p))
  return math.log(2) - np.sum(pdf * np.nan_to_num(entropy)) * (m[1] - m[0])


def test_gap_matches_closed_forms():
  """H₁ scalar Gaussian; H₂ = (g, m) with g jointly Gaussian with H₁
  (ρ = 0.9) and m a two-class mixture (means ±1) carrying Y, independent
  of (H₁, g). Then I(H₁; H₂) = I(H₁; g) = −½ log(1 − ρ²) = 0.830 nats and
  I(H₂; Y) = I(m; Y) = 0.337 (quadrature), Δ = 0.494. KSG and Ross on
  1000-row subsamples: each term within 0.06 nats, Δ within 0.08 (seeds
  0–3 gave Δ = 0.485–0.521)."""
  rho, mu, n = 0.9, 1.0, 2000
  rng = np.random.default_rng(0)
  y = _balanced_labels(rng, n)
  h1 = rng.standard_normal(n)
  g = rho * h1 + math.sqrt(1 - rho ** 2) * rng.standard_normal(n)
  m = np.where(y == 1, mu, -mu) + rng.standard_normal(n)
  result = cch_gap(h1.astype(np.float32), np.c_[g, m].astype(np.float32), y,
                   repeats=REPEATS)
  truth_ts, truth_sl = float(correlation_mi(rho)), _mixture_mi(mu)
  assert truth_sl == pytest.approx(0.3368, abs=1e-4)
  assert abs(result.teacher_student.mean - truth_ts) < 0.06
  assert abs(result.student_label.mean - truth_sl) < 0.06
  assert abs(result.gap.mean - (truth_ts - truth_sl)) < 0.08


def test_repeats_are_the_estimators_on_their_rows():
  """Repeat r is ``ksg`` / ``ksg_discrete`` on ``rows[r]`` with the keys
  the module docstring gives; Δ is their difference; mean, std (ddof 1)
  and the interval are those of the repeats."""
  seed = 3
  result = cch_gap(H1, H2, Y, repeats=REPEATS, seed=seed)
  for r, rows in enumerate(result.rows):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), r)
    ts = ksg(H1[rows], H2[rows], key=jax.random.fold_in(key, 0)).mean
    sl = ksg_discrete(H2[rows], Y[rows], key=jax.random.fold_in(key, 1)).mean
    np.testing.assert_allclose(result.teacher_student.values[r], ts,
                               atol=1e-5)
    np.testing.assert_allclose(result.student_label.values[r], sl, atol=1e-5)
  gap = result.teacher_student.values - result.student_label.values
  np.testing.assert_allclose(result.gap.values, gap, atol=1e-6)
  assert result.gap.mean == pytest.approx(np.mean(gap), abs=1e-6)
  assert result.gap.std == pytest.approx(np.std(gap, ddof=1), abs=1e-6)
  half = 2 * result.gap.std / math.sqrt(REPEATS)
  np.testing.assert_allclose(result.interval, (result.gap.mean - half,
                                               result.gap.mean + half))


# -- subsampling, keys, units --------------------------------------------------


def test_subsamples_are_distinct_rows_stratified_by_class():
  labels = np.r_[np.zeros(150, int), np.ones(70, int), np.full(36, 2)]
  result = cch_gap(H1, H2, labels, repeats=REPEATS, seed=1)
  chex.assert_shape(result.rows, (REPEATS, 75 + 35 + 18))
  for rows in result.rows:
    assert len(np.unique(rows)) == len(rows)  # no row drawn twice
    np.testing.assert_array_equal(rows, np.sort(rows))
    assert rows.min() >= 0 and rows.max() < N
    np.testing.assert_array_equal(np.bincount(labels[rows]), [75, 35, 18])
  assert len({tuple(rows) for rows in result.rows}) == REPEATS  # differ
  # All of 128 rows (64 per class) in every repeat: the shapes of the
  # subsamples above, so the same compiled program.
  half = np.sort(np.r_[np.flatnonzero(Y == 0)[:64],
                       np.flatnonzero(Y == 1)[:64]])
  everything = cch_gap(H1[half], H2[half], Y[half], repeats=REPEATS,
                       subsample=1.0)
  np.testing.assert_array_equal(everything.rows, [np.arange(N // 2)] * REPEATS)
  # Only the jitter differs between the repeats: a spread of ~1e-3 nats
  # (near-ties flip), against ~0.03 between subsamples.
  assert everything.teacher_student.std < 0.01


def test_same_seed_same_result_other_seed_other():
  a = cch_gap(H1, H2, Y, repeats=REPEATS, seed=5)
  b = cch_gap(H1, H2, Y, repeats=REPEATS, seed=5)
  c = cch_gap(H1, H2, Y, repeats=REPEATS, seed=6)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a.rows, c.rows)
  assert not np.array_equal(a.gap.values, c.gap.values)


def test_bits_are_nats_over_ln_2():
  nats = cch_gap(H1, H2, Y, repeats=REPEATS)
  bits = cch_gap(H1, H2, Y, repeats=REPEATS, base=2)
  assert (nats.unit, bits.unit) == ("nats", "bits")
  for a, b in ((nats.teacher_student, bits.teacher_student),
               (nats.student_label, bits.student_label),
               (nats.gap, bits.gap)):
    np.testing.assert_allclose(b.values, a.values / math.log(2), rtol=1e-5,
                               atol=1e-6)
    assert b.std == pytest.approx(a.std / math.log(2), rel=1e-4, abs=1e-6)
  np.testing.assert_allclose(bits.interval,
                             np.asarray(nats.interval) / math.log(2),
                             rtol=1e-4)
  assert bits.verdict == nats.verdict
  assert cch_gap(H1, H2, Y, repeats=REPEATS, base=10).unit == "log base 10"


def test_labels_are_classes_whatever_their_values():
  """Integer labels are class names: any integers, whole-number floats and
  bools give the result of 0..C−1."""
  reference = cch_gap(H1, H2, Y, repeats=REPEATS)
  for labels in (np.where(Y == 1, 7, -3), Y.astype(np.float64),
                 Y.astype(bool), Y.astype(np.uint8)):
    chex.assert_trees_all_equal(cch_gap(H1, H2, labels, repeats=REPEATS),
                                reference)


@pytest.mark.parametrize("values, expected", [
    ([1.0, 1.2, 1.1], (HELPS, True)),
    ([-1.0, -1.2, -1.1], (DOES_NOT_HELP, True)),
    ([0.5, -0.4, 0.3], (INCONCLUSIVE, True)),
    ([0.2, 0.0, 0.1], (INCONCLUSIVE, True)),  # interval reaches below 0
    ([0.3], (HELPS, False)),  # one repeat: a zero-width interval
    ([0.0], (INCONCLUSIVE, False)),
])
def test_verdict_rule(values, expected):
  values = np.asarray(values, np.float32)
  std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  (low, high), decision = verdict(Term(values, float(np.mean(values)), std))
  assert decision == expected[0]
  half = 2 * std / math.sqrt(len(values))
  assert (low, high) == pytest.approx((np.mean(values) - half,
                                       np.mean(values) + half))
  assert (high > low) == expected[1]


# -- bad input -----------------------------------------------------------------


def _with(array, row, column, value):
  out = array.copy()
  out[row, column] = value
  return out


def _one_small_class():
  labels = Y.copy()
  labels[:4] = 7
  return labels


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(student_features=H2[:200]), ValueError,
     "teacher_features and student_features must have the same number of "
     "rows N .* N = 256 and N = 200"),
    (dict(labels=Y[:200]), ValueError, r"labels must have shape \[N\] = "
     r"\(256,\)"),
    (dict(subsample=0.01), ValueError,
     "N = 256 rows, so each repeat uses M = 2 .* 'ksg' estimator needs M "
     "more than k = 3"),
    (dict(labels=_one_small_class()), ValueError,
     "labels: class 7 has 4 rows, so 2 in each repeat .* more than k = 3"),
    (dict(estimator="mine"), ValueError,
     r"M = 128 .* 'mine' estimator needs M at least 512"),
    (dict(estimator="latent", options={"k": 100}), ValueError,
     "'latent' estimator needs M at least 202"),
    (dict(teacher_features=_with(H1, 3, 1, np.nan)), ValueError,
     "teacher_features must be finite .* first at row 3, column 1"),
    (dict(student_features=_with(H2, 5, 0, np.inf)), ValueError,
     "student_features must be finite"),
    (dict(student_features=np.c_[H2, np.ones(N, np.float32)]), ValueError,
     "student_features must have no constant column .* column 2"),
    (dict(labels=np.where(np.arange(N) == 3, 0.5, Y)), ValueError,
     "labels must be integer class labels; .* row 3 holds 0.5"),
    (dict(labels=np.where(np.arange(N) == 9, np.nan, Y)), ValueError,
     "labels must be integer class labels; .* row 9 holds nan"),
    (dict(labels=np.array(["a", "b"] * (N // 2))), ValueError,
     "labels must be integer class labels, got dtype <U1 .*non-numeric"),
    (dict(labels=np.zeros(N, int)), ValueError,
     "labels must hold at least 2 classes, got the single class 0"),
    (dict(repeats=0), ValueError, "repeats must be >= 1"),
    (dict(repeats=2.0), TypeError, "repeats must be an int"),
    (dict(subsample=0.0), ValueError, r"subsample must lie in \(0, 1\]"),
    (dict(subsample=1.5), ValueError, r"subsample must lie in \(0, 1\]"),
    (dict(subsample=float("nan")), ValueError, "subsample must lie in"),
    (dict(estimator="kde"), ValueError,
     r"estimator must be one of \('ksg', 'latent', 'mine', 'infonce'\), got "
     "'kde'"),
    (dict(options={"steps": 10}), ValueError,
     r"options has unknown keys \['steps'\] for estimator 'ksg'; its options "
     r"are \['block_size', 'k', 'noise'\]"),
    (dict(estimator="infonce", options={"k": 3, "ema_rate": 0.1}), ValueError,
     r"unknown keys \['ema_rate', 'k'\] for estimator 'infonce'; .*'embed'"),
    (dict(options={"k": 0}), ValueError, "k must be >= 1"),
    (dict(estimator="mine", options={"ema_rate": 2.0}), ValueError,
     r"ema_rate must lie in \(0, 1\]"),
    (dict(estimator="mine", options={"lr": -1.0}), ValueError,
     "lr must be > 0"),
    (dict(estimator="latent", options={"hidden": 6}), ValueError,
     "hidden must be divisible by 4"),
    (dict(options=[("k", 3)]), TypeError, "options must be a dict"),
    (dict(teacher_features=H1.astype(np.int32)), TypeError,
     "teacher_features must be a floating array"),
    (dict(teacher_features=H1[:, :, None]), ValueError,
     "teacher_features must have rank 1 or 2"),
    (dict(labels=list(Y)), TypeError, "labels must be an array"),
    (dict(base=1), ValueError, "base must be"),
    (dict(seed="0"), TypeError, "seed must be an int"),
])
def test_bad_input(kwargs, error, match):
  args = {"teacher_features": H1, "student_features": H2, "labels": Y}
  args.update(kwargs)
  with pytest.raises(error, match=match):
    cch_gap(args.pop("teacher_features"), args.pop("student_features"),
            args.pop("labels"), **args)


def test_duplicated_rows_warn_for_knn_estimators():
  # Rows 0 and 1 copied onto the last rows of their classes (the labels,
  # and so the shapes, stay those of the other tests).
  h1, h2 = H1.copy(), H2.copy()
  for row in (0, 1):
    copy = np.flatnonzero(Y == Y[row])[-1 - row]
    h1[copy], h2[copy] = H1[row], H2[row]
  with pytest.warns(UserWarning) as record:
    cch_gap(h1, h2, Y, repeats=REPEATS)
  assert [str(w.message).split(" repeat")[0] for w in record] == [
      "cch_gap(teacher_features, student_features): 2 of 256 rows",
      "cch_gap(student_features, labels): 2 of 256 rows"]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    cch_gap(H1, H2, Y, repeats=REPEATS)


def test_trained_estimators_load_lazily():
  """``ntdh_jax.info`` with ``cch_gap`` and the KSG estimator's plan import
  neither neural, latent, Flax nor optax; asking for "mine" loads neural
  (and not latent)."""
  code = (
      "import sys\n"
      "from ntdh_jax.info import cch\n"
      "cch.ESTIMATORS['ksg'](None)\n"
      "heavy = ('ntdh_jax.info.neural', 'ntdh_jax.info.latent', 'flax', "
      "'optax')\n"
      "assert not [m for m in heavy if m in sys.modules], sys.modules\n"
      "cch.ESTIMATORS['mine'](None)\n"
      "assert 'ntdh_jax.info.neural' in sys.modules\n"
      "assert 'ntdh_jax.info.latent' not in sys.modules\n")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# -- ntdh-cch ------------------------------------------------------------------


def _main(capsys, *argv):
  try:
    cch_cli.main([str(a) for a in argv])
    code = 0
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def _save(tmp_path, teacher=H1, student=H2, labels=Y):
  paths = [tmp_path / f"{name}.npy" for name in ("t", "s", "y")]
  for path, array in zip(paths, (teacher, student, labels)):
    np.save(path, array)
  return paths


def test_cli_reports_the_gap(capsys, tmp_path):
  t, s, y = _save(tmp_path)
  out_file = tmp_path / "report.md"
  code, out, err = _main(capsys, "--teacher", t, "--student", s, "--labels",
                         y, "--repeats", REPEATS, "--out", out_file)
  assert code == 0, err
  expected = cch_gap(H1, H2, Y, repeats=REPEATS)
  for text in (f"teacher: {t}", f"labels: {y}", "estimator: ksg; unit: nats",
               f"N = {N} rows, 2 classes; 3 repeats of M = 128 rows",
               f"| Δ | {expected.gap.mean:.4f} | {expected.gap.std:.4f} |",
               f"[{expected.interval[0]:.4f}, {expected.interval[1]:.4f}]",
               "**Verdict: KD expected to help.**"):
    assert text in out, out
  assert out_file.read_text() == out
  code, out, _ = _main(capsys, "--teacher", t, "--student", s, "--labels", y,
                       "--repeats", REPEATS, "--bits")
  assert code == 0 and "unit: bits" in out


@pytest.mark.parametrize("files, flags, message", [
    (dict(teacher="missing"), (), r"--teacher {t}: no such file"),
    (dict(student=H2[:200]), (),
     r"N = 256 and N = 200\. \(teacher_features is --teacher {t}; "
     r"student_features is --student {s}\)"),
    (dict(labels="text"), (), r"--labels {y} is not a \.npy file"),
    (dict(student="npz"), (), r"--student {s} is not a \.npy file"),
    (dict(teacher=H1[:, :, None]), (),
     r"--teacher {t} holds an array of shape \(256, 2, 1\); expected "
     r"\[N, D1\]"),
    (dict(labels=Y[:, None]), (), r"--labels {y} holds an array of shape "
     r"\(256, 1\); expected \[N\]"),
    (dict(labels=np.array([{}] * N)), (),
     r"--labels {y}: cannot load it as a numeric array"),
    (dict(labels=np.full(N, 0.5)), (), r"labels must be integer class labels"
     r".* \(labels is --labels {y}\)"),
    ({}, ("--subsample", "2"), r"subsample must lie in \(0, 1\]"),
    ({}, ("--estimator", "kde"), r"invalid choice: 'kde'"),
])
def test_cli_errors_are_one_line_naming_the_file(capsys, tmp_path, files,
                                                  flags, message):
  t, s, y = _save(tmp_path)
  paths = {"teacher": t, "student": s, "labels": y}
  for name, content in files.items():
    if isinstance(content, np.ndarray):
      np.save(paths[name], content)
    elif content == "missing":
      paths[name] = tmp_path / "missing.npy"
    elif content == "text":
      paths[name].write_text("0 1 0 1\n")
    elif content == "npz":
      paths[name] = tmp_path / "s.npz"
      np.savez(paths[name], H2)
  code, out, err = _main(capsys, "--teacher", paths["teacher"], "--student",
                         paths["student"], "--labels", paths["labels"],
                         "--repeats", REPEATS, *flags)
  assert code == 2 and out == ""
  assert err.startswith("ntdh-cch: error: ") and err.count("\n") == 1, err
  pattern = message.format(**{short: re.escape(str(paths[name])) for short, name
                              in (("t", "teacher"), ("s", "student"),
                                  ("y", "labels"))})
  assert re.search(pattern, err), err
