"""The results table of a sweep: ``WORKDIR/results.jsonl``, one row per run.

Rows are appended in batches (one batch = one finished chunk). Each batch is
written with a single ``os.write`` of complete lines to an ``O_APPEND`` file
descriptor followed by ``fsync``, so a killed process leaves at most one
trailing partial line, never an interleaved batch. ``load`` drops such a
partial line (and the next ``append`` truncates it away), and keeps the
first row of each ``run_id``, so a run is never counted twice. A malformed
*complete* line (not JSON, not an object, no string ``run_id``) was not left
by a killed write: it is refused with its file and line number (see
``load``); blank lines are skipped.

``WORKDIR/sweep.json`` records the fingerprint of the config that created the
workdir; relaunching a different config into it is refused, because skipping
"finished" runs would then silently mix two sweeps. Each row also carries the
digest of that fingerprint (key ``config_digest``), so the mismatch is still
caught when ``sweep.json`` was deleted: see ``ResultsStore.load`` for which
rows a store accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping

from ntdh_jax.errors import UserError

RESULTS = "results.jsonl"
FINGERPRINT = "sweep.json"
DIGEST_KEY = "config_digest"  # reserved: set by ``append``, removed by ``load``


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


def config_digest(fingerprint: Mapping) -> str:
  """First 16 hex digits of the SHA-256 of the normalised fingerprint JSON.

  Equal for fingerprints that ``check_fingerprint`` finds equal (the same
  JSON once tuples are lists), whatever their key order.
  """
  text = json.dumps(_normalise(dict(fingerprint)), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class ResultsStore:
  """Append-only, crash-safe table of result rows keyed by ``run_id``."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, RESULTS)
    self.digest: str | None = None  # of the fingerprint; see check_fingerprint
    # Rows without a digest (written before rows had one) are vouched for by
    # a matching sweep.json that was already there.
    self._undigested_ok = False

  def _read_lines(self) -> tuple[list[bytes], int]:
    """Complete lines and the bytes they span (a partial tail excluded)."""
    try:
      with open(self.path, "rb") as f:
        data = f.read()
    except FileNotFoundError:
      return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].split(b"\n")[:-1], end

  def _row_error(self, number: int, problem: str, advice: str) -> UserError:
    return UserError(f"{self.path}, line {number}: {problem}; {advice}")

  def _parse(self, number: int, line: bytes) -> dict:
    """The row of one complete line, or a ``UserError`` naming the line."""
    fix = ("delete that line (its run will be retrained on the next launch) "
           "or start a new --workdir.")
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise self._row_error(
          number, f"not valid JSON ({e.msg}: column {e.colno})",
          fix) from None
    except ValueError:  # bytes that are not UTF-8
      raise self._row_error(number, "not UTF-8 text", fix) from None
    if not isinstance(row, dict):
      raise self._row_error(
          number, f"a JSON {type(row).__name__}, not an object (a row)", fix)
    if not isinstance(row.get("run_id"), str):
      problem = ("the row has no run_id" if "run_id" not in row else
                 f"the row's run_id {row['run_id']!r} is not a string")
      raise self._row_error(number, problem, fix)
    return row

  def _check_digest(self, number: int, row: dict) -> None:
    """Refuses a row of another config (see ``load``)."""
    digest = row.pop(DIGEST_KEY, None)
    if self.digest is None or digest == self.digest:
      return
    if digest is None:
      if self._undigested_ok:
        return
      raise self._row_error(
          number, f"run {row['run_id']} has no {DIGEST_KEY} (it was written "
          "by an older ntdh_jax, or by run_sweep without a fingerprint) and "
          f"{FINGERPRINT}, which vouched for such rows, is missing, so its "
          "config cannot be checked",
          "use a new --workdir.")
    raise self._row_error(
        number, f"run {row['run_id']} has {DIGEST_KEY} {digest}, but this "
        f"sweep's config has {self.digest}: rows were written by a different "
        "config", "use a new --workdir.")

  def load(self) -> dict[str, dict]:
    """``{run_id: row}`` of every complete row, first occurrence kept.

    Every complete line is checked, duplicates included; the returned rows
    no longer carry ``config_digest`` (it describes the config, not the
    run, and a row of this launch has none either). Which rows are refused,
    given the store's fingerprint (``check_fingerprint``):

    * no fingerprint (library use): every row is accepted, with or without
      a digest, since there is nothing to check it against;
    * a fingerprint: a row with another digest is refused; a row without one
      is accepted only if ``sweep.json`` was already there and matched (a
      workdir written before rows had digests), and refused otherwise.

    Raises:
      UserError: a malformed complete line, a row of another config, or a
        workdir of the format before runs named their upstream runs by role;
        the message names the file and the 1-based line number.
    """
    rows = {}
    for number, line in enumerate(self._read_lines()[0], 1):
      if not line.strip():
        continue
      row = self._parse(number, line)
      if isinstance(row.get("needs"), str):
        raise UserError(
            f"{self.path} was written by an older ntdh_jax (a run needed one "
            "upstream run id; runs now name their upstream runs by role), "
            "whose run ids and outputs this version cannot reuse; start a "
            "new --workdir.")
      self._check_digest(number, row)
      rows.setdefault(row["run_id"], row)
    return rows

  def finished_ids(self) -> set[str]:
    return set(self.load())

  def append(self, rows: Iterable[Mapping]) -> None:
    """Appends ``rows`` as one atomic write (all of them or, if killed, none).

    Rows whose ``run_id`` is already stored are skipped. Each row written
    carries the store's ``config_digest`` if ``check_fingerprint`` was
    called, and no ``config_digest`` otherwise (a value in ``rows`` is
    replaced or dropped: the key is reserved). ``rows`` are not modified.
    """
    os.makedirs(self.workdir, exist_ok=True)
    stored = self.finished_ids()
    lines = []
    for row in rows:
      if row["run_id"] not in stored:
        stored.add(row["run_id"])
        row = {k: v for k, v in row.items() if k != DIGEST_KEY}
        if self.digest is not None:
          row[DIGEST_KEY] = self.digest
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

    From then on the store knows the fingerprint's digest: ``append``
    stamps it on every row and ``load`` refuses rows of another config.
    When ``sweep.json`` is absent (a first launch, or it was deleted) the
    rows already stored are checked here, before ``sweep.json`` is written,
    so a refused config never leaves its fingerprint behind.

    Args:
      fingerprint: JSON-able description of the sweep (its config).
      create: write ``sweep.json`` when absent (only the writing process).

    Raises:
      UserError: ``sweep.json`` holds a different fingerprint (the message
        lists the differing keys), or a stored row is refused (see
        ``load``).
    """
    path = os.path.join(self.workdir, FINGERPRINT)
    new = flatten_dict(_normalise(dict(fingerprint)))
    digest = config_digest(fingerprint)
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
        raise UserError(
            f"workdir {self.workdir} was created by a different config: "
            f"differing keys {shown}{more}; use a new --workdir.")
      self.digest, self._undigested_ok = digest, True
      return
    self.digest, self._undigested_ok = digest, False
    try:
      self.load()  # refuses rows of another config before sweep.json is made
    except UserError:
      self.digest = None
      raise
    if create:
      os.makedirs(self.workdir, exist_ok=True)
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(_normalise(dict(fingerprint)), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
