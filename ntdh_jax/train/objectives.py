"""The student's distillation term, one entry per KD method and wiring.

A ``Distiller`` adapts a loss of ``ntdh_jax.losses`` to the student stage:
``init`` creates the method's own trainable parameters (FitNet's regressor,
CRD's embedding heads) and state (CRD's memory banks); ``loss`` maps one
batch to either per-example values ``f32[N]`` (logit methods and FitNet,
which NTDH Algorithm 2 can mask per sample) or a batch-level scalar (RKD, PKT,
SP, CRD).

Where the feature methods (FitNet, CRD, RKD, PKT, SP) act is the student
stage's ``feature_wiring``, a key of ``WIRINGS``:

* ``"features"`` (``DISTILLERS``): on the penultimate activations
  ``f32[N, D]`` the models return with ``return_features=True``, as the
  methods' own papers (and RepDistiller) wire them; KD is the method alone.
* ``"logits"`` (``LOGIT_DISTILLERS``): the NTDH authors' code's wiring,
  ``train_kd`` of their ``sklearn/main.py`` (lines 249-333; the script of
  their Table 1 runs, lines 531-549). The method compares the raw logits
  ``z_s, z_t: f32[N, C]`` (no temperature; lines 277-278) in place of
  features, and a KL term is added (lines 292-313):

    KD = method_weight · M(z_s, z_t)
         + kl_weight · KL(softmax(z_t/T) || softmax(z_s/T)) · T²

  Their KL is ``KLDivLoss(reduction="batchmean")`` of ``log_softmax(z_s)``
  and ``softmax(z_t)`` (lines 255, 296-313), i.e. T = 1 and the batch mean;
  their weights are method_weight 0.1 for FitNet (line 301), 1 otherwise,
  and kl_weight 0.1 for RKD (line 304), 1 otherwise; the student's loss is
  1·CE + 1·KD (lines 330, 416). ``AUTHORS_LOGIT_HPARAMS`` holds these
  numbers. Two of their methods change with the inputs: FitNet's regressor
  is ``ConvReg`` (``sklearn/utils/functions.py`` lines 77-94), which for
  equal widths is BatchNorm + ReLU without a learned map, built afresh at
  every step (line 299), so it normalises z_s with the batch's statistics
  (γ = 1, β = 0, ε = 1e-5) and is never trained; CRD's embedding heads are
  built with its loss (line 256) but not given to the optimiser (line 261),
  so they keep their random initialisation (here they ride in the state).
  Their ``MNIST/utils/helper.py`` (lines 249-275) wires FitNet, PKT and SP
  the same way but RKD without KL and no CRD, with CE and KD weighted 0.5
  each (``MNIST/main.py`` lines 204-205: ``kd_form="convex"``, λ = 0.5);
  ``gauss/main.py`` (lines 180-216) adds a KL at T = 0.7 to PKT and SP only.

The numeric knobs read from ``hparams`` (traced, so sweeps vmap them) are
``HPARAMS`` per wiring: ``temperature`` (kl, dkd, and every logits-wired
method's KL), ``alpha`` and ``beta`` (dkd), ``method_weight`` and
``kl_weight`` (logits wiring). Defaults for the rest follow each method's
paper, see ``losses``.
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


def _crd(train_heads: bool = True, feat_dim: int = 128,
         num_negatives: int = 1024) -> Distiller:
  """CRD (Tian et al., ICLR'20). K = 1024 negatives: RepDistiller's 16384
  assumes CIFAR's 50 000 rows, the NTDH scripts use 2000–3000 on 200–6000
  rows; 1024 keeps a 256-sample batch's scores at ~134 MB per vmapped run.
  ``train_heads=False`` keeps the embedding heads at their initialisation,
  in the state rather than the trained parameters (the NTDH authors' code
  never optimises them, see the module docstring)."""
  head = losses.CRDEmbed(feat_dim=feat_dim)

  def init(key, d_student, d_teacher, n_data):
    ks, kt, km = jax.random.split(key, 3)
    heads = {"student": head.init(ks, jnp.zeros((1, d_student))),
             "teacher": head.init(kt, jnp.zeros((1, d_teacher)))}
    memory = losses.crd_init(km, n_data, feat_dim)
    return (heads, memory) if train_heads else ({}, (heads, memory))

  def loss(params, state, b, hp):
    del hp
    heads, memory = (params, state) if train_heads else state
    contrast = losses.crd_contrast_indices(
        b.key, b.dataset_labels, num_negatives, b.indices)
    value, memory = losses.crd_loss(
        memory, head.apply(heads["student"], b.student_features),
        head.apply(heads["teacher"], b.teacher_features), b.indices,
        contrast)
    return value, (memory if train_heads else (heads, memory))

  return Distiller(init, loss, per_example=False)


def _batch_norm_relu(x, where, eps=1e-5):
  """The authors' FitNet "regressor" on logits: a fresh BatchNorm in
  training mode (batch mean and biased variance per class, over every axis
  but the last and the valid entries only; γ = 1, β = 0), then ReLU.
  ``f32[..., C] -> f32[..., C]``."""
  axes = tuple(range(x.ndim - 1))
  weight = (jnp.ones(x.shape[:-1] + (1,)) if where is None
            else where[..., None].astype(x.dtype))
  count = jnp.maximum(jnp.sum(weight, axis=axes), 1.0)
  mean = jnp.sum(weight * x, axis=axes) / count
  var = jnp.sum(weight * jnp.square(x - mean), axis=axes) / count
  return jax.nn.relu((x - mean) / jnp.sqrt(var + eps))


def _authors_hint(b: Batch, hp) -> jax.Array:
  """FitNet's hint on logits as the authors' ``train_kd`` computes it:
  per entry, the mean over classes of (ReLU(BN(z_s)) − z_t)²; their
  ``MSELoss`` is its mean over the batch. ``f32[N]`` (or ``[B, H, W]``)."""
  del hp
  hint = _batch_norm_relu(b.student_features, b.where)
  return jnp.mean(jnp.square(hint - b.teacher_features), axis=-1)


def _on_logits(inner: Distiller) -> Distiller:
  """``inner`` fed the logits in place of the features, weighted by
  ``method_weight``, plus ``kl_weight`` · KL at ``temperature``: the
  authors' ``train_kd`` (see the module docstring)."""

  def loss(params, state, b, hp):
    on_logits = b._replace(student_features=b.student_logits,
                           teacher_features=b.teacher_logits)
    values, state = inner.loss(params, state, on_logits, hp)
    # Per-example methods keep per-example KL (Algorithm 2 can mask both);
    # batch-level ones add the batch mean, as ``batchmean`` does.
    kl = losses.kd(b.student_logits, b.teacher_logits, hp["temperature"],
                   where=b.where,
                   reduction="none" if inner.per_example else "mean")
    return hp["method_weight"] * values + hp["kl_weight"] * kl, state

  return Distiller(inner.init, loss, inner.per_example)


def make_distiller(name: str, wiring: str = "features") -> Distiller:
  """The distillation term called ``name`` in ``WIRINGS[wiring]``."""
  if wiring not in WIRINGS:
    raise ValueError(
        f"feature_wiring must be one of {sorted(WIRINGS)}, got {wiring!r}.")
  distillers = WIRINGS[wiring].distillers
  if name not in distillers:
    raise ValueError(
        f"distill must be one of {sorted(distillers)} with feature_wiring="
        f"{wiring!r}, got {name!r}.")
  return distillers[name]()


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

# The feature methods as the authors' ``train_kd`` wires them: on logits,
# plus KL. RKD, PKT and SP are the same losses on other inputs; FitNet and
# CRD change with the inputs (module docstring).
LOGIT_DISTILLERS: dict[str, Callable[[], Distiller]] = {
    "fitnet": lambda: _on_logits(_stateless(_authors_hint)),
    "crd": lambda: _on_logits(_crd(train_heads=False)),
    "rkd": lambda: _on_logits(DISTILLERS["rkd"]()),
    "pkt": lambda: _on_logits(DISTILLERS["pkt"]()),
    "sp": lambda: _on_logits(DISTILLERS["sp"]()),
}
LOGIT_HPARAMS = ("method_weight", "kl_weight", "temperature")

# The authors' numbers for the logits wiring, ``sklearn/main.py``: each
# method's weight and its KL's (at T = 1) at the line cited; CE and KD
# weighted 1 each (line 416, with kd_form="additive").
_AUTHORS_KD = {"temperature": 1.0, "kd_weight": 1.0}
AUTHORS_LOGIT_HPARAMS: dict[str, dict[str, float]] = {
    "fitnet": {"method_weight": 0.1, "kl_weight": 1.0, **_AUTHORS_KD},  # 301
    "crd": {"method_weight": 1.0, "kl_weight": 1.0, **_AUTHORS_KD},  # 296
    "rkd": {"method_weight": 1.0, "kl_weight": 0.1, **_AUTHORS_KD},  # 304
    "pkt": {"method_weight": 1.0, "kl_weight": 1.0, **_AUTHORS_KD},  # 307
    "sp": {"method_weight": 1.0, "kl_weight": 1.0, **_AUTHORS_KD},  # 313
}


class Wiring(NamedTuple):
  """One ``feature_wiring``: its distillers and the hyperparameters each
  reads."""
  distillers: dict[str, Callable[[], Distiller]]
  hparams: dict[str, tuple[str, ...]]
  on_logits: bool  # the methods' own parameters are sized by C, not D


WIRINGS: dict[str, Wiring] = {
    "features": Wiring(DISTILLERS, HPARAMS, on_logits=False),
    "logits": Wiring(LOGIT_DISTILLERS,
                     {name: LOGIT_HPARAMS for name in LOGIT_DISTILLERS},
                     on_logits=True),
}
