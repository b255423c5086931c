"""Closed-form mutual information of jointly Gaussian variables.

For a Gaussian vector with covariance Σ and disjoint index sets A and B
(from the Gaussian entropy h = ½ log((2πe)^d det Σ), Cover & Thomas,
*Elements of Information Theory*, 2nd ed., Theorem 8.4.1, and
I = h(A) + h(B) − h(A, B)):

    I(A; B) = ½ log( det Σ_AA · det Σ_BB / det Σ_[A,B] ),

and for two scalars with correlation ρ, I = −½ log(1 − ρ²). These are the
truths the sample-based estimators (``ksg``, MINE, InfoNCE, LMI) are tested
against, and the analytic MI of the CCH joint-Gaussian model
(``shared/notes/companions.md`` A.2).

Nats by default; ``base=2`` gives bits (``ntdh_jax.info.units``).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import validation
from ntdh_jax.info import units


def _check_index_set(idx, name: str, dim: int) -> tuple[int, ...]:
  """``idx`` as a tuple of distinct ints in ``[0, dim)``, at least one.

  Index sets choose sub-matrices, so they set shapes and must be static:
  Python ints, a list/tuple/range of them or an integer NumPy array.
  """
  if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
    idx = (idx,)
  if isinstance(idx, jax.Array) or not isinstance(
      idx, (list, tuple, range, np.ndarray)):
    raise TypeError(
        f"{name} must be static indices into cov (an int, a list/tuple/range "
        f"of ints or an integer NumPy array), got {type(idx).__name__}.")
  values = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(
        f"{name} must be a non-empty 1-D set of indices, got shape "
        f"{values.shape}.")
  if not np.issubdtype(values.dtype, np.integer):
    raise TypeError(f"{name} must hold integers, got dtype {values.dtype}.")
  if values.min() < 0 or values.max() >= dim:
    raise ValueError(
        f"{name} must lie in [0, D) = [0, {dim}) for cov of shape "
        f"[{dim}, {dim}], got values in [{values.min()}, {values.max()}].")
  if np.unique(values).size != values.size:
    raise ValueError(f"{name} must not repeat an index, got {values.tolist()}.")
  return tuple(int(v) for v in values)


def gaussian_mi(cov, idx_a, idx_b, base: Optional[float] = None):
  """I(A; B) of a Gaussian vector with covariance ``cov``, closed form.

  I = ½ [log det Σ_AA + log det Σ_BB − log det Σ_[A,B]], where Σ_[A,B] is
  the covariance of A and B together. The sub-matrix on A ∪ B is first
  scaled to a correlation matrix (MI is invariant to per-variable scaling):
  the three log-determinants are then O(I) rather than O(D · log scale), so
  their difference keeps float32's absolute accuracy (~1e-6 nats for
  well-conditioned Σ) instead of losing digits to cancellation.

  Precision: computed in ``cov``'s floating dtype as jax holds it —
  float32 unless ``jax_enable_x64`` is on and ``cov`` is float64. In float32
  the result degrades as det Σ_[A,B] / (det Σ_AA det Σ_BB) approaches
  float32's epsilon (about 1.2e-7; e.g. |ρ| > 0.9999 for two scalars, MI
  > ~8 nats); use float64 there.

  Args:
    cov: ``f[D, D]`` symmetric covariance, positive definite on A ∪ B
      (variables outside A ∪ B are ignored).
    idx_a: static indices of A in ``[0, D)`` (an int, a list/tuple/range or
      an integer NumPy array).
    idx_b: static indices of B, disjoint from ``idx_a``.
    base: ``None`` for nats, 2 for bits.

  Returns:
    ``f32[]`` (``f64[]`` under x64 with float64 ``cov``), >= 0 up to
    rounding. ``jax.vmap`` over a stack of covariances works (value checks
    then run under ``ntdh_jax.checked`` only).

  Raises:
    ValueError: naming the argument: ``cov`` not square, not finite, not
      symmetric or not positive definite on A ∪ B; an index set empty,
      out of range, repeating an index, or overlapping the other.
    TypeError: ``cov`` not a floating array; index sets not static ints.
  """
  validation.check_square(cov, "cov")
  validation.check_floating(cov, "cov")
  units.check_base(base)
  dim = jnp.shape(cov)[0]
  a = _check_index_set(idx_a, "idx_a", dim)
  b = _check_index_set(idx_b, "idx_b", dim)
  shared = sorted(set(a) & set(b))
  if shared:
    raise ValueError(
        f"idx_a and idx_b must be disjoint (I(A; B) of two different sets of "
        f"variables), both hold {shared}.")
  idx = np.asarray(a + b)
  cov = jnp.asarray(cov)
  sub = cov[np.ix_(idx, idx)]
  _check_covariance(sub)
  scale = jax.lax.rsqrt(jnp.diagonal(sub))
  corr = sub * scale[:, None] * scale[None, :]
  na = len(a)
  sign_a, logdet_a = jnp.linalg.slogdet(corr[:na, :na])
  sign_b, logdet_b = jnp.linalg.slogdet(corr[na:, na:])
  sign_ab, logdet_ab = jnp.linalg.slogdet(corr)
  ok = (sign_a > 0) & (sign_b > 0) & (sign_ab > 0) & jnp.isfinite(logdet_ab)
  validation.require(
      ok, "cov must be positive definite on idx_a + idx_b (the joint "
      "covariance of A and B); its determinant there is not > 0 (sign {}).",
      sign_ab)
  return units.in_base(0.5 * (logdet_a + logdet_b - logdet_ab), base)


def _check_covariance(sub) -> None:
  """Values of the selected block: finite, symmetric, positive diagonal.

  Positive definiteness itself is checked from the determinants' signs.
  Symmetry is to 1e-5 of the largest entry, float32 rounding of a
  covariance computed as XᵀX/n.
  """
  concrete = validation.is_concrete(sub)
  xp = np if concrete else jnp
  v = xp.asarray(sub)
  finite = xp.all(xp.isfinite(v))
  validation.require(finite, "cov must be finite on idx_a + idx_b; it holds "
                     "{} non-finite entries.", xp.sum(~xp.isfinite(v)))
  asym = xp.max(xp.abs(v - v.T))
  validation.require(
      asym <= 1e-5 * xp.max(xp.abs(v)),
      "cov must be symmetric; on idx_a + idx_b its largest |cov - cov.T| is "
      "{:.3g}.", asym)
  low = xp.min(xp.diagonal(v))
  validation.require(
      low > 0, "cov must have a positive variance for every variable in "
      "idx_a + idx_b (positive definite); the smallest is {:.3g}.", low)


def correlation_mi(rho, base: Optional[float] = None):
  """I(X; Y) = −½ log(1 − ρ²) of two jointly Gaussian scalars.

  Computed as −½ log1p(−ρ²), exact for small ρ (where 1 − ρ² rounds to 1).

  Args:
    rho: ``f[...]`` correlation(s) with |ρ| < 1 (a number or an array; may
      be traced).
    base: ``None`` for nats, 2 for bits.

  Returns:
    ``f32[...]``, the shape of ``rho``.

  Raises:
    ValueError: |ρ| >= 1 or not finite (the MI is infinite or undefined).
  """
  units.check_base(base)
  if not isinstance(rho, (int, float, np.ndarray, np.generic, jax.Array)) or (
      isinstance(rho, (bool, np.bool_))):
    raise TypeError(
        f"rho must be a number or an array, got {type(rho).__name__}.")
  rho = jnp.asarray(rho, jnp.result_type(float, rho))
  concrete = validation.is_concrete(rho)
  xp = np if concrete else jnp
  worst = xp.max(xp.abs(xp.asarray(rho))) if rho.size else 0.0
  validation.require(
      xp.all(xp.abs(xp.asarray(rho)) < 1),
      "rho must have |rho| < 1 (a correlation; the MI is infinite at "
      "|rho| = 1), got max |rho| = {:.8g}.", worst)
  return units.in_base(-0.5 * jnp.log1p(-jnp.square(rho)), base)
