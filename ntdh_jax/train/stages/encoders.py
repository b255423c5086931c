"""Pieces the CMCD stages (``ssl``, ``cmcd``, ``finetune``) share.

* ``ProjectionHead``: SimCLR's g(·), an MLP on an encoder's features; the
  contrastive losses compare its outputs, downstream tasks use the features.
* ``EncoderOutputs``: what an ``ssl`` or ``cmcd`` run hands on — the
  encoder's variables and its projection head's parameters.
* Traced subsets: ``pair_order``/``labelled_order`` fix, per run, which
  training rows are "the m paired samples" or "the k labelled samples", so
  that m and k can be traced hyperparameters (every fraction shares one
  compiled program); ``draw_distinct``/``draw_with_replacement`` draw a
  mini-batch from the first k rows of such an order.
* ``centroid_accuracy``: a label-reading monitor of a label-free stage's
  features (the nearest class mean), reported beside the losses.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntdh_jax.train.stages import common

# fold_in constant of a run's key (after common's): the pair / label subsets,
# so one seed's subsets are the same in every method and every fraction.
SUBSET_KEY = 6


class ProjectionHead(nn.Module):
  """SimCLR's projection g: Dense → ReLU → Dense, ``f32[N, D] → f32[N,
  dim]`` (Chen et al., ICML'20, Sec. 2.1: a one-hidden-layer MLP; the
  contrastive losses normalise its output). flax's default initialisation.
  """
  hidden: int
  dim: int

  @nn.compact
  def __call__(self, features):
    return nn.Dense(self.dim, name="out")(
        nn.relu(nn.Dense(self.hidden, name="hidden")(features)))


@dataclasses.dataclass(frozen=True)
class Projection:
  """The projection head's static shape, checked: ``hidden`` and ``dim``
  are positive ints."""
  hidden: int
  dim: int

  def __post_init__(self):
    common._check_int("proj_hidden", self.hidden, low=1)
    common._check_int("proj_dim", self.dim, low=1)

  @property
  def head(self) -> ProjectionHead:
    return ProjectionHead(self.hidden, self.dim)


def init_encoder(net, head: ProjectionHead, key, x_example):
  """``(params {"model", "projection"}, state)`` of a fresh encoder: the
  network from ``fold_in(key, INIT_KEY)`` (so a seed gives the same initial
  weights as its other stages), the head from ``fold_in(key, AUX_KEY)``."""
  params, state = common.split_variables(
      net.init(jax.random.fold_in(key, common.INIT_KEY), x_example))
  width = net.feature_shape(x_example.shape[1:])[-1]  # pooled width
  projection = head.init(jax.random.fold_in(key, common.AUX_KEY),
                         jnp.zeros((1, width), jnp.float32))["params"]
  return {"model": params, "projection": projection}, state


def outputs_spec(net, head: ProjectionHead, x_example) -> dict:
  """The abstract outputs of an encoder run, ``{"variables",
  "projection"}`` (what ``cmcd`` and ``finetune`` restore)."""

  def outputs():
    params, state = init_encoder(net, head, jax.random.PRNGKey(0),
                                 x_example)
    return {"variables": common.join_variables(params["model"], state),
            "projection": params["projection"]}

  return jax.eval_shape(outputs)


def pool(features):
  """An example's representation ``f32[N, D]``: the features themselves,
  or a dense network's per-pixel features ``[N, H, W, D]`` averaged over
  the pixels (the contrastive losses compare whole examples)."""
  return features if features.ndim == 2 else jnp.mean(
      features, axis=tuple(range(1, features.ndim - 1)))


def project(head, projection, features):
  """The head's output ``f32[N, dim]`` on pooled ``features``."""
  return head.apply({"params": projection}, pool(features))


def embed(net, head, variables, projection, x):
  """Evaluation-mode ``(features, projection f32[N, dim])`` of inputs
  ``x`` (features as the network gives them, unpooled)."""
  _, features = common.apply_eval(net, variables, x)
  return features, project(head, projection, features)


