"""Reading the arrays a user saved, for the command line (``ntdh-cch``,
``ntdh-diagnose``): every failure is one ``UserError`` line naming the flag
and the file, never a traceback from inside numpy."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ntdh_jax.errors import UserError

NPY_MAGIC = b"\x93NUMPY"
# numpy.savez writes a zip archive; every zip starts with a local file header.
NPZ_MAGIC = b"PK\x03\x04"


def split_member(spec: str) -> tuple[str, str | None]:
  """``("FILE", "NAME")`` for ``FILE:NAME`` when FILE exists and the whole
  spec does not (a file name may hold colons), ``(spec, None)`` otherwise."""
  path, sep, name = spec.rpartition(":")
  if sep and name and not os.path.isfile(spec) and os.path.isfile(path):
    return path, name
  return spec, None


def load_array(spec: str, flag: str, npz: bool = False) -> np.ndarray:
  """The numeric array saved at ``spec`` for ``--flag``.

  Args:
    spec: a ``.npy`` file (``numpy.save``); with ``npz``, also an ``.npz``
      (``numpy.savez``) holding exactly one array, or ``FILE.npz:NAME`` for
      its array NAME.
    flag: the flag's name without dashes, for the messages.
    npz: whether ``.npz`` files are accepted.

  Raises:
    UserError: ``--flag SPEC: ...``: no such file, unreadable, not a
      ``.npy`` (or ``.npz``) file, an ``.npz`` with no array, several arrays
      and no ``:NAME``, or no array NAME, or an array that is not numeric
      (booleans, integers, floats; pickled objects are never loaded).
  """
  path, member = split_member(spec) if npz else (spec, None)
  where = f"--{flag} {spec}"
  if not os.path.isfile(path):
    raise UserError(f"{where}: no such file.")
  try:
    with open(path, "rb") as f:
      magic = f.read(len(NPY_MAGIC))
  except OSError as e:
    raise UserError(f"{where}: cannot read it ({e.strerror}).") from e
  if npz and magic.startswith(NPZ_MAGIC):
    return _numeric(_npz_member(path, member, where), where)
  if magic != NPY_MAGIC:
    raise UserError(
        f"{where} is not a .npy or .npz file (arrays saved with numpy.save "
        "or numpy.savez; a text file is not)." if npz else
        f"{where} is not a .npy file (one array saved with numpy.save; an "
        ".npz or text file is not).")
  if member is not None:
    raise UserError(f"{where}: {path} is a .npy file, one array with no "
                    f"name; drop ':{member}'.")
  try:
    array = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise UserError(f"{where}: cannot load it as a numeric array ({e}).") from e
  return _numeric(array, where)


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
  # Strings, bytes and dates load without pickling; the libraries behind
  # the commands would reject them with the whole array in the message.
  if array.dtype.kind not in "biuf":
    raise UserError(f"{where} holds an array of dtype {array.dtype}; "
                    "expected numbers.")
  return array


def _npz_member(path: str, member: str | None, where: str) -> np.ndarray:
  try:
    archive = np.load(path, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise UserError(f"{where}: cannot load it as an .npz file ({e}).") from e
  with archive:
    names = list(archive.files)
    if not names:
      raise UserError(f"{where} holds no array.")
    if member is None and len(names) > 1:
      raise UserError(
          f"{where} holds {len(names)} arrays ({', '.join(names)}); pick "
          f"one as {path}:NAME.")
    if member is not None and member not in names:
      raise UserError(f"{where} has no array {member!r}; it holds "
                      f"{', '.join(names)}.")
    try:
      # The archive reads its members lazily: a bad one fails here.
      return archive[member if member is not None else names[0]]
    except (ValueError, OSError, zipfile.BadZipFile) as e:
      raise UserError(
          f"{where}: cannot load it as a numeric array ({e}).") from e
