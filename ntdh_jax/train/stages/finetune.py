"""``finetune``: few-label training of an encoder on one view (CMCD step 3).

The encoder is ``model`` on ``view``, from an upstream ``ssl`` or ``cmcd``
run (role ``"encoder"``, ``init="pretrained"``) or freshly initialised
(``init="scratch"``, the no-distillation baseline; the same seed gives the
initial weights the ``cmcd`` target started from). Two protocols:

* ``"linear_probe"``: the encoder frozen (evaluation mode), a linear layer
  trained on its penultimate features (per pixel for a dense network);
* ``"full"``: every weight trained, the network's own head included.

Only k = max(1, round(``label_fraction`` · n)) training labels are used: the
first k rows of a per-seed order whose prefixes are class-balanced
(``encoders.labelled_order``; a uniform order for dense labels), so
``label_fraction`` is traced and 1 %, 5 % and 10 % share one program. Each
step draws ``batch_size`` of the k rows uniformly with replacement (k may be
smaller than a batch); an epoch is n // ``batch_size`` steps whatever k
is. Metrics: test accuracy (and mIoU for segmentation) per segment; the
final row records k (``labelled_examples``). Outputs the trained weights:
``{"probe": {"kernel", "bias"}}`` (the encoder is the upstream run's) or
``{"variables"}`` of the fine-tuned network.

Hyperparameters: ``lr`` (+ ``momentum``), the data source's knobs and
``label_fraction``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import encoders

MODES = ("linear_probe", "full")
INITS = ("pretrained", "scratch")
VIEWS = ("teacher", "student")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s):
    mode: ``"linear_probe"`` or ``"full"``.
    init: ``"pretrained"`` (role ``"encoder"``) or ``"scratch"``.
    view: the modality trained and tested (CMCD's target: ``"student"``).
    proj_hidden, proj_dim: the upstream run's projection head (restored with
      the encoder, unused here).
  """
  mode: str = "linear_probe"
  init: str = "pretrained"
  view: str = "student"
  proj_hidden: int = 128
  proj_dim: int = 64

  def __post_init__(self):
    super().__post_init__()
    common.check_choice("mode", self.mode, MODES)
    common.check_choice("init", self.init, INITS)
    common.check_choice("view", self.view, VIEWS)
    encoders.Projection(self.proj_hidden, self.proj_dim)


def hparams(c: FinetuneConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads."""
  return common.base_hparams(c, "label_fraction")


def _linear_init(key, d: int, c: int) -> dict:
  """torch's ``nn.Linear`` initialisation, U(±1/√d), as ``models``'."""
  bound = 1.0 / math.sqrt(d)
  k_w, k_b = jax.random.split(key)
  return {"kernel": jax.random.uniform(k_w, (d, c), jnp.float32, -bound,
                                       bound),
          "bias": jax.random.uniform(k_b, (c,), jnp.float32, -bound, bound)}


def make(c: FinetuneConfig) -> Program:
  data = common.Data(c.data)
  n, spec = data.n_train, data.spec
  if c.batch_size < 1:
    raise ValueError("finetune draws its batches from the labelled rows: "
                     f"batch_size must be >= 1, got {c.batch_size}.")
  net = common.network(c.model, spec)
  projection = encoders.Projection(c.proj_hidden, c.proj_dim)
  x_example = data.example(c.view)
  width = net.feature_shape(x_example.shape[1:])[-1]
  probe = c.mode == "linear_probe"
  classification = spec.label_shape == ()
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  steps = c.eval_every * max(1, n // c.batch_size)

  def init(hparams, key, arrays, inputs):
    key = common.raw_key(key)
    if c.init == "pretrained":
      encoder, state = common.split_variables(
          inputs["encoder"]["variables"])
    else:
      encoder, state = common.split_variables(
          net.init(jax.random.fold_in(key, common.INIT_KEY), x_example))
    params = (_linear_init(jax.random.fold_in(key, common.AUX_KEY), width,
                           spec.num_classes) if probe else encoder)
    subset_key = jax.random.fold_in(key, encoders.SUBSET_KEY)
    if classification:
      labels = data.views(arrays, hparams, key).y_train
      order = encoders.labelled_order(subset_key, labels, spec.num_classes)
    else:
      order = encoders.pair_order(subset_key, n)
    return {"params": params, "encoder": encoder, "state": state,
            "opt_state": opt_init(params, hparams), "order": order,
            "key": key, "loop_key": jax.random.fold_in(key, common.LOOP_KEY)}

  def logits_of(params, encoder, state, x, train, k):
    """``(logits, new state)``: the probe on frozen features, or the whole
    network."""
    if probe:
      _, features = common.apply_eval(
          net, common.join_variables(encoder, state), x)
      features = jax.lax.stop_gradient(features)
      return features @ params["kernel"] + params["bias"], state
    logits, _, new = net.apply(common.join_variables(params, state), x,
                               train=train, key=k)
    return logits, common.split_variables(new)[1]

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    stored = getattr(v, f"{c.view}_train")
    k_labels = encoders.subset_size(common.hp(hparams, "label_fraction"), n)

    def step(carry_, k):
      params, state, opt_state = carry_
      rows = encoders.draw_with_replacement(
          jax.random.fold_in(k, 0), carry["order"], k_labels, c.batch_size)
      x = data.input(stored[rows], c.view, hparams,
                     jax.random.fold_in(k, common.PREPARE_KEY))
      y = v.y_train[rows]

      def loss_fn(p):
        logits, new_state = logits_of(
            p, carry["encoder"], state, x, True,
            jax.random.fold_in(k, common.DROPOUT_KEY))
        return common.cross_entropy(logits, y, data.valid(y)), new_state

      (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return ((optax.apply_updates(params, updates), state, opt_state),
              {"ce": loss})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state), m = encoders.run_steps(
        step, (carry["params"], carry["state"], carry["opt_state"]), k_seg,
        steps)
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)
    test = getattr(v, f"{c.view}_test")

    def sums(rows, weight):
      x = data.input(common.take(test, rows), c.view, hparams, eval_key)
      y = common.take(v.y_test, rows)
      logits, _ = logits_of(params, carry["encoder"], state, x, False, None)
      return common.classification_sums(logits, y, data.valid(y), weight,
                                        spec.num_classes, not classification)

    totals = common.batched_sums(sums, data.n_test, c.eval_batch_size)
    metrics = {"train_ce": m["ce"],
               **common.classification_metrics(totals, "test_")}
    return {**carry, "params": params, "state": state,
            "opt_state": opt_state, "loop_key": k_next}, metrics

  def finish(carry, hparams, arrays):
    del arrays
    k = encoders.subset_size(common.hp(hparams, "label_fraction"), n)
    outputs = ({"probe": carry["params"]} if probe else
               {"variables": common.join_variables(carry["params"],
                                                   carry["state"])})
    return {"labelled_examples": k.astype(jnp.float32)}, outputs

  input_spec = None
  if c.init == "pretrained":
    input_spec = {"encoder": encoders.outputs_spec(net, projection.head,
                                                   x_example)}
  return Program(init, segment, finish, segments, input_spec, data.load)
