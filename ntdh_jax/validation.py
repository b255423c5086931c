"""Argument checks shared by the public functions: the only place they live.

Every check raises ``ValueError`` (wrong shape, value or choice) or
``TypeError`` (wrong dtype or type) with a message that names the argument,
says what was expected and what it got.

Shapes and dtypes are static under ``jit``, so checking them costs nothing at
run time. Values (label ranges, a temperature's sign) are checked at once when
they are concrete: eager calls, and constants inside a trace. A traced value
cannot raise (a Python ``if`` on a tracer fails), so there each value check is
a ``jax.experimental.checkify.debug_check`` carrying the same message, and
``checked`` turns those on:

  loss = jax.jit(lambda s, t, y, temp: losses.dkd(s, t, y, temperature=temp))
  loss(s, t, y, 0.0)                    # runs: a traced T is not checked
  ntdh_jax.checked(loss)(s, t, y, 0.0)  # ValueError: temperature must be > 0
  batched = ntdh_jax.checked(jax.vmap(loss, in_axes=(0, 0, 0, None)))
  batched(s3, t3, y3, 2.0)              # checks every mapped call too

Without ``checked`` a ``debug_check`` is dropped when the program is lowered:
the compiled program, its cost and its results are those without the check
(only an argument that nothing but a check reads stays an unused input).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np

REDUCTIONS = ("mean", "none")

# checkify appends this to a failed check's message; ``checked`` raises the
# message alone, the text an eager call raises.
_CHECKIFY_SUFFIX = " (`check` failed)"


def is_concrete(x) -> bool:
  """True when ``x``'s value is known now (not a tracer in jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def checked(fn: Callable) -> Callable:
  """``fn`` with its value checks on for traced values too.

  ``fn`` may be anything ``checkify`` traces: a ``jax.jit``-ed function, one
  that vmaps, scans or ``lax.map``s the public functions. Call the result
  outside any transformation (``checked(jax.jit(f))``, not
  ``jax.jit(checked(f))``): it returns ``fn``'s outputs, or raises the
  ``ValueError`` an eager call with the offending values raises (the first
  failed check; under ``vmap`` the message may name the mapped index).
  Shape, dtype and type errors are raised while tracing, as without it.
  """
  with_errors = checkify.checkify(fn, errors=checkify.user_checks)

  @functools.wraps(fn)
  def run(*args, **kwargs):
    # checkify closes over the arguments rather than tracing them; under vmap
    # a NumPy argument printed by a failed check would then be indexed with
    # a tracer and fail (jax 0.10). As jax arrays (same values) they work.
    args, kwargs = jax.tree.map(
        lambda x: jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic))
        else x, (args, kwargs))
    error, out = with_errors(*args, **kwargs)
    message = error.get()
    if message is not None:
      raise ValueError(message.replace(_CHECKIFY_SUFFIX, ""))
    return out

  return run


def require(ok, message: str, *values):
  """Raises ``ValueError(message.format(*values))`` unless ``ok``.

  ``ok`` is a concrete bool (the check runs now) or a traced ``bool[]``: then
  it becomes ``checkify.debug_check(ok, message, *values)``, a no-op unless
  the caller runs under ``checked``, which raises the same text. ``values``
  are scalars formatted into ``message``'s ``{}`` fields, in the dtype jax
  computes with (``_values``), so both paths print them alike.
  """
  if is_concrete(ok):
    if not ok:
      raise ValueError(message.format(*values))
  else:
    checkify.debug_check(ok, message, *(jnp.asarray(v) for v in values))


def _values(*xs):
  """(array module, each of ``xs`` as an array of the dtype jax computes in).

  NumPy when every ``x`` is concrete, so constants are checked at once even
  inside a trace (where ``jax.numpy`` would stage them); ``jax.numpy`` when
  one is traced. The dtype is jax's (float32 for a Python float), so a value
  is checked and printed as the computation sees it.
  """
  xp = np if all(map(is_concrete, xs)) else jnp
  return (xp, *(xp.asarray(x, jax.dtypes.canonicalize_dtype(
      jnp.result_type(x))) for x in xs))


