"""Real datasets prepared once with tensorflow-datasets, then read as data
sources.

``prepare(name, manual_dir)`` runs the dataset's TFDS builder
(``ntdh_jax.data.builders.<name>``) on the archives in ``manual_dir`` into
``<data_dir>/<name>/<config>/<version>/`` (``array_record`` files,
``dataset_info.json``). It builds into a temporary directory beside the
target and moves the finished version directory into place with one
``os.replace``: a failed or killed build leaves nothing that looks prepared,
and a prepared dataset is never half-overwritten. Builds into one
``data_dir`` take its lock (``data_dir/.lock``) in turn; the next build
removes what a killed one left behind.

``PreparedSource`` is the data-source side (``ntdh_jax.data.source``): a
sweep config names the dataset (``data.name = "mnist_pair"``); ``spec``
reads the split sizes from ``dataset_info.json``; ``load`` reads the rows
with ``as_data_source`` (random access, no TensorFlow) into the host arrays
the engine places on the devices once.

``data_dir`` defaults to TFDS's (``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np

from ntdh_jax.data import source
from ntdh_jax.errors import UserError
from ntdh_jax.train import lock

_INCOMPLETE = ".incomplete-"  # prefix of a build's temporary directory

# name -> module defining ``Builder`` (a tfds GeneratorBasedBuilder),
# ``ARCHIVES`` and registering the data source.
BUILDERS = {
    "mnist_pair": "ntdh_jax.data.builders.mnist_pair",
    "ravdess": "ntdh_jax.data.builders.ravdess",
    "nyu_depth_v2_labeled": "ntdh_jax.data.builders.nyu_depth_v2_labeled",
    "semantic_kitti": "ntdh_jax.data.builders.semantic_kitti",
}


def default_data_dir() -> str:
  """TFDS's default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  return os.environ.get("TFDS_DATA_DIR",
                        os.path.expanduser("~/tensorflow_datasets"))


def module(name: str):
  """The builder module of dataset ``name``; errors list the known ones."""
  if name not in BUILDERS:
    raise UserError(f"Unknown dataset {name!r}; datasets with a builder: "
                    f"{sorted(BUILDERS)}.")
  try:
    return importlib.import_module(BUILDERS[name])
  except ImportError as e:
    raise UserError(f"Preparing {name!r} needs the data extra ({e}): pip "
                    "install 'ntdh_jax[data]'.") from e


def _builder(name: str, config: str | None, data_dir: str):
  builder_cls = module(name).Builder
  names = [c.name for c in builder_cls.BUILDER_CONFIGS]
  config = config or names[0]
  if config not in names:
    raise UserError(f"{name}: unknown config {config!r}; configs: {names}.")
  return builder_cls(config=config, data_dir=data_dir,
                     file_format="array_record")


def prepare(name: str, manual_dir: str, data_dir: str | None = None,
            config: str | None = None, verify: bool = True,
            overwrite: bool = False) -> str:
  """Builds dataset ``name`` (builder config ``config``, default the first)
  from the archives in ``manual_dir``; returns the prepared directory.

  ``verify=False`` skips the size/SHA-256 comparison of the archives (not
  their structural checks). An existing prepared version is an error unless
  ``overwrite``.
  """
  data_dir = os.path.abspath(data_dir or default_data_dir())
  if not os.path.isdir(manual_dir):
    raise UserError(f"--manual_dir {manual_dir} is not a directory; put the "
                    f"archives there (`ntdh-data instructions {name}`).")
  target_builder = _builder(name, config, data_dir)
  target = str(target_builder.data_path)

  def refuse_if_prepared():
    if os.path.exists(os.path.join(target, "dataset_info.json")) and (
        not overwrite):
      raise UserError(f"{name} ({target_builder.builder_config.name}) is "
                      f"already prepared in {target}; pass --overwrite to "
                      "build it again.")

  refuse_if_prepared()
  module(name).check_archives(manual_dir, verify)
  os.makedirs(data_dir, exist_ok=True)
  # One build per data_dir at a time (a second waits), so the leftovers of
  # a killed build can be removed without touching a live one's.
  with lock.workdir_lock(data_dir, wait=True):
    refuse_if_prepared()  # again: a build we waited for may have made it
    for leftover in os.listdir(data_dir):
      if leftover.startswith(_INCOMPLETE):
        shutil.rmtree(os.path.join(data_dir, leftover), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=f"{_INCOMPLETE}{name}-", dir=data_dir)
    try:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
      builder = _builder(name, target_builder.builder_config.name, tmp)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              manual_dir=manual_dir, try_download_gcs=False))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if os.path.exists(target):  # --overwrite: move the old one aside first
        os.replace(target, os.path.join(tmp, "replaced"))
      os.replace(str(builder.data_path), target)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return target