# ------------------------------------------------------------- subsets


def subset_size(fraction, n: int):
  """k = max(1, round(fraction · n)) as a traced ``int32``."""
  return jnp.maximum(1, jnp.round(fraction * n)).astype(jnp.int32)


def pair_order(key, n: int):
  """A uniformly random order of the ``n`` training rows: its first m are
  the run's paired samples, so a smaller m is a subset of a larger one."""
  return jax.random.permutation(key, n)


def labelled_order(key, labels, num_classes: int):
  """An order of the training rows whose every prefix is as class-balanced
  as the classes' sizes allow: each class's rows in a random order, then
  round-robin over classes (all first rows, in a random class order, then
  all second rows, ...). The first k rows are the run's labelled samples,
  so 1 % of the labels holds every class once k >= ``num_classes`` (a
  uniform draw of 13 digits often misses a class). ``labels``: ``int[n]``.
  """
  n = labels.shape[0]
  k_within, k_classes = jax.random.split(key)
  by_class = jnp.lexsort((jax.random.uniform(k_within, (n,)), labels))
  sorted_labels = labels[by_class]
  first = jnp.searchsorted(sorted_labels, jnp.arange(num_classes))
  rank = jnp.zeros(n, jnp.int32).at[by_class].set(
      jnp.arange(n) - first[sorted_labels])
  class_rank = jax.random.permutation(k_classes, num_classes)[labels]
  return jnp.lexsort((class_rank, rank))


def draw_distinct(key, order, k, batch_size: int):
  """``batch_size`` distinct rows drawn uniformly from ``order[:k]``
  (traced k >= ``batch_size``, checked when the run is planned): the
  in-batch negatives of a contrastive loss must not repeat a pair."""
  n = order.shape[0]
  scores = jnp.where(jnp.arange(n) < k, jax.random.uniform(key, (n,)), 2.0)
  _, positions = jax.lax.top_k(-scores, batch_size)
  return order[positions]


def draw_with_replacement(key, order, k, batch_size: int):
  """``batch_size`` rows drawn uniformly, with replacement, from
  ``order[:k]`` (any traced k >= 1: 1 % of the labels may be fewer rows
  than a batch)."""
  return order[jax.random.randint(key, (batch_size,), 0, k)]


def run_steps(step, carry, key, num_steps: int):
  """Scans ``step(carry, key) -> (carry, metrics)`` ``num_steps`` times
  (each step draws its own batch); the last step's metrics."""
  carry, metrics = jax.lax.scan(step, carry,
                                jax.random.split(key, num_steps))
  return carry, jax.tree.map(lambda m: m[-1], metrics)


def check_minibatch(stage: str, batch_size: int, n: int) -> None:
  """A stage that draws its batches from a subset needs 2 <= B <= n."""
  if not 2 <= batch_size <= n:
    raise ValueError(
        f"stage {stage!r} draws mini-batches from a subset of the {n} "
        f"training rows: batch_size must be in [2, {n}], got {batch_size}.")


# ------------------------------------------------------------- monitor


def unit(x):
  """Rows scaled to unit norm (a zero row stays zero)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def centroid_accuracy(train_features, train_labels, test_features,
                      test_labels, num_classes: int):
  """Test accuracy of the nearest class mean, by cosine, of unit-normalised
  pooled features ``f32[N, D]``: how linearly the classes separate in a
  representation trained without labels (the labels are read here only).
  Classification labels ``int[N]`` only."""
  one_hot = jax.nn.one_hot(train_labels, num_classes)
  centroids = unit(one_hot.T @ unit(pool(train_features)))
  predicted = jnp.argmax(unit(pool(test_features)) @ centroids.T, axis=-1)
  return jnp.mean((predicted == test_labels).astype(jnp.float32))
