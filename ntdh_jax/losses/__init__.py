"""Knowledge-distillation objectives, one family per module.

* ``logit``: ``kd``, ``dkd`` (also NTDH's α/β weight-adjusted KD), and
  ``reduce_loss`` (the masked mean they share).
* ``feature``: ``fitnet`` (+ ``FitNetRegressor``), ``rkd``, ``pkt``, ``sp``.
* ``contrastive``: CRD with its memory bank as explicit state.
* ``cmcd``: CMCD's cross-modality losses (reconstructed): ``simclr`` for the
  source pre-training, ``cmd`` (+ its ``CMDQueue``) and ``cmc`` for the
  distillation, ``align_l2`` and ``align_cosine`` as baselines.
* ``transport``: UCMKD's alignment terms: ``feature_alignment`` (entropic OT
  by ott-jax's ``sinkhorn`` over a ground cost of ``COSTS``),
  ``label_transport_kernel`` (``KAPPAS``) and ``label_alignment``.

All losses are pure functions on arrays, validate their arguments at the
boundary (``ntdh_jax.validation``; traced values under its ``checked`` mode)
and run under ``jit``/``vmap``/``lax.scan``.
The logit losses take ``[..., C]`` logits and a ``where`` mask (optax's
convention); the feature losses take ``[N, ...]`` features.
"""

from ntdh_jax.losses.cmcd import CMDQueue
from ntdh_jax.losses.cmcd import align_cosine
from ntdh_jax.losses.cmcd import align_l2
from ntdh_jax.losses.cmcd import cmc
from ntdh_jax.losses.cmcd import cmd
from ntdh_jax.losses.cmcd import cmd_queue_init
from ntdh_jax.losses.cmcd import cmd_queue_push
from ntdh_jax.losses.cmcd import simclr
from ntdh_jax.losses.contrastive import CRDEmbed
from ntdh_jax.losses.contrastive import CRDState
from ntdh_jax.losses.contrastive import crd_contrast_indices
from ntdh_jax.losses.contrastive import crd_init
from ntdh_jax.losses.contrastive import crd_loss
from ntdh_jax.losses.feature import FitNetRegressor
from ntdh_jax.losses.feature import fitnet
from ntdh_jax.losses.feature import pkt
from ntdh_jax.losses.feature import rkd
from ntdh_jax.losses.feature import sp
from ntdh_jax.losses.logit import REDUCTIONS
from ntdh_jax.losses.logit import dkd
from ntdh_jax.losses.logit import kd
from ntdh_jax.losses.logit import reduce_loss
from ntdh_jax.losses.logit import smoothed_cross_entropy
from ntdh_jax.losses.transport import COSTS
from ntdh_jax.losses.transport import FA_GRADIENTS
from ntdh_jax.losses.transport import KAPPAS
from ntdh_jax.losses.transport import Transport
from ntdh_jax.losses.transport import cost_matrix
from ntdh_jax.losses.transport import feature_alignment
from ntdh_jax.losses.transport import label_alignment
from ntdh_jax.losses.transport import label_transport_kernel
from ntdh_jax.losses.transport import sinkhorn

__all__ = [
    "CMDQueue", "CRDEmbed", "CRDState", "FitNetRegressor", "REDUCTIONS",
    "align_cosine", "align_l2", "cmc", "cmd", "cmd_queue_init",
    "cmd_queue_push", "crd_contrast_indices", "crd_init", "crd_loss", "dkd",
    "fitnet", "kd", "pkt", "reduce_loss", "rkd", "simclr",
    "smoothed_cross_entropy", "sp",
    "COSTS", "FA_GRADIENTS", "KAPPAS", "Transport", "cost_matrix",
    "feature_alignment", "label_alignment", "label_transport_kernel",
    "sinkhorn",
]
