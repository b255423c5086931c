"""Argument checks shared by the public functions.

Shapes and dtypes are static under ``jit``, so checking them costs nothing at
run time. Values (label range, temperature sign) can only be checked when they
are concrete; under a trace they are left to the opt-in debug mode
(``jax.experimental.checkify``) because a Python ``if`` on a tracer would fail.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  """True when ``x``'s value is known now (not a tracer inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_logits_pair(teacher_logits, student_logits, *, min_classes: int = 2):
  """Checks two ``[N, C]`` floating logit arrays of equal shape."""
  for name, x in (("teacher_logits", teacher_logits),
                  ("student_logits", student_logits)):
    if jnp.ndim(x) != 2:
      raise ValueError(
          f"{name} must have rank 2 [N, C], got shape {jnp.shape(x)}.")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
      raise TypeError(
          f"{name} must be a floating array, got dtype {jnp.result_type(x)}.")
  if jnp.shape(teacher_logits) != jnp.shape(student_logits):
    raise ValueError(
        "teacher_logits and student_logits must have the same shape [N, C], "
        f"got {jnp.shape(teacher_logits)} and {jnp.shape(student_logits)}.")
  n, c = jnp.shape(teacher_logits)
  if n == 0:
    raise ValueError("teacher_logits is an empty batch (N = 0); need N >= 1.")
  if c < min_classes:
    why = (" NCKL/NCJSD compare distributions over the C-1 non-target classes,"
           " which is a single point (undefined divergence) when C = 2."
           if min_classes == 3 else "")
    raise ValueError(
        f"teacher_logits has C = {c} classes; need C >= {min_classes}.{why}")


def check_labels(labels, num_examples: int, num_classes: int):
  """Checks integer labels of shape ``[N]`` with values in ``[0, C)``."""
  if jnp.shape(labels) != (num_examples,):
    raise ValueError(
        f"labels must have shape [N] = ({num_examples},), got "
        f"{jnp.shape(labels)}.")
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise TypeError(
        f"labels must be an integer array, got dtype {jnp.result_type(labels)}.")
  if is_concrete(labels):
    values = np.asarray(labels)
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
      raise ValueError(
          f"labels must lie in [0, {num_classes}); got {values[bad][:5]} "
          f"(first {min(5, int(bad.sum()))} of {int(bad.sum())} out of range).")


def check_scalar(value, name: str):
  """Checks ``value`` has shape ``()``."""
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}.")


def check_positive(value, name: str):
  """Checks a scalar is > 0 where its value is known."""
  check_scalar(value, name)
  if is_concrete(value) and not float(value) > 0:
    raise ValueError(f"{name} must be > 0, got {float(value)}.")


def check_fraction(value, name: str):
  """Checks a ratio lies in ``[0, 1)`` where its value is known."""
  check_scalar(value, name)
  if is_concrete(value) and not 0.0 <= float(value) < 1.0:
    raise ValueError(f"{name} must lie in [0, 1), got {float(value)}.")
