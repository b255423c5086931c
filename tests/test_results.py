"""The results table (``results.py``) and the workdir lock (``lock.py``).

Proves: the table is append-only, deduplicated, survives a torn write, and
refuses the old format; a malformed complete line is refused naming the file,
the line and what to do; every row carries the config's digest, so a
different config is refused even after ``sweep.json`` was deleted (and a
refused config leaves no ``sweep.json`` behind); a second launch into a
locked workdir is refused naming the holder, can take the lock once the
holder is SIGKILLed, and with ``wait=True`` queues behind it. No test waits
on wall time: subprocesses are synchronised by the lines they print.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading

import pytest

from ntdh_jax.errors import UserError
from ntdh_jax.train import lock, sweep
from ntdh_jax.train.lock import workdir_lock
from ntdh_jax.train.results import ResultsStore, config_digest
from tests import toy_programs as tp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG_A = {"config": {"lr": 0.1, "seeds": 2}, "hyper": {"0": {"x": (1, 2)}}}
CONFIG_B = {"config": {"lr": 0.2, "seeds": 2}, "hyper": {"0": {"x": (1, 2)}}}


def _raw_rows(store):
  with open(store.path, "rb") as f:
    return [json.loads(line) for line in f.read().split(b"\n") if line]


def _sweep(workdir, specs, **kwargs):
  return sweep.run_sweep(specs, str(workdir), build_program=tp.build_program,
                         progress=False, **kwargs)


# The results table.


def test_user_errors_are_value_errors():
  assert issubclass(UserError, ValueError)


def test_workdir_of_the_old_format_is_refused(tmp_path):
  """Rows whose ``needs`` is one run id (the format before roles) are not
  reused: run ids and outputs changed meaning."""
  store = ResultsStore(str(tmp_path))
  store.append([{"run_id": "a", "needs": "b0c1"}])
  with pytest.raises(UserError, match="older ntdh_jax.*new --workdir"):
    _sweep(tmp_path, tp.specs(seeds=(0,)))


def test_results_store_is_append_only_and_deduplicated(tmp_path):
  store = ResultsStore(str(tmp_path))
  store.append([{"run_id": "a", "x": 1.0}, {"run_id": "b", "x": 2.0}])
  store.append([{"run_id": "a", "x": 9.0}, {"run_id": "c", "x": 3.0}])
  assert store.load() == {"a": {"run_id": "a", "x": 1.0},
                          "b": {"run_id": "b", "x": 2.0},
                          "c": {"run_id": "c", "x": 3.0}}
  with open(store.path, "a") as f:  # a duplicate written by hand
    f.write(json.dumps({"run_id": "b", "x": 7.0}) + "\n")
  assert store.load()["b"]["x"] == 2.0  # the first row wins


def test_torn_trailing_line_is_ignored_then_repaired(tmp_path):
  store = ResultsStore(str(tmp_path))
  store.append([{"run_id": "a", "x": 1.0}])
  with open(store.path, "ab") as f:  # a write killed half-way
    f.write(b'{"run_id": "b", "x"')
  assert store.finished_ids() == {"a"}
  store.append([{"run_id": "b", "x": 2.0}])
  assert [r["run_id"] for r in _raw_rows(store)] == ["a", "b"]


@pytest.mark.parametrize("line, problem", [
    (b'{"run_id": "b", "x"', r"not valid JSON \(Expecting ':' delimiter: "
                             r"column 20\)"),
    (b'{"run_id": "b"}}', r"not valid JSON \(Extra data: column 16\)"),
    (b'[1, 2]', r"a JSON list, not an object \(a row\)"),
    (b'{"x": 1}', r"the row has no run_id"),
    (b'{"run_id": 3}', r"the row's run_id 3 is not a string"),
    (b'\xff{}', r"not UTF-8 text"),
], ids=["torn", "extra", "list", "no_run_id", "int_run_id", "not_utf8"])
def test_a_malformed_line_is_named_with_what_to_do(tmp_path, line, problem):
  store = ResultsStore(str(tmp_path))
  store.append([{"run_id": "a", "x": 1.0}])
  with open(store.path, "ab") as f:  # a complete line, then a good one
    f.write(line + b"\n" + json.dumps({"run_id": "c"}).encode() + b"\n")
  size = os.path.getsize(store.path)
  message = (rf"^{re.escape(store.path)}, line 2: {problem}; delete that "
             r"line \(its run will be retrained on the next launch\) or "
             r"start a new --workdir\.$")
  with pytest.raises(UserError, match=message):
    store.load()
  with pytest.raises(UserError, match=message):
    store.append([{"run_id": "d"}])
  assert os.path.getsize(store.path) == size  # nothing written
  with pytest.raises(UserError, match=message):  # through the engine
    _sweep(tmp_path, tp.specs(seeds=(0,)))


def test_blank_lines_are_skipped(tmp_path):
  store = ResultsStore(str(tmp_path))
  with open(store.path, "wb") as f:  # as an editor may leave it
    f.write(b'{"run_id": "a"}\n\n  \r\n{"run_id": "b"}\r\n')
  assert store.load() == {"a": {"run_id": "a"}, "b": {"run_id": "b"}}


def test_a_different_config_is_refused(tmp_path):
  store = ResultsStore(str(tmp_path))
  store.check_fingerprint({"config": {"lr": 0.1, "seeds": 2}}, create=True)
  store.check_fingerprint({"config": {"lr": 0.1, "seeds": 2}}, create=True)
  with pytest.raises(UserError, match=(
      rf"workdir {tmp_path} was created by a different config: differing keys "
      r"config.lr \(0.1 -> 0.2\), config.seeds \(2 -> '<absent>'\); use a new "
      "--workdir")):
    store.check_fingerprint({"config": {"lr": 0.2}}, create=True)


def test_rows_carry_the_config_digest(tmp_path):
  text = json.dumps({"config": {"lr": 0.1, "seeds": 2},
                     "hyper": {"0": {"x": [1, 2]}}}, sort_keys=True)
  digest = hashlib.sha256(text.encode()).hexdigest()[:16]
  assert config_digest(CONFIG_A) == digest
  assert config_digest(dict(reversed(CONFIG_A.items()))) == digest
  assert config_digest(CONFIG_B) != digest
  store = ResultsStore(str(tmp_path))
  store.check_fingerprint(CONFIG_A, create=True)
  rows = [{"run_id": "a", "x": 1.0},
          {"run_id": "b", "config_digest": "forged"}]  # the key is reserved
  store.append(rows)
  assert rows[1] == {"run_id": "b", "config_digest": "forged"}  # untouched
  assert _raw_rows(store) == [{"run_id": "a", "x": 1.0, "config_digest": digest},
                              {"run_id": "b", "config_digest": digest}]
  # Loaded rows are the rows given, as a fresh run's rows are.
  assert store.load() == {"a": {"run_id": "a", "x": 1.0}, "b": {"run_id": "b"}}
  # A store without a fingerprint (library use) reads them, and writes none.
  library = ResultsStore(str(tmp_path))
  assert library.load() == store.load()
  library.append([{"run_id": "c", "config_digest": digest}])
  assert "config_digest" not in _raw_rows(store)[-1]


def test_a_different_config_is_refused_without_sweep_json(tmp_path):
  store = ResultsStore(str(tmp_path))
  store.check_fingerprint(CONFIG_A, create=True)
  store.append([{"run_id": "a"}, {"run_id": "b"}])
  sweep_json = tmp_path / "sweep.json"
  sweep_json.unlink()
  message = (rf"^{re.escape(store.path)}, line 1: run a has config_digest "
             rf"{config_digest(CONFIG_A)}, but this sweep's config has "
             rf"{config_digest(CONFIG_B)}: rows were written by a different "
             r"config; use a new --workdir\.$")
  with pytest.raises(UserError, match=message):
    ResultsStore(str(tmp_path)).check_fingerprint(CONFIG_B, create=True)
  assert not sweep_json.exists()  # a refused config leaves nothing behind
  with pytest.raises(UserError, match=message):  # through the engine
    _sweep(tmp_path, tp.specs(seeds=(0,)), fingerprint=CONFIG_B)
  assert not sweep_json.exists()
  # The config that wrote the rows still resumes, and sweep.json is back.
  again = ResultsStore(str(tmp_path))
  again.check_fingerprint(CONFIG_A, create=True)
  assert sorted(again.load()) == ["a", "b"]
  assert sweep_json.exists()


def test_rows_without_a_digest_need_the_sweep_json_of_their_time(tmp_path):
  """Rows written before rows had digests are vouched for by a matching
  ``sweep.json`` that was already there, and by nothing else."""
  legacy = ResultsStore(str(tmp_path))
  legacy.check_fingerprint(CONFIG_A, create=True)
  legacy.digest = None  # how an older ntdh_jax wrote them
  legacy.append([{"run_id": "a"}])
  store = ResultsStore(str(tmp_path))
  store.check_fingerprint(CONFIG_A, create=True)
  assert store.load() == {"a": {"run_id": "a"}}
  store.append([{"run_id": "b"}])  # new rows get the digest
  assert [r.get("config_digest") for r in _raw_rows(store)] == [
      None, config_digest(CONFIG_A)]
  (tmp_path / "sweep.json").unlink()
  with pytest.raises(UserError, match=(
      rf"^{re.escape(store.path)}, line 1: run a has no config_digest .* "
      r"sweep.json, which vouched for such rows, is missing, so its config "
      r"cannot be checked; use a new --workdir\.$")):
    ResultsStore(str(tmp_path)).check_fingerprint(CONFIG_A, create=True)
  assert not (tmp_path / "sweep.json").exists()


# The workdir lock.

HOLDER = """
import sys
from ntdh_jax.train.lock import workdir_lock
with workdir_lock(sys.argv[1]):
  print("locked", flush=True)
  sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def hold(tmp_path):
  """``hold(workdir)``: a subprocess that holds the lock until a line is
  written to its stdin; returned once it holds it."""
  procs = []

  def start(workdir):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)], cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    line = proc.stdout.readline()
    assert line == "locked\n", proc.communicate()
    return proc
  yield start
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.communicate()


