"""Saving and restoring pytrees with orbax: how a teacher reaches its student.

A notebook saves a trained teacher and restores it for a student with

  checkpoint.save(path, step, teacher_params)
  params = checkpoint.restore(path, student.input_spec)

``restore`` is an *abstract-state* restore: the caller says which shapes and
dtypes it expects (``jax.ShapeDtypeStruct`` leaves, optionally with a
sharding) and a checkpoint that does not match is a ``ValueError`` naming the
leaf and both shapes/dtypes before any array is read. The sweep engine uses
the same helpers for its chunk checkpoints and stacked outputs.

Writes are atomic (orbax writes a temporary directory and renames it when
complete), so a process killed mid-save leaves the previous step intact.
Each step is then *sealed*: a SHA-256 digest of every file it holds is
written into it (``ntdh_digest.json``), and every read verifies the files
against it first, so a flipped byte, a truncated or a replaced file is a
``CheckpointCorrupted`` error naming the file, never different numbers. A
step without a seal (a save killed before sealing, or a checkpoint written
by another tool) is not a complete step: ``latest_step`` skips it and the
next ``save`` deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

PyTree = Any
DIGEST = "ntdh_digest.json"
_CHUNK = 1 << 20


class CheckpointCorrupted(ValueError):
  """A checkpoint's files differ from the digest written when it was saved
  (or cannot be read)."""


def _manager(directory: str, *, cleanup: bool) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          # Old steps are pruned here, after the new step is sealed.
          max_to_keep=None,
          # Synchronous: a step returned from save() is on disk, which the
          # sweep's resume protocol relies on.
          enable_async_checkpointing=False,
          # Left-overs of a save killed half-way are deleted, but only by the
          # manager that saves, which waits for the deletion before it writes:
          # a reading manager's cleanup runs in a background thread that
          # nothing waits for, and it raced a later save in the same
          # directory (deleting the new step's temporary files).
          cleanup_tmp_directories=cleanup),
      # Declared up front so metadata can be read before any restore call.
      item_handlers=ocp.StandardCheckpointHandler())


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _file_digests(step_dir: str) -> dict[str, str]:
  """``{relative path: sha256}`` of every file of a step but the seal."""
  digests = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel == DIGEST:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        while block := f.read(_CHUNK):
          h.update(block)
      digests[rel] = h.hexdigest()
  return digests


def write_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _seal(step_dir: str) -> None:
  if jax.process_index() == 0:
    write_atomic(os.path.join(step_dir, DIGEST), json.dumps(
        {"sha256": _file_digests(step_dir)}, indent=0, sort_keys=True))
  _sync(f"seal {step_dir}")


def _all_steps(directory: str) -> list[int]:
  """Finalised orbax steps, sealed or not, read from the file system alone.

  Not through a ``CheckpointManager``: creating one is collective under
  ``jax.distributed`` (a barrier every process must reach), so a query whose
  answer decides whether a process saves next must not create one, or
  processes that see the directory at different moments fall out of step.
  """
  if not os.path.isdir(directory):
    return []
  return ocp.utils.checkpoint_steps(directory)


def _steps(directory: str) -> list[int]:
  """Complete steps: finalised and sealed."""
  return [s for s in _all_steps(directory)
          if os.path.exists(os.path.join(directory, str(s), DIGEST))]


def save(directory: str, step: int, tree: PyTree, *,
         keep: int | None = None) -> None:
  """Saves ``tree`` (arrays, sharded or not) as ``step`` under ``directory``
  and seals it.

  ``keep`` keeps only the newest ``keep`` steps (``None``: all); older steps
  are deleted only once the new one is sealed, so a kill at any moment
  leaves a complete step behind.
  """
  directory = os.path.abspath(directory)
  step_dir = os.path.join(directory, str(step))
  if os.path.isdir(step_dir) and step not in _steps(directory):
    _remove(step_dir)  # finalised but never sealed: a killed save
  with _manager(directory, cleanup=True) as manager:
    manager.save(step, args=ocp.args.StandardSave(tree))
  _seal(step_dir)
  sealed = sorted(_steps(directory))
  stale = [s for s in _all_steps(directory) if s not in sealed]
  if keep is not None:
    stale += sealed[:-keep]
  for old in stale:
    _remove(os.path.join(directory, str(old)))


def _remove(path: str) -> None:
  if jax.process_index() == 0:
    shutil.rmtree(path, ignore_errors=True)
  _sync(f"remove {path}")


def latest_step(directory: str) -> int | None:
  """The newest complete (sealed) step under ``directory``, ``None`` if there
  is none."""
  return max(_steps(directory), default=None)


def tree_digest(tree: PyTree) -> str:
  """SHA-256 of a pytree's contents (leaf paths, dtypes, shapes, bytes):
  equal for equal arrays however and whenever they were saved, unlike the
  files, whose names and metadata differ between saves. PRNG keys count as
  their key data, as stored; host arrays only (``jax.device_get`` first)."""
  h = hashlib.sha256()
  # By leaf name, so a NamedTuple and the dict orbax restores it as agree.
  leaves = sorted((_leaf_name(p), x) for p, x in
                  jax.tree_util.tree_flatten_with_path(tree)[0])
  for name, leaf in leaves:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None),
                             jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    leaf = np.ascontiguousarray(leaf)
    h.update(json.dumps([name, leaf.dtype.str,
                         list(leaf.shape)]).encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def verify(directory: str, step: int | None = None) -> int:
  """Checks the files of ``step`` (default: latest) against its seal.

  Returns:
    The step verified.

  Raises:
    FileNotFoundError: no checkpoint (or no such step) in ``directory``.
    CheckpointCorrupted: a file is missing, added or changed since the save;
      the message names it.
  """
  directory = os.fspath(directory)
  step = _resolve_step(directory, step)
  step_dir = os.path.join(directory, str(step))
  try:
    with open(os.path.join(step_dir, DIGEST)) as f:
      want = json.load(f)["sha256"]
    have = _file_digests(step_dir)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointCorrupted(
        f"Checkpoint {directory!r} step {step}: cannot read its files or "
        f"digest ({type(e).__name__}: {e}).") from e
  problems = [f"{name} is missing" for name in sorted(want.keys() - have)]
  problems += [f"{name} was added" for name in sorted(have.keys() - want)]
  problems += [f"{name} differs from its digest"
               for name in sorted(want.keys() & have.keys())
               if want[name] != have[name]]
  if problems:
    raise CheckpointCorrupted(
        f"Checkpoint {directory!r} step {step} is corrupted: "
        + "; ".join(problems[:5])
        + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        + ".")
  return step


def _resolve_step(directory: str, step: int | None) -> int:
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint directory {directory!r}.")
  steps = _steps(directory)
  unsealed = sorted(set(_all_steps(directory)) - set(steps))
  hint = (f" (step(s) {unsealed} have no {DIGEST}: a save killed before it "
          "was sealed, or written by another tool or an older ntdh_jax)"
          if unsealed else "")
  if not steps:
    raise FileNotFoundError(
        f"No complete checkpoint in {directory!r}{hint}.")
  if step is None:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(
        f"No step {step} in {directory!r}; available steps: "
        f"{sorted(steps)}{hint}.")
  return step


def _leaf_name(path) -> str:
  """``('p', 'w')``-style key path as ``p/w`` (the same for dicts, NamedTuples
  and the plain dicts orbax's metadata uses in their place)."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _describe(dtype, shape) -> str:
  return f"{np.dtype(dtype).name}{list(shape)}"


def saved_spec(directory: str, step: int | None = None) -> PyTree:
  """Shapes and dtypes stored at ``step`` (default: latest, verified against
  its seal first), as a pytree of ``jax.ShapeDtypeStruct`` (nested
  dicts/lists; PRNG keys appear as their ``uint32`` key data)."""
  return _saved_spec(directory, verify(directory, step))


def _saved_spec(directory: str, step: int) -> PyTree:
  directory = os.fspath(directory)
  try:
    with _manager(directory, cleanup=False) as manager:
      metadata = manager.item_metadata(step).tree
  except Exception as e:  # orbax raises many types for unreadable files
    raise CheckpointCorrupted(
        f"Checkpoint {directory!r} step {step} is corrupted or unreadable: "
        f"{type(e).__name__}: {e}") from e
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
                      metadata)


