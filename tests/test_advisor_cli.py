"""Tests of the ``ntdh-diagnose`` command and of ``advisor_report.write``.

The command runs in-process (``advisor_cli.main``) on files each test
writes: end to end on ``.npy`` and ``.npz`` inputs with features (the
report, the JSON against ``diagnose``'s numbers, the keep masks against the
ranking), determinism, segmentation-shaped logits with an ignore label, and
every kind of bad input as a one-line status-2 error naming the flag and the
file; one test runs the installed console script. ``diagnose`` itself is
``advisor.py``'s to test.

The runs share one set of shapes (N = 300 examples, 10 classes, 6-d
features) and ``--bootstrap 100``, so they share compiled programs: the
file takes about 20 s of CPU time, most of it the first ``diagnose`` (the
divergences and KSG compile once) and the console script's start.
"""

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ntdh_jax import advisor
from ntdh_jax import advisor_cli
from ntdh_jax import advisor_report

N, C, D = 300, 10, 6
BOOTSTRAP = 100
OPTIONS = ("--bootstrap", BOOTSTRAP, "--mi-repeats", 3)
FILES = {"report.md", "diagnosis.json", "ranking.npy", "ncjsd.npy",
         "keep_25.npy", "keep_50.npy", "divergences.png", "per_class.png"}


def pair(n=N, seed=0):
  """Logits of a teacher and a weaker student that share their non-target
  structure (a per-example latent both see), and features carrying the
  label and that latent."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C, n)
  onehot = np.eye(C)[y]
  latent = rng.standard_normal((n, 3))
  w = rng.standard_normal((3, C))
  teacher = 4 * onehot + latent @ w + 0.5 * rng.standard_normal((n, C))
  student = 2 * onehot + latent @ w + 0.5 * rng.standard_normal((n, C))
  means = rng.standard_normal((C, D - 3))
  features = [np.c_[means[y] + s * rng.standard_normal((n, D - 3)),
                    latent + s * rng.standard_normal((n, 3))]
              for s in (0.3, 0.5)]
  return (teacher.astype(np.float32), student.astype(np.float32), y,
          *(f.astype(np.float32) for f in features))


TEACHER, STUDENT, LABELS, H1, H2 = pair()


def _main(*argv):
  """``(exit status, stdout, stderr)`` of ``ntdh-diagnose argv``."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      advisor_cli.main([str(a) for a in argv])
      code = 0
    except SystemExit as e:
      code = e.code
  return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """The pair saved as the command reads it: logits and labels as .npy,
  both features in one .npz."""
  folder = tmp_path_factory.mktemp("inputs")
  paths = {name: folder / f"{name}.npy" for name in ("t", "s", "y")}
  for name, array in zip(paths, (TEACHER, STUDENT, LABELS)):
    np.save(paths[name], array)
  paths["f"] = folder / "features.npz"
  np.savez(paths["f"], teacher=H1, student=H2)
  return paths


def _argv(paths, out, features=True):
  argv = ["--teacher", paths["t"], "--student", paths["s"], "--labels",
          paths["y"], "--out", out, *OPTIONS]
  if features:
    argv += ["--teacher-features", f"{paths['f']}:teacher",
             "--student-features", f"{paths['f']}:student"]
  return argv


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory):
  """One end-to-end run with features: ``(out dir, status, stdout,
  stderr)``."""
  out = tmp_path_factory.mktemp("run") / "diagnosis"
  return (out, *_main(*_argv(inputs, out)))


@pytest.fixture(scope="module")
def expected():
  """``diagnose`` on the same arrays with the command's options."""
  return advisor.diagnose(TEACHER, STUDENT, LABELS, H1, H2,
                          bootstrap=BOOTSTRAP, mi_repeats=3)


# -- end to end ----------------------------------------------------------------


def test_cli_writes_the_report(run, inputs, expected):
  out, code, stdout, stderr = run
  assert code == 0, stderr
  assert set(os.listdir(out)) == FILES | {"cch_delta.png"}
  report = (out / "report.md").read_text(encoding="utf-8")
  assert stdout == report
  assert report.startswith("# Will distillation help?")
  assert f"**Verdict: {expected.verdict}**" in report
  for line in expected.evidence:
    assert f"- {line}" in report
  for text in (f"teacher_logits: `{inputs['t']}`",
               f"student_features: `{inputs['f']}:student`",
               "`keep_25.npy`", "`keep_50.npy`", "calibration table",
               f"| NCJSD | {expected.divergences['ncjsd'].value:.4f} |",
               f"| Δ | {expected.cch.gap.mean:.4f} |"):
    assert text in report, text
  for name in ("divergences.png", "per_class.png", "cch_delta.png"):
    assert (out / name).stat().st_size > 0
    assert f"]({name})" in report


