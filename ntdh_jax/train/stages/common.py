"""Pieces every stage shares: static configs, optimiser, epoch loop, metrics.

Static configs are frozen dataclasses; ``normalise`` fills their defaults
(and the data and model configs' defaults) before a run is hashed, so one
program has one identity however its config was spelled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import data as data_lib
from ntdh_jax import divergences
from ntdh_jax import hparams as hparams_lib
from ntdh_jax import losses
from ntdh_jax import metrics as metrics_lib
from ntdh_jax import models

# fold_in constants of a run's key: one independent stream per purpose.
DATA_KEY, INIT_KEY, LOOP_KEY, MASK_KEY, AUX_KEY, EVAL_KEY = range(6)
# fold_in constants of a training step's key (the student's distiller and
# Algorithm 2 mask split the step key itself, as before these existed).
DROPOUT_KEY, PREPARE_KEY = 1001, 1002


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Static options every stage has.

  Attributes:
    data: ``{"name": ..., **options}`` of a registered data source.
    model: ``{"name": ..., **options}`` of a registered model (the network
      this stage trains; the student's in the joint stage).
    epochs: training epochs, a multiple of ``eval_every``.
    eval_every: epochs per segment (one evaluation, one checkpoint chance).
    batch_size: mini-batch size; 0 = full batch.
    optimizer: a name in ``OPTIMIZERS``.
    eval_batch_size: examples per evaluation batch. The default covers the
      synthetic sets in one batch; image sets should set a few hundred.

  ``OMIT_AT_DEFAULT`` names the options a stage gained after results were
  recorded: ``stages.normalise`` leaves each out while it has its default,
  so the runs that predate it keep their run ids and signatures.
  """
  OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
  data: Mapping
  model: Mapping
  epochs: int
  eval_every: int
  batch_size: int = 0
  optimizer: str = "sgd"
  eval_batch_size: int = 8192

  def __post_init__(self):
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_("data", data_lib.normalise(self.data))
    set_("model", models.normalise(self.model))
    for name in ("epochs", "eval_every", "eval_batch_size"):
      _check_int(name, getattr(self, name), low=1)
    _check_int("batch_size", self.batch_size, low=0)
    if self.epochs % self.eval_every:
      raise ValueError(f"epochs ({self.epochs}) must be a multiple of "
                       f"eval_every ({self.eval_every}).")
    check_choice("optimizer", self.optimizer, OPTIMIZERS)


def base_hparams(config: StageConfig, *names: str) -> dict:
  """``{name: Range}`` of the hyperparameters every stage reads (its
  optimiser's and its data source's gap knob) and of ``names``."""
  ranges = {n: hparams_lib.RANGES[n]
            for n in OPTIMIZERS[config.optimizer][1].values()}
  ranges.update(data_lib.get(config.data["name"]).hparams)
  ranges.update({n: hparams_lib.RANGES[n] for n in names})
  return ranges


def fill_teacher_model(config) -> None:
  """A config's ``teacher_model``, normalised; ``None`` means ``model``."""
  object.__setattr__(config, "teacher_model", models.normalise(
      config.model if config.teacher_model is None else config.teacher_model))


def _check_int(name, value, low):
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def check_choice(name: str, value, options) -> None:
  if value not in options:
    raise ValueError(f"{name} must be one of {sorted(options)}, got "
                     f"{value!r}.")


def hp(hparams, name: str):
  try:
    return hparams[name]
  except KeyError:
    raise KeyError(
        f"hparams is missing {name!r} (has {sorted(hparams)}).") from None


def raw_key(key):
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  return key


# ------------------------------------------------------------------- data


class Data:
  """A stage's dataset: the source, its options and spec, and the run's
  views and per-batch inputs."""

  def __init__(self, data_config: Mapping):
    self.source, self.config = data_lib.parse(data_config)
    self.spec = self.source.spec(self.config)
    self.data_config = dict(data_config)
    self.n_train = self.spec.splits["train"]
    self.n_test = self.spec.splits["test"]
    self.where_labels = self.spec.ignore_label is not None

  def load(self):
    return data_lib.load_arrays(self.data_config)

  def views(self, arrays, hparams, key) -> data_lib.Views:
    return self.source.views(self.config, arrays, hparams,
                             jax.random.fold_in(key, DATA_KEY))

  def input(self, x, modality: str, hparams, key):
    """Stored rows -> float model input."""
    return self.source.prepare(self.config, x, modality, hparams, key)

  def example(self, modality: str) -> jax.Array:
    """A zero batch of one example, to initialise a network."""
    return jnp.zeros((1,) + tuple(self.spec.modality(modality).shape),
                     jnp.float32)

  def valid(self, labels):
    """``where`` mask of the labels (``None``: every label counts)."""
    if not self.where_labels:
      return None
    return labels != self.spec.ignore_label


