"""Paper experiments, looked up by the name in ``config.experiment``.

An experiment turns configs into runs (``plan``), builds the program of each
signature (``build_program``) and writes its tables and figures
(``report``). Experiment modules in this package register themselves on
import with ``register(name, ExperimentDef(...))``; ``get`` imports the
package's modules until the name is registered, so a config needs only the
name.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable, Mapping, Sequence

import jax
import ml_collections

from ntdh_jax.errors import UserError
from ntdh_jax.train.program import Program, RunSpec
from ntdh_jax.train.sweep import DEFAULT_VMAP_SIZE
from ntdh_jax.train.sweep import disk_full_is_a_user_error
from ntdh_jax.train.sweep import hold_workdir
from ntdh_jax.train.sweep import run_sweep


@dataclasses.dataclass(frozen=True)
class ExperimentDef:
  """What the sweep needs from an experiment.

  Attributes:
    plan: ``configs -> [RunSpec]``: every run of the sweep (teachers first or
      not: the engine orders stages by ``needs``).
    build_program: ``(stage, static) -> Program`` for one signature.
    report: ``(rows, config, workdir) -> None``: writes tables/figures from
      the results rows (one dict per run) into ``workdir``.
  """
  plan: Callable[[Sequence[ml_collections.ConfigDict]], list[RunSpec]]
  build_program: Callable[[str, dict], Program]
  report: Callable[[list[dict], ml_collections.ConfigDict, str], None]


EXPERIMENTS: dict[str, ExperimentDef] = {}


def register(name: str, experiment: ExperimentDef) -> None:
  """Makes ``experiment`` available as ``config.experiment = name``."""
  EXPERIMENTS[name] = experiment


def get(name: str) -> ExperimentDef:
  """The experiment registered as ``name``; ``ValueError`` listing the known
  ones if there is none."""
  for module in pkgutil.iter_modules(__path__):
    if name in EXPERIMENTS:
      break
    importlib.import_module(f"{__name__}.{module.name}")
  if name not in EXPERIMENTS:
    raise ValueError(f"Unknown experiment {name!r} (config.experiment); "
                     "known experiments: "
                     f"{sorted(EXPERIMENTS)}.")
  return EXPERIMENTS[name]


def run(configs: Sequence[ml_collections.ConfigDict], workdir: str, *,
        base: ml_collections.ConfigDict | None = None,
        chunk_size: int = 256, segments_per_call: int = 1,
        vmap_size: int | None = DEFAULT_VMAP_SIZE, progress: bool = True,
        fingerprint: Mapping | None = None, wait: bool = False) -> list[dict]:
  """Plans, sweeps and reports the experiment named by ``config.experiment``.

  Planning checks every value of the config (``stages.run_spec``) before
  anything is written to ``workdir``; a bad one is a ``UserError`` naming
  the config key. The sweep and the report hold the workdir's lock.

  Args:
    configs: the sweep's configs (a base config with each ``get_hyper``
      override applied); all must name the same experiment.
    workdir: the sweep's directory (see ``run_sweep``).
    base: the config before the hyper sweep, handed to ``report``
      (default: ``configs[0]``).
    chunk_size, segments_per_call, vmap_size, progress, fingerprint, wait:
      see ``run_sweep``.

  Returns:
    The results rows, one per distinct run.
  """
  names = sorted({c.get("experiment") or "" for c in configs})
  if len(names) != 1:
    raise ValueError(f"A sweep runs one experiment; its configs name {names}.")
  experiment = get(names[0])
  try:
    specs = experiment.plan(configs)
  except (ValueError, TypeError, KeyError) as e:
    if isinstance(e, UserError):
      raise
    # Planning only reads the config: what fails there is the config.
    raise UserError(f"config of experiment {names[0]!r}: {e}") from e
  if not specs:
    raise UserError(f"The config plans no runs (experiment {names[0]!r}); "
                    "check the lists and counts it loops over.")
  with hold_workdir(workdir, wait):
    rows = run_sweep(specs, workdir,
                     build_program=experiment.build_program,
                     chunk_size=chunk_size,
                     segments_per_call=segments_per_call,
                     vmap_size=vmap_size, progress=progress,
                     fingerprint=fingerprint, wait=wait)
    if jax.process_index() == 0:
      with disk_full_is_a_user_error(workdir):
        experiment.report(rows, configs[0] if base is None else base,
                          workdir)
  return rows
