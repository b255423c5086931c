"""Injects faults into real ``ntdh-sweep`` launches and tabulates the outcome.

    python scripts/reliability.py [--workdir runs/reliability] [--kills 20]

The sweep is the README's main job at a small scale (``ntdh_synthetic.py:
fig3,quick`` with 2 seeds, γ ∈ {0, 1}: 12 runs in 6 chunks of 2, each
checkpointed after every segment), launched as a user would, as a
subprocess of ``python -m ntdh_jax.cli``. Every scenario starts from a
fresh copy or a fresh workdir, and its final ``results.jsonl`` must equal the
uninterrupted sweep's, row for row and bit for bit. Kill points are chosen
by the engine's progress markers (``--verbose`` log lines: a checkpoint, a
stored output, a batch of rows), never by wall time.

Prints a markdown table (fault × outcome) and writes it to
``WORKDIR/reliability.md``; exits 1 if any scenario fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "sweeps", "configs",
                      "ntdh_synthetic.py:fig3,quick")
OVERRIDES = ["--config.num_seeds=2", "--config.gaps=0,1"]
FLAGS = ["--chunk_size", "2", "--segments_per_call", "1", "--no-progress",
         "--verbose"]
MARKER = "ntdh_jax.train.sweep: Chunk "
# A relaunch is killed at its n-th marker; the pattern walks through the
# teachers, the students and often lands mid-save.
KILL_PATTERN = [1, 2, 1, 3, 2, 1, 4, 2, 3, 1]
# Imported at start-up by the launch it is given to (PYTHONPATH): the 7th
# checkpoint write fails with ENOSPC, wrapped as orbax/tensorstore report it.
DISK_FULL_HOOK = '''
import errno, os
from ntdh_jax.train import checkpoint
_save, _calls = checkpoint.save, []
def save(directory, step, tree, **kwargs):
  _calls.append(directory)
  if len(_calls) == 7:
    try:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as e:
      raise ValueError("tensorstore: error writing a data file") from e
  return _save(directory, step, tree, **kwargs)
checkpoint.save = save
'''


class Launcher:
  """Starts ``ntdh-sweep`` launches sharing one compilation cache."""

  def __init__(self, root: str):
    self.root = root
    self.cache = os.path.join(root, "jax_cache")

  def start(self, workdir, *extra, hook: str | None = None):
    env = dict(os.environ, PYTHONPATH=REPO)
    if hook:
      hook_dir = tempfile.mkdtemp(dir=self.root)
      with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as f:
        f.write(hook)
      env["PYTHONPATH"] = f"{hook_dir}{os.pathsep}{REPO}"
    return subprocess.Popen(
        [sys.executable, "-m", "ntdh_jax.cli", "--config", CONFIG,
         "--workdir", workdir, *OVERRIDES, *FLAGS,
         "--compilation_cache", self.cache, *extra],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)

  def run(self, workdir, *extra, hook=None) -> tuple[int, str]:
    proc = self.start(workdir, *extra, hook=hook)
    out = proc.communicate()[0]
    return proc.returncode, out


def kill_at_marker(proc, n: int) -> tuple[bool, str]:
  """SIGKILLs ``proc`` at its ``n``-th progress marker."""
  seen, out = 0, []
  for line in proc.stdout:
    out.append(line)
    if MARKER in line:
      seen += 1
      if seen == n:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True, "".join(out)
  proc.wait()
  return False, "".join(out)


def rows(workdir) -> dict:
  with open(os.path.join(workdir, "results.jsonl")) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  by_id = {r["run_id"]: r for r in lines}
  if len(by_id) != len(lines):
    raise AssertionError(f"{workdir}: duplicate rows")
  return by_id


def errors(out: str) -> list[str]:
  return [l for l in out.splitlines() if l.startswith("ntdh-sweep: error:")]


def short(line: str, root: str, width: int = 110) -> str:
  """An error line for the table, without what differs between runs: the
  scenario directories as ``W/``, the lock holder as ``pid P``."""
  line = line.replace("ntdh-sweep: error: ", "").replace(root + os.sep, "W/")
  line = re.sub(r"pid \d+ on host [^,)]+(, since [^)]+)?", "pid P", line)
  return textwrap.shorten(line, width, placeholder=" …")


class Scenarios:
  """Each method runs one fault and returns ``(injected, outcome, ok)``."""

  def __init__(self, root: str, kills: int):
    self.root, self.kills = root, kills
    self.launch = Launcher(root)
    self.reference = os.path.join(root, "reference")
    code, out = self.launch.run(self.reference)
    if code:
      raise SystemExit(f"the uninterrupted sweep failed:\n{out}")
    self.rows = rows(self.reference)

  def _fresh(self, name: str) -> str:
    path = os.path.join(self.root, name)
    shutil.rmtree(path, ignore_errors=True)
    return path

  def _copy(self, name: str, students: bool = True) -> str:
    path = self._fresh(name)
    shutil.copytree(self.reference, path)
    if not students:  # only the teachers finished
      with open(os.path.join(path, "results.jsonl")) as f:
        kept = [l for l in f if json.loads(l)["stage"] == "teacher"]
      with open(os.path.join(path, "results.jsonl"), "w") as f:
        f.writelines(kept)
    return path

  def _first(self, err: list[str], out: str) -> str:
    """The error line (or the output's tail, when there is none)."""
    return short(err[0] if err else out[-200:], self.root)

  def _same(self, workdir) -> str:
    return ("rows = uninterrupted sweep's" if rows(workdir) == self.rows
            else "ROWS DIFFER")

  def sigkill(self):
    workdir = self._fresh("sigkill")
    kills, clean = 0, True
    while kills < self.kills:
      n = KILL_PATTERN[kills % len(KILL_PATTERN)]
      killed, out = kill_at_marker(self.launch.start(workdir), n)
      clean &= "Traceback" not in out and not errors(out)
      if not killed:
        break
      kills += 1
    code, out = self.launch.run(workdir)
    ok = code == 0 and clean and kills == self.kills
    return (f"SIGKILL at {kills} progress markers, relaunch after each",
            f"every relaunch started cleanly; final exit {code}; "
            f"{self._same(workdir)}", ok and rows(workdir) == self.rows)

  def _outputs(self, workdir) -> list[str]:
    return sorted({r["outputs.path"] for r in rows(workdir).values()
                   if r["stage"] == "teacher"})

  def _recompute(self, name, damage, what):
    workdir = self._copy(name, students=False)
    victim = os.path.join(workdir, self._outputs(workdir)[0])
    damage(workdir, victim)
    code, out = self.launch.run(workdir)
    warned = [l for l in out.splitlines() if "unusable" in l]
    ok = code == 0 and len(warned) == 1 and rows(workdir) == self.rows
    return (what, f"exit {code}; {len(warned)} warning (teacher chunk "
            f"trained again); {self._same(workdir)}", ok)

  def flipped_output(self):
    def damage(_, victim):
      data = sorted(os.path.join(r, n) for r, _, ns in os.walk(victim)
                    for n in ns if "ocdbt.process" in r and "/d" in r)
      with open(data[-1], "r+b") as f:
        f.seek(os.path.getsize(data[-1]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    return self._recompute("flipped", damage,
                           "one byte flipped in a teacher's stored outputs")

  def deleted_output(self):
    return self._recompute("deleted", lambda _, v: shutil.rmtree(v),
                           "a teacher's stored outputs deleted")

  def replaced_output(self):
    def damage(workdir, victim):
      other = os.path.join(workdir, self._outputs(workdir)[1])
      shutil.rmtree(victim)
      shutil.copytree(other, victim)
    return self._recompute("replaced", damage, "a teacher's stored outputs "
                           "replaced by another chunk's")

  def corrupt_checkpoint(self):
    workdir = self._fresh("checkpoint")
    proc = self.launch.start(workdir)
    for line in proc.stdout:  # the first mid-chunk checkpoint
      if "checkpoint at segment 2/" in line:
        proc.send_signal(signal.SIGKILL)
        break
    proc.wait()
    chunks = os.path.join(workdir, "chunks")
    chunk = os.path.join(chunks, os.listdir(chunks)[0])
    step = os.path.join(chunk, max(os.listdir(chunk), key=len))
    with open(os.path.join(step, "_CHECKPOINT_METADATA"), "a") as f:
      f.write(" ")
    code, out = self.launch.run(workdir)
    warned = [l for l in out.splitlines() if "restarts" in l]
    return ("a mid-chunk checkpoint corrupted (a file changed)",
            f"exit {code}; {len(warned)} warning (chunk restarted); "
            f"{self._same(workdir)}",
            code == 0 and len(warned) == 1 and rows(workdir) == self.rows)

  def malformed_row(self):
    workdir = self._copy("malformed")
    path = os.path.join(workdir, "results.jsonl")
    with open(path) as f:
      lines = f.readlines()
    lines[3] = lines[3][: len(lines[3]) // 2] + "\n"
    with open(path, "w") as f:
      f.writelines(lines)
    code, out = self.launch.run(workdir)
    err = errors(out)
    del lines[3]  # what the message says to do
    with open(path, "w") as f:
      f.writelines(lines)
    code2, _ = self.launch.run(workdir)
    ok = (code == 2 and len(err) == 1 and "line 4" in err[0] and code2 == 0
          and rows(workdir) == self.rows)
    return ("a malformed complete line in results.jsonl",
            f"exit {code}: `{self._first(err, out)}`; after "
            f"deleting the line: exit {code2}, {self._same(workdir)}", ok)

  def disk_full_first_write(self):
    workdir = self._fresh("full_first")
    os.makedirs(workdir)
    os.symlink("/dev/full", os.path.join(workdir, "sweep.json.tmp"))
    code, out = self.launch.run(workdir)
    err = errors(out)
    os.remove(os.path.join(workdir, "sweep.json.tmp"))
    code2, _ = self.launch.run(workdir)
    ok = (code == 2 and len(err) == 1 and "No space left" in err[0]
          and code2 == 0 and rows(workdir) == self.rows)
    return ("disk full (real ENOSPC: the first write goes to /dev/full)",
            f"exit {code}: `{self._first(err, out)}`; "
            f"relaunch: exit {code2}, {self._same(workdir)}", ok)

  def disk_full_mid_sweep(self):
    workdir = self._fresh("full_mid")
    code, out = self.launch.run(workdir, hook=DISK_FULL_HOOK)
    err = errors(out)
    before = rows(workdir)
    intact = all(before[r] == self.rows[r] for r in before)
    code2, _ = self.launch.run(workdir)
    ok = (code == 2 and len(err) == 1 and intact and code2 == 0
          and rows(workdir) == self.rows)
    return ("disk full mid-sweep (ENOSPC injected into the 7th checkpoint "
            "write, wrapped as orbax reports it)",
            f"exit {code}, one line; {len(before)} rows kept, "
            f"{'all intact' if intact else 'CHANGED'}; relaunch: exit "
            f"{code2}, {self._same(workdir)}", ok)

  def concurrent(self):
    workdir = self._fresh("concurrent")
    first = self.launch.start(workdir)
    for line in first.stdout:
      if MARKER in line:
        break
    code, out = self.launch.run(workdir)
    err = errors(out)
    waiter = self.launch.start(workdir, "--wait")
    first.communicate()
    waited = waiter.communicate()[0]
    ok = (code == 2 and len(err) == 1 and f"pid {first.pid}" in err[0]
          and first.returncode == 0 and waiter.returncode == 0
          and "waiting" in waited and rows(workdir) == self.rows)
    return ("a second launch into a busy workdir (and a third with --wait)",
            f"second: exit {code}: `{self._first(err, out)}`; "
            f"--wait: waited, exit {waiter.returncode}; "
            f"{self._same(workdir)}", ok)

  def foreign_config(self):
    workdir = self._copy("foreign")
    os.remove(os.path.join(workdir, "sweep.json"))
    code, out = self.launch.run(workdir, "--config.kd_weight=0.5")
    err = errors(out)
    ok = (code == 2 and len(err) == 1 and "different config" in err[0]
          and rows(workdir) == self.rows)
    untouched = rows(workdir) == self.rows
    return ("sweep.json deleted, then another config launched",
            f"exit {code}: `{self._first(err, out)}`; rows "
            + ("untouched" if untouched else "CHANGED"), ok)

  def bad_values(self):
    results = []
    for overrides in (["--config.gaps=2.0"], ["--config.temperature=0"],
                      ["--config.presets.tuned.lr=-0.1"],
                      ["--config.parts=fig3,alg2", "--config.alg2.ratios=1.5"],
                      ["--config.num_seeds=0"]):
      workdir = self._fresh("bad")
      code, out = self.launch.run(workdir, *overrides)
      err = errors(out)
      results.append(code == 2 and len(err) == 1
                     and not os.path.exists(workdir))
    return ("bad config values (γ = 2, T = 0, lr < 0, ratio 1.5, 0 seeds)",
            f"{sum(results)}/{len(results)}: exit 2, one line naming the "
            "key, value and range; workdir not created", all(results))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/reliability")
  parser.add_argument("--kills", type=int, default=20)
  args = parser.parse_args()
  shutil.rmtree(args.workdir, ignore_errors=True)
  os.makedirs(args.workdir)
  scenarios = Scenarios(os.path.abspath(args.workdir), args.kills)
  table = ["| fault injected | outcome | ok |", "|---|---|---|"]
  failed = 0
  for name in ("sigkill", "flipped_output", "deleted_output",
               "replaced_output", "corrupt_checkpoint", "malformed_row",
               "disk_full_first_write", "disk_full_mid_sweep", "concurrent",
               "foreign_config", "bad_values"):
    fault, outcome, ok = getattr(scenarios, name)()
    failed += not ok
    table.append(f"| {fault} | {outcome} | {'yes' if ok else 'NO'} |")
    print(table[-1], flush=True)
  text = "\n".join(table) + "\n"
  with open(os.path.join(args.workdir, "reliability.md"), "w") as f:
    f.write(text)
  print("\n" + text)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
