"""Contrastive Representation Distillation (Tian et al., ICLR'20).

CRD embeds student and teacher features (``CRDEmbed``: linear head, then L2
normalisation) and trains the student embedding to pick out the teacher
embedding of the same example among K negatives, and vice versa, by NCE
against two memory banks of past embeddings (one per network).

The banks and the NCE normalisation constants are explicit functional state,
``CRDState``: ``crd_loss`` returns the loss and the next state, so training
threads it through ``lax.scan`` and ``vmap`` over runs like any other carry.

Defaults follow RepDistiller (``train_student.py``, ``crd/memory.py``), the
authors' code: ``feat_dim`` 128, ``nce_k`` 16384 negatives, NCE temperature
``nce_t`` 0.07, memory momentum ``nce_m`` 0.5; mdistiller uses the same.

With s_i = exp(⟨v_i, m_j⟩ / τ) / Z for an anchor embedding v and bank rows
m_j (j the positive, then K negatives), noise probability P_n = 1/n_data and
ε = 1e-7 (as RepDistiller), the loss of one side is

  −1/N Σ_i [ log(s_i0 / (s_i0 + K·P_n + ε))
             + Σ_{k≥1} log(K·P_n / (s_ik + K·P_n + ε)) ]

(CRD paper Eq. 18), evaluated here in log space; the returned loss is the sum
of the student-anchor side (student embedding vs the teacher bank) and the
teacher-anchor side. Each Z is set once, on the first call, to
mean(exp-scores)·n_data, then frozen, as in the original.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntdh_jax import validation
from ntdh_jax.losses.feature import _l2_normalize

_UNSET = -1.0  # Z < 0 means "not yet set", the original's sentinel
# Examples whose K+1 bank rows are gathered at once by _contrast_scores.
_SCORE_BLOCK = 16
_NCE_EPS = 1e-7  # RepDistiller's crd/criterion.py


class CRDState(NamedTuple):
  """CRD memory banks and NCE normalisers (a pytree; thread it through scan).

  Attributes:
    student_memory: ``f32[n_data, feat_dim]``, past student embeddings (the
      original's ``memory_v1``); the teacher anchor is scored against it.
    teacher_memory: ``f32[n_data, feat_dim]``, past teacher embeddings
      (``memory_v2``); the student anchor is scored against it.
    z_student: ``f32[]``, normaliser of the student-anchor scores; < 0 until
      the first ``crd_loss`` call sets it.
    z_teacher: ``f32[]``, normaliser of the teacher-anchor scores.
  """
  student_memory: jax.Array
  teacher_memory: jax.Array
  z_student: jax.Array
  z_teacher: jax.Array


class CRDEmbed(nn.Module):
  """CRD's embedding head: flatten, linear to ``feat_dim``, L2-normalise.

  ``f[N, ...] → f[N, feat_dim]`` of unit rows. One head per network; the
  teacher's head is trained with the student even though the teacher is
  frozen. The original divides by the plain norm; here the norm is clamped at
  1e-12 (torch's ``F.normalize``) so a zero output cannot give NaN.

  Attributes:
    feat_dim: embedding width, default 128 (RepDistiller ``--feat_dim``).
  """
  feat_dim: int = 128

  @nn.compact
  def __call__(self, features):
    x = jnp.reshape(features, (jnp.shape(features)[0], -1))
    return _l2_normalize(nn.Dense(self.feat_dim)(x))


def crd_init(key, n_data: int, feat_dim: int = 128) -> CRDState:
  """Fresh CRD state: both banks uniform in ±1/sqrt(feat_dim/3), Z unset.

  The bank initialisation is the original's (``crd/memory.py``); rows start
  unnormalised and become unit vectors as they are first updated.

  Args:
    key: PRNG key.
    n_data: training-set size (one bank row per example).
    feat_dim: embedding width, default 128.

  Returns:
    ``CRDState``.
  """
  validation.check_positive_int(n_data, "n_data")
  validation.check_positive_int(feat_dim, "feat_dim")
  stdv = 1.0 / math.sqrt(feat_dim / 3.0)
  k_student, k_teacher = jax.random.split(key)

  def bank(k):
    return jax.random.uniform(k, (n_data, feat_dim), jnp.float32, -stdv, stdv)

  unset = jnp.asarray(_UNSET, jnp.float32)
  return CRDState(bank(k_student), bank(k_teacher), unset, unset)


def _check_crd_inputs(state, student_embed, teacher_embed, indices,
                      contrast_indices):
  validation.check_type(state, CRDState, "state", "a CRDState from crd_init")
  n_data, feat_dim = jnp.shape(state.student_memory)
  validation.check_embedding_pair(student_embed, teacher_embed, feat_dim)
  validation.check_contrast_indices(indices, contrast_indices,
                                    jnp.shape(student_embed)[0], n_data)


def _normaliser(z, scores, n_data: int):
  """The stored Z, or on the first call mean(exp(scores))·n_data."""
  log_mean = jax.nn.logsumexp(scores) - math.log(scores.size)
  first = jnp.exp(log_mean + math.log(n_data))
  # Z is a constant of the objective (the original stores it as a float).
  return jax.lax.stop_gradient(jnp.where(z < 0, first, z))


def _nce(log_probs, n_data: int):
  """CRD's NCE loss (Eq. 18) from log scores ``[N, K+1]``, positive first."""
  num_negatives = log_probs.shape[1] - 1
  log_noise = math.log(num_negatives / n_data)  # log(K · P_n)
  log_denom = jnp.logaddexp(log_probs,
                            math.log(num_negatives / n_data + _NCE_EPS))
  log_d1 = log_probs[:, 0] - log_denom[:, 0]
  log_d0 = log_noise - log_denom[:, 1:]
  return -(jnp.sum(log_d1) + jnp.sum(log_d0)) / log_probs.shape[0]


def _contrast_scores(memory, contrast_indices, embed):
  """``f32[N, K+1]``: each embedding's dot products with its K+1 bank rows.

  The gathered rows would be ``f32[N, K+1, feat_dim]`` (34 MB at N = 64,
  K = 1024, per bank and run; 1.1 GB for a vmapped block of 16 runs with
  both banks, kept from the forward pass for the backward one). Gathered
  ``_SCORE_BLOCK`` examples at a time and gathered again in the backward
  pass (``jax.checkpoint``), they never exist at once. Each score is still
  one example's dot products and each gradient row one example's sum over
  its own K+1 rows, so the values are the single gather's bit for bit
  (checked on the digits study's CRD runs: identical results and outputs).
  """
  return jax.lax.map(
      jax.checkpoint(lambda a: jnp.einsum("kd,d->k", memory[a[0]], a[1])),
      (contrast_indices, embed), batch_size=_SCORE_BLOCK)


def _update_memory(memory, indices, embed, momentum):
  rows = momentum * memory[indices] + (1.0 - momentum) * embed
  return memory.at[indices].set(
      rows / jnp.linalg.norm(rows, axis=-1, keepdims=True))


def crd_loss(state: CRDState, student_embed, teacher_embed, indices,
             contrast_indices, nce_t=0.07, momentum=0.5):
  """CRD loss for one batch and the memory state after it.

  Scores use the banks as they were before this batch; then each bank's rows
  ``indices`` become normalise(momentum·row + (1 − momentum)·embedding). If a
  batch repeats an index, one of its updates wins (as torch's
  ``index_copy_``). Gradients reach the embeddings, never the banks or Z.

  Args:
    state: ``CRDState`` from ``crd_init`` or a previous call.
    student_embed: ``f[N, feat_dim]``, ``CRDEmbed`` output for the student.
    teacher_embed: ``f[N, feat_dim]``, ``CRDEmbed`` output for the teacher.
    indices: ``int[N]``, the batch's dataset indices in ``[0, n_data)``.
    contrast_indices: ``int[N, K+1]``, row i = [indices[i], K negatives]
      (``crd_contrast_indices``).
    nce_t: NCE temperature τ > 0, finite, default 0.07 (may be traced).
    momentum: bank momentum in [0, 1), default 0.5 (may be traced).

  Returns:
    ``(loss f32[], new_state)``.
  """
  _check_crd_inputs(state, student_embed, teacher_embed, indices,
                    contrast_indices)
  validation.check_positive(nce_t, "nce_t")
  validation.check_fraction(momentum, "momentum")
  n_data = state.student_memory.shape[0]
  s = jnp.asarray(student_embed, jnp.float32)
  t = jnp.asarray(teacher_embed, jnp.float32)
  student_memory = jax.lax.stop_gradient(state.student_memory)
  teacher_memory = jax.lax.stop_gradient(state.teacher_memory)
  # Each side anchors one network's embedding against the other's bank.
  scores_s = _contrast_scores(teacher_memory, contrast_indices, s) / nce_t
  scores_t = _contrast_scores(student_memory, contrast_indices, t) / nce_t
  z_s = _normaliser(state.z_student, scores_s, n_data)
  z_t = _normaliser(state.z_teacher, scores_t, n_data)
  loss = (_nce(scores_s - jnp.log(z_s), n_data)
          + _nce(scores_t - jnp.log(z_t), n_data))
  momentum = jnp.asarray(momentum, jnp.float32)
  new_state = CRDState(
      _update_memory(student_memory, indices, jax.lax.stop_gradient(s),
                     momentum),
      _update_memory(teacher_memory, indices, jax.lax.stop_gradient(t),
                     momentum),
      z_s, z_t)
  return loss, new_state


def crd_contrast_indices(key, labels, num_negatives: int,
                         indices: Optional[jax.Array] = None) -> jax.Array:
  """Draws CRD's contrast indices: the positive, then K other-class negatives.

  Row i is ``[indices[i], j_1, ..., j_K]`` with each j drawn uniformly, with
  replacement, from the dataset examples whose label differs from
  ``labels[indices[i]]`` (CRD's "exact" mode). RepDistiller draws without
  replacement when K does not exceed that class's negatives; drawing with
  replacement costs O(N·K) instead of O(N·n_data), needs no value-dependent
  branch under jit, and differs negligibly for K ≪ n_data.

  Args:
    key: PRNG key.
    labels: ``int[n_data]``, labels of the whole training set (>= 2
      classes).
    num_negatives: K, an int >= 1 (static: it sets the output shape;
      RepDistiller's ``--nce_k`` default is 16384).
    indices: ``int[N]``, the batch's dataset indices; default every example,
      ``arange(n_data)``.

  Returns:
    ``int32[N, K+1]``.
  """
  validation.check_dataset_labels(labels)
  validation.check_positive_int(num_negatives, "num_negatives")
  n_data = jnp.shape(labels)[0]
  if indices is None:
    indices = jnp.arange(n_data)
  validation.check_indices(indices, "indices", (None,), n_data)
  labels, indices = jnp.asarray(labels), jnp.asarray(indices)
  # Sorting by label makes each class one contiguous block, so "any example
  # outside my block" is a uniform draw from n_data − count that skips it.
  order = jnp.argsort(labels, stable=True)
  sorted_labels = labels[order]
  own = labels[indices]
  start = jnp.searchsorted(sorted_labels, own, side="left")
  count = jnp.searchsorted(sorted_labels, own, side="right") - start
  draws = jax.random.randint(key, (own.shape[0], num_negatives), 0,
                             (n_data - count)[:, None])
  positions = jnp.where(draws < start[:, None], draws, draws + count[:, None])
  negatives = order[positions]
  return jnp.concatenate([indices[:, None], negatives],
                         axis=1).astype(jnp.int32)
