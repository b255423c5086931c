"""Units of information for the estimators in ``ntdh_jax.info``.

Every estimator computes in nats (natural log) and takes ``base=None`` (nats,
the default) or a log base for its output: ``base=2`` gives bits, ``base=10``
hartleys. The conversion is I_b = I_nats / ln b; it is the only place units
are handled, so all estimators agree on them.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def check_base(base) -> None:
  """Checks ``base`` is ``None`` or a static number > 0, finite and != 1.

  Raises:
    TypeError: ``base`` is not ``None``, an int or a float.
    ValueError: ``base`` is <= 0, 1 or not finite (no logarithm base).
  """
  if base is None:
    return
  if isinstance(base, (bool, np.bool_)) or not isinstance(
      base, (int, float, np.integer, np.floating)):
    raise TypeError(
        f"base must be None (nats) or a number such as 2 (bits), got "
        f"{type(base).__name__}.")
  if not (math.isfinite(base) and base > 0 and base != 1):
    raise ValueError(
        f"base must be a finite logarithm base > 0 and != 1 (2 for bits, "
        f"None for nats), got {base}.")


def in_base(nats, base: Optional[float] = None):
  """``nats`` (any array or number) expressed in log-base ``base``.

  Args:
    nats: information in nats, ``f32[...]``.
    base: ``None`` keeps nats; otherwise divide by ln ``base`` (2: bits).

  Returns:
    ``nats / ln(base)``, same shape and dtype; ``nats`` itself for ``None``.
  """
  check_base(base)
  if base is None:
    return nats
  return nats / math.log(base)
