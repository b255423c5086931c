"""Knowledge-distillation objectives, one family per module.

* ``logit``: ``kd``, ``dkd`` (also NTDH's α/β weight-adjusted KD), and
  ``reduce_loss`` (the masked mean they share).
* ``feature``: ``fitnet`` (+ ``FitNetRegressor``), ``rkd``, ``pkt``, ``sp``.
* ``contrastive``: CRD with its memory bank as explicit state.

All losses are pure functions on arrays, validate their arguments at the
boundary (``ntdh_jax.validation``; traced values under its ``checked`` mode)
and run under ``jit``/``vmap``/``lax.scan``.
The logit losses take ``[..., C]`` logits and a ``where`` mask (optax's
convention); the feature losses take ``[N, ...]`` features.
"""

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

__all__ = [
    "CRDEmbed", "CRDState", "FitNetRegressor", "REDUCTIONS",
    "crd_contrast_indices", "crd_init", "crd_loss", "dkd", "fitnet", "kd",
    "pkt", "reduce_loss", "rkd", "sp",
]
