"""Per-sample divergences of the Non-target Divergence Hypothesis (NTDH).

With p = softmax(z / T) and k the label of a sample:

* binary target/non-target distributions b = [p_k, 1 - p_k];
* renormalised non-target distributions p̂_i = p_i / (1 - p_k) for i != k;
* TCKL = KL(b_t || b_s), NCKL = KL(p̂_t || p̂_s)  (Zhao et al., DKD, CVPR'22);
* TCJSD = JSD(b_t, b_s), NCJSD = JSD(p̂_t, p̂_s), JSD(a, b) = ½KL(a||m) +
  ½KL(b||m), m = (a + b) / 2, natural log, so each lies in [0, ln 2]
  (Chen et al., NTDH, Eqs. 5 and 19).

Every sample satisfies KL(p_t || p_s) = TCKL + (1 - p_k^t) · NCKL.

The paper's Eqs. 5/19 print only the target term of the binary divergences;
the two-term binary form used here is the one consistent with its Eq. 17 and
with DKD. ``form="reference_code"`` reproduces the authors' code instead:
JSD computed as ½[KL(M||P) + KL(M||Q)] (the argument order of torch's
``kl_div``), every metric multiplied by T² and averaged over the batch into a
scalar. Their code never divides the logits by T before this metric and only
ever calls it with T = 1; here the logits are divided by T in both forms.

All functions are pure and take keyword arguments
``teacher_logits: f[N, C], student_logits: f[N, C], labels: int[N]`` and a
scalar ``temperature`` (may be a traced array, so sweeps can vmap it). Inputs
of any floating dtype are computed in float32. Everything is done in log
space: logits of magnitude 1e4 and probabilities that underflow to exactly 0
give finite values and finite gradients.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntdh_jax import validation

FORMS = ("paper", "reference_code")
_LOG2 = 0.6931471805599453
_BIG = 1e30  # far below any logit, far above float32's exp range
_TINY = float(jnp.finfo(jnp.float32).tiny)


class Divergences(NamedTuple):
  """All NTDH metrics of a batch, each ``f32[N]`` (scalars in reference form)."""
  kl: jax.Array
  tckl: jax.Array
  nckl: jax.Array
  tcjsd: jax.Array
  ncjsd: jax.Array
  teacher_nontarget_mass: jax.Array  # 1 - p_k^t, the NCKL weight in the identity


class _LogParts(NamedTuple):
  """Log-space pieces of one logit array, from a single exp pass."""
  log_pk: jax.Array        # [N] log p_k
  log_1mpk: jax.Array      # [N] log(1 - p_k)
  log_phat: jax.Array      # [N, C] log p̂_i (meaningless at i = k)
  phat: jax.Array          # [N, C] p̂_i, exactly 0 at i = k


def _nontarget(labels, shape) -> jax.Array:
  """``f32[N, C]``: 0 at each row's label, 1 elsewhere.

  Built with arithmetic (min(|i − k|, 1)) rather than a boolean select: XLA's
  CPU backend fuses arithmetic into the row reductions that consume it but
  materialises a select first, which cost 2–3× the whole computation here.
  """
  classes = jax.lax.broadcasted_iota(jnp.float32, shape, 1)
  return jnp.minimum(jnp.abs(classes - labels[:, None].astype(jnp.float32)),
                     1.0)


def _log_parts(z: jax.Array, labels: jax.Array, keep: jax.Array) -> _LogParts:
  # One exp pass shifted by the largest *non-target* logit: the non-target
  # normaliser is then exact even when p_k rounds to 1, and p_k follows per
  # row from d = z_k − lse_nt as sigmoid(d). Staying in the shifted domain
  # keeps log p̂ consistent with p̂ to float32 rounding of O(1) numbers,
  # whatever the logits' magnitude. The target is pushed down by _BIG (not
  # -inf, so no inf − inf) and its exp underflows to exactly 0.
  z_nt = z - (1.0 - keep) * _BIG
  shift = jax.lax.stop_gradient(jnp.max(z_nt, axis=-1, keepdims=True))
  shifted = z - shift
  e = jnp.exp(shifted - (1.0 - keep) * _BIG)
  s = jnp.sum(e, axis=-1, keepdims=True)
  # Per-row statistics are computed once and stored: fused into the final
  # reductions, XLA would recompute them for every element (O(C²) per row).
  shift, s = jax.lax.optimization_barrier((shift, s))
  shifted = z - shift
  e = jnp.exp(shifted - (1.0 - keep) * _BIG)
  log_s = jnp.log(s)
  # Gathered from z itself: gathering from `shifted` would force XLA to
  # write the whole shifted array to memory first.
  d = (jnp.take_along_axis(z, labels[:, None], axis=-1) - shift) - log_s
  return _LogParts(
      log_pk=jax.nn.log_sigmoid(d[:, 0]),
      log_1mpk=jax.nn.log_sigmoid(-d[:, 0]),
      log_phat=shifted - log_s,
      phat=e / s)


def _row_sum(x):
  """Sum over classes, kept out of any later elementwise fusion.

  XLA's CPU backend runs a row reduction followed by arithmetic on its
  result (e.g. ``0.5 * sum``) through a fused kernel that was 7–10× slower
  than the reduction alone in benchmarks/divergences.py; the barrier keeps
  the fast kernel.
  """
  return jax.lax.optimization_barrier(jnp.sum(x, axis=-1))


def _log_mid(log_a, log_b):
  """log((a + b) / 2) from log a and log b."""
  return jnp.logaddexp(log_a, log_b) - _LOG2


def _binary_kl(log_pa, log_1ma, log_pb, log_1mb):
  return (jnp.exp(log_pa) * (log_pa - log_pb)
          + jnp.exp(log_1ma) * (log_1ma - log_1mb))


def _binary_jsd(t: _LogParts, s: _LogParts, reference: bool):
  log_m = _log_mid(t.log_pk, s.log_pk)
  log_1mm = _log_mid(t.log_1mpk, s.log_1mpk)
  if reference:  # ½[KL(M||T) + KL(M||S)]
    return 0.5 * (_binary_kl(log_m, log_1mm, t.log_pk, t.log_1mpk)
                  + _binary_kl(log_m, log_1mm, s.log_pk, s.log_1mpk))
  return 0.5 * (_binary_kl(t.log_pk, t.log_1mpk, log_m, log_1mm)
                + _binary_kl(s.log_pk, s.log_1mpk, log_m, log_1mm))


def _nontarget_kl_jsd(t: _LogParts, s: _LogParts, reference: bool):
  """(NCKL, NCJSD) per row from one pass over the classes.

  Both sums come out of a single stacked reduction, so p̂_t and p̂_s are
  exponentiated once rather than once per metric. p̂ is exactly 0 at the
  target, so the sums run over i != k.
  """
  m = 0.5 * (t.phat + s.phat)
  # Every term is weighted by p̂ or m, exactly 0 at the target and wherever
  # both probabilities underflow; the floor on m only stops log 0 from
  # turning such a 0 weight into 0 · inf = nan (in value or gradient), and
  # changes no term whose weight is not 0 by more than ~1e-36.
  log_m = jnp.log(jnp.maximum(m, _TINY))
  if reference:
    jsd_terms = m * (2.0 * log_m - t.log_phat - s.log_phat)
  else:
    jsd_terms = (t.phat * (t.log_phat - log_m) + s.phat * (s.log_phat - log_m))
  kl_terms = t.phat * (t.log_phat - s.log_phat)
  sums = _row_sum(jnp.stack([kl_terms, 0.5 * jsd_terms], axis=1))
  return sums[:, 0], sums[:, 1]


def _prepare(teacher_logits, student_logits, labels, temperature, min_classes):
  validation.check_logits_pair(teacher_logits, student_logits,
                               min_classes=min_classes)
  n, c = jnp.shape(teacher_logits)
  validation.check_labels(labels, n, c)
  validation.check_positive(temperature, "temperature")
  t = jnp.asarray(temperature, jnp.float32)
  zt = jnp.asarray(teacher_logits, jnp.float32) / t
  zs = jnp.asarray(student_logits, jnp.float32) / t
  return zt, zs, jnp.asarray(labels), t


def _reduce(values: Divergences, t, form: str) -> Divergences:
  if form == "paper":
    return values
  if form == "reference_code":
    return Divergences(*(jnp.mean(v) * t**2 for v in values[:5]),
                       jnp.mean(values.teacher_nontarget_mass))
  raise ValueError(f"form must be one of {FORMS}, got {form!r}.")


def _decompose(zt, zs, labels, form: str) -> Divergences:
  reference = form == "reference_code"
  keep = _nontarget(labels, zt.shape)
  t = _log_parts(zt, labels, keep)
  s = _log_parts(zs, labels, keep)
  tckl = _binary_kl(t.log_pk, t.log_1mpk, s.log_pk, s.log_1mpk)
  nckl, ncjsd = _nontarget_kl_jsd(t, s, reference)
  mass = jnp.exp(t.log_1mpk)
  return Divergences(
      kl=tckl + mass * nckl,
      tckl=tckl,
      nckl=nckl,
      tcjsd=_binary_jsd(t, s, reference),
      ncjsd=ncjsd,
      teacher_nontarget_mass=mass)


def decompose(*, teacher_logits, student_logits, labels, temperature=1.0,
              form: str = "paper") -> Divergences:
  """All NTDH metrics from one softmax pass per logit array.

  Args:
    teacher_logits: ``f[N, C]``, C >= 3.
    student_logits: ``f[N, C]``.
    labels: ``int[N]`` in ``[0, C)``.
    temperature: scalar > 0; logits are divided by it.
    form: ``"paper"`` (per-sample, default) or ``"reference_code"`` (the
      authors' JSD argument order, ·T², batch mean → scalars).

  Returns:
    ``Divergences`` of ``f32[N]`` arrays; ``kl`` here is assembled from the
    identity KL = TCKL + (1 - p_k^t)·NCKL, which costs nothing extra.
  """
  zt, zs, labels, t = _prepare(teacher_logits, student_logits, labels,
                               temperature, min_classes=3)
  return _reduce(_decompose(zt, zs, labels, form), t, form)


def kl(*, teacher_logits, student_logits, labels=None, temperature=1.0):
  """KL(p_t || p_s) per sample, ``f32[N]``, computed directly over all C.

  ``labels`` is accepted (and checked if given) so every metric here shares a
  signature; the full KL does not depend on it.
  """
  validation.check_logits_pair(teacher_logits, student_logits)
  n, c = jnp.shape(teacher_logits)
  if labels is not None:
    validation.check_labels(labels, n, c)
  validation.check_positive(temperature, "temperature")
  t = jnp.asarray(temperature, jnp.float32)
  log_pt = jax.nn.log_softmax(jnp.asarray(teacher_logits, jnp.float32) / t)
  log_ps = jax.nn.log_softmax(jnp.asarray(student_logits, jnp.float32) / t)
  return jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)


def _binary_only(teacher_logits, student_logits, labels, temperature):
  zt, zs, labels, _ = _prepare(teacher_logits, student_logits, labels,
                               temperature, min_classes=2)
  keep = _nontarget(labels, zt.shape)
  return _log_parts(zt, labels, keep), _log_parts(zs, labels, keep)


def tckl(*, teacher_logits, student_logits, labels, temperature=1.0):
  """Target-class KL, KL([p_k, 1-p_k]_t || [p_k, 1-p_k]_s), ``f32[N]``."""
  t, s = _binary_only(teacher_logits, student_logits, labels, temperature)
  return _binary_kl(t.log_pk, t.log_1mpk, s.log_pk, s.log_1mpk)


def tcjsd(*, teacher_logits, student_logits, labels, temperature=1.0):
  """Target-class JSD of the binary distributions, ``f32[N]`` in [0, ln 2]."""
  t, s = _binary_only(teacher_logits, student_logits, labels, temperature)
  return _binary_jsd(t, s, reference=False)


def nckl(*, teacher_logits, student_logits, labels, temperature=1.0):
  """Non-target KL, KL(p̂_t || p̂_s) over the C-1 other classes, ``f32[N]``."""
  return decompose(teacher_logits=teacher_logits, student_logits=student_logits,
                   labels=labels, temperature=temperature).nckl


def ncjsd(*, teacher_logits, student_logits, labels, temperature=1.0):
  """Non-target JSD(p̂_t, p̂_s), ``f32[N]`` in [0, ln 2]."""
  return decompose(teacher_logits=teacher_logits, student_logits=student_logits,
                   labels=labels, temperature=temperature).ncjsd