def feature_mask_shape(shape) -> tuple[int, ...]:
  """Algorithm 1's mask over one input: a flat input's columns, or an
  image's pixels (all channels of a pixel together, ``[H, W, 1]``)."""
  shape = tuple(shape)
  return shape if len(shape) == 1 else shape[:-1] + (1,)


def take(x, rows):
  """``x[rows]``, or ``x`` itself for a full batch (``rows is None``)."""
  return x if rows is None else x[rows]


# -------------------------------------------------------------- optimiser


OPTIMIZERS = {
    # name: (optax factory, {its hyperparameter: our hparams name})
    "sgd": (optax.sgd, {"learning_rate": "lr", "momentum": "momentum"}),
    "adam": (optax.adam, {"learning_rate": "lr"}),
}


def make_optimizer(name: str):
  """``(tx, init(params, hparams) -> opt_state)`` with traced hyperparameters.

  ``optax.inject_hyperparams`` keeps the learning rate (and momentum) in the
  optimiser state, so each vmapped run carries its own values.
  """
  check_choice("optimizer", name, OPTIMIZERS)
  factory, names = OPTIMIZERS[name]
  tx = optax.inject_hyperparams(factory)(**{k: 0.0 for k in names})

  def init(params, hparams):
    state = tx.init(params)
    injected = {k: jnp.asarray(hp(hparams, v), jnp.float32)
                for k, v in names.items()}
    return state._replace(hyperparams={**state.hyperparams, **injected})

  return tx, init


# ------------------------------------------------------------------ loops


def run_epochs(step, carry, key, n: int, batch_size: int, epochs: int):
  """Scans ``step(carry, rows, key) -> (carry, metrics)`` over epochs×batches.

  Full batch (``batch_size`` 0 or n) passes ``rows=None`` so no gather copies
  the data every step. Mini-batches reshuffle every epoch and drop the last
  partial batch, so all batches share one shape.
  """
  if batch_size in (0, n):
    epoch = lambda c, k: step(c, None, k)
  elif 0 < batch_size < n:
    num_batches = n // batch_size

    def epoch(c, k):
      k_perm, k_steps = jax.random.split(k)
      rows = jax.random.permutation(k_perm, n)[: num_batches * batch_size]
      keys = jax.random.split(k_steps, num_batches)
      c, metrics = jax.lax.scan(lambda c, rk: step(c, *rk), c,
                                (rows.reshape(num_batches, batch_size), keys))
      return c, jax.tree.map(lambda m: m[-1], metrics)
  else:
    raise ValueError(f"batch_size must be in [0, {n}], got {batch_size}.")

  carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
  return carry, jax.tree.map(lambda m: m[-1], metrics)


def batched_sums(fn: Callable, n: int, batch_size: int):
  """Sums of ``fn(rows, weight)`` over ``n`` examples in batches.

  ``fn`` returns a pytree of sums over its batch; ``rows`` are example
  indices (``None``: all ``n`` at once, no gather) and ``weight`` is
  ``f32[b]``, 0 on the padding of the last batch (``None`` when there is
  none). A set that fits one batch is one call on the whole set, the
  arithmetic of a full-batch pass; larger sets run as ``lax.map`` over
  batches, so a 10,000-image test set × K vmapped runs fits in memory.
  """
  if n <= batch_size:
    return fn(None, None)
  sums = jax.lax.map(lambda a: fn(*a), _batches(n, batch_size))
  return jax.tree.map(lambda s: jnp.sum(s, axis=0), sums)


