"""``ssl``: SimCLR pre-training of the source encoder (CMCD step 1).

CMCD (Lin et al., arXiv 2405.03355) starts from a source encoder φ_A
trained without labels on the source modality by contrastive learning; the
paper's choice between SimCLR and MoCo and its augmentations are unknown,
so this is SimCLR (Chen et al., ICML'20), a reconstruction: every training
image of ``view`` is augmented twice (``data.augment``, on the stored image
in [0, 1], before the source's own ``prepare``), both views pass through the
network (``model``; its penultimate features, averaged over the pixels for a
dense network, are the representation) and a projection head, and NT-Xent (``losses.simclr``) pulls the two views of an
image together against the batch's other 2B − 2 views. Labels are read only
by the per-segment monitor ``test_centroid_acc`` (nearest class mean of the
test features, ``encoders.centroid_accuracy``; classification data only).

Outputs ``{"variables", "projection"}`` for the ``cmcd`` stage (the frozen
source) or ``finetune``. Hyperparameters: ``lr`` (+ ``momentum``), the data
source's knobs and ``ssl_temperature`` (τ of NT-Xent).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import losses
from ntdh_jax.data import augment as augment_lib
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import encoders

VIEWS = ("teacher", "student")
AUGMENT_KEY = 1003  # fold_in constant of a step's key: the augmentations


@dataclasses.dataclass(frozen=True)
class SSLConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s):
    view: the modality pre-trained, ``"teacher"`` (CMCD's source) or
      ``"student"``; its stored rows must be uint8 images ``[H, W, C]``.
    augment: ``data.augment`` options (SimCLR's defaults filled in).
    proj_hidden, proj_dim: the projection head's widths.
  """
  view: str = "teacher"
  augment: Mapping = dataclasses.field(default_factory=dict)
  proj_hidden: int = 128
  proj_dim: int = 64

  def __post_init__(self):
    super().__post_init__()
    common.check_choice("view", self.view, VIEWS)
    object.__setattr__(self, "augment", augment_lib.normalise(self.augment))
    encoders.Projection(self.proj_hidden, self.proj_dim)


def hparams(c: SSLConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads."""
  return common.base_hparams(c, "ssl_temperature")


def check_images(data: common.Data, view: str, stage: str) -> None:
  """The view is stored as uint8 images (what the augmentations take)."""
  m = data.spec.modality(view)
  if m.dtype != "uint8" or len(m.shape) != 3:
    raise ValueError(
        f"stage {stage!r} augments images: the {view} view of "
        f"{data.source.name!r} ({m.name}) must be uint8 [H, W, C], got "
        f"{m.dtype} {list(m.shape)}.")


def outputs_spec(data: common.Data, model, projection: encoders.Projection,
                 view: str) -> dict:
  """The abstract outputs of an ``ssl`` run with this network and head."""
  net = common.network(model, data.spec)
  return encoders.outputs_spec(net, projection.head, data.example(view))


def make(c: SSLConfig) -> Program:
  data = common.Data(c.data)
  check_images(data, c.view, "ssl")
  if c.batch_size == 1 or (c.batch_size == 0 and data.n_train < 2):
    raise ValueError("ssl contrasts each image with the batch's others: "
                     f"batch_size must be 0 (full) or >= 2, got "
                     f"{c.batch_size}.")
  net = common.network(c.model, data.spec)
  head = encoders.Projection(c.proj_hidden, c.proj_dim).head
  augment = augment_lib.AugmentConfig.from_dict(c.augment)
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  num_classes = data.spec.num_classes
  classification = data.spec.label_shape == ()

  def init(hparams, key, arrays, inputs):
    del arrays, inputs
    key = common.raw_key(key)
    params, state = encoders.init_encoder(net, head, key,
                                          data.example(c.view))
    return {"params": params, "state": state,
            "opt_state": opt_init(params, hparams), "key": key,
            "loop_key": jax.random.fold_in(key, common.LOOP_KEY)}

  def two_views(stored, hparams, k):
    """Two independently augmented copies of a batch of stored images, as
    model input ``f32[2B, H, W, C]`` (first copies, then second)."""
    images = jnp.asarray(stored, jnp.float32) / 255.0
    k1, k2 = jax.random.split(jax.random.fold_in(k, AUGMENT_KEY))
    both = jnp.concatenate([augment_lib.augment(k1, images, augment),
                            augment_lib.augment(k2, images, augment)])
    # Back to the stored dtype, so the source's own prepare (its noise,
    # blur, normalisation) reads what it always reads.
    both = jnp.round(both * 255.0).astype(jnp.uint8)
    return data.input(both, c.view, hparams,
                      jax.random.fold_in(k, common.PREPARE_KEY))

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    train, test = getattr(v, f"{c.view}_train"), getattr(v, f"{c.view}_test")
    temperature = common.hp(hparams, "ssl_temperature")

    def step(carry_, rows, k):
      params, state, opt_state = carry_
      x = two_views(common.take(train, rows), hparams, k)

      def loss_fn(p):
        _, features, new = net.apply(
            common.join_variables(p["model"], state), x, train=True,
            key=jax.random.fold_in(k, common.DROPOUT_KEY))
        z1, z2 = jnp.split(
            encoders.project(head, p["projection"], features), 2)
        return losses.simclr(z1, z2, temperature), new

      (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      _, state = common.split_variables(new)
      return ((optax.apply_updates(params, updates), state, opt_state),
              {"ntxent": loss})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state), m = common.run_epochs(
        step, (carry["params"], carry["state"], carry["opt_state"]), k_seg,
        data.n_train, c.batch_size, c.eval_every)
    variables = common.join_variables(params["model"], state)
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)

    def features(stored, n):
      return common.batched_map(
          lambda rows: common.apply_eval(net, variables, data.input(
              common.take(stored, rows), c.view, hparams, eval_key))[1],
          n, c.eval_batch_size)

    metrics = {"train_ntxent": m["ntxent"]}
    if classification:
      metrics["test_centroid_acc"] = encoders.centroid_accuracy(
          features(train, data.n_train), v.y_train,
          features(test, data.n_test), v.y_test, num_classes)
    return {**carry, "params": params, "state": state,
            "opt_state": opt_state, "loop_key": k_next}, metrics

  def finish(carry, hparams, arrays):
    del hparams, arrays
    return {}, {"variables": common.join_variables(carry["params"]["model"],
                                                   carry["state"]),
                "projection": carry["params"]["projection"]}

  return Program(init, segment, finish, segments, None, data.load)