# -- scalars, counts and choices -----------------------------------------------


def check_scalar(value, name: str):
  """Checks ``value`` is one real number: a Python int or float, or a
  shape-``()`` integer or floating array (traced or not); not a str or bool.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.number, np.ndarray, jax.Array)):
    raise TypeError(
        f"{name} must be a number (int, float or a scalar array), got "
        f"{type(value).__name__}.")
  # An array's own dtype: jnp.result_type would reject a str array unnamed.
  dtype = value.dtype if hasattr(value, "dtype") else jnp.result_type(value)
  if not (jnp.issubdtype(dtype, jnp.integer)
          or jnp.issubdtype(dtype, jnp.floating)):
    raise TypeError(
        f"{name} must be a number (an integer or floating scalar), got dtype "
        f"{dtype}.")
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}.")


def check_positive(value, name: str):
  """Checks a finite scalar > 0 (a temperature, an epsilon)."""
  check_scalar(value, name)
  xp, v = _values(value)
  require(xp.isfinite(v) & (v > 0), f"{name} must be > 0 and finite, got "
          "{:.8g}.", v)


def check_nonnegative(value, name: str):
  """Checks a finite scalar >= 0 (a loss weight)."""
  check_scalar(value, name)
  xp, v = _values(value)
  require(xp.isfinite(v) & (v >= 0), f"{name} must be >= 0 and finite, got "
          "{:.8g}.", v)


def check_fraction(value, name: str):
  """Checks a ratio lies in ``[0, 1)`` (NaN does not)."""
  check_scalar(value, name)
  _, v = _values(value)
  require((v >= 0) & (v < 1), f"{name} must lie in [0, 1), got {{:.8g}}.", v)


def check_positive_int(value, name: str):
  """Checks a static Python integer >= 1 (a size that sets a shape)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}.")


def check_choice(value, name: str, choices: Sequence[str]):
  """Checks ``value`` is one of the static ``choices``."""
  if not isinstance(value, str) or value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def check_choice_or_index(value, name: str, choices: Sequence[str]):
  """Checks a name in ``choices`` or its index (an integer-valued number that
  may be traced, so one compiled program can serve every choice)."""
  if isinstance(value, str):
    check_choice(value, name, choices)
    return
  check_scalar(value, name)
  _, v = _values(value)
  require((v % 1 == 0) & (v >= 0) & (v < len(choices)),
          f"{name} must be one of {tuple(choices)} or its index "
          f"0..{len(choices) - 1}, got {{:.8g}}.", v)


def check_reduction(reduction: str):
  """Checks a loss ``reduction`` is one of ``REDUCTIONS``."""
  check_choice(reduction, "reduction", REDUCTIONS)


def check_type(value, cls: type, name: str, what: str):
  """Checks ``isinstance(value, cls)``; ``what`` says what to pass instead."""
  if not isinstance(value, cls):
    raise TypeError(f"{name} must be {what}, got {type(value).__name__}.")


# -- arrays --------------------------------------------------------------------


def check_array(x, name: str):
  """Checks ``x`` is an array (jax, NumPy or a NumPy scalar), as jax.numpy
  requires: a list or tuple would be traced as one argument per element."""
  if not isinstance(x, (jax.Array, np.ndarray, np.generic)):
    raise TypeError(
        f"{name} must be an array (jax.Array or numpy.ndarray), got "
        f"{type(x).__name__}; convert it with jnp.asarray.")


