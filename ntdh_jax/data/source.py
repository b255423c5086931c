"""The contract of a paired cross-modal data source, and the registry.

A ``DataSource`` has three parts (design.md, "Data and models"):

* ``spec(config) -> DataSpec``: per modality (teacher view, student view) the
  shape and dtype of one example, the class count, the label shape and the
  ignored label, split sizes, the gap knob, whether rows are paired.
* ``load(config) -> arrays``: host NumPy arrays, read once per process
  (``load_arrays`` memoises and checks them against the spec). uint8 where
  the data are images.
* ``views(config, arrays, hparams, key) -> Views``: the run's view of the
  data, inside the compiled program. Synthetic sources generate it from the
  key; real sources return the (unmapped) arrays themselves.
  ``prepare(config, x, modality, hparams, key)`` turns a batch of stored rows
  into float model input (uint8 scaling, per-run noise); it runs per
  mini-batch, so no float copy of a whole image set exists per run.

Arrays enter the compiled program as one argument placed once per device and
not vmapped: K runs on one dataset hold it once.

A source's static options are a frozen dataclass (``Config``): ``normalise``
fills the defaults before a run's static config is hashed, so ``{"name":
"ntdh"}`` and ``{"name": "ntdh", "random_state": 42}`` are one program.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import hparams as hparams_lib
from ntdh_jax.errors import UserError

Arrays = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Modality:
  """One view's example: ``shape`` (without the batch axis) and stored dtype."""
  name: str
  shape: tuple[int, ...]
  dtype: str


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a program needs to know of a source before seeing its arrays.

  Attributes:
    teacher, student: the two modalities.
    num_classes: C.
    splits: examples per split, e.g. ``{"train": 6000, "test": 4000}``.
    label_shape: ``()`` for classification, ``(H, W)`` for segmentation.
    ignore_label: label value excluded from losses and metrics, or ``None``.
    gap: name of the traced hyperparameter that sets the domain gap
      (``"gamma"``, ``"overlap"``), or ``None``.
    gap_direction: what larger values of ``gap`` mean.
    paired: whether row i of both views is the same sample.
  """
  teacher: Modality
  student: Modality
  num_classes: int
  splits: Mapping[str, int]
  label_shape: tuple[int, ...] = ()
  ignore_label: int | None = None
  gap: str | None = None
  gap_direction: str = ""
  paired: bool = True

  def modality(self, role: str) -> Modality:
    return {"teacher": self.teacher, "student": self.student}[role]


class Views(NamedTuple):
  """Paired teacher/student rows of one run: stored rows (any dtype) that
  ``DataSource.prepare`` turns into model input, and ``int`` labels of shape
  ``[N, *label_shape]``."""
  teacher_train: jax.Array
  student_train: jax.Array
  y_train: jax.Array
  teacher_test: jax.Array
  student_test: jax.Array
  y_test: jax.Array


@dataclasses.dataclass(frozen=True)
class NoConfig:
  """A source without options."""


class DataSource:
  """Base class; subclasses set ``name``, ``Config``, ``hparams`` and
  implement ``spec``, ``load`` and ``views`` (and ``prepare`` if stored rows
  are not model input as they are)."""
  name: str = ""
  Config: type = NoConfig
  # The traced hyperparameters ``views`` reads and their valid ranges,
  # checked on the host when a run is planned (under a trace they cannot
  # raise).
  hparams: Mapping[str, hparams_lib.Range] = {}

  def spec(self, config) -> DataSpec:
    raise NotImplementedError

  def load(self, config) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def views(self, config, arrays: Arrays, hparams, key) -> Views:
    raise NotImplementedError

  def prepare(self, config, x, modality: str, hparams, key) -> jax.Array:
    """Stored rows -> float32 model input. Default: uint8 scaled to [0, 1],
    floats unchanged."""
    del config, modality, hparams, key
    if jnp.issubdtype(x.dtype, jnp.integer):
      return x.astype(jnp.float32) / 255.0
    return x


SOURCES: dict[str, DataSource] = {}
# Sources whose module is imported on first use: the prepared real datasets,
# whose modules import tensorflow-datasets (an optional extra, and a slow
# import that a synthetic sweep should not pay).
LAZY: dict[str, str] = {}


def register(source: DataSource) -> DataSource:
  """Adds ``source`` to the registry under ``source.name``."""
  SOURCES[source.name] = source
  return source


def register_lazy(name: str, module: str) -> None:
  """Registers the source ``name`` that importing ``module`` registers."""
  LAZY[name] = module


def names() -> list[str]:
  """Every registered dataset name, lazy ones included."""
  return sorted(set(SOURCES) | set(LAZY))


def get(name: str) -> DataSource:
  """The source registered as ``name``; the error lists the known ones."""
  if name not in SOURCES and name in LAZY:
    try:
      importlib.import_module(LAZY[name])
    except ImportError as e:
      raise UserError(
          f"Dataset {name!r} needs the data extra ({e}): pip install "
          f"'ntdh_jax[data]'.") from e
  if name not in SOURCES:
    raise ValueError(f"Unknown dataset {name!r} (data.name); registered "
                     f"datasets: {names()}.")
  return SOURCES[name]


def parse(data: Mapping[str, Any]):
  """``{"name": ..., **options}`` -> ``(source, Config instance)``; unknown
  options are an error naming them and the valid ones."""
  data = dict(data)
  if "name" not in data:
    raise ValueError(f"data config needs a 'name'; got {data}. Registered "
                     f"datasets: {names()}.")
  source = get(data.pop("name"))
  fields = {f.name for f in dataclasses.fields(source.Config)}
  unknown = sorted(set(data) - fields)
  if unknown:
    raise ValueError(
        f"data config of {source.name!r} has unknown keys {unknown}; valid "
        f"keys: {sorted(fields)}.")
  try:
    return source, source.Config(**data)
  except (TypeError, ValueError) as e:
    raise ValueError(f"data config of {source.name!r}: {e}") from e


def normalise(data: Mapping[str, Any]) -> dict:
  """The data config with every default filled in (what is hashed)."""
  source, config = parse(data)
  return {"name": source.name, **dataclasses.asdict(config)}


def spec(data: Mapping[str, Any]) -> DataSpec:
  source, config = parse(data)
  return source.spec(config)


def check_arrays(source: DataSource, config, arrays: Arrays) -> None:
  """Stored arrays agree with the spec: names the modality and the shapes."""
  s = source.spec(config)
  for split, n in s.splits.items():
    for role in ("teacher", "student"):
      key = f"{role}_{split}"
      if key not in arrays:
        continue  # generated by ``views`` (synthetic sources)
      m = s.modality(role)
      want = (n,) + tuple(m.shape)
      got = tuple(np.shape(arrays[key]))
      if got != want or np.asarray(arrays[key]).dtype != np.dtype(m.dtype):
        raise ValueError(
            f"{source.name}: the {role} modality ({m.name}) {split} array "
            f"{key!r} has shape {got} and dtype {np.asarray(arrays[key]).dtype}"
            f"; the spec says {want} {m.dtype}.")
    key = f"y_{split}"
    if key in arrays and tuple(np.shape(arrays[key])) != (n,) + s.label_shape:
      raise ValueError(
          f"{source.name}: labels {key!r} have shape "
          f"{tuple(np.shape(arrays[key]))}; the spec says "
          f"{(n,) + s.label_shape}.")


@functools.lru_cache(maxsize=8)
def _load(source_name: str, config) -> dict[str, np.ndarray]:
  source = get(source_name)
  arrays = {k: np.asarray(v) for k, v in source.load(config).items()}
  check_arrays(source, config, arrays)
  for value in arrays.values():
    value.setflags(write=False)  # shared by every program of the process
  return arrays


def load_arrays(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The source's host arrays, loaded once per process and checked against
  its spec (read-only: every program on this dataset shares them)."""
  source, config = parse(data)
  return _load(source.name, config)
