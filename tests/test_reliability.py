"""Faults a sweep must survive, each injected on purpose (issue 8).

* SIGKILL at many points, chosen by the engine's progress markers (the log
  lines of ``--verbose``), never by wall time: every relaunch exits 0 and
  the final rows equal an uninterrupted sweep's.
* A flipped byte in, the deletion of, or another chunk's copy over a
  teacher's stored outputs: the teacher chunk is trained again (one warning)
  and the students get the same numbers; a corrupted mid-chunk checkpoint
  restarts its chunk.
* A full disk, a second launch into a busy workdir, a malformed results
  line, a deleted ``sweep.json`` with another config, bad flags and config
  values: one line ``ntdh-sweep: error: ...`` and exit status 2, nothing
  lost; a relaunch afterwards resumes.
"""

import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.train import checkpoint, lock, sweep
from ntdh_jax.train.results import RESULTS
from scripts import reliability
from tests import toy_programs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The toy sweep of tests/toy_programs.py (3 teachers, 12 students, 3
# ensemble students), chunks of 2 runs checkpointed every 2 of 6 segments.
FLAGS = dict(chunk_size=2, segments_per_call=2, vmap_size=1)
CLI_FLAGS = ["--chunk_size", "2", "--segments_per_call", "2", "--vmap_size",
             "1", "--no-progress", "--cpu_devices", "1"]
# Relaunches killed at their n-th progress marker: a run through the
# teachers, the students and the ensemble students, often mid-save.
KILL_AT = [1, 2, 1, 3, 2, 1, 4, 2, 3, 1, 2, 5, 1, 3, 2, 1, 4, 2, 1, 3]


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """This module's in-process sweeps compile the same three programs again
  and again: a persistent cache loads them instead (the same executables,
  so the same bits)."""
  options = {"jax_compilation_cache_dir":
             str(tmp_path_factory.mktemp("jax_cache")),
             "jax_persistent_cache_min_compile_time_secs": 0,
             "jax_persistent_cache_min_entry_size_bytes": 0}
  old = {k: getattr(jax.config, k) for k in options}
  for k, v in options.items():
    jax.config.update(k, v)
  yield
  for k, v in old.items():
    jax.config.update(k, v)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("config") / "toy_sweep.py"
  path.write_text(toy_programs.SWEEP_CONFIG)
  return str(path)


def _run(config_path, workdir, **kwargs):
  base, configs, fingerprint = config_lib.load_sweep(config_path)
  return experiments.run(configs, str(workdir), base=base, progress=False,
                         fingerprint=fingerprint, **{**FLAGS, **kwargs})


def _rows(workdir):
  with open(os.path.join(workdir, RESULTS)) as f:
    rows = [json.loads(line) for line in f]
  by_id = {r["run_id"]: r for r in rows}
  assert len(by_id) == len(rows), "duplicate rows"
  return by_id


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config_path):
  """The uninterrupted sweep's workdir."""
  workdir = tmp_path_factory.mktemp("reference")
  _run(config_path, workdir)
  return str(workdir)


def _cli(config_path, workdir, *flags, cache=None):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  if cache:  # relaunches reuse the executables (the same bits) of the first
    env.update(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return subprocess.Popen(
      [sys.executable, "-m", "ntdh_jax.cli", "--config", config_path,
       "--workdir", str(workdir), *CLI_FLAGS, "--verbose",
       "--compilation_cache", str(cache) if cache else "none", *flags],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _kill_and_relaunch(config_path, workdir, cache, kill_at):
  kills = 0
  for n in kill_at:
    killed, out = reliability.kill_at_marker(
        _cli(config_path, workdir, cache=cache), n)
    if not killed:  # finished before its n-th marker
      assert "Traceback" not in out and "error" not in out.lower(), out
      break
    kills += 1
  proc = _cli(config_path, workdir, cache=cache)
  out = proc.communicate()[0]
  assert proc.returncode == 0, out
  return kills


def test_sigkill_at_progress_markers_then_relaunch(tmp_path, config_path,
                                                   reference):
  """Eight kills in the default suite; every relaunch starts cleanly."""
  workdir = tmp_path / "killed"
  kills = _kill_and_relaunch(config_path, workdir, tmp_path / "cache",
                             KILL_AT[:8])
  assert kills == 8
  assert _rows(workdir) == _rows(reference)
  assert not os.path.exists(workdir / "chunks")


@pytest.mark.slow
def test_sigkill_at_twenty_points(tmp_path, config_path, reference):
  workdir = tmp_path / "killed"
  kills = _kill_and_relaunch(config_path, workdir, tmp_path / "cache",
                             KILL_AT)
  assert kills == 20
  assert _rows(workdir) == _rows(reference)


# ------------------------------------------------------ stored outputs


def _teacher_outputs(workdir):
  rows = _rows(workdir)
  return sorted({r["outputs.path"] for r in rows.values()
                 if r["stage"] == "teacher"})


def _only_teachers_finished(reference, workdir):
  """A copy of the reference workdir in which only the teachers finished."""
  shutil.copytree(reference, workdir)
  with open(workdir / RESULTS) as f:
    lines = [l for l in f if json.loads(l)["stage"] == "teacher"]
  with open(workdir / RESULTS, "w") as f:
    f.writelines(lines)


def _flip_byte(directory):
  data = sorted(os.path.join(root, name)
                for root, _, names in os.walk(directory) for name in names
                if "ocdbt.process" in root and os.sep + "d" in root)
  with open(data[-1], "r+b") as f:
    f.seek(os.path.getsize(data[-1]) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x10]))


