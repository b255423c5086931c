"""``teacher``: cross-entropy on the teacher view, optionally masked.

With ``feature_mask="importance"`` the input is masked by Algorithm 1's mask,
built from an upstream ``joint`` run's importance (role ``"joint"``).
Masked features (or pixels) are zeroed rather than sliced out, so every mask
ratio shares one input shape and one compiled program (the reference code
slices the kept columns out, which for an MLP spans the same functions).

Outputs ``{"variables", "feature_mask"}`` for students to distil from.
Hyperparameters: ``lr`` (+ ``momentum`` for sgd), the data source's gap
knob, and with a mask ``mask_ratio`` and ``mask_kind`` (0 true, 1 false,
2 random; traced, so the three kinds share one program).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import masks
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common

FEATURE_MASKS = ("none", "importance")


@dataclasses.dataclass(frozen=True)
class TeacherConfig(common.StageConfig):
  """``feature_mask``: ``"none"`` or ``"importance"`` (Algorithm 1)."""
  feature_mask: str = "none"

  def __post_init__(self):
    super().__post_init__()
    common.check_choice("feature_mask", self.feature_mask, FEATURE_MASKS)


def hparams(c: TeacherConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads."""
  masked = c.feature_mask != "none"
  return common.base_hparams(
      c, *(("mask_ratio", "mask_kind") if masked else ()))


def outputs_spec(data: common.Data, model_config) -> dict:
  """The abstract ``outputs`` of a teacher run (what students restore)."""
  net = common.network(model_config, data.spec)
  variables = jax.eval_shape(net.init, jax.random.PRNGKey(0),
                             data.example("teacher"))
  shape = common.feature_mask_shape(data.spec.teacher.shape)
  return {"variables": variables,
          "feature_mask": jax.ShapeDtypeStruct(shape, jnp.float32)}


def make(c: TeacherConfig) -> Program:
  data = common.Data(c.data)
  net = common.network(c.model, data.spec)
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  masked = c.feature_mask != "none"
  mask_shape = common.feature_mask_shape(data.spec.teacher.shape)
  segmentation = data.spec.label_shape != ()

  def init(hparams, key, arrays, inputs):
    del arrays
    key = common.raw_key(key)
    variables = net.init(jax.random.fold_in(key, common.INIT_KEY),
                         data.example("teacher"))
    params, state = common.split_variables(variables)
    if masked:
      feature_mask = masks.feature_keep_mask(
          inputs["joint"]["importance"], common.hp(hparams, "mask_ratio"),
          common.hp(hparams, "mask_kind"),
          jax.random.fold_in(key, common.MASK_KEY))
    else:
      feature_mask = jnp.ones(mask_shape, jnp.float32)
    return {"params": params, "state": state,
            "opt_state": opt_init(params, hparams),
            "feature_mask": feature_mask, "key": key,
            "loop_key": jax.random.fold_in(key, common.LOOP_KEY)}

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    mask = carry["feature_mask"]

    def step(c, rows, k):
      params, state, opt_state = c
      x = data.input(common.take(v.teacher_train, rows), "teacher", hparams,
                     jax.random.fold_in(k, common.PREPARE_KEY)) * mask
      y = common.take(v.y_train, rows)

      def loss_fn(p):
        logits, _, new = net.apply(
            common.join_variables(p, state), x, train=True,
            key=jax.random.fold_in(k, common.DROPOUT_KEY))
        return common.cross_entropy(logits, y, data.valid(y)), new

      (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      _, state = common.split_variables(new)
      return ((optax.apply_updates(params, updates), state, opt_state),
              {"ce": loss})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state), m = common.run_epochs(
        step, (carry["params"], carry["state"], carry["opt_state"]), k_seg,
        data.n_train, c.batch_size, c.eval_every)
    variables = common.join_variables(params, state)
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)

    def sums(rows, weight):
      x = data.input(common.take(v.teacher_test, rows), "teacher", hparams,
                     eval_key) * mask
      y = common.take(v.y_test, rows)
      logits, _ = common.apply_eval(net, variables, x)
      return common.classification_sums(
          logits, y, data.valid(y), weight, data.spec.num_classes,
          segmentation)

    totals = common.batched_sums(sums, data.n_test, c.eval_batch_size)
    metrics = {"train_ce": m["ce"],
               **common.classification_metrics(totals, "test_")}
    return {**carry, "params": params, "state": state,
            "opt_state": opt_state, "loop_key": k_next}, metrics

  def finish(carry, hparams, arrays):
    del hparams, arrays
    kept = jnp.sum(carry["feature_mask"])
    return ({"kept_features": kept},
            {"variables": common.join_variables(carry["params"],
                                                carry["state"]),
             "feature_mask": carry["feature_mask"]})

  input_spec = None
  if masked:
    input_spec = {"joint": {"importance": jax.ShapeDtypeStruct(
        mask_shape, jnp.float32)}}
  return Program(init, segment, finish, segments, input_spec, data.load)