def test_keep_masks_exclude_the_top_of_the_ranking(run, expected):
  out = run[0]
  ranking = np.load(out / "ranking.npy")
  np.testing.assert_array_equal(ranking, expected.ranking)
  assert sorted(ranking.tolist()) == list(range(N))
  ncjsd = np.load(out / "ncjsd.npy")
  assert ncjsd.shape == (N,)
  assert np.all(np.diff(ncjsd[ranking]) <= 0)  # most divergent first
  for ratio in (0.25, 0.5):
    keep = np.load(out / f"keep_{round(100 * ratio)}.npy")
    assert keep.shape == (N,) and keep.dtype == np.float32
    excluded = math.floor(ratio * N)
    assert set(np.flatnonzero(keep == 0)) == set(ranking[:excluded])
    assert np.all(keep[ranking[excluded:]] == 1)


def test_json_holds_the_diagnosis_numbers(run, expected):
  got = json.loads((run[0] / "diagnosis.json").read_text(encoding="utf-8"))
  d = expected
  for name in ("verdict", "ntdh_verdict", "cch_verdict", "mask_ratio", "n",
               "entries", "classes", "temperature", "bootstrap", "level",
               "seed"):
    assert got[name] == getattr(d, name), name
  assert got["evidence"] == list(d.evidence)
  for name, interval in d.divergences.items():
    assert got["divergences"][name] == interval._asdict()
  for role, interval in d.accuracy.items():
    assert got["accuracy"][role] == interval._asdict()
  assert got["ratio"] == d.ratio._asdict()
  for field in ("count", "nckl", "ncjsd"):
    np.testing.assert_array_equal(got["per_class"][field],
                                  getattr(d.per_class, field))
  assert got["kept_ncjsd"] == {str(r): v for r, v in d.kept_ncjsd.items()}
  cch = got["cch"]
  for term in ("teacher_student", "student_label", "gap"):
    np.testing.assert_array_equal(cch[term]["values"],
                                  getattr(d.cch, term).values)
    assert cch[term]["mean"] == getattr(d.cch, term).mean
    assert cch[term]["std"] == getattr(d.cch, term).std
  assert cch["interval"] == list(d.cch.interval)
  assert cch["repeats"] == 3
  assert cch["dropped_features"] == {"teacher": 0, "student": 0}
  assert got["rule"] == d.rule._asdict()
  assert got["files"]["keep"] == {"0.25": "keep_25.npy",
                                  "0.5": "keep_50.npy"}


def test_same_seed_same_bytes(run, inputs, tmp_path):
  code, _, err = _main(*_argv(inputs, tmp_path / "again"))
  assert code == 0, err
  for name in ("diagnosis.json", "ranking.npy", "keep_25.npy"):
    assert (tmp_path / "again" / name).read_bytes() == (
        run[0] / name).read_bytes(), name


def test_segmentation_logits_with_an_ignore_label(tmp_path):
  rng = np.random.default_rng(1)
  n, h, w, c = 12, 3, 4, 5
  labels = rng.integers(0, c, (n, h, w))
  labels[rng.random((n, h, w)) < 0.2] = 255
  labels[:, 0, 0] = 0  # no example entirely ignored
  teacher = rng.standard_normal((n, h, w, c)).astype(np.float32)
  student = (teacher + rng.standard_normal((n, h, w, c))).astype(np.float32)
  for name, array in (("t", teacher), ("s", student), ("y", labels)):
    np.save(tmp_path / f"{name}.npy", array)
  out = tmp_path / "out"
  code, stdout, err = _main("--teacher", tmp_path / "t.npy", "--student",
                            tmp_path / "s.npy", "--labels", tmp_path / "y.npy",
                            "--ignore-label", 255, "--out", out, *OPTIONS)
  assert code == 0, err
  assert set(os.listdir(out)) == FILES
  valid = labels != 255
  entries = int(valid.sum())
  ranking = np.load(out / "ranking.npy")
  assert len(ranking) == entries and valid.reshape(-1)[ranking].all()
  assert np.load(out / "ncjsd.npy").shape == (n, h, w)
  for ratio in (0.25, 0.5):
    keep = np.load(out / f"keep_{round(100 * ratio)}.npy")
    assert keep.shape == (n, h, w)
    assert not keep[~valid].any()
    excluded = math.floor(ratio * entries)
    np.testing.assert_array_equal(
        np.sort(np.flatnonzero(valid.reshape(-1) & (keep.reshape(-1) == 0))),
        np.sort(ranking[:excluded]))
  got = json.loads((out / "diagnosis.json").read_text(encoding="utf-8"))
  assert got["entries"] == entries and got["cch"] is None
  assert "entries (pixels)" in stdout