def check_floating(x, name: str):
  """Checks ``x`` has a floating dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise TypeError(
        f"{name} must be a floating array, got dtype {jnp.result_type(x)}.")


def check_integer(x, name: str):
  """Checks ``x`` has an integer dtype."""
  if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
    raise TypeError(
        f"{name} must be an integer array, got dtype {jnp.result_type(x)}.")


def check_shape(x, name: str, shape: Sequence[Optional[int]]):
  """Checks ``x``'s shape; ``None`` in ``shape`` matches any size."""
  got = jnp.shape(x)
  if len(got) != len(shape) or any(
      want is not None and size != want for size, want in zip(got, shape)):
    raise ValueError(f"{name} must have shape {tuple(shape)}, got {got}.")


def check_rank(x, name: str, ranks: Sequence[int], layout: str):
  """Checks ``x``'s rank is one of ``ranks``; ``layout`` names the axes."""
  check_array(x, name)
  if jnp.ndim(x) not in ranks:
    raise ValueError(
        f"{name} must have rank {' or '.join(map(str, ranks))} {layout}, got "
        f"shape {jnp.shape(x)}.")


def check_batch(x, name: str, *, min_rank: int = 2, layout: str = "[N, ...]"):
  """Checks a non-empty batch: rank >= ``min_rank``, N = shape[0] >= 1."""
  check_array(x, name)
  if jnp.ndim(x) < max(min_rank, 1) or jnp.shape(x)[0] == 0:
    raise ValueError(
        f"{name} must be a non-empty {layout} array, got shape "
        f"{jnp.shape(x)}.")


def check_square(x, name: str):
  """Checks a non-empty square ``[C, C]`` matrix."""
  check_array(x, name)
  shape = jnp.shape(x)
  if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
    raise ValueError(f"{name} must be a square [C, C] matrix, got shape "
                     f"{shape}.")


def check_where(where, shape: Sequence[int], name: str = "where"):
  """Checks an optional validity mask: ``None`` or ``bool`` of ``shape``.

  ``where`` follows optax's convention: True marks an entry that counts,
  False one that is ignored (padding, a segmentation ignore label).
  """
  if where is None:
    return
  check_array(where, name)
  if jnp.result_type(where) != jnp.bool_:
    raise TypeError(
        f"{name} must be a boolean array (True = valid entry), got dtype "
        f"{jnp.result_type(where)}.")
  if jnp.shape(where) != tuple(shape):
    raise ValueError(
        f"{name} must have the batch shape {tuple(shape)} of the labels / "
        f"logits' leading axes, got {jnp.shape(where)}.")


# -- logits and labels ---------------------------------------------------------


def check_logits(x, name: str, *, min_classes: int = 1):
  """Checks one floating ``[..., C]`` logit array with at least one entry."""
  check_array(x, name)
  if jnp.ndim(x) < 1:
    raise ValueError(
        f"{name} must have rank >= 1 [..., C], got shape {jnp.shape(x)}.")
  check_floating(x, name)
  shape = jnp.shape(x)
  if math.prod(shape[:-1]) == 0:
    raise ValueError(
        f"{name} is an empty batch (leading shape {shape[:-1]}); need at least "
        "one example.")
  if shape[-1] < min_classes:
    why = (" NCKL/NCJSD compare distributions over the C-1 non-target classes,"
           " which is a single point (undefined divergence) when C = 2."
           if min_classes == 3 else "")
    raise ValueError(
        f"{name} has C = {shape[-1]} classes; need C >= {min_classes}.{why}")


def check_logit_span(x, temperature, name: str):
  """Checks ``x / T`` is finite and each row's span (max − min) is too.

  The divergences subtract a row's max from its logits and take logs of
  probabilities down to e^{−span}: a span past float32's maximum (a row
  holding +3e38 and −3e38) has log-probabilities float32 cannot hold, and
  the values would be NaN. Such logits are refused rather than computed.
  """
  xp, z, t = _values(x, temperature)
  with np.errstate(over="ignore", invalid="ignore"):  # inf is the answer
    z = z.astype(xp.float32) / t.astype(xp.float32)
    span = xp.max(z, axis=-1) - xp.min(z, axis=-1)
    worst = xp.max(xp.where(xp.isnan(span), xp.inf, span))
  require(xp.all(xp.isfinite(z)) & xp.isfinite(worst),
          f"{name} / temperature must be finite with each row's span "
          "(max - min) below float32's maximum 3.4e38, so that its "
          "log-probabilities fit in float32; got a span of {:.8g}.", worst)