def prepared_builder(name: str, config: str | None, data_dir: str | None):
  """The builder of a prepared ``name``/``config``, or a ``UserError`` that
  gives the prepare command."""
  data_dir = os.path.abspath(data_dir or default_data_dir())
  builder = _builder(name, config, data_dir)
  if not os.path.exists(os.path.join(builder.data_path, "dataset_info.json")):
    raise UserError(
        f"Dataset {name!r} (config {builder.builder_config.name!r}) is not "
        f"prepared in {data_dir}: run `ntdh-data prepare {name} --manual_dir "
        f"DIR --data_dir {data_dir}` (`ntdh-data instructions {name}` lists "
        "the archives).")
  return builder


def prepared_dir(name: str, config: str | None,
                 data_dir: str | None) -> str:
  """The prepared version directory of ``name``/``config``."""
  return str(prepared_builder(name, config, data_dir).data_path)


def split_sizes(path: str) -> dict[str, int]:
  """``{split: examples}`` from a prepared directory's dataset_info.json."""
  with open(os.path.join(path, "dataset_info.json")) as f:
    info = json.load(f)
  return {s["name"]: sum(int(n) for n in s.get("shardLengths", []))
          for s in info.get("splits", [])}


def list_prepared(data_dir: str | None = None) -> list[dict[str, Any]]:
  """One row per prepared dataset version in ``data_dir``: name, config,
  version, examples per split, bytes on disk, path."""
  data_dir = os.path.abspath(data_dir or default_data_dir())
  rows = []
  for name in sorted(BUILDERS):
    root = os.path.join(data_dir, name)
    if not os.path.isdir(root):
      continue
    for config in sorted(os.listdir(root)):
      config_dir = os.path.join(root, config)
      if config.startswith(".") or not os.path.isdir(config_dir):
        continue
      for version in sorted(os.listdir(config_dir)):
        path = os.path.join(config_dir, version)
        if not os.path.isfile(os.path.join(path, "dataset_info.json")):
          continue
        size = sum(os.path.getsize(os.path.join(path, f))
                   for f in os.listdir(path))
        rows.append({"name": name, "config": config, "version": version,
                     "splits": split_sizes(path), "bytes": size,
                     "path": path})
  return rows


def records(name: str, config: str | None, data_dir: str | None,
            split: str) -> list[dict[str, np.ndarray]]:
  """Every record of one split of a prepared dataset, in the stored order
  (``source.load_arrays`` caches what the source makes of them)."""
  ds = prepared_builder(name, config, data_dir).as_data_source()[split]
  return ds.__getitems__(list(range(len(ds))))


def stack(rows: list[Mapping[str, np.ndarray]], key: str,
          dtype=None) -> np.ndarray:
  """``np.stack`` of one feature over records."""
  return np.stack([np.asarray(r[key], dtype) for r in rows])


@dataclasses.dataclass(frozen=True)
class PreparedConfig:
  """Options every prepared source has.

  Attributes:
    data_dir: where ``ntdh-data prepare`` wrote it (default TFDS's).
    config: the builder config (default the builder's first).
  """
  data_dir: str | None = None
  config: str | None = None


class PreparedSource(source.DataSource):
  """A data source over a prepared TFDS dataset.

  Subclasses set ``name`` and ``Config`` (a subclass of ``PreparedConfig``)
  and implement ``modalities(config, path) -> (teacher, student,
  num_classes, label_shape, ignore_label)`` and ``arrays(config, split,
  rows) -> {teacher, student, y}`` (host arrays of one split).
  """
  splits = ("train", "test")

  def modalities(self, config, path: str):
    raise NotImplementedError

  def arrays(self, config, split: str, rows) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def path(self, config) -> str:
    return prepared_dir(self.name, config.config, config.data_dir)

  def spec(self, config) -> source.DataSpec:
    path = self.path(config)
    sizes = split_sizes(path)
    teacher, student, num_classes, label_shape, ignore = self.modalities(
        config, path)
    return source.DataSpec(
        teacher=teacher, student=student, num_classes=num_classes,
        splits={s: sizes[s] for s in self.splits}, label_shape=label_shape,
        ignore_label=ignore, paired=True)

  def load(self, config) -> dict[str, np.ndarray]:
    out = {}
    for split in self.splits:
      rows = records(self.name, config.config, config.data_dir, split)
      views = self.arrays(config, split, rows)
      out[f"teacher_{split}"] = views["teacher"]
      out[f"student_{split}"] = views["student"]
      out[f"y_{split}"] = views["y"]
    return out

  def views(self, config, arrays, hparams, key) -> source.Views:
    del config, hparams, key
    return source.Views(**{k: arrays[k] for k in source.Views._fields})