# -- errors ----------------------------------------------------------------


def _bad(kind, tmp_path, paths):
  """Writes the bad input ``kind`` into tmp_path: ``(argv, the message's
  pattern)``; ``{t}``, ``{y}``... in the pattern are the escaped paths."""
  argv = dict(t=paths["t"], s=paths["s"], y=paths["y"], tf=None, sf=None,
              extra=())

  def save(name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    argv[name] = path

  if kind == "missing file":
    argv["t"] = tmp_path / "missing.npy"
    pattern = r"--teacher {t}: no such file\."
  elif kind == "not npy or npz":
    argv["s"] = tmp_path / "s.txt"
    argv["s"].write_text("0 1 2\n")
    pattern = r"--student {s} is not a \.npy or \.npz file"
  elif kind == "not numbers":
    save("t", np.array(["a"] * N))
    pattern = r"--teacher {t} holds an array of dtype <U1; expected numbers\."
  elif kind == "npz with several arrays":
    argv["t"] = paths["f"]
    pattern = (r"--teacher {t} holds 2 arrays \(teacher, student\); pick one "
               r"as {t}:NAME\.")
  elif kind == "unknown npz name":
    argv["t"] = f"{paths['f']}:logits"
    pattern = (r"--teacher {t} has no array 'logits'; it holds teacher, "
               r"student\.")
  elif kind == "mismatched N":
    save("s", STUDENT[:-1])
    pattern = (r"must have the same shape .* \(teacher_logits is --teacher "
               r"{t}; student_logits is --student {s}\)")
  elif kind == "labels of another shape":
    save("y", LABELS[:, None])
    pattern = (r"labels must have the logits' leading shape \(300,\).*"
               r"labels is --labels {y}")
  elif kind == "labels outside [0, C)":
    labels = LABELS.copy()
    labels[7] = C
    save("y", labels)
    pattern = r"labels must lie in \[0, 10\).*labels is --labels {y}"
  elif kind == "non-finite logits":
    teacher = TEACHER.copy()
    teacher[3, 2] = np.nan
    save("t", teacher)
    pattern = (r"teacher_logits / temperature must be finite.*"
               r"teacher_logits is --teacher {t}")
  elif kind == "features of one side only":
    argv["tf"] = f"{paths['f']}:teacher"
    pattern = r"--teacher-features {tf} needs --student-features too"
  elif kind == "features with another N":
    argv["tf"] = f"{paths['f']}:teacher"
    save("sf", H2[:-5])
    pattern = (r"student_features must have shape \[N, D\] with N = 300.*"
               r"student_features is --student-features {sf}")
  elif kind == "too few examples":
    for name, array in (("t", TEACHER), ("s", STUDENT), ("y", LABELS)):
      save(name, array[:5])
    pattern = (r"N = 5 examples; the bootstrap needs at least 10\. "
               r"\(teacher_logits is --teacher {t}\)$")
  elif kind == "ratio out of range":
    argv["extra"] = ("--ratios", "0.25,1.5")
    pattern = r"ratios must be .*got \[0\.25, 1\.5\]\. \(ratios is --ratios\)"
  elif kind == "ratios not numbers":
    argv["extra"] = ("--ratios", "0.25,half")
    pattern = r"argument --ratios: expected comma-separated fractions"
  elif kind == "out is a file":
    argv["extra"] = ("--out", paths["y"])
    pattern = r"--out {y} is an existing file, not a folder\."
  return argv, pattern


BAD = ["missing file", "not npy or npz", "not numbers",
       "npz with several arrays",
       "unknown npz name", "mismatched N", "labels of another shape",
       "labels outside [0, C)", "non-finite logits",
       "features of one side only", "features with another N",
       "too few examples", "ratio out of range", "ratios not numbers",
       "out is a file"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_one_line_naming_the_flag_and_file(kind, inputs,
                                                        tmp_path):
  argv, pattern = _bad(kind, tmp_path, inputs)
  command = ["--teacher", argv["t"], "--student", argv["s"], "--labels",
             argv["y"], "--out", tmp_path / "out", *OPTIONS]
  for flag, name in (("--teacher-features", "tf"),
                     ("--student-features", "sf")):
    if argv[name] is not None:
      command += [flag, argv[name]]
  code, out, err = _main(*command, *argv["extra"])
  assert code == 2 and out == "", err
  assert err.startswith("ntdh-diagnose: error: ") and err.count("\n") == 1, err
  names = {k: re.escape(str(v)) for k, v in argv.items() if k != "extra"}
  assert re.search(pattern.format(**names), err.rstrip("\n")), err
  assert not (tmp_path / "out").exists()


# -- advisor_report.write ----------------------------------------------------


def test_write_figures_and_cch_only_with_features(expected, tmp_path):
  plain = advisor.diagnose(TEACHER, STUDENT, LABELS, bootstrap=BOOTSTRAP)
  written = advisor_report.write(plain, str(tmp_path / "plain"))
  assert [os.path.basename(p) for p in written] == [
      "report.md", "diagnosis.json", "ranking.npy", "ncjsd.npy",
      "keep_25.npy", "keep_50.npy", "divergences.png", "per_class.png"]
  assert all(os.path.getsize(p) > 0 for p in written)
  report = (tmp_path / "plain" / "report.md").read_text(encoding="utf-8")
  assert "No features given" in report and "cch_delta.png" not in report
  written = advisor_report.write(expected, str(tmp_path / "features"),
                                 {"teacher_logits": "T.npy"})
  assert written[-1] == str(tmp_path / "features" / "cch_delta.png")
  assert os.path.getsize(written[-1]) > 0
  assert "- teacher_logits: `T.npy`" in (
      tmp_path / "features" / "report.md").read_text(encoding="utf-8")
  a_file = tmp_path / "plain" / "report.md"
  with pytest.raises(ValueError, match=f"out_dir {re.escape(str(a_file))} "
                     "is an existing file"):
    advisor_report.write(plain, str(a_file))


def test_json_writes_nan_and_inf_as_standard_json(tmp_path):
  # Identical predictions: NCJSD / TCJSD is NaN; class 9 has no example, so
  # its per-class divergences are NaN.
  # (N examples, as elsewhere, for the compiled programs.)
  d = advisor.diagnose(TEACHER, TEACHER, LABELS % (C - 1),
                       bootstrap=BOOTSTRAP)
  assert math.isnan(d.ratio.value) and np.isnan(d.per_class.ncjsd[9]).all()
  d = d._replace(ratio=advisor.Interval(math.nan, math.inf, -math.inf))
  text = advisor_report.to_json(d)
  assert "NaN" not in text and re.search(r"\bInfinity\b(?!\")", text) is None
  got = json.loads(text)
  assert got["ratio"] == {"value": None, "low": "Infinity",
                          "high": "-Infinity"}
  assert float(got["ratio"]["low"]) == math.inf
  assert got["per_class"]["ncjsd"][9] == [None, None, None]
  assert got["per_class"]["count"][9] == 0
  advisor_report.write(d, str(tmp_path))
  report = (tmp_path / "report.md").read_text(encoding="utf-8")
  assert "No examples of class 9." in report


# -- the console script ------------------------------------------------------


def test_console_script_reads_an_npz_of_one_array(inputs, tmp_path):
  np.savez(tmp_path / "teacher.npz", TEACHER)
  script = os.path.join(os.path.dirname(sys.executable), "ntdh-diagnose")
  proc = subprocess.run(
      [script, "--teacher", str(tmp_path / "teacher.npz"), "--student",
       str(inputs["s"]), "--labels", str(inputs["y"]), "--out",
       str(tmp_path / "out"), *map(str, OPTIONS)],
      capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert "**Verdict: " in proc.stdout
  assert set(os.listdir(tmp_path / "out")) == FILES
