"""Knowledge-distillation objectives, one family per module.

* ``logit``: ``kd``, ``decoupled_kl`` (NTDH α/β weighting), ``dkd``.
* ``feature``: ``fitnet`` (+ ``FitNetRegressor``), ``rkd``, ``pkt``, ``sp``.
* ``contrastive``: CRD with its memory bank as explicit state.

All losses are pure functions on arrays, validate their arguments at the
boundary and run under ``jit``/``vmap``/``lax.scan``.
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
from ntdh_jax.losses.logit import decoupled_kl
from ntdh_jax.losses.logit import dkd
from ntdh_jax.losses.logit import kd

__all__ = [
    "CRDEmbed", "CRDState", "FitNetRegressor", "REDUCTIONS",
    "crd_contrast_indices", "crd_init", "crd_loss", "decoupled_kl", "dkd",
    "fitnet", "kd", "pkt", "rkd", "sp",
]