def _batches(n: int, batch_size: int):
  """``(rows, weight)``, both ``[ceil(n / batch_size), batch_size]``: the
  last batch is padded by repeating the last example, with weight 0."""
  num = -(-n // batch_size)
  index = jnp.arange(num * batch_size).reshape(num, batch_size)
  return jnp.minimum(index, n - 1), (index < n).astype(jnp.float32)


def batched_map(fn: Callable, n: int, batch_size: int):
  """``fn(rows)`` for all ``n`` examples, computed in batches: per-example
  outputs ``[n, ...]`` (``rows=None``: all at once, as ``batched_sums``)."""
  if n <= batch_size:
    return fn(None)
  out = jax.lax.map(fn, _batches(n, batch_size)[0])
  return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)


def masked_sum(values, where, weight):
  """``sum(values)`` over valid entries (``where``) of real examples
  (``weight`` per example; ``None`` = all)."""
  if where is not None:
    values = jnp.where(where, values, 0.0)
  if weight is not None:
    values = values * _per_entry(weight, values.ndim)
  return jnp.sum(values)


def _per_entry(weight, ndim: int):
  """A per-example ``f32[b]`` broadcast over an example's entries."""
  return weight.reshape(weight.shape + (1,) * (ndim - 1))


def count(labels, where, weight):
  """How many labels ``masked_sum`` adds up."""
  return masked_sum(jnp.ones(jnp.shape(labels), jnp.float32), where, weight)


def cross_entropy(logits, labels, where, label_smoothing=None):
  """Mean softmax cross-entropy over the valid labels of a batch; with
  ``label_smoothing`` (may be traced), against smoothed targets
  (``losses.smoothed_cross_entropy``)."""
  safe = labels if where is None else jnp.where(where, labels, 0)
  per_example = (
      optax.softmax_cross_entropy_with_integer_labels(logits, safe)
      if label_smoothing is None
      else losses.smoothed_cross_entropy(logits, safe, label_smoothing))
  return losses.reduce_loss(per_example, where, "mean")


def classification_sums(logits, labels, where, weight, num_classes: int,
                        segmentation: bool) -> dict:
  """Sums for accuracy (and the confusion matrix for mIoU) of a batch."""
  sums = {"correct": masked_sum(
      metrics_lib.correct(logits, labels, where=where), None, weight),
          "count": count(labels, where, weight)}
  if segmentation:
    valid = jnp.ones(jnp.shape(labels), bool) if where is None else where
    if weight is not None:
      valid = valid & (_per_entry(weight, labels.ndim) > 0)
    sums["confusion"] = metrics_lib.confusion_matrix(
        logits, labels, num_classes, where=valid)
  return sums


def classification_metrics(sums: dict, prefix: str = "") -> dict:
  out = {f"{prefix}acc": sums["correct"] / jnp.maximum(sums["count"], 1.0)}
  if "confusion" in sums:
    out[f"{prefix}miou"] = metrics_lib.mean_iou(sums["confusion"])
  return out


DIVERGENCES = ("kl", "tckl", "nckl", "tcjsd", "ncjsd")
BINARY_DIVERGENCES = ("kl", "tckl", "tcjsd")


def divergence_sums(teacher_logits, student_logits, labels, where,
                    weight) -> dict:
  """Summed NTDH metrics of a batch (only the binary ones when C = 2)."""
  kw = dict(teacher_logits=teacher_logits, student_logits=student_logits,
            labels=labels, where=where)
  if teacher_logits.shape[-1] >= 3:
    d = divergences.decompose(**kw)
    values = {k: getattr(d, k) for k in DIVERGENCES}
  else:
    values = {k: getattr(divergences, k)(**kw) for k in BINARY_DIVERGENCES}
  return {k: masked_sum(v, where, weight) for k, v in values.items()}


def network(config: Mapping, spec) -> models.Net:
  return models.build(config, spec.num_classes)


def apply_eval(net: models.Net, variables, x):
  """Logits and features in evaluation mode (running statistics, no
  dropout)."""
  logits, features, _ = net.apply(variables, x, train=False)
  return logits, features


def split_variables(variables) -> tuple[Any, Any]:
  """``(params, state)``: the trained parameters and the rest (BatchNorm
  running statistics), which the optimiser must not touch."""
  variables = dict(variables)
  return variables.pop("params"), variables


def join_variables(params, state) -> dict:
  return {"params": params, **state}
