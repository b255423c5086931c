"""The results table of a sweep: ``WORKDIR/results.jsonl``, one row per run.

Rows are appended in batches (one batch = one finished chunk). Each batch is
written with a single ``os.write`` of complete lines to an ``O_APPEND`` file
descriptor followed by ``fsync``, so a killed process leaves at most one
trailing partial line, never an interleaved batch. ``load`` drops such a
partial line (and the next ``append`` truncates it away), and keeps the
first row of each ``run_id``, so a run is never counted twice.

``WORKDIR/sweep.json`` records the fingerprint of the config that created the
workdir; relaunching a different config into it is refused, because skipping
"finished" runs would then silently mix two sweeps.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

RESULTS = "results.jsonl"
FINGERPRINT = "sweep.json"


def flatten_dict(tree: Mapping, prefix: str = "") -> dict[str, Any]:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (empty dicts stay leaves)."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      flat.update(flatten_dict(value, name + "."))
    else:
      flat[name] = value
  return flat


def _normalise(obj) -> Any:
  """JSON round trip: tuples become lists, as they will be when read back."""
  return json.loads(json.dumps(obj, sort_keys=True, default=str))


class ResultsStore:
  """Append-only, crash-safe table of result rows keyed by ``run_id``."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, RESULTS)

  def _read_lines(self) -> tuple[list[bytes], int]:
    """Complete lines and the bytes they span (a partial tail excluded)."""
    try:
      with open(self.path, "rb") as f:
        data = f.read()
    except FileNotFoundError:
      return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end

  def load(self) -> dict[str, dict]:
    """``{run_id: row}`` of every complete row, first occurrence kept."""
    rows = {}
    for line in self._read_lines()[0]:
      row = json.loads(line)
      if isinstance(row.get("needs"), str):
        raise ValueError(
            f"{self.path} was written by an older ntdh_jax (a run needed one "
            "upstream run id; runs now name their upstream runs by role), "
            "whose run ids and outputs this version cannot reuse; start a "
            "new --workdir.")
      rows.setdefault(row["run_id"], row)
    return rows

  def finished_ids(self) -> set[str]:
    return set(self.load())

  def append(self, rows: Iterable[Mapping]) -> None:
    """Appends ``rows`` as one atomic write (all of them or, if killed, none).

    Rows whose ``run_id`` is already stored are skipped.
    """
    os.makedirs(self.workdir, exist_ok=True)
    stored = self.finished_ids()
    lines = []
    for row in rows:
      if row["run_id"] not in stored:
        stored.add(row["run_id"])
        lines.append(json.dumps(row, sort_keys=True) + "\n")
    if not lines:
      return
    self._repair()
    data = "".join(lines).encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      while data:  # one write; a short one (disk full, signal) is continued
        data = data[os.write(fd, data):]
      os.fsync(fd)
    finally:
      os.close(fd)

  def _repair(self) -> None:
    """Cuts a partial last line left by a write that was killed."""
    if not os.path.exists(self.path):
      return
    end = self._read_lines()[1]
    if end != os.path.getsize(self.path):
      os.truncate(self.path, end)

  def check_fingerprint(self, fingerprint: Mapping, *, create: bool) -> None:
    """Refuses a workdir made by another config; records it on first launch.

    Args:
      fingerprint: JSON-able description of the sweep (its config).
      create: write ``sweep.json`` when absent (only the writing process).

    Raises:
      ValueError: ``sweep.json`` holds a different fingerprint; the message
        lists the differing keys.
    """
    path = os.path.join(self.workdir, FINGERPRINT)
    new = flatten_dict(_normalise(dict(fingerprint)))
    if os.path.exists(path):
      with open(path) as f:
        old = flatten_dict(json.load(f))
      differing = sorted(k for k in old.keys() | new.keys()
                         if old.get(k, "<absent>") != new.get(k, "<absent>"))
      if differing:
        shown = ", ".join(f"{k} ({old.get(k, '<absent>')!r} -> "
                          f"{new.get(k, '<absent>')!r})"
                          for k in differing[:10])
        more = f" and {len(differing) - 10} more" if len(differing) > 10 else ""
        raise ValueError(
            f"workdir {self.workdir} was created by a different config: "
            f"differing keys {shown}{more}; use a new --workdir.")
    elif create:
      os.makedirs(self.workdir, exist_ok=True)
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(_normalise(dict(fingerprint)), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