def check_num_classes(logits, num_classes: int, name: str = "logits"):
  """Checks ``logits``' last axis has ``num_classes`` entries."""
  if jnp.shape(logits)[-1] != num_classes:
    raise ValueError(
        f"{name} must have num_classes = {num_classes} entries on the last "
        f"axis, got shape {jnp.shape(logits)}.")


def check_logits_pair(teacher_logits, student_logits, *, min_classes: int = 2,
                      names=("teacher_logits", "student_logits")):
  """Checks two floating ``[..., C]`` logit arrays of equal shape."""
  for name, x in zip(names, (teacher_logits, student_logits)):
    check_array(x, name)
    if jnp.ndim(x) < 1:
      raise ValueError(
          f"{name} must have rank >= 1 [..., C], got shape {jnp.shape(x)}.")
    check_floating(x, name)
  if jnp.shape(teacher_logits) != jnp.shape(student_logits):
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same shape [..., C], got "
        f"{jnp.shape(teacher_logits)} and {jnp.shape(student_logits)}.")
  check_logits(teacher_logits, names[0], min_classes=min_classes)


def check_labels(labels, shape, num_classes: int, *, where=None,
                 name: str = "labels"):
  """Checks integer labels of the batch ``shape`` with values in ``[0, C)``.

  Args:
    labels: ``int[...]``.
    shape: the expected batch shape (the logits' leading axes); an int ``N``
      means ``(N,)``.
    num_classes: C.
    where: optional ``bool`` of ``shape``; when given, only the valid entries'
      values are checked, so ignored entries may hold anything (e.g. 255).
    name: the argument's name in messages.
  """
  check_array(labels, name)
  shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
  if jnp.shape(labels) != shape:
    raise ValueError(
        f"{name} must have shape {_batch_layout(len(shape))} = {shape}, got "
        f"{jnp.shape(labels)}.")
  check_integer(labels, name)
  size = math.prod(shape)
  if size == 0:
    return
  if where is None:
    xp, values = _values(labels)
    bad = (values < 0) | (values >= num_classes)
  else:
    xp, values, valid = _values(labels, where)
    bad = ((values < 0) | (values >= num_classes)) & valid
  values, bad = xp.reshape(values, (-1,)), xp.reshape(bad, (-1,))
  first = xp.argmax(bad)
  require(~xp.any(bad),
          f"{name} must lie in [0, {num_classes})"
          f"{'' if where is None else ' where valid'}; got {{}} at flat index "
          f"{{}} ({{}} of {size} entries out of range).",
          values[first], first, xp.sum(bad))


def check_indices(x, name: str, shape: Sequence[Optional[int]], bound: int,
                  bound_name: str = "n_data"):
  """Checks an integer index array of ``shape`` with values in ``[0, bound)``.

  ``None`` in ``shape`` matches any size.
  """
  check_array(x, name)
  check_shape(x, name, shape)
  check_integer(x, name)
  if jnp.size(x) == 0:
    return
  xp, values = _values(x)
  low, high = xp.min(values), xp.max(values)
  require((low >= 0) & (high < bound),
          f"{name} must lie in [0, {bound_name}) = [0, {bound}); got values "
          "in [{}, {}].", low, high)


