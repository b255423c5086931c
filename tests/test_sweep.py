"""The sweep engine end to end on the toy teacher -> student pipeline.

Proves: vmapped chunks == a Python loop of ``Program.train``; no retrace
across chunks; padding never reaches the results; relaunches skip finished
runs; a CLI sweep SIGKILLed twice resumes to bit-identical rows with no run
lost or duplicated; 2 and 8 (``slow``) devices give the same bits as 1;
mismatched upstream outputs, missing upstream runs and foreign configs are
refused with the culprit named. (The results table's own guarantees are in
``test_results.py``, injected faults in ``test_reliability.py``.)
"""

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.train import checkpoint, sweep
from ntdh_jax.train.program import RunSpec
from ntdh_jax.train.results import ResultsStore
from tests import conftest
from tests import toy_programs as tp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Chunks of 2 runs, checkpointed every 2 of their 6 segments.
CLI_FLAGS = ["--chunk_size", "2", "--segments_per_call", "2", "--vmap_size",
             "1", "--no-progress"]


def _sweep(workdir, specs, **kwargs):
  kwargs.setdefault("progress", False)
  return sweep.run_sweep(specs, str(workdir), build_program=tp.build_program,
                         **kwargs)


def _lines(workdir):
  path = os.path.join(workdir, "results.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    return [line for line in f.read().split(b"\n") if line]


def _rows_by_id(workdir):
  rows = [json.loads(line) for line in _lines(workdir)]
  for row in rows:  # a sweep run without a fingerprint writes none
    row.pop("config_digest", None)
  by_id = {r["run_id"]: r for r in rows}
  assert len(by_id) == len(rows), "duplicate rows"
  return by_id


def _cli(workdir, config_path, *, devices=1, cache=None):
  """Starts the CLI on ``config_path``; its output goes to ``workdir.log``."""
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS=conftest.xla_flags(
                 f"--xla_force_host_platform_device_count={devices}"))
  if cache:  # relaunches reuse the executables (the same bits) of the first
    env.update(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  with open(f"{workdir}.log", "ab") as log:
    return subprocess.Popen(
        [sys.executable, "-m", "ntdh_jax.cli", "--config", config_path,
         "--workdir", str(workdir), *CLI_FLAGS,
         "--compilation_cache", str(cache) if cache else "none"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _log(workdir):
  with open(f"{workdir}.log", "rb") as f:
    return f.read().decode(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def sweep_config(tmp_path_factory):
  path = tmp_path_factory.mktemp("config") / "toy_sweep.py"
  path.write_text(tp.SWEEP_CONFIG)
  return str(path)


class Reference(NamedTuple):
  specs: list      # as planned, with duplicates (teachers are shared)
  rows: dict       # run_id -> results row
  traces: dict     # (stage, piece) -> times traced
  workdir: str


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sweep_config):
  """The CLI's sweep run in this process, uninterrupted."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  base, configs, fingerprint = config_lib.load_sweep(sweep_config)
  tp.TRACES.clear()
  experiments.run(configs, workdir, base=base, chunk_size=2,
                  segments_per_call=2, vmap_size=1, progress=False,
                  fingerprint=fingerprint)
  return Reference(tp.plan(configs), _rows_by_id(workdir), dict(tp.TRACES),
                   workdir)


def test_vmapped_sweep_matches_a_loop_of_train(reference):
  assert len(reference.specs) == 36 and len(reference.rows) == 18
  trains, outputs = {}, {}
  for spec in reference.specs:  # teachers come before their students
    row = reference.rows[spec.run_id]
    if spec.signature not in trains:
      trains[spec.signature] = jax.jit(
          tp.build_program(spec.stage, spec.static_dict).train)
    hparams = {k: np.float32(v) for k, v in spec.hparams}
    inputs = ({role: outputs[run] for role, run in spec.needs}
              if spec.needs else None)
    final, history, outputs[spec.run_id] = trains[spec.signature](
        hparams, jax.random.key(spec.seed), tp.DATA, inputs)
    # vmapping changes the last bit of some float32 losses (XLA batches the
    # dots differently), hence a tolerance of a few ulps.
    for name, value in final.items():
      np.testing.assert_allclose(row[f"final.{name}"], value, rtol=1e-6)
    for name, value in history.items():
      np.testing.assert_allclose(row[f"history.{name}"], value, rtol=1e-6)
    assert (row["stage"], row["seed"], row["needs"], row["tag.role"]) == (
        spec.stage, spec.seed, spec.needs_dict, spec.tags_dict["role"])
    assert row["static.segments"] == 6
    assert {k: row[f"hp.{k}"] for k in spec.hparams_dict} == spec.hparams_dict
  teachers = [r for r in reference.rows.values() if r["stage"] == "teacher"]
  assert all(r["final.accuracy"] > 0.5 for r in teachers)


def test_no_retrace_across_chunks(reference):
  chunks = {r["outputs.path"] for r in reference.rows.values()}
  # teachers 2 + 1 (padded), students 6 x 2, ensembles 2 + 1 (padded)
  assert len(chunks) == 2 + 6 + 2
  # One trace for eval_shape and one for jit, however many chunks.
  assert reference.traces == {(stage, piece): 2 if piece != "finish" else 1
                              for stage in ("teacher", "student", "ensemble")
                              for piece in ("init", "segment", "finish")}


def test_each_advance_reuses_the_carry_it_replaces(monkeypatch, tmp_path):
  """The carry is donated to every advance call: a chunk never holds its
  old and its new state at once (the digits study's peak memory)."""
  replaced = []
  advance = sweep._Group.advance

  def watched(self, segments):
    call = advance(self, segments)

    def run(data, carry, hp):
      out = call(data, carry, hp)
      replaced.append(jax.tree.leaves(carry))
      return out
    return run

  monkeypatch.setattr(sweep._Group, "advance", watched)
  _sweep(tmp_path, tp.specs(teacher_lrs=(0.5,), student_lrs=(0.1,),
                            alphas=(0.5,), seeds=(0,)))
  assert replaced and all(x.is_deleted() for leaves in replaced
                          for x in leaves)


def test_padding_never_reaches_the_results(reference):
  assert len(_lines(reference.workdir)) == 18
  teachers = [r for r in reference.rows.values() if r["stage"] == "teacher"]
  assert sorted(r["outputs.index"] for r in teachers) == [0, 0, 1]


def test_relaunch_skips_finished_runs(reference, tmp_path):
  workdir = shutil.copytree(reference.workdir, tmp_path / "copy")

  def fail(stage, static):
    raise AssertionError(f"finished stage {stage} was rebuilt")
  specs = reference.specs[::-1] + reference.specs
  rows = sweep.run_sweep(specs, str(workdir), build_program=fail,
                         progress=False)
  assert {r["run_id"]: r for r in rows} == reference.rows
  assert len(_lines(workdir)) == 18


class _Killed(Exception):
  pass


def test_resume_restores_the_mid_chunk_checkpoint(tmp_path, reference,
                                                  monkeypatch, caplog):
  teachers = [s for s in reference.specs if s.stage == "teacher"][:2]
  save = checkpoint.save

  def save_then_die(directory, step, tree, **kwargs):
    if step > 2:  # dies after the first of the chunk's three checkpoints
      raise _Killed
    save(directory, step, tree, **kwargs)
  flags = dict(chunk_size=2, segments_per_call=2, vmap_size=1)
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(_Killed):
      _sweep(tmp_path, teachers, **flags)
  assert not _lines(tmp_path)
  with caplog.at_level(logging.INFO, logger=sweep.__name__):
    rows = _sweep(tmp_path, teachers, **flags)
  assert "resumes at segment 2/6" in caplog.text

  def numbers(row):  # other chunks than the reference's: other outputs path
    return {k: v for k, v in row.items() if not k.startswith("outputs.")}
  assert [numbers(r) for r in rows] == [numbers(reference.rows[s.run_id])
                                        for s in teachers]


def test_upstream_mismatch_names_run_and_leaf(reference, tmp_path):
  workdir = shutil.copytree(reference.workdir, tmp_path / "copy")
  teacher = next(s for s in reference.specs if s.stage == "teacher")
  student = RunSpec.make("student", {"segments": 6, "steps": 3, "features": 2,
                                     "teacher_features": 5},
                         {"lr": 0.3, "alpha": 0.5, "temperature": 2.0}, 0,
                         needs={"teacher": teacher.run_id})
  with pytest.raises(ValueError, match=(
      rf"Outputs of run {teacher.run_id} .* do not fit the "
      rf"input_spec\['teacher'\] of run "
      rf"{student.run_id} \(stage 'student'\): leaf 'w': checkpoint has "
      r"float32\[2, 6, 3\], expected float32\[2, 5, 3\]")):
    _sweep(workdir, [student])


def test_missing_upstream_is_named(tmp_path):
  student = next(s for s in tp.specs(seeds=(0,)) if s.stage == "student")
  with pytest.raises(ValueError, match=(
      rf"needs run {student.needs_dict['teacher']} as 'teacher', which is "
      "neither in this sweep nor finished")):
    _sweep(tmp_path, [student])


def test_ensemble_students_restore_both_upstream_roles(reference):
  """A run with two upstream runs gets each one's outputs under its role:
  swapping the roles' runs changes nothing (the mean is symmetric), and the
  ensemble differs from a student of either teacher alone."""
  ensembles = [s for s in reference.specs if s.stage == "ensemble"]
  assert len({s.run_id for s in ensembles}) == 3
  for spec in ensembles:
    row = reference.rows[spec.run_id]
    assert set(row["needs"]) == {"teacher", "peer"}
    assert row["needs"]["teacher"] != row["needs"]["peer"]
  program = tp.build_program("ensemble", ensembles[0].static_dict)
  teachers = {s.run_id: s for s in reference.specs if s.stage == "teacher"}
  outputs = {}
  for run_id, spec in teachers.items():
    outputs[run_id] = jax.jit(tp.build_program("teacher",
                                               spec.static_dict).train)(
        {k: np.float32(v) for k, v in spec.hparams}, jax.random.key(spec.seed),
        tp.DATA)[2]
  spec = ensembles[0]
  hp = {k: np.float32(v) for k, v in spec.hparams}
  run = jax.jit(program.train)
  both = {r: outputs[i] for r, i in spec.needs}
  swapped = {"teacher": both["peer"], "peer": both["teacher"]}
  final = run(hp, jax.random.key(spec.seed), tp.DATA, both)[0]
  np.testing.assert_allclose(reference.rows[spec.run_id]["final.loss"],
                             final["loss"], rtol=1e-6)
  np.testing.assert_allclose(
      run(hp, jax.random.key(spec.seed), tp.DATA, swapped)[0]["loss"],
      final["loss"], rtol=1e-6)
  alone = {"teacher": both["teacher"], "peer": both["teacher"]}
  assert run(hp, jax.random.key(spec.seed), tp.DATA, alone)[0]["loss"] != (
      final["loss"])


def test_a_different_config_is_refused(tmp_path):
  ResultsStore(str(tmp_path)).check_fingerprint(
      {"config": {"lr": 0.1, "seeds": 2}}, create=True)
  with pytest.raises(ValueError, match="different config"):
    _sweep(tmp_path, tp.specs(seeds=(0,)), fingerprint={"config": {}})


def _checkpointed_steps(workdir):
  """Mid-chunk checkpoint steps now on disk (chunks come and go meanwhile)."""
  steps = []
  try:
    for chunk in os.listdir(os.path.join(workdir, "chunks")):
      steps += [s for s in os.listdir(os.path.join(workdir, "chunks", chunk))
                if s.isdigit()]
  except FileNotFoundError:
    pass
  return steps


def _wait_and_kill(proc, workdir, min_rows):
  """SIGKILLs ``proc`` once ``min_rows`` rows are written and a chunk has a
  mid-chunk checkpoint; returns the number of rows written by then."""
  while proc.poll() is None:
    rows = len(_lines(workdir))
    if rows >= min_rows and _checkpointed_steps(workdir):
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return rows
    time.sleep(0.005)
  pytest.fail("the sweep ended before it could be killed:\n" + _log(workdir))


def test_killed_cli_sweep_resumes_to_identical_rows(tmp_path, sweep_config,
                                                    reference):
  workdir, cache = tmp_path / "killed", tmp_path / "jax_cache"
  # Killed in the teacher stage, then among the students.
  first = _wait_and_kill(_cli(workdir, sweep_config, cache=cache), workdir, 1)
  second = _wait_and_kill(_cli(workdir, sweep_config, cache=cache), workdir,
                          max(6, first + 1))
  proc = _cli(workdir, sweep_config, cache=cache)
  assert proc.wait() == 0, _log(workdir)
  assert first < second < 18
  assert _rows_by_id(workdir) == reference.rows  # asserts no duplicates
  assert os.path.exists(workdir / "toy_report.csv")
  assert not os.path.exists(workdir / "chunks")


def _sweep_on_devices(devices, workdir, specs, flags=""):
  """``run_sweep`` of ``specs`` in a subprocess with ``devices`` CPU
  devices (``flags``: more keyword arguments, as Python source)."""
  script = ("import sys, pickle\n"
            "from ntdh_jax.train import sweep\n"
            "from tests import toy_programs as tp\n"
            "sweep.run_sweep(pickle.load(sys.stdin.buffer), sys.argv[1], "
            f"build_program=tp.build_program, progress=False, {flags})\n")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS=conftest.xla_flags(
                 f"--xla_force_host_platform_device_count={devices}"))
  subprocess.run([sys.executable, "-c", script, str(workdir)], check=True,
                 input=pickle.dumps(specs), env=env, cwd=REPO)


def test_two_devices_give_the_same_teacher_bits_as_one(tmp_path, reference):
  teachers = [s for s in reference.specs if s.stage == "teacher"]
  _sweep_on_devices(2, tmp_path, teachers,
                    "chunk_size=2, segments_per_call=2, vmap_size=1")
  assert _rows_by_id(tmp_path) == {s.run_id: reference.rows[s.run_id]
                                   for s in teachers}


def test_default_flags_give_the_same_bits_on_any_device_count(tmp_path):
  """Without --vmap_size, a group of 20 students (more than one default
  block of 16) gives the same rows on 2 devices as on 1."""
  specs = tp.specs(teacher_lrs=(0.5,), student_lrs=(0.1, 0.2, 0.3, 0.4, 0.5),
                   alphas=(0.0, 0.25, 0.5, 0.75), seeds=(0,))
  one = {r["run_id"]: r for r in _sweep(tmp_path / "one", specs)}
  _sweep_on_devices(2, tmp_path / "two", specs)
  assert len(one) == 21
  assert _rows_by_id(tmp_path / "two") == one


@pytest.mark.slow  # 8 devices x 6 executables to compile: about a minute
def test_eight_devices_give_the_same_bits_as_one(tmp_path, sweep_config,
                                                 reference):
  workdir = tmp_path / "eight"
  proc = _cli(workdir, sweep_config, devices=8)
  assert proc.wait() == 0, _log(workdir)
  assert _rows_by_id(workdir) == reference.rows