def _replace_with_other_chunk(workdir):
  first, second = _teacher_outputs(workdir)[:2]
  shutil.rmtree(workdir / first)
  shutil.copytree(workdir / second, workdir / first)


@pytest.mark.parametrize("fault", ["flip a byte", "delete", "replace"])
def test_unusable_teacher_outputs_are_recomputed(tmp_path, config_path,
                                                 reference, caplog, fault):
  workdir = tmp_path / "w"
  _only_teachers_finished(reference, workdir)
  victim = workdir / _teacher_outputs(workdir)[0]
  {"flip a byte": lambda: _flip_byte(victim / "0"),
   "delete": lambda: shutil.rmtree(victim),
   "replace": lambda: _replace_with_other_chunk(workdir)}[fault]()
  with caplog.at_level(logging.WARNING, logger=sweep.__name__):
    _run(config_path, workdir)
  warnings = [r.getMessage() for r in caplog.records
              if "unusable" in r.getMessage()]
  assert len(warnings) == 1 and str(victim) in warnings[0], caplog.text
  assert "training that chunk again" in warnings[0]
  assert _rows(workdir) == _rows(reference)
  checkpoint.verify(victim)


def test_corrupted_chunk_checkpoint_restarts_the_chunk(tmp_path, config_path,
                                                       reference, monkeypatch,
                                                       caplog):
  save = checkpoint.save

  def save_then_die(directory, step, tree, **kwargs):
    save(directory, step, tree, **kwargs)
    if "chunks" in str(directory) and step == 2:
      raise KeyboardInterrupt  # killed after the chunk's first checkpoint
  workdir = tmp_path / "w"
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
      _run(config_path, workdir)
  chunk = workdir / "chunks" / os.listdir(workdir / "chunks")[0]
  _flip_byte(chunk / "2")
  with caplog.at_level(logging.WARNING, logger=sweep.__name__):
    _run(config_path, workdir)
  assert "restarts; its checkpoint is unusable" in caplog.text
  assert "differs from its digest" in caplog.text
  assert _rows(workdir) == _rows(reference)


# ------------------------------------------------------ full disk


def test_disk_full_is_one_error_and_a_relaunch_resumes(tmp_path, config_path,
                                                       reference,
                                                       monkeypatch):
  """ENOSPC raised deep inside orbax (as tensorstore reports it, wrapped)
  after a few chunks: a ``DiskFull`` naming the workdir; nothing half
  written; the relaunch finishes with the reference's rows."""
  workdir = tmp_path / "w"
  with monkeypatch.context() as patch:
    # The script's hook, run here: it replaces checkpoint.save, which the
    # patch puts back afterwards.
    patch.setattr(checkpoint, "save", checkpoint.save)
    exec(reliability.DISK_FULL_HOOK, {})
    with pytest.raises(sweep.DiskFull, match=(
        rf"No space left on device while writing {workdir}: the results so "
        r"far .* are intact; free some space and run the same command "
        "again to resume.")):
      _run(config_path, workdir)
  written = _rows(workdir)
  assert written and all(written[r] == _rows(reference)[r] for r in written)
  _run(config_path, workdir)
  assert _rows(workdir) == _rows(reference)


