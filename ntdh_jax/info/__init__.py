"""Mutual-information estimators for the Cross-modal Complementarity
Hypothesis (CCH: KD from modality 1 helps a student on modality 2 when
I(H₁; H₂) > I(H₂; Y)), and two-sample distances for CMCD's latent-gap
diagnostic. Pure JAX, nats by default, ``base=2`` for bits.

Modules, each named for what it holds:

* ``gaussian`` — closed forms: ``gaussian_mi(cov, idx_a, idx_b)`` =
  ½ log(det Σ_AA det Σ_BB / det Σ_[A,B]) and ``correlation_mi(rho)`` =
  −½ log(1 − ρ²), the truths the estimators are tested against.
* ``ksg`` — k-nearest-neighbour estimators: ``ksg(x, y, k=3)`` (Kraskov,
  Stögbauer & Grassberger 2004, algorithm 1) and ``ksg_discrete(x, labels,
  k=3)`` (Ross 2014, continuous x and class labels), blockwise so N =
  20,000 fits in bounded memory; point-wise and mean MI.
* ``plane`` — ``ksg``'s exact neighbour counts for one-column x and y by
  sorting (its ``method="sorted"``, the default there).
* ``neural`` — MINE (Donsker–Varadhan with the moving-average gradient
  correction) and InfoNCE with small Flax critics, trained as ``Program``s.
* ``latent`` — latent MI (LMI): paired cross-reconstructing autoencoders to
  8-d latents, KSG on the held-out half.
* ``units`` — the nats → base conversion all of them share.
* ``cch`` — the criterion itself: ``cch_gap(teacher_features,
  student_features, labels, estimator="ksg")`` estimates Δ = I(H₁; H₂) −
  I(H₂; Y) over repeated subsamples and returns a ``CCHResult`` with the
  spread and a verdict (the ``ntdh-cch`` command runs it on ``.npy`` files).
* ``two_sample`` — ``mmd2(x, y)`` (unbiased MMD², Gaussian kernel, median
  bandwidth) and ``tv_lower_bound(x, y, k=5)`` (a held-out k-NN classifier's
  lower bound on the total-variation distance), between two embedding
  samples; CMCD's bound is in the latter.

The functions of ``gaussian``, ``ksg`` and ``two_sample``, and ``cch_gap``
and ``CCHResult``, are importable from here (``ntdh_jax.info.ksg`` is then the
function; the module's other names come with ``from ntdh_jax.info.ksg
import KSGResult``). ``neural`` and ``latent`` load on first use (``from
ntdh_jax.info import neural`` or ``ntdh_jax.info.neural``), so the closed
forms, KSG and ``cch_gap`` import without Flax, optax and the training
engine (``cch_gap`` loads them when its ``estimator`` is one of theirs).
"""

import importlib

from ntdh_jax.info.cch import CCHResult, cch_gap
from ntdh_jax.info.gaussian import correlation_mi, gaussian_mi
from ntdh_jax.info.ksg import KSGResult, ksg, ksg_discrete
from ntdh_jax.info.two_sample import mmd2, tv_lower_bound
from ntdh_jax.info.units import in_base

_LAZY_MODULES = ("neural", "latent")

__all__ = ["CCHResult", "KSGResult", "cch_gap", "correlation_mi",
           "gaussian_mi", "in_base", "ksg", "ksg_discrete", "mmd2",
           "tv_lower_bound", *_LAZY_MODULES]


def __getattr__(name):
  if name in _LAZY_MODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
