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
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


def _manager(directory: str, keep: int | None = None) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=keep,
          # Synchronous: a step returned from save() is on disk, which the
          # sweep's resume protocol relies on.
          enable_async_checkpointing=False,
          # Left-overs of a save killed half-way are deleted, never read.
          cleanup_tmp_directories=True),
      # Declared up front so metadata can be read before any restore call.
      item_handlers=ocp.StandardCheckpointHandler())


def save(directory: str, step: int, tree: PyTree, *,
         keep: int | None = None) -> None:
  """Saves ``tree`` (arrays, sharded or not) as ``step`` under ``directory``.

  ``keep`` keeps only the newest ``keep`` steps (``None``: all).
  """
  with _manager(directory, keep) as manager:
    manager.save(step, args=ocp.args.StandardSave(tree))


def _steps(directory: str) -> list[int]:
  """Complete steps under ``directory``, read from the file system alone.

  Not through a ``CheckpointManager``: creating one is collective under
  ``jax.distributed`` (a barrier every process must reach), so a query whose
  answer decides whether a process saves next must not create one, or
  processes that see the directory at different moments fall out of step.
  """
  if not os.path.isdir(directory):
    return []
  return ocp.utils.checkpoint_steps(directory)


def latest_step(directory: str) -> int | None:
  """The newest complete step under ``directory``, ``None`` if there is none."""
  return max(_steps(directory), default=None)


def _resolve_step(directory: str, step: int | None) -> int:
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoint directory {directory!r}.")
  steps = _steps(directory)
  if not steps:
    raise FileNotFoundError(f"No complete checkpoint in {directory!r}.")
  if step is None:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(
        f"No step {step} in {directory!r}; available steps: {sorted(steps)}.")
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
  """Shapes and dtypes stored at ``step`` (default: latest), as a pytree of
  ``jax.ShapeDtypeStruct`` (nested dicts/lists; PRNG keys appear as their
  ``uint32`` key data)."""
  step = _resolve_step(directory, step)
  try:
    with _manager(directory) as manager:
      metadata = manager.item_metadata(step).tree
  except Exception as e:  # orbax raises many types for unreadable files
    raise ValueError(
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
    ValueError: a leaf's shape or dtype differs (the message names the leaf
      and both), or the checkpoint is corrupted.
  """
  step = _resolve_step(directory, step)
  check_spec(saved_spec(directory, step), abstract_tree)
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def target(leaf):
    if isinstance(leaf, np.ndarray):
      return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                sharding=getattr(leaf, "sharding", None)
                                or default)
  target_tree = jax.tree.map(target, abstract_tree)
  try:
    with _manager(directory) as manager:
      return manager.restore(step,
                             args=ocp.args.StandardRestore(target_tree))
  except Exception as e:  # the spec matched, so the files are bad
    raise ValueError(
        f"Checkpoint {directory!r} step {step} is corrupted or unreadable: "
        f"{type(e).__name__}: {e}") from e