def test_disk_full_from_the_cli_is_one_line(tmp_path, config_path):
  """A real ENOSPC: the first file the sweep writes goes to /dev/full."""
  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full on this system")
  workdir = tmp_path / "w"
  workdir.mkdir()
  os.symlink("/dev/full", workdir / "sweep.json.tmp")
  out = subprocess.run(
      [sys.executable, "-m", "ntdh_jax.cli", "--config", config_path,
       "--workdir", str(workdir), *CLI_FLAGS, "--compilation_cache", "none"],
      env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"), cwd=REPO,
      capture_output=True, text=True)
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().splitlines() == [
      f"ntdh-sweep: error: No space left on device while writing "
      f"{workdir}: the results so far ({workdir}/"
      "results.jsonl) and checkpoints are intact; free some space and run "
      "the same command again to resume."]


# ------------------------------------------------------ the CLI's user errors


def _cli_error(config_path, workdir, *flags):
  """Runs the CLI to the end; returns (status, stderr lines)."""
  out = subprocess.run(
      [sys.executable, "-m", "ntdh_jax.cli", "--config", config_path,
       "--workdir", str(workdir), *CLI_FLAGS, "--compilation_cache", "none",
       *flags],
      env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"), cwd=REPO,
      capture_output=True, text=True)
  return out.returncode, out.stderr.strip().splitlines()


def test_a_busy_workdir_is_refused_or_waited_for(tmp_path, config_path,
                                                 reference):
  workdir = tmp_path / "w"
  shutil.copytree(reference, workdir)
  with lock.workdir_lock(str(workdir)):
    status, err = _cli_error(config_path, workdir)
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"ntdh-sweep: error: workdir {workdir} is in "
                             f"use by another launch (pid {os.getpid()} ")
    assert "pass --wait to queue behind it" in err[0]
    waiter = _cli(config_path, workdir, "--wait")
    for line in waiter.stdout:  # blocks until it reports that it waits
      if "waiting for it to finish" in line:
        break
    assert waiter.poll() is None
  assert waiter.wait() == 0  # it went on once the lock was released
  assert _rows(workdir) == _rows(reference)


def test_a_malformed_results_line_names_file_and_line(tmp_path, config_path,
                                                      reference):
  workdir = tmp_path / "w"
  shutil.copytree(reference, workdir)
  with open(workdir / RESULTS) as f:
    lines = f.readlines()
  lines[3] = '{"run_id": "abc", "final.accuracy": 0.5\n'
  with open(workdir / RESULTS, "w") as f:
    f.writelines(lines)
  status, err = _cli_error(config_path, workdir)
  assert status == 2 and len(err) == 1, err
  assert f"{workdir}/{RESULTS}" in err[0] and "line 4" in err[0]


def test_another_config_after_deleting_sweep_json_is_refused(
    tmp_path, config_path, reference):
  workdir = tmp_path / "w"
  shutil.copytree(reference, workdir)
  os.remove(workdir / "sweep.json")
  status, err = _cli_error(config_path, workdir, "--config.seeds=2")
  assert status == 2 and len(err) == 1, err
  assert "different config" in err[0]
  assert _rows(workdir) == _rows(reference)  # untouched


@pytest.mark.parametrize("flags, message", [
    (["--config.nope=1"], r"--config .*: Unknown config key 'config.nope'"),
    (["--config.seeds=0"], r"The config plans no runs"),
    (["--cpu_devices=0"], r"argument --cpu_devices: must be an integer >= 1, "
     r"got '0' \(see ntdh-sweep --help\)"),
    (["--vmap_size=0"], r"argument --vmap_size: must be an integer >= 1 or "
     r"'auto'"),
    (["--chunk_size=-3"], r"argument --chunk_size"),
    (["--bogus"], r"unrecognized arguments: --bogus"),
])
def test_user_errors_are_one_line_and_status_2(tmp_path, config_path, flags,
                                               message):
  status, err = _cli_error(config_path, tmp_path / "w", *flags)
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith("ntdh-sweep: error: ")
  assert __import__("re").search(message, err[0]), err[0]
  assert not (tmp_path / "w").exists()


def test_a_workdir_that_is_a_file_is_a_user_error(tmp_path, config_path):
  (tmp_path / "w").write_text("not a directory")
  status, err = _cli_error(config_path, tmp_path / "w")
  assert status == 2 and err == [
      f"ntdh-sweep: error: --workdir {tmp_path}/w is a file, not a "
      "directory."]


def test_a_bug_keeps_its_traceback(tmp_path):
  config = tmp_path / "buggy.py"
  config.write_text("def get_config(arg=None):\n  return 1 / 0\n")
  status, err = _cli_error(str(config), tmp_path / "w")
  assert status == 1
  assert err[0].startswith("Traceback") and "ZeroDivisionError" in err[-1]