def _locked_by_anyone(workdir) -> bool:
  fd = os.open(os.path.join(workdir, ".lock"), os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)


def test_the_lock_records_its_holder_is_reentrant_and_is_released(tmp_path):
  workdir = tmp_path / "new" / "workdir"
  with workdir_lock(str(workdir)):
    assert _locked_by_anyone(workdir)
    holder = json.loads((workdir / ".lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    with workdir_lock(str(workdir / "." / "..") + "/workdir"):  # joins it
      with workdir_lock(str(workdir), wait=True):  # (never waits on itself)
        assert _locked_by_anyone(workdir)
      assert _locked_by_anyone(workdir)
    assert _locked_by_anyone(workdir)  # until the outermost block ends
    assert json.loads((workdir / ".lock").read_text()) == holder
  assert not _locked_by_anyone(workdir)
  assert (workdir / ".lock").read_text() == ""
  with pytest.raises(RuntimeError):  # released when the body raises, too
    with workdir_lock(str(workdir)):
      raise RuntimeError
  assert not _locked_by_anyone(workdir)


def test_a_held_lock_refuses_a_second_launch_until_its_holder_dies(tmp_path,
                                                                   hold):
  holder = hold(tmp_path)
  with pytest.raises(UserError, match=(
      rf"^workdir {re.escape(str(tmp_path))} is in use by another launch "
      rf"\(pid {holder.pid} on host [^ ]+, since [0-9T:+-]+\); wait for it to "
      r"finish, or pass --wait to queue behind it\.$")):
    with workdir_lock(str(tmp_path)):
      pass
  holder.kill()  # SIGKILL: no cleanup runs; the kernel drops the flock
  holder.wait()
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
  with workdir_lock(str(tmp_path)):
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


class _OnRecord(logging.Handler):
  def __init__(self, event):
    super().__init__(logging.WARNING)
    self.event, self.messages = event, []

  def emit(self, record):
    self.messages.append(record.getMessage())
    self.event.set()


def test_wait_queues_behind_the_holder(tmp_path, hold):
  holder = hold(tmp_path)
  info = json.loads((tmp_path / ".lock").read_text())
  events, errors = [], []
  waiting, acquired = threading.Event(), threading.Event()
  handler = _OnRecord(waiting)
  lock.logger.addHandler(handler)

  def waiter():
    try:
      with workdir_lock(str(tmp_path), wait=True):
        events.append("acquired")
        acquired.set()
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)
    waiting.set()  # (if it never waited, the asserts below fail at once)
  thread = threading.Thread(target=waiter, daemon=True)
  try:
    thread.start()
    assert waiting.wait(120), "the waiter neither waited nor ended"
    assert not errors, errors
    # It logged that it waits: it failed to take the lock and now blocks.
    assert handler.messages == [
        f"workdir {tmp_path} is in use by another launch (pid {holder.pid} on "
        f"host {info['host']}, since {info['started']}); waiting for it to "
        "finish."]
    assert not acquired.is_set()  # the holder has not been told to release
    events.append("released")
    holder.stdin.write("\n")
    holder.stdin.flush()
    thread.join(120)
    assert not thread.is_alive() and not errors, errors
  finally:
    lock.logger.removeHandler(handler)
  assert events == ["released", "acquired"]
  assert holder.stdout.readline() == "released\n"
  assert holder.wait() == 0


def test_a_file_in_the_way_is_refused(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(UserError, match=(
      rf"workdir {re.escape(str(tmp_path / 'file'))} is not a directory")):
    with workdir_lock(str(tmp_path / "file")):
      pass
