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
``kl_div``), every metric multiplied by T² and averaged over the batch (its
valid entries, given ``where``) into a scalar. Their code never divides the
logits by T before this metric and only ever calls it with T = 1; here the
logits are divided by T in both forms.

All functions are pure and take keyword arguments
``teacher_logits: f[..., C], student_logits: f[..., C], labels: int[...]``
(arrays, not lists), a finite ``temperature`` > 0 (may be a traced array, so
sweeps can vmap it; checked then under ``validation.checked``) and an
optional ``where: bool[...]`` marking the valid entries (optax's
convention). The leading shape is anything: ``[N]`` for a classification
batch, ``[B, H, W]`` for per-pixel divergences of a segmentation batch.
Per-example outputs have the leading shape; entries with ``where=False``
are exactly 0, their labels may be anything (an ignore label 255 ≥ C) and
give neither an error nor NaN/Inf in values or gradients. Inputs of any
floating dtype are computed in float32. Everything is done in log space:
logits of magnitude 1e4 and probabilities that underflow to exactly 0 give
finite values and finite gradients.

Internally every leading shape is flattened to ``[N, C]`` and the result
reshaped back, so a ``[..., C]`` result is bit for bit the ``[N, C]`` result
of the flattened arrays, and ``[N, C]`` inputs without ``where`` take exactly
the arithmetic they always took.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ntdh_jax import validation

FORMS = ("paper", "reference_code", "reference_order")
_LOG2 = 0.6931471805599453
_BIG = 1e30  # far below any logit, far above float32's exp range
_TINY = float(jnp.finfo(jnp.float32).tiny)


class Divergences(NamedTuple):
  """All NTDH metrics of a batch, each ``f32[...]`` (scalars in reference
  form)."""
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


class _Batch(NamedTuple):
  """Validated inputs flattened to ``[N, C]`` / ``[N]``."""
  zt: jax.Array                # f32[N, C] teacher logits / T
  zs: jax.Array                # f32[N, C] student logits / T
  labels: jax.Array            # int[N], a safe class 0 where not valid
  t: jax.Array                 # f32[] temperature
  shape: tuple                 # the leading (batch) shape
  where: Optional[jax.Array]   # bool[N] or None


def _flat_logits(logits, t):
  """``f[..., C]`` logits as ``f32[N, C] / T``.

  Flattening is a reshape, not arithmetic, and a no-op on ``[N, C]``: every
  leading shape goes through the same ``[N, C]`` computation, bit for bit.
  """
  c = jnp.shape(logits)[-1]
  return jnp.reshape(jnp.asarray(logits, jnp.float32), (-1, c)) / t


def _flat_where(where):
  return None if where is None else jnp.reshape(jnp.asarray(where), (-1,))


def _check(teacher_logits, student_logits, labels, temperature, where,
           min_classes: int = 2) -> tuple[int, ...]:
  """Checks every argument (``labels=None``: none given); returns the
  leading shape ``[...]``."""
  validation.check_logits_pair(teacher_logits, student_logits,
                               min_classes=min_classes)
  shape = tuple(jnp.shape(teacher_logits)[:-1])
  validation.check_where(where, shape)
  if labels is not None:
    validation.check_labels(labels, shape, jnp.shape(teacher_logits)[-1],
                            where=where)
  validation.check_positive(temperature, "temperature")
  validation.check_logit_span(teacher_logits, temperature, "teacher_logits")
  validation.check_logit_span(student_logits, temperature, "student_logits")
  return shape


def _prepare(teacher_logits, student_logits, labels, temperature, where,
             min_classes) -> _Batch:
  validation.check_array(labels, "labels")
  shape = _check(teacher_logits, student_logits, labels, temperature, where,
                 min_classes)
  t = jnp.asarray(temperature, jnp.float32)
  zt, zs = _flat_logits(teacher_logits, t), _flat_logits(student_logits, t)
  flat_where = _flat_where(where)
  labels = jnp.reshape(jnp.asarray(labels), (-1,))
  if flat_where is not None:
    # Ignored entries may carry any label (255 >= C): gathering with it
    # would read out of range, so they are computed with class 0 and their
    # outputs discarded by _unflatten.
    labels = jnp.where(flat_where, labels, 0)
  return _Batch(zt, zs, labels, t, shape, flat_where)


def _unflatten(value, shape, where):
  """A per-example ``[N]`` value back to the batch shape, 0 where invalid.

  ``jnp.where`` (not a product) so the ignored entries' cotangent is
  exactly 0 and nothing computed there reaches values or gradients.
  """
  if where is not None:
    value = jnp.where(where, value, 0.0)
  return jnp.reshape(value, shape)


