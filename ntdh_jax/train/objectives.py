"""The student's distillation term, one entry per KD method.

A ``Distiller`` adapts a loss of ``ntdh_jax.losses`` to the student stage:
``init`` creates the method's own trainable parameters (FitNet's regressor,
CRD's embedding heads) and state (CRD's memory banks); ``loss`` maps one
batch to either per-example values ``f32[N]`` (logit methods and FitNet,
which NTDH Algorithm 2 can mask per sample) or a batch-level scalar (RKD, PKT,
SP, CRD). Feature methods act on the penultimate activations the models
return with ``return_features=True``.

The numeric knobs read from ``hparams`` (traced, so sweeps vmap them):
``temperature`` (kl, dkd), ``alpha`` and ``beta`` (dkd). Defaults for the rest follow each method's paper, see ``losses``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ntdh_jax import losses


class Batch(NamedTuple):
  """What a distiller sees of one training batch."""
  student_logits: jax.Array   # f[N, C]
  teacher_logits: jax.Array   # f[N, C], constant
  student_features: jax.Array  # f[N, D_s]
  teacher_features: jax.Array  # f[N, D_t], constant
  labels: jax.Array           # int[N] (or [N, H, W])
  where: jax.Array | None     # bool like labels: valid labels; None = all
  indices: jax.Array          # int[N], dataset rows (CRD's memory index)
  dataset_labels: jax.Array   # int[n_data], CRD draws negatives from them
  key: jax.Array


class Distiller(NamedTuple):
  """``init(key, d_student, d_teacher, n_data) -> (aux_params, aux_state)``;
  ``loss(aux_params, aux_state, batch, hparams) -> (values, aux_state)``."""
  init: Callable[..., tuple[Any, Any]]
  loss: Callable[..., tuple[jax.Array, Any]]
  per_example: bool


def _stateless(fn, per_example=True):
  return Distiller(init=lambda *_: ({}, {}),
                   loss=lambda p, s, b, hp: (fn(b, hp), s),
                   per_example=per_example)


def _fitnet() -> Distiller:
  def init(key, d_student, d_teacher, n_data):
    del n_data
    reg = losses.FitNetRegressor(features=d_teacher)
    return reg.init(key, jnp.zeros((1, d_student))), {}

  def loss(params, state, b, hp):
    del hp
    reg = losses.FitNetRegressor(features=b.teacher_features.shape[-1])
    hint = reg.apply(params, b.student_features)
    return losses.fitnet(hint, b.teacher_features, reduction="none"), state

  return Distiller(init, loss, per_example=True)


def _crd(feat_dim: int = 128, num_negatives: int = 1024) -> Distiller:
  """CRD (Tian et al., ICLR'20). K = 1024 negatives: RepDistiller's 16384
  assumes CIFAR's 50 000 rows, the NTDH scripts use 2000–3000 on 200–6000
  rows; 1024 keeps a 256-sample batch's scores at ~134 MB per vmapped run."""
  head = losses.CRDEmbed(feat_dim=feat_dim)

  def init(key, d_student, d_teacher, n_data):
    ks, kt, km = jax.random.split(key, 3)
    params = {"student": head.init(ks, jnp.zeros((1, d_student))),
              "teacher": head.init(kt, jnp.zeros((1, d_teacher)))}
    return params, losses.crd_init(km, n_data, feat_dim)

  def loss(params, state, b, hp):
    del hp
    contrast = losses.crd_contrast_indices(
        b.key, b.dataset_labels, num_negatives, b.indices)
    return losses.crd_loss(
        state, head.apply(params["student"], b.student_features),
        head.apply(params["teacher"], b.teacher_features), b.indices,
        contrast)

  return Distiller(init, loss, per_example=False)


def make_distiller(name: str) -> Distiller:
  """The distillation term called ``name``; see ``DISTILLERS``."""
  if name not in DISTILLERS:
    raise ValueError(
        f"distill must be one of {sorted(DISTILLERS)}, got {name!r}.")
  return DISTILLERS[name]()


# The hyperparameters each distiller reads (the rest take none).
HPARAMS: dict[str, tuple[str, ...]] = {"kl": ("temperature",),
                                       "dkd": ("alpha", "beta", "temperature")}

DISTILLERS: dict[str, Callable[[], Distiller]] = {
    "kl": lambda: _stateless(lambda b, hp: losses.kd(
        b.student_logits, b.teacher_logits, hp["temperature"], where=b.where,
        reduction="none")),
    # DKD, also NTDH's α·TCKL + β·NCKL weight study: one computation, one
    # name; α, β and T come from the run's hyperparameters.
    "dkd": lambda: _stateless(lambda b, hp: losses.dkd(
        b.student_logits, b.teacher_logits, b.labels, hp["alpha"],
        hp["beta"], hp["temperature"], where=b.where, reduction="none")),
    "fitnet": _fitnet,
    "rkd": lambda: _stateless(lambda b, hp: losses.rkd(
        b.student_features, b.teacher_features), per_example=False),
    "pkt": lambda: _stateless(lambda b, hp: losses.pkt(
        b.student_features, b.teacher_features), per_example=False),
    "sp": lambda: _stateless(lambda b, hp: losses.sp(
        b.student_features, b.teacher_features), per_example=False),
    "crd": _crd,
}