def _stored_form(leaf) -> jax.ShapeDtypeStruct:
  """What orbax writes for an abstract leaf: typed PRNG keys as key data."""
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    return jax.eval_shape(jax.random.key_data, leaf)
  return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)


def check_spec(stored: PyTree, expected: PyTree) -> None:
  """Raises ``ValueError`` naming every leaf whose path, shape or dtype
  differs between a ``saved_spec`` and an abstract tree."""
  have = {_leaf_name(p): s
          for p, s in jax.tree_util.tree_flatten_with_path(stored)[0]}
  want = {_leaf_name(p): _stored_form(s)
          for p, s in jax.tree_util.tree_flatten_with_path(expected)[0]}
  problems = [f"leaf {name!r} is expected but not in the checkpoint"
              for name in sorted(want.keys() - have.keys())]
  problems += [f"leaf {name!r} is in the checkpoint but not expected"
               for name in sorted(have.keys() - want.keys())]
  for name in sorted(want.keys() & have.keys()):
    h, w = have[name], want[name]
    if h.shape != w.shape or h.dtype != w.dtype:
      problems.append(f"leaf {name!r}: checkpoint has "
                      f"{_describe(h.dtype, h.shape)}, expected "
                      f"{_describe(w.dtype, w.shape)}")
  if problems:
    raise ValueError("; ".join(problems) + ".")


def restore(directory: str, abstract_tree: PyTree,
            step: int | None = None) -> PyTree:
  """Restores ``step`` (default: latest) shaped like ``abstract_tree``.

  Args:
    directory: what ``save`` wrote to.
    abstract_tree: pytree of ``jax.ShapeDtypeStruct`` (or arrays, whose shape
      and dtype are used). A leaf's ``sharding`` places the restored array;
      without one it lands on this process's first device. NumPy leaves
      restore as NumPy arrays.
    step: which step; ``None`` for the latest.

  Returns:
    The restored pytree, with ``abstract_tree``'s structure.

  Raises:
    FileNotFoundError: no checkpoint (or no such step) in ``directory``.
    CheckpointCorrupted: the files differ from the digest written by
      ``save`` (the message names them) or cannot be read.
    ValueError: a leaf's shape or dtype differs (the message names the leaf
      and both).
  """
  directory = os.fspath(directory)
  step = verify(directory, step)
  check_spec(_saved_spec(directory, step), abstract_tree)
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def target(leaf):
    if isinstance(leaf, np.ndarray):
      return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                sharding=getattr(leaf, "sharding", None)
                                or default)
  target_tree = jax.tree.map(target, abstract_tree)
  try:
    with _manager(directory, cleanup=False) as manager:
      return manager.restore(step,
                             args=ocp.args.StandardRestore(target_tree))
  except Exception as e:  # the spec and digest matched: unreadable files
    raise CheckpointCorrupted(
        f"Checkpoint {directory!r} step {step} is corrupted or unreadable: "
        f"{type(e).__name__}: {e}") from e
