"""A training run as the sweep engine sees it: pure, vmappable, resumable.

A ``Program`` is built once per *static signature* (architecture, data shape,
loss family, step count) by ``make_train(static)``-style factories. Every
numeric hyperparameter arrives as a traced scalar in ``hparams`` so that
``jit(vmap(...))`` trains many configurations as one compiled program (the
purejaxrl pattern). The run is split into ``num_segments`` equal segments
(one evaluation interval each) so the engine can checkpoint between them and
a killed sweep resumes bit-for-bit.

A ``RunSpec`` names one run: which program (``stage`` + ``static``), its
numeric ``hparams``, its ``seed``, and optionally the run whose ``outputs``
(e.g. a trained teacher) become this run's ``inputs``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Mapping, NamedTuple

import jax

PyTree = Any
Hparams = Mapping[str, jax.Array]


class Program(NamedTuple):
  """The pieces of one training run; all functions are pure and vmappable.

  Attributes:
    init: ``(hparams, key, inputs) -> carry``; ``inputs`` is the upstream
      run's ``outputs`` (or ``None`` for a program without upstream).
    segment: ``(carry, hparams) -> (carry, metrics)``; advances one
      evaluation interval; ``metrics`` is a dict of scalars recorded per
      segment (the training curve).
    finish: ``(carry, hparams) -> (final, outputs)``; ``final`` is a dict of
      scalar metrics for the results row, ``outputs`` a pytree handed to
      downstream runs (e.g. trained parameters).
    num_segments: how many times ``segment`` runs.
    input_spec: pytree of ``jax.ShapeDtypeStruct`` the ``inputs`` must match
      (checked when an upstream checkpoint is restored), or ``None``.
  """
  init: Callable[[Hparams, jax.Array, PyTree], PyTree]
  segment: Callable[[PyTree, Hparams], tuple[PyTree, dict]]
  finish: Callable[[PyTree, Hparams], tuple[dict, PyTree]]
  num_segments: int
  input_spec: PyTree = None

  def train(self, hparams: Hparams, key: jax.Array, inputs: PyTree = None):
    """The whole run as one function: ``(final, history, outputs)``.

    ``history`` maps each metric to an array ``[num_segments]``. This is the
    form to ``jit(vmap(...))`` in a notebook; the sweep engine calls the
    pieces itself so it can checkpoint between segments.
    """
    carry = self.init(hparams, key, inputs)
    carry, history = jax.lax.scan(
        lambda c, _: self.segment(c, hparams), carry, None,
        length=self.num_segments)
    final, outputs = self.finish(carry, hparams)
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

  ``static`` and ``tags`` are stored as canonical JSON and ``hparams`` as a
  sorted tuple so a spec is hashable; build specs with ``RunSpec.make``. ``tags`` are descriptive
  columns copied into the results row (experiment, variant, mask name...)
  that are not part of the run's identity.
  """
  stage: str
  static: str
  hparams: tuple
  seed: int
  needs: str | None = None
  tags: str = "{}"

  @classmethod
  def make(cls, stage: str, static: Mapping, hparams: Mapping, seed: int,
           needs: str | None = None, tags: Mapping | None = None) -> "RunSpec":
    return cls(stage=stage,
               static=_dumps(dict(static)),
               hparams=tuple(sorted(
                   (k, float(v)) for k, v in dict(hparams).items())),
               seed=int(seed), needs=needs,
               tags=_dumps(dict(tags or {})))

  @property
  def static_dict(self) -> dict:
    return json.loads(self.static)

  @property
  def hparams_dict(self) -> dict:
    return dict(self.hparams)

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
                    "needs": self.needs})


def _dumps(obj) -> str:
  return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def _digest(obj) -> str:
  return hashlib.sha256(_dumps(obj).encode()).hexdigest()[:16]
