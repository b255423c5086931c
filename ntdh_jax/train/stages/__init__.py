"""The training stages, as ``make_train(static) -> Program``, by name.

* ``teacher`` (``teacher.py``): CE on the teacher view, optionally on
  Algorithm 1's masked input.
* ``student`` (``student.py``): CE on the student view + a distillation term
  from a frozen teacher, optionally with Algorithm 2's sample mask.
* ``joint`` (``joint.py``): Algorithm 1's joint training and permutation
  importance.
* ``linear_kd`` (``linear_kd.py``): the CCH joint-Gaussian test bed, a
  closed-form ridge teacher and KD students (a reconstruction).
* ``ssl``, ``cmcd``, ``finetune`` (``ssl.py``, ``cmcd.py``,
  ``finetune.py``): CMCD's three steps — SimCLR pre-training of the source
  encoder, its distillation into a target encoder on m unlabelled pairs
  (CMD, CMC or an alignment baseline), few-label training of the target.
* ``ucmkd`` (``ucmkd.py``): UCMKD — a frozen teacher distilled into a
  student of the other modality from unpaired rows (Sinkhorn feature
  alignment, the label transport kernel, the bi-level step) and its
  baselines.

A stage's static config is a frozen dataclass (``STAGES[stage].config``);
``normalise`` fills every default — of the stage, of its data source and of
its models — so ``{}`` and ``{"batch_size": 0}`` hash to one program and one
run id; only an option added after results were recorded
(``StageConfig.OMIT_AT_DEFAULT``) is left out while at its default, so
adding it changed no existing run id. A stage also declares the
hyperparameters its program reads and their ranges
(``STAGES[stage].hparams``). ``run_spec`` builds a ``RunSpec``
from a normalised config and checked hyperparameters; the sweep engine calls
``build_program``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple

from ntdh_jax import hparams as hparams_lib
from ntdh_jax.train.program import Program, RunSpec
from ntdh_jax.train.stages import cmcd
from ntdh_jax.train.stages import finetune
from ntdh_jax.train.stages import joint
from ntdh_jax.train.stages import linear_kd
from ntdh_jax.train.stages import ssl
from ntdh_jax.train.stages import student
from ntdh_jax.train.stages import teacher
from ntdh_jax.train.stages import ucmkd


class Stage(NamedTuple):
  config: type  # a frozen dataclass of the stage's static options
  make: Callable[..., Program]
  hparams: Callable[..., dict]  # config -> {name: Range} the program reads


STAGES: dict[str, Stage] = {
    "teacher": Stage(teacher.TeacherConfig, teacher.make, teacher.hparams),
    "student": Stage(student.StudentConfig, student.make, student.hparams),
    "joint": Stage(joint.JointConfig, joint.make, joint.hparams),
    "linear_kd": Stage(linear_kd.LinearKDConfig, linear_kd.make,
                       linear_kd.hparams),
    "ssl": Stage(ssl.SSLConfig, ssl.make, ssl.hparams),
    "cmcd": Stage(cmcd.CMCDConfig, cmcd.make, cmcd.hparams),
    "finetune": Stage(finetune.FinetuneConfig, finetune.make,
                      finetune.hparams),
    "ucmkd": Stage(ucmkd.UCMKDConfig, ucmkd.make, ucmkd.hparams),
}


def _config(stage: str, static: Mapping):
  if stage not in STAGES:
    raise ValueError(f"stage must be one of {sorted(STAGES)}, got "
                     f"{stage!r}.")
  cls = STAGES[stage].config
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(static) - set(fields))
  if unknown:
    raise ValueError(
        f"static config of stage {stage!r} has unknown keys {unknown}; valid "
        f"keys: {sorted(fields)}.")
  missing = sorted(k for k, f in fields.items() if k not in static
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
  if missing:
    raise ValueError(
        f"static config of stage {stage!r} is missing {missing}.")
  return cls(**static)


def _static_dict(config) -> dict:
  """``config`` as the dict a run is identified by: every field, less those
  of ``OMIT_AT_DEFAULT`` that have their default."""
  static = dataclasses.asdict(config)
  for field in dataclasses.fields(config):
    if (field.name in config.OMIT_AT_DEFAULT
        and static[field.name] == field.default):
      del static[field.name]
  return static


def normalise(stage: str, static: Mapping) -> dict:
  """``static`` with every default filled in (but ``OMIT_AT_DEFAULT``'s);
  idempotent."""
  return _static_dict(_config(stage, static))


def build_program(stage: str, static: Mapping) -> Program:
  """The ``Program`` of ``stage`` for its static config."""
  config = _config(stage, static)
  return STAGES[stage].make(config)


def run_spec(stage: str, static: Mapping, hparams: Mapping, seed: int,
             needs: Mapping[str, str] | None = None,
             tags: Mapping | None = None,
             keys: Mapping[str, str] | None = None) -> RunSpec:
  """A ``RunSpec`` of ``stage`` whose static config is normalised and whose
  hyperparameters are checked against the ranges the stage declares
  (``hparams.check``; ``keys`` maps a hyperparameter to the config key it
  came from, for the message)."""
  config = _config(stage, static)
  hparams_lib.check(stage, hparams, STAGES[stage].hparams(config), keys)
  return RunSpec.make(stage, _static_dict(config), hparams, seed,
                      needs=needs, tags=tags)