def _mean(value, where):
  """Mean over the valid entries; 0 when there are none."""
  if where is None:
    return jnp.mean(value)
  count = jnp.sum(where, dtype=jnp.float32)
  return jnp.sum(jnp.where(where, value, 0.0)) / jnp.maximum(count, 1.0)


def _reduce(values: Divergences, batch: _Batch, form: str) -> Divergences:
  if form != "reference_code":  # per sample
    return Divergences(*(_unflatten(v, batch.shape, batch.where)
                         for v in values))
  t = batch.t
  return Divergences(*(_mean(v, batch.where) * t**2 for v in values[:5]),
                     _mean(values.teacher_nontarget_mass, batch.where))


def _decompose(zt, zs, labels, form: str) -> Divergences:
  reference = form != "paper"  # the authors' JSD argument order
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
              where=None, form: str = "paper") -> Divergences:
  """All NTDH metrics from one softmax pass per logit array.

  Args:
    teacher_logits: ``f[..., C]``, C >= 3.
    student_logits: ``f[..., C]``.
    labels: ``int[...]`` in ``[0, C)`` where valid.
    temperature: a finite number > 0; logits are divided by it.
    where: optional ``bool[...]``, False marks entries to ignore (their
      outputs are 0, their labels unchecked).
    form: ``"paper"`` (per-sample, default), ``"reference_code"`` (the
      authors' JSD argument order, ·T², mean over the valid entries →
      scalars) or ``"reference_order"`` (their JSD argument order, per
      sample).

  Returns:
    ``Divergences`` of ``f32[...]`` arrays; ``kl`` here is assembled from the
    identity KL = TCKL + (1 - p_k^t)·NCKL, which costs nothing extra.
  """
  validation.check_choice(form, "form", FORMS)
  batch = _prepare(teacher_logits, student_logits, labels, temperature, where,
                   min_classes=3)
  return _reduce(_decompose(batch.zt, batch.zs, batch.labels, form), batch,
                 form)


def kl(*, teacher_logits, student_logits, labels=None, temperature=1.0,
       where=None):
  """KL(p_t || p_s) per sample, ``f32[...]``, computed directly over all C.

  ``labels`` is accepted (and checked if given) so every metric here shares a
  signature; the full KL does not depend on it.
  """
  shape = _check(teacher_logits, student_logits, labels, temperature, where)
  t = jnp.asarray(temperature, jnp.float32)
  log_pt = jax.nn.log_softmax(_flat_logits(teacher_logits, t))
  log_ps = jax.nn.log_softmax(_flat_logits(student_logits, t))
  return _unflatten(jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1),
                    shape, _flat_where(where))


def _binary_only(teacher_logits, student_logits, labels, temperature, where):
  batch = _prepare(teacher_logits, student_logits, labels, temperature, where,
                   min_classes=2)
  keep = _nontarget(batch.labels, batch.zt.shape)
  return (_log_parts(batch.zt, batch.labels, keep),
          _log_parts(batch.zs, batch.labels, keep), batch)


def tckl(*, teacher_logits, student_logits, labels, temperature=1.0,
         where=None):
  """Target-class KL, KL([p_k, 1-p_k]_t || [p_k, 1-p_k]_s), ``f32[...]``."""
  t, s, batch = _binary_only(teacher_logits, student_logits, labels,
                             temperature, where)
  return _unflatten(_binary_kl(t.log_pk, t.log_1mpk, s.log_pk, s.log_1mpk),
                    batch.shape, batch.where)


def tcjsd(*, teacher_logits, student_logits, labels, temperature=1.0,
          where=None):
  """Target-class JSD of the binary distributions, ``f32[...]`` in [0, ln 2]."""
  t, s, batch = _binary_only(teacher_logits, student_logits, labels,
                             temperature, where)
  return _unflatten(_binary_jsd(t, s, reference=False), batch.shape,
                    batch.where)


def nckl(*, teacher_logits, student_logits, labels, temperature=1.0,
         where=None):
  """Non-target KL, KL(p̂_t || p̂_s) over the C-1 other classes, ``f32[...]``.
  """
  return decompose(teacher_logits=teacher_logits, student_logits=student_logits,
                   labels=labels, temperature=temperature, where=where).nckl


def ncjsd(*, teacher_logits, student_logits, labels, temperature=1.0,
          where=None):
  """Non-target JSD(p̂_t, p̂_s), ``f32[...]`` in [0, ln 2]."""
  return decompose(teacher_logits=teacher_logits, student_logits=student_logits,
                   labels=labels, temperature=temperature, where=where).ncjsd