def check_dataset_labels(labels, name: str = "labels", min_classes: int = 2):
  """Checks the non-empty ``int[n_data]`` labels of a whole training set,
  holding at least ``min_classes`` distinct classes."""
  check_array(labels, name)
  if jnp.ndim(labels) != 1 or jnp.shape(labels)[0] == 0:
    raise ValueError(
        f"{name} must be the non-empty int[n_data] labels of the whole "
        f"training set, got shape {jnp.shape(labels)}.")
  check_integer(labels, name)
  xp, values = _values(labels)
  values = xp.sort(values)
  classes = 1 + xp.sum(values[1:] != values[:-1])
  require(classes >= min_classes,
          f"{name} must hold at least {min_classes} classes (CRD draws "
          "negatives from the other classes), got {}.", classes)


# -- features ------------------------------------------------------------------


def check_features(student_features, teacher_features, *, same_shape: bool,
                   min_examples: int = 1):
  """Checks a pair of floating ``[N, ...]`` feature arrays with equal N.

  Args:
    student_features, teacher_features: the arrays.
    same_shape: also require equal trailing shapes (per-example losses that
      compare the features themselves, e.g. FitNet).
    min_examples: the least N the loss is defined for (2 for losses that
      compare examples with each other).
  """
  for name, x in (("student_features", student_features),
                  ("teacher_features", teacher_features)):
    check_array(x, name)
    if jnp.ndim(x) < 2:
      raise ValueError(
          f"{name} must have rank >= 2 [N, ...], got shape {jnp.shape(x)}.")
    check_floating(x, name)
  s_shape, t_shape = jnp.shape(student_features), jnp.shape(teacher_features)
  if same_shape and s_shape != t_shape:
    raise ValueError(
        "student_features and teacher_features must have the same shape, got "
        f"{s_shape} and {t_shape}; map the student with FitNetRegressor.")
  if s_shape[0] != t_shape[0]:
    raise ValueError(
        "student_features and teacher_features must have the same batch size "
        f"N, got {s_shape[0]} and {t_shape[0]}.")
  if s_shape[0] < min_examples:
    raise ValueError(
        f"student_features has N = {s_shape[0]} examples; this loss needs "
        f"N >= {min_examples}.")


def check_embedding_pair(student_embed, teacher_embed, feat_dim: int):
  """Checks two floating ``[N, feat_dim]`` embeddings of one non-empty batch."""
  for name, x in (("student_embed", student_embed),
                  ("teacher_embed", teacher_embed)):
    check_array(x, name)
    if jnp.ndim(x) != 2 or jnp.shape(x)[1] != feat_dim:
      raise ValueError(
          f"{name} must have shape [N, feat_dim] = [N, {feat_dim}], got "
          f"{jnp.shape(x)}.")
    check_floating(x, name)
  n = jnp.shape(student_embed)[0]
  if jnp.shape(teacher_embed)[0] != n:
    raise ValueError(
        "student_embed and teacher_embed must have the same batch size N, got "
        f"{n} and {jnp.shape(teacher_embed)[0]}.")
  if n == 0:
    raise ValueError("student_embed is an empty batch (N = 0); need N >= 1.")


def check_contrast_indices(indices, contrast_indices, n: int, n_data: int):
  """Checks CRD's ``int[N]`` indices and ``int[N, K+1]`` contrast indices:
  K >= 1, all in ``[0, n_data)``, and the positive first."""
  check_indices(indices, "indices", (n,), n_data)
  check_indices(contrast_indices, "contrast_indices", (n, None), n_data)
  if jnp.shape(contrast_indices)[1] < 2:
    raise ValueError(
        "contrast_indices must have shape [N, K + 1] with K >= 1 negatives, "
        f"got {jnp.shape(contrast_indices)}.")
  xp, indices, contrast_indices = _values(indices, contrast_indices)
  differ = xp.sum(contrast_indices[:, 0] != indices)
  require(differ == 0,
          "contrast_indices[:, 0] must equal indices (the positive comes "
          "first, as crd_contrast_indices draws them); {} rows differ.",
          differ)


def _batch_layout(rank: int) -> str:
  return "[N]" if rank == 1 else "[...]"
