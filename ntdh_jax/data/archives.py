"""The archives a dataset builder reads from ``manual_dir``: presence, size
and SHA-256 checks, and errors that name the file.

Builders never download (the archives need a licence click or are tens of
GB): the user places them in ``manual_dir`` as each builder's
``MANUAL_DOWNLOAD_INSTRUCTIONS`` say. Before anything is generated,
``check`` verifies every input:

* missing → ``ArchiveError`` naming the file, the folder and where to get it;
* with ``verify=True`` (the default of ``ntdh-data prepare``), a file whose
  size or SHA-256 differs from the published one → ``ArchiveError`` naming
  the expected values (a truncated download is caught here);
* always, the archive's own structure while it is read: a truncated gzip or
  tar stream, a zip without its central directory or with a bad CRC, a
  member that is not where the layout says (``reading`` turns each into an
  ``ArchiveError`` naming the archive and the member).

``verify=False`` (``--skip_checksums``) skips only the size and SHA-256
comparison: for archives repacked by the user, or the tests' tiny fakes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import tarfile
import zipfile
import zlib
from typing import Iterator, Sequence

from ntdh_jax.errors import UserError


class ArchiveError(UserError):
  """A missing, truncated or corrupt input file; the message names it."""


@dataclasses.dataclass(frozen=True)
class Archive:
  """One input file of a builder.

  Attributes:
    name: file name inside ``manual_dir``.
    url: where to get it.
    size: published size in bytes, if known.
    sha256: published SHA-256 (hex), if known.
  """
  name: str
  url: str
  size: int | None = None
  sha256: str | None = None


def sha256(path: str, block: int = 1 << 20) -> str:
  """Hex SHA-256 of the file at ``path``."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(block), b""):
      digest.update(chunk)
  return digest.hexdigest()


def check(manual_dir: str, archives: Sequence[Archive], verify: bool,
          dataset: str) -> dict[str, str]:
  """Every archive present in ``manual_dir`` (and, with ``verify``, of its
  published size and SHA-256); returns ``{name: path}``."""
  paths = {}
  for archive in archives:
    path = os.path.join(manual_dir, archive.name)
    if not os.path.isfile(path):
      raise ArchiveError(
          f"{dataset}: missing {archive.name} in --manual_dir {manual_dir} "
          f"(download it from {archive.url}; `ntdh-data instructions "
          f"{dataset}` lists every file).")
    if verify:
      size = os.path.getsize(path)
      if archive.size is not None and size != archive.size:
        raise ArchiveError(
            f"{path}: {size:,} bytes, expected {archive.size:,}"
            + (f" (sha256 {archive.sha256})" if archive.sha256 else "")
            + ": truncated or a different file; download it again from "
              f"{archive.url} (or pass --skip_checksums for a repacked "
              "archive).")
      digest = None if archive.sha256 is None else sha256(path)
      if digest != archive.sha256:  # one pass over a file of up to 80 GB
        raise ArchiveError(
            f"{path}: sha256 {digest}, expected {archive.sha256}: "
            f"corrupt or a different file; download it again from "
            f"{archive.url} (or pass --skip_checksums for a repacked "
            "archive).")
    paths[archive.name] = path
  return paths


# What reading a damaged archive raises, by format.
_DAMAGE = (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError,
           zlib.error, gzip.BadGzipFile, KeyError)


@contextlib.contextmanager
def reading(path: str, member: str | None = None) -> Iterator[None]:
  """Turns a damaged-archive error raised inside into an ``ArchiveError``
  naming ``path`` (and ``member``)."""
  try:
    yield
  except ArchiveError:
    raise
  except _DAMAGE as e:
    where = f"{path} (member {member})" if member else path
    raise ArchiveError(
        f"{where}: truncated or corrupt ({type(e).__name__}: {e}); download "
        "it again.") from e


def open_zip(path: str) -> zipfile.ZipFile:
  """``zipfile.ZipFile`` of ``path``, or an ``ArchiveError`` naming it."""
  with reading(path):
    return zipfile.ZipFile(path)


def read_member(archive: zipfile.ZipFile, member: str) -> bytes:
  """The bytes of ``member`` (CRC-checked by ``zipfile``)."""
  with reading(archive.filename, member):
    return archive.read(member)


def read_gzip(path: str) -> bytes:
  """The whole decompressed stream of a ``.gz`` file (CRC-checked)."""
  with reading(path):
    with gzip.open(path, "rb") as f:
      return f.read()


def tar_members(path: str, prefix: str) -> Iterator[tuple[str, bytes]]:
  """``(name, bytes)`` of the regular members of a (compressed) tar whose
  name starts with ``prefix``, in archive order."""
  with reading(path):
    with tarfile.open(path, "r:*") as tar:
      for info in tar:
        if info.isfile() and info.name.startswith(prefix):
          with reading(path, info.name):
            yield info.name, tar.extractfile(info).read()
