"""CMCD's losses: cross-modality contrastive distillation without labels.

Lin, Liu, Xu, Gao, Fu, Yao, "A Generalization Theory of Cross-Modality
Distillation with Contrastive Learning", arXiv 2405.03355 (on OpenReview as
"Generalizable Cross-Modality Distillation with Contrastive Learning"). A
source encoder (modality A: images) is pre-trained by self-supervised
contrastive learning (``simclr``), frozen, and distilled into a target
encoder (modality B: sketches, depth maps, audio) on a small set of paired,
unlabelled examples, by **either** ``cmd`` or ``cmc``. The paper compares
them with label-free alignment of the paired features, ``align_l2`` and
``align_cosine``.

The paper has no public code and its equations could not be checked; every
formula here is **reconstructed** from its abstract and reviews (reviewers:
"CMD is a straightforward adaptation of self-supervised distillation" [SEED:
Fang et al., "SEED: Self-supervised Distillation for Visual Representation",
ICLR'21] and "CMC is exactly the CLIP loss" [Radford et al., "Learning
Transferable Visual Models From Natural Language Supervision", ICML'21]).
The defaults are SEED's, CLIP's and SimCLR's [Chen et al., "A Simple
Framework for Contrastive Learning of Visual Representations", ICML'20]
values; CMCD's own are unknown.

Conventions. Embeddings are ``f[N, D]`` rows of N paired examples
(``target_emb`` z_B from the trained target encoder, ``source_emb`` z_A from
the frozen source encoder) and are computed in float32. The similarity is
s(u, v) = uᵀv of L2-normalised rows: ``simclr``, ``cmd``, ``cmc`` and
``align_cosine`` normalise inside (x / max(‖x‖, 1e-12), as torch's
``F.normalize``), ``align_l2`` compares the raw embeddings. The source is
frozen: every distillation loss applies ``stop_gradient`` to ``source_emb``
(and to CMD's anchors), so no gradient reaches it, whatever the caller
differentiates.

``where`` (optional ``bool[N]``, optax's convention: True = the example
counts) marks padding. A masked example's rows are replaced by zeros before
anything is computed, so padding may hold anything (NaN included) without
reaching the valid examples' values or gradients; its loss is 0, the
``"mean"`` reduction averages over the valid examples, and in the
contrastive losses (``cmd``, ``cmc``) it is neither an anchor nor a
candidate of any other example.

Every function is pure and runs under ``jit``, ``vmap`` and ``lax.scan``;
CMD's FIFO queue of past source embeddings is explicit state (``CMDQueue``)
that training threads through its loop. Arguments are validated at the
boundary (``ntdh_jax.validation``); temperatures may be traced, and are then
checked under ``ntdh_jax.checked``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import validation
from ntdh_jax.losses.feature import _l2_normalize
from ntdh_jax.losses.logit import reduce_loss

# optax.losses.cosine_distance clips the squared norm at ``epsilon``: 1e-24
# is _l2_normalize's clamp of the norm at 1e-12, so both give 1 − ⟨x̂, ŷ⟩ with
# the same convention at 0 (the default 0 gives 0/0 = NaN for a zero row).
_COSINE_EPS = 1e-24


# -- validation ----------------------------------------------------------------


def _check_embedding(x, name: str):
  validation.check_rank(x, name, (2,), "[N, D]")
  validation.check_floating(x, name)


def _check_pair(target_emb, source_emb, *, min_examples: int = 1,
                names=("target_emb", "source_emb")):
  """Two floating ``[N, D]`` embeddings of N >= ``min_examples`` pairs."""
  for name, x in zip(names, (target_emb, source_emb)):
    _check_embedding(x, name)
  (n_t, d_t), (n_s, d_s) = jnp.shape(target_emb), jnp.shape(source_emb)
  if n_t != n_s:
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same batch size N (row i "
        f"of each is one pair), got {n_t} and {n_s}.")
  if d_t != d_s:
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same embedding width D "
        f"(they are compared by inner products), got {d_t} and {d_s}.")
  if n_t < min_examples:
    raise ValueError(
        f"{names[0]} has N = {n_t} examples; this loss needs N >= "
        f"{min_examples}.")
  if d_t == 0:
    raise ValueError(f"{names[0]} has D = 0 features; need D >= 1.")


def _check_loss_args(target_emb, source_emb, where, reduction, *,
                     min_examples: int = 1):
  validation.check_reduction(reduction)
  _check_pair(target_emb, source_emb, min_examples=min_examples)
  validation.check_where(where, jnp.shape(target_emb)[:1])


# -- helpers -------------------------------------------------------------------


def _rows(x, where):
  """``x`` in float32 with the rows ``where`` marks False set to 0."""
  x = jnp.asarray(x, jnp.float32)
  if where is None:
    return x
  return jnp.where(jnp.asarray(where)[:, None], x, 0.0)


def _source(source_emb, where):
  """The frozen source side: its rows, no gradient."""
  return jax.lax.stop_gradient(_rows(source_emb, where))


def _valid(where, n: int):
  return jnp.ones((n,), bool) if where is None else jnp.asarray(where)


# -- source pre-training -------------------------------------------------------


def simclr(z1, z2, temperature=0.5) -> jax.Array:
  """SimCLR's NT-Xent loss over the two augmented views of N examples.

  The 2N embeddings [z1; z2] are scored by cosine similarity over
  ``temperature``; each of them is an anchor whose positive is the other view
  of its example and whose negatives are the other 2N − 2 embeddings; the
  loss is the mean over the 2N anchors of −log softmax(positive), Chen et
  al. 2020, Eq. 1. It is computed by ``optax.losses.ntxent`` with labels
  [0..N-1, 0..N-1], which clamps each squared norm at float32's machine
  epsilon: norms below ~3.5e-4 are not normalised to 1 (projection heads'
  outputs are far larger). CMCD's source pre-training (step 1) is
  SimCLR-style; SimCLR rather than MoCo, and its temperature, are
  **reconstructed**. The default 0.5 is SimCLR's CIFAR-10 value.

  Args:
    z1: ``f[N, D]``, the projections of the first views, N >= 2.
    z2: ``f[N, D]``, the second views (row i pairs with z1's row i).
    temperature: τ, a finite number > 0 (may be traced).

  Returns:
    ``f32[]``.
  """
  _check_pair(z1, z2, min_examples=2, names=("z1", "z2"))
  validation.check_positive(temperature, "temperature")
  n = jnp.shape(z1)[0]
  embeddings = jnp.concatenate([jnp.asarray(z1, jnp.float32),
                                jnp.asarray(z2, jnp.float32)])
  labels = jnp.concatenate([jnp.arange(n), jnp.arange(n)])
  return optax.losses.ntxent(embeddings, labels,
                             jnp.asarray(temperature, jnp.float32))


# -- CMD: relational distillation over a set of anchors ------------------------


class CMDQueue(NamedTuple):
  """CMD's FIFO queue of past source embeddings (a pytree: thread it
  through ``lax.scan``, ``vmap`` it over runs).

  Attributes:
    embeddings: ``f32[K, D]``, L2-normalised source embeddings; rows not yet
      written are 0.
    filled: ``bool[K]``, True for rows holding an embedding; pass it to
      ``cmd`` as ``anchor_where``.
    position: ``i32[]``, the next row to write, in ``[0, K)``.
  """
  embeddings: jax.Array
  filled: jax.Array
  position: jax.Array


def cmd_queue_init(size: int, dim: int) -> CMDQueue:
  """An empty CMD queue of ``size`` rows of width ``dim``.

  Args:
    size: K, an int >= 1 (static: it sets the shape). SEED uses 65 536;
      CMCD's queue size is unknown (**reconstructed**: the queue is optional,
      ``cmd`` without ``anchors`` uses the batch alone).
    dim: D, the embedding width.

  Returns:
    ``CMDQueue`` with no filled rows, position 0.
  """
  validation.check_positive_int(size, "size")
  validation.check_positive_int(dim, "dim")
  return CMDQueue(jnp.zeros((size, dim), jnp.float32),
                  jnp.zeros((size,), bool), jnp.zeros((), jnp.int32))


def cmd_queue_push(queue: CMDQueue, source_emb, *, where=None) -> CMDQueue:
  """Enqueues a batch's source embeddings, overwriting the oldest rows.

  The N rows, L2-normalised and without gradient, are written in order at
  rows position, position + 1, ... (mod K), wrapping around, and marked
  filled; position advances by N (mod K). With ``where``, only the valid
  rows are written, in order and contiguously, and position advances by
  their count. Push after computing ``cmd`` on the batch, whose own source
  embeddings are already anchors (as SEED enqueues after its loss).

  Args:
    queue: ``CMDQueue`` from ``cmd_queue_init`` or a previous push.
    source_emb: ``f[N, D]``, N <= K (so one push never overwrites itself).
    where: optional ``bool[N]``; False marks padding, which is not enqueued.

  Returns:
    The next ``CMDQueue``.
  """
  validation.check_type(queue, CMDQueue, "queue",
                        "a CMDQueue from cmd_queue_init")
  size, dim = jnp.shape(queue.embeddings)
  _check_embedding(source_emb, "source_emb")
  n, d = jnp.shape(source_emb)
  if d != dim:
    raise ValueError(
        f"source_emb must have the queue's width D = {dim}, got shape "
        f"{(n, d)}.")
  if n > size:
    raise ValueError(
        f"source_emb has N = {n} rows, more than the queue's K = {size}: one "
        "push would overwrite its own rows; use a queue of size >= N.")
  validation.check_where(where, (n,))
  rows = _l2_normalize(_source(source_emb, where))
  position = jnp.asarray(queue.position, jnp.int32)
  if where is None:
    index = (position + jnp.arange(n, dtype=jnp.int32)) % size
    count = jnp.int32(n)
  else:
    valid = jnp.asarray(where)
    offset = jnp.cumsum(valid, dtype=jnp.int32) - 1
    # Padding goes to row K, out of bounds, which the scatter drops.
    index = jnp.where(valid, (position + offset) % size, size)
    count = jnp.sum(valid, dtype=jnp.int32)
  return CMDQueue(
      jax.lax.stop_gradient(queue.embeddings).at[index].set(rows,
                                                            mode="drop"),
      jnp.asarray(queue.filled, bool).at[index].set(True, mode="drop"),
      (position + count) % size)


def cmd(target_emb, source_emb, anchors=None, *, anchor_where=None,
        tau_source=0.01, tau_target=0.2, where=None,
        reduction: str = "mean") -> jax.Array:
  """CMCD's contrastive distillation loss CMD: SEED-style, **reconstructed**.

  With z_A = normalise(source_emb) (frozen) and z_B = normalise(target_emb),
  the anchors a_j are the batch's z_A followed by the rows of ``anchors``
  (normalised too: a queue's rows already are), and

    p_i(j) = softmax_j(s(z_Ai, a_j) / τ_A),
    q_i(j) = softmax_j(s(z_Bi, a_j) / τ_B),
    loss_i = −Σ_j p_i(j) log q_i(j),

  the cross-entropy of the target's similarity distribution over the
  anchors against the source's (SEED's objective), by
  ``optax.softmax_cross_entropy`` with p under ``stop_gradient``: gradients
  reach z_B only, never ``source_emb``, ``anchors`` or ``tau_source``. Its
  minimum over q is the entropy of p (q = p, e.g. z_B = z_A and τ_B = τ_A);
  as τ_A → 0, p_i is one-hot on example i's own anchor and CMD becomes the
  one-directional InfoNCE −log q_i(i).

  Reconstructed choices: the anchor set is the whole batch's z_A plus an
  optional FIFO queue of past z_A (``CMDQueue``; SEED's code scores example
  i against its own z_Ai and the queue only, not the other batch examples);
  the temperatures default to SEED's as the companion notes give them
  (τ_A = 0.01, τ_B = 0.2; SEED's public code defaults τ_A to 1e-4),
  CMCD's values being unknown.

  Unfilled queue rows (``anchor_where`` False) and masked examples
  (``where`` False) are excluded from both softmaxes (their logits are
  masked out, not scored as vectors; SEED's queue starts as random unit
  vectors that do count).

  Args:
    target_emb: ``f[N, D]``, z_B before normalisation (the trained side).
    source_emb: ``f[N, D]``, z_A before normalisation (frozen).
    anchors: optional ``f[K, D]`` extra anchors, e.g. ``queue.embeddings``.
    anchor_where: optional ``bool[K]``, True = the anchor row counts, e.g.
      ``queue.filled``; only with ``anchors``. Default: every row counts.
    tau_source: τ_A, a finite number > 0 (may be traced), default 0.01.
    tau_target: τ_B, a finite number > 0 (may be traced), default 0.2.
    where: optional ``bool[N]``; False marks padding examples.
    reduction: ``"mean"`` → scalar mean over the valid examples, ``"none"``
      → ``f32[N]`` (0 where ``where`` is False).

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_loss_args(target_emb, source_emb, where, reduction)
  n, dim = jnp.shape(source_emb)
  if anchors is None:
    if anchor_where is not None:
      raise ValueError("anchor_where was given without anchors; pass the "
                       "queue's embeddings as anchors too.")
  else:
    _check_embedding(anchors, "anchors")
    if jnp.shape(anchors)[1] != dim:
      raise ValueError(
          f"anchors must have shape [K, D] = [K, {dim}] (the embeddings' "
          f"width), got {jnp.shape(anchors)}.")
    validation.check_where(anchor_where, jnp.shape(anchors)[:1],
                           "anchor_where")
  validation.check_positive(tau_source, "tau_source")
  validation.check_positive(tau_target, "tau_target")
  z_a = _l2_normalize(_source(source_emb, where))
  z_b = _l2_normalize(_rows(target_emb, where))
  valid = _valid(where, n)
  if anchors is None:
    bank, bank_valid = z_a, valid
  else:
    extra = _l2_normalize(jax.lax.stop_gradient(
        _rows(anchors, anchor_where)))
    bank = jnp.concatenate([z_a, extra])
    bank_valid = jnp.concatenate(
        [valid, _valid(anchor_where, jnp.shape(anchors)[0])])
  # A valid row's own column is valid, so each valid row has an anchor; a
  # masked row has none and gets 0 (optax's value for an all-False row).
  mask = valid[:, None] & bank_valid[None, :]
  p = jax.lax.stop_gradient(jax.nn.softmax(
      z_a @ bank.T / jnp.asarray(tau_source, jnp.float32), where=mask))
  logits = z_b @ bank.T / jnp.asarray(tau_target, jnp.float32)
  per_example = optax.softmax_cross_entropy(logits, p, where=mask)
  return reduce_loss(per_example, where, reduction)


# -- CMC: CLIP's symmetric InfoNCE ---------------------------------------------


def cmc(target_emb, source_emb, temperature=0.07, *, where=None,
        reduction: str = "mean") -> jax.Array:
  """CMCD's contrastive loss CMC: CLIP's symmetric InfoNCE, **reconstructed**.

  With z_A = normalise(source_emb) (frozen), z_B = normalise(target_emb) and
  logits s(z_Bi, z_Aj)/τ,

    L = −1/(2N) Σ_i [ log softmax_j(s(z_Bi, z_Aj)/τ)_{j=i}
                      + log softmax_j(s(z_Ai, z_Bj)/τ)_{j=i} ],

  the mean of the B → A (rows) and A → B (columns) cross-entropies with the
  pair as the label (``optax.softmax_cross_entropy_with_integer_labels``).
  Example i's value is the mean of its two directional terms, so the batch
  mean is L; the value is symmetric in its two arguments. ``source_emb`` is
  under ``stop_gradient`` (the source is frozen): both directions send
  gradient to z_B only.

  ``temperature`` may be a traced array and gradients flow into it. CLIP
  learns it as a log-parameter (a logit scale 1/τ = exp(t), clipped at 100);
  a caller that learns τ keeps that parameter and passes
  ``temperature=jnp.exp(-t)``; whether CMCD learns τ is unknown. The default
  0.07 is CLIP's initial value.

  A masked example (``where`` False) is neither an anchor nor a candidate:
  its column's logits are masked out of every other row's softmax, its row's
  loss is 0, and the mean runs over the valid examples.

  Args:
    target_emb: ``f[N, D]``, z_B before normalisation, N >= 2.
    source_emb: ``f[N, D]``, z_A before normalisation (frozen).
    temperature: τ, a finite number > 0 (may be traced), default 0.07.
    where: optional ``bool[N]``; False marks padding examples.
    reduction: ``"mean"`` → scalar mean over the valid examples, ``"none"``
      → ``f32[N]`` (0 where ``where`` is False).

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_loss_args(target_emb, source_emb, where, reduction, min_examples=2)
  validation.check_positive(temperature, "temperature")
  n = jnp.shape(source_emb)[0]
  z_a = _l2_normalize(_source(source_emb, where))
  z_b = _l2_normalize(_rows(target_emb, where))
  logits = z_b @ z_a.T / jnp.asarray(temperature, jnp.float32)
  valid = _valid(where, n)
  mask = valid[:, None] & valid[None, :]
  labels = jnp.arange(n)
  b_to_a = optax.softmax_cross_entropy_with_integer_labels(
      logits, labels, where=mask)
  a_to_b = optax.softmax_cross_entropy_with_integer_labels(
      logits.T, labels, where=mask)
  return reduce_loss(0.5 * (b_to_a + a_to_b), where, reduction)


# -- label-free alignment baselines --------------------------------------------


def align_l2(target_emb, source_emb, *, where=None,
             reduction: str = "mean") -> jax.Array:
  """L2 alignment of paired features, a label-free baseline of CMCD.

  Per example Σ_d (b_d − a_d)² / D, the mean squared error of the raw
  (unnormalised) embeddings, b = target_emb, a = source_emb under
  ``stop_gradient``. The baseline's exact form (mean rather than sum,
  no normalisation) is **reconstructed**.

  Args:
    target_emb: ``f[N, D]``.
    source_emb: ``f[N, D]`` (frozen).
    where: optional ``bool[N]``; False marks padding examples.
    reduction: ``"mean"`` → scalar mean over the valid examples, ``"none"``
      → ``f32[N]``.

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_loss_args(target_emb, source_emb, where, reduction)
  diff = _rows(target_emb, where) - _source(source_emb, where)
  return reduce_loss(jnp.mean(diff * diff, axis=-1), where, reduction)


def align_cosine(target_emb, source_emb, *, where=None,
                 reduction: str = "mean") -> jax.Array:
  """Cosine alignment of paired features, a label-free baseline of CMCD.

  Per example 1 − cos(b, a) = 1 − ⟨b̂, â⟩ (``optax.losses.cosine_distance``
  with the norm clamped at 1e-12, so a zero row has cosine 0, not NaN),
  b = target_emb, a = source_emb under ``stop_gradient``. The baseline's
  exact form is **reconstructed**.

  Args:
    target_emb: ``f[N, D]``.
    source_emb: ``f[N, D]`` (frozen).
    where: optional ``bool[N]``; False marks padding examples.
    reduction: ``"mean"`` → scalar mean over the valid examples, ``"none"``
      → ``f32[N]``.

  Returns:
    ``f32[]`` or ``f32[N]``.
  """
  _check_loss_args(target_emb, source_emb, where, reduction)
  per_example = optax.losses.cosine_distance(
      _rows(target_emb, where), _source(source_emb, where),
      epsilon=_COSINE_EPS)
  return reduce_loss(per_example, where, reduction)
