"""A training run as the sweep engine sees it: pure, vmappable, resumable.

A ``Program`` is built once per *static signature* (architecture, data shape,
loss family, step count) by ``make_train(static)``-style factories. Every
numeric hyperparameter arrives as a traced scalar in ``hparams`` so that
``jit(vmap(...))`` trains many configurations as one compiled program (the
purejaxrl pattern). The run is split into ``num_segments`` equal segments
(one evaluation interval each) so the engine can checkpoint between them and
a killed sweep resumes bit-for-bit.

The dataset is an *argument* of every piece (``data``, the host arrays of
``Program.load()``), never a constant closed over: the engine places it once
per device and passes it unmapped, so K vmapped runs hold it once and no
executable embeds it.

A ``RunSpec`` names one run: which program (``stage`` + ``static``), its
numeric ``hparams``, its ``seed``, and the runs whose ``outputs`` (a trained
teacher, a pretrained encoder) become this run's ``inputs``, by role
(``needs = {"teacher": run_id, ...}``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Mapping, NamedTuple

import jax

PyTree = Any
Hparams = Mapping[str, jax.Array]


def _no_data() -> dict:
  return {}


class Program(NamedTuple):
  """The pieces of one training run; all functions are pure and vmappable.

  Attributes:
    init: ``(hparams, key, data, inputs) -> carry``; ``inputs`` maps each
      role of ``input_spec`` to that upstream run's ``outputs`` (``None`` for
      a program without upstream).
    segment: ``(carry, hparams, data) -> (carry, metrics)``; advances one
      evaluation interval; ``metrics`` is a dict of scalars recorded per
      segment (the training curve).
    finish: ``(carry, hparams, data) -> (final, outputs)``; ``final`` is a
      dict of scalar metrics for the results row, ``outputs`` a pytree handed
      to downstream runs (e.g. trained parameters).
    num_segments: how many times ``segment`` runs.
    input_spec: ``{role: pytree of jax.ShapeDtypeStruct}`` the inputs must
      match (checked when an upstream checkpoint is restored), or ``None``.
    load: ``() -> data``, the host arrays (NumPy) the pieces read; the same
      object for every program on one dataset in a process.
  """
  init: Callable[[Hparams, jax.Array, PyTree, PyTree], PyTree]
  segment: Callable[[PyTree, Hparams, PyTree], tuple[PyTree, dict]]
  finish: Callable[[PyTree, Hparams, PyTree], tuple[dict, PyTree]]
  num_segments: int
  input_spec: Mapping[str, PyTree] | None = None
  load: Callable[[], PyTree] = _no_data

  def train(self, hparams: Hparams, key: jax.Array, data: PyTree,
            inputs: PyTree = None):
    """The whole run as one function: ``(final, history, outputs)``.

    ``data`` is ``self.load()`` (pass it as an argument of the jitted
    function, unmapped under vmap). ``history`` maps each metric to an array
    ``[num_segments]``. This is the form to ``jit(vmap(...))`` in a
    notebook; the sweep engine calls the pieces itself so it can checkpoint
    between segments.
    """
    carry = self.init(hparams, key, data, inputs)
    carry, history = jax.lax.scan(
        lambda c, _: self.segment(c, hparams, data), carry, None,
        length=self.num_segments)
    final, outputs = self.finish(carry, hparams, data)
    return final, history, outputs


def _canonical(value):
  """JSON-able, order-independent form used for identities and rows."""
  if isinstance(value, Mapping):
    return {str(k): _canonical(v) for k, v in sorted(value.items())}
  if isinstance(value, (list, tuple)):
    return [_canonical(v) for v in value]
  if hasattr(value, "item"):  # numpy / jax scalars
    return value.item()
  return value


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a sweep.

  ``static`` and ``tags`` are stored as canonical JSON, ``hparams`` and
  ``needs`` as sorted tuples so a spec is hashable; build specs with
  ``RunSpec.make``. ``tags`` are descriptive columns copied into the results
  row (experiment, variant, mask name...) that are not part of the run's
  identity.
  """
  stage: str
  static: str
  hparams: tuple
  seed: int
  needs: tuple = ()  # sorted (role, run_id) pairs
  tags: str = "{}"

  @classmethod
  def make(cls, stage: str, static: Mapping, hparams: Mapping, seed: int,
           needs: Mapping[str, str] | None = None,
           tags: Mapping | None = None) -> "RunSpec":
    """``static`` is taken as given: build stage runs with
    ``ntdh_jax.train.stages.run_spec``, which fills defaults first."""
    needs = dict(needs or {})
    for role, run_id in needs.items():
      if not isinstance(role, str) or not isinstance(run_id, str):
        raise TypeError(
            f"needs maps a role name to a run id, got {role!r}: {run_id!r}.")
    return cls(stage=stage,
               static=_dumps(dict(static)),
               hparams=tuple(sorted(
                   (k, float(v)) for k, v in dict(hparams).items())),
               seed=int(seed), needs=tuple(sorted(needs.items())),
               tags=_dumps(dict(tags or {})))

  @property
  def static_dict(self) -> dict:
    return json.loads(self.static)

  @property
  def hparams_dict(self) -> dict:
    return dict(self.hparams)

  @property
  def needs_dict(self) -> dict[str, str]:
    return dict(self.needs)

  @property
  def tags_dict(self) -> dict:
    return json.loads(self.tags)

  @property
  def signature(self) -> str:
    """Identity of the compiled program: runs sharing it are vmapped together."""
    return _digest({"stage": self.stage, "static": self.static_dict})

  @property
  def run_id(self) -> str:
    """Stable identity of the run (independent of ``tags`` and sweep order)."""
    return _digest({"stage": self.stage, "static": self.static_dict,
                    "hparams": self.hparams_dict, "seed": self.seed,
                    "needs": self.needs_dict})


def _dumps(obj) -> str:
  return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def _digest(obj) -> str:
  return hashlib.sha256(_dumps(obj).encode()).hexdigest()[:16]
