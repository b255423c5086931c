"""The valid range of every traced hyperparameter, checked on the host.

Hyperparameters are traced arrays (a sweep vmaps them), and a traced value
cannot raise: a temperature of 0 would train with NaN, a ratio of 1.5 would
silently switch the KD term off. So every value is checked here, when its
``RunSpec`` is made and before anything is written to a workdir; an error
names the config key the value came from (when the planner says which),
the hyperparameter, the stage, the value and the range.

A stage declares which hyperparameters its program reads
(``stages.STAGES[stage].hparams(config)``); a data source declares the range
of its gap knob (``DataSource.hparams``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Mapping

import numpy as np

from ntdh_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
  """A real interval ``low .. high`` (finite values only), open or closed at
  each end; ``integer`` values must be whole numbers, ``step`` values whole
  multiples of it."""
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  step: float | None = None

  def describe(self) -> str:
    kind = ("an integer" if self.integer else
            f"a multiple of {self.step:g}" if self.step else "a finite number")
    if self.low == -math.inf and self.high == math.inf:
      return kind
    if self.high == math.inf:
      return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
    left = "(" if self.low_open else "["
    right = ")" if self.high_open else "]"
    return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"

  def contains(self, value: float) -> bool:
    return (math.isfinite(value)
            and (value > self.low if self.low_open else value >= self.low)
            and (value < self.high if self.high_open else value <= self.high)
            and (not self.integer or value == int(value))
            # A tolerance, since 0.15 / 0.05 is not exactly 3 in floats.
            and (not self.step or abs(value / self.step
                                      - round(value / self.step)) <= 1e-6))


POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
FRACTION = Range(0.0, 1.0, high_open=True)

RANGES: dict[str, Range] = {
    "lr": POSITIVE,
    "momentum": FRACTION,
    "temperature": POSITIVE,
    "kd_weight": NON_NEGATIVE,
    "alpha": NON_NEGATIVE,
    "beta": NON_NEGATIVE,
    # The logits wiring's KD = method_weight·method + kl_weight·KL
    # (objectives.LOGIT_DISTILLERS).
    "method_weight": NON_NEGATIVE,
    "kl_weight": NON_NEGATIVE,
    "mask_ratio": FRACTION,
    "mask_kind": Range(0, 2, integer=True),  # masks.MASK_KINDS' indices
    # The linear_kd stage's covariance knobs (the CCH Gaussian test bed).
    "cch_overlap": Range(0.0, 1.0),
    "cch_teacher_noise": POSITIVE,
    "cch_student_noise": POSITIVE,
    # CMCD's stages: SimCLR's τ, CMD's τ_A and τ_B, CMC's τ, and the shares
    # of the training set used as unlabelled pairs and as labels (the
    # cmcd stage narrows pair_fraction to leave one batch of pairs).
    "ssl_temperature": POSITIVE,
    "cmd_tau_source": POSITIVE,
    "cmd_tau_target": POSITIVE,
    "cmc_temperature": POSITIVE,
    "pair_fraction": Range(0.0, 1.0, low_open=True),
    "label_fraction": Range(0.0, 1.0, low_open=True),
    # UCMKD (the ucmkd stage): the FA and LA weights, the inner steps'
    # AdamW / SGD learning rate (0 reduces the bi-level step to CE) and
    # weight decay, Sinkhorn's ε, label smoothing of the cross-entropies,
    # and the robustness presets' pools (data.unpaired): the student's
    # share of each class (1 = both pools are the whole set) and the label
    # imbalance factor (1 = none).
    "fa_weight": NON_NEGATIVE,
    "la_weight": NON_NEGATIVE,
    "inner_lr": NON_NEGATIVE,
    "inner_weight_decay": NON_NEGATIVE,
    "sinkhorn_epsilon": POSITIVE,
    "label_smoothing": FRACTION,
    "student_share": Range(0.0, 1.0, low_open=True),
    "imbalance": Range(1.0),
}


def as_number(name: str, value) -> float:
  """``value`` as a float; bools, strings and arrays of more than one
  element are refused (``float("0.5")`` would accept a string)."""
  if isinstance(value, np.ndarray) and value.shape == ():
    value = value.item()
  elif hasattr(value, "shape") and tuple(value.shape) == ():
    value = np.asarray(value).item()  # a 0-d jax array
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise UserError(f"{name} must be a number, got {value!r} "
                    f"({type(value).__name__}).")
  return float(value)


def check(stage: str, values: Mapping, ranges: Mapping[str, Range],
          keys: Mapping[str, str] | None = None) -> None:
  """Checks the hyperparameters of one ``stage`` run.

  Args:
    stage: the stage's name, for the message.
    values: ``{name: value}`` of the run.
    ranges: ``{name: Range}`` of every hyperparameter the stage's program
      reads: each must be present and in range. Other values must still be
      numbers (they are traced too, and unread), in ``RANGES`` if named
      there (a momentum of 1 is refused even where Adam ignores it).
    keys: ``{name: config key}`` the values came from, named in the error.

  Raises:
    UserError: a name in ``ranges`` is missing, or a value is not a number
      or out of its range.
  """
  keys = keys or {}
  missing = sorted(set(ranges) - set(values))
  if missing:
    raise UserError(f"stage {stage!r} needs hyperparameters {missing}; got "
                    f"{sorted(values)}.")
  for name, value in values.items():
    label = (f"config.{keys[name]} (hyperparameter {name!r} of stage "
             f"{stage!r})" if name in keys
             else f"hyperparameter {name!r} of stage {stage!r}")
    number = as_number(label, value)
    valid = ranges.get(name, RANGES.get(name))
    if valid is not None and not valid.contains(number):
      raise UserError(f"{label} must be {valid.describe()}, got {value!r}.")
