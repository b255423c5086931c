"""``cmcd``: distil a frozen source encoder into a target encoder on m
paired, unlabelled samples (CMCD step 2; Lin et al., arXiv 2405.03355).

The source is an upstream ``ssl`` run (role ``"ssl"``: network
``source_model`` on the teacher view, with its projection head), frozen; the
target is ``model`` on the student view with a fresh projection head of the
same width. Both embed the same training rows (paired), and the target is
trained by one alignment loss of ``ALIGNERS`` between its projection z_B
and the source's z_A:

* ``"cmd"`` — CMD, SEED-style relational distillation over the batch's
  source embeddings and an optional FIFO queue of past ones
  (``queue_size``; ``losses.cmd``); τ_A, τ_B are ``cmd_tau_source``,
  ``cmd_tau_target``.
* ``"cmc"`` — CMC, CLIP's symmetric InfoNCE (``losses.cmc``) at
  ``cmc_temperature``, fixed or, with ``learn_temperature``, learnt from
  that value as CLIP does (log τ a parameter, τ kept >= 0.01).
* ``"l2"``, ``"cosine"`` — the label-free feature-alignment baselines the
  paper compares with (``losses.align_l2``, ``losses.align_cosine``).

Both losses are reconstructions (the paper's code is not public; the
notes' section CMCD): their form is known in kind from the reviews, their
temperatures are not.

The m pairs are the first m = round(``pair_fraction`` · n) rows of a
per-seed random order of the training set (``encoders.pair_order``), so
every fraction — and every loss — of one seed sees nested subsets of the
same rows, and ``pair_fraction`` is traced (all fractions share one
program). A step draws ``batch_size`` distinct pairs from them; an epoch is
n // ``batch_size`` steps whatever m is, so every m trains equally long.
The source's projections of the training and test rows are computed once,
in ``init`` (it is frozen; evaluation-mode inputs with the run's
evaluation key), and carried.

Metrics per segment: the training loss and the mean cosine between paired
test projections (with a learnt τ, its value). The final row adds the
latent-distance diagnostic of the paper's bound, between the source's and
the target's unit-normalised test projections: ``latent_tv`` (a held-out
k-NN classifier's lower bound on their total-variation distance,
``info.tv_lower_bound``) and ``latent_mmd2`` (``info.mmd2``, the source's
first half of the test set against the target's second, so the samples
are independent).

Outputs ``{"variables", "projection"}`` of the target, for ``finetune``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import hparams as hparams_lib
from ntdh_jax import info
from ntdh_jax import losses
from ntdh_jax import models
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import encoders
from ntdh_jax.train.stages import ssl

# CLIP clamps its learnt logit scale at 100, i.e. τ >= 0.01.
_MIN_LEARNT_TEMPERATURE = 0.01
_TV_NEIGHBOURS = 5


class Aligner(NamedTuple):
  """One alignment loss: the hyperparameters it reads, its parameters and
  state (``init(config, hparams, dim) -> (params, state)``) and its value
  ``loss(params, state, z_target, z_source, hparams) -> (loss, state)``."""
  hparams: tuple[str, ...]
  init: Callable
  loss: Callable


def _no_init(c, hparams, dim):
  del c, hparams, dim
  return {}, {}


def _cmd_init(c, hparams, dim):
  del hparams
  return {}, (losses.cmd_queue_init(c.queue_size, dim) if c.queue_size
              else {})


def _cmd_loss(params, queue, z_target, z_source, hparams):
  del params
  kw = dict(tau_source=common.hp(hparams, "cmd_tau_source"),
            tau_target=common.hp(hparams, "cmd_tau_target"))
  if not queue:
    return losses.cmd(z_target, z_source, **kw), queue
  # Scored against the queue as it was, then the batch is enqueued (SEED).
  value = losses.cmd(z_target, z_source, queue.embeddings,
                     anchor_where=queue.filled, **kw)
  return value, losses.cmd_queue_push(queue, z_source)


def _cmc_init(c, hparams, dim):
  del dim
  if not c.learn_temperature:
    return {}, {}
  start = jnp.asarray(common.hp(hparams, "cmc_temperature"), jnp.float32)
  return {"log_temperature": jnp.log(start)}, {}


def _cmc_loss(params, state, z_target, z_source, hparams):
  if "log_temperature" in params:
    temperature = jnp.maximum(jnp.exp(params["log_temperature"]),
                              _MIN_LEARNT_TEMPERATURE)
  else:
    temperature = common.hp(hparams, "cmc_temperature")
  return losses.cmc(z_target, z_source, temperature), state


def _stateless(fn):
  def loss(params, state, z_target, z_source, hparams):
    del params, hparams
    return fn(z_target, z_source), state
  return loss


ALIGNERS: dict[str, Aligner] = {
    "cmd": Aligner(("cmd_tau_source", "cmd_tau_target"), _cmd_init,
                   _cmd_loss),
    "cmc": Aligner(("cmc_temperature",), _cmc_init, _cmc_loss),
    "l2": Aligner((), _no_init, _stateless(losses.align_l2)),
    "cosine": Aligner((), _no_init, _stateless(losses.align_cosine)),
}


@dataclasses.dataclass(frozen=True)
class CMCDConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s; ``model`` is the target's):
    loss: a name in ``ALIGNERS``.
    source_model: the source network's config (default: ``model``).
    proj_hidden, proj_dim: the projection heads' widths (the source's, from
      its ``ssl`` run, must match).
    queue_size: CMD's FIFO queue of past source embeddings (0: the batch
      only); ``loss="cmd"`` only.
    learn_temperature: learn CMC's τ; ``loss="cmc"`` only.
  """
  loss: str = "cmd"
  source_model: Mapping | None = None
  proj_hidden: int = 128
  proj_dim: int = 64
  queue_size: int = 0
  learn_temperature: bool = False

  def __post_init__(self):
    super().__post_init__()
    object.__setattr__(self, "source_model", models.normalise(
        self.model if self.source_model is None else self.source_model))
    common.check_choice("loss", self.loss, ALIGNERS)
    encoders.Projection(self.proj_hidden, self.proj_dim)
    common._check_int("queue_size", self.queue_size, low=0)
    if self.queue_size and self.loss != "cmd":
      raise ValueError(f"queue_size is CMD's queue; loss={self.loss!r} has "
                       f"none, so queue_size must be 0, got "
                       f"{self.queue_size}.")
    if not isinstance(self.learn_temperature, bool):
      raise ValueError("learn_temperature must be True or False, got "
                       f"{self.learn_temperature!r}.")
    if self.learn_temperature and self.loss != "cmc":
      raise ValueError("learn_temperature learns CMC's temperature; "
                       f"loss={self.loss!r} has none.")


def hparams(c: CMCDConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads;
  ``pair_fraction`` must leave at least one batch of distinct pairs."""
  ranges = common.base_hparams(c, *ALIGNERS[c.loss].hparams)
  n = common.Data(c.data).n_train
  ranges["pair_fraction"] = hparams_lib.Range(min(c.batch_size / n, 1.0),
                                              1.0)
  return ranges


def make(c: CMCDConfig) -> Program:
  data = common.Data(c.data)
  n = data.n_train
  encoders.check_minibatch("cmcd", c.batch_size, n)
  if data.n_test < 4:
    raise ValueError(
        f"stage 'cmcd' measures the latent distance on the test split with a "
        f"half-split classifier: it needs >= 4 test examples, "
        f"{data.source.name!r} has {data.n_test}.")
  # The k-NN vote among the other half's 2·⌊n_test/2⌋ embeddings: odd.
  neighbours = min(_TV_NEIGHBOURS, 2 * (data.n_test // 2) - 1)
  if c.queue_size and c.queue_size < c.batch_size:
    raise ValueError(f"queue_size must be 0 or >= batch_size "
                     f"({c.batch_size}) to hold a batch, got "
                     f"{c.queue_size}.")
  net = common.network(c.model, data.spec)
  source = common.network(c.source_model, data.spec)
  projection = encoders.Projection(c.proj_hidden, c.proj_dim)
  head = projection.head
  aligner = ALIGNERS[c.loss]
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  steps = c.eval_every * (n // c.batch_size)

  def source_embeddings(src, stored, hparams, key, count):
    _, z = common.batched_map(
        lambda rows: encoders.embed(
            source, head, src["variables"], src["projection"],
            data.input(common.take(stored, rows), "teacher", hparams,
                       key)),
        count, c.eval_batch_size)
    return z

  def init(hparams, key, arrays, inputs):
    key = common.raw_key(key)
    params, state = encoders.init_encoder(net, head, key,
                                          data.example("student"))
    params["aux"], aux_state = aligner.init(c, hparams, c.proj_dim)
    # The source is frozen and its inputs use the run's fixed evaluation
    # key: its projections of the training and test rows are computed once.
    v = data.views(arrays, hparams, key)
    eval_key = jax.random.fold_in(key, common.EVAL_KEY)
    return {"params": params, "state": state, "aux_state": aux_state,
            "opt_state": opt_init(params, hparams), "key": key,
            "loop_key": jax.random.fold_in(key, common.LOOP_KEY),
            "order": encoders.pair_order(
                jax.random.fold_in(key, encoders.SUBSET_KEY), n),
            "z_source": source_embeddings(inputs["ssl"], v.teacher_train,
                                          hparams, eval_key, n),
            # The last evaluation's unit test projections, for ``finish``.
            "tests": {"source": encoders.unit(source_embeddings(
                          inputs["ssl"], v.teacher_test, hparams, eval_key,
                          data.n_test)),
                      "target": jnp.zeros((data.n_test, c.proj_dim))}}

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    z_source = carry["z_source"]
    m = encoders.subset_size(common.hp(hparams, "pair_fraction"), n)

    def step(carry_, k):
      params, state, aux_state, opt_state = carry_
      rows = encoders.draw_distinct(jax.random.fold_in(k, 0),
                                    carry["order"], m, c.batch_size)
      x = data.input(v.student_train[rows], "student", hparams,
                     jax.random.fold_in(k, common.PREPARE_KEY))

      def loss_fn(p):
        _, features, new = net.apply(
            common.join_variables(p["model"], state), x, train=True,
            key=jax.random.fold_in(k, common.DROPOUT_KEY))
        z_target = encoders.project(head, p["projection"], features)
        loss, aux = aligner.loss(p["aux"], aux_state, z_target,
                                 z_source[rows], hparams)
        return loss, (new, aux)

      (loss, (new, aux_state)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      _, state = common.split_variables(new)
      return ((optax.apply_updates(params, updates), state, aux_state,
               opt_state), {"loss": loss})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, aux_state, opt_state), m_ = encoders.run_steps(
        step, (carry["params"], carry["state"], carry["aux_state"],
               carry["opt_state"]), k_seg, steps)
    carry = {**carry, "params": params, "state": state,
             "aux_state": aux_state, "opt_state": opt_state,
             "loop_key": k_next}
    tests = test_embeddings(carry, hparams, v)
    metrics = {"train_loss": m_["loss"],
               "test_pair_cosine": jnp.mean(jnp.sum(
                   tests["source"] * tests["target"], axis=-1))}
    if "log_temperature" in params["aux"]:
      metrics["cmc_temperature"] = jnp.exp(params["aux"]["log_temperature"])
    return {**carry, "tests": tests}, metrics

  def test_embeddings(carry, hparams, v):
    """Unit-normalised test projections ``f32[n_test, dim]`` of the source
    (from ``init``) and of the target."""
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)
    variables = common.join_variables(carry["params"]["model"],
                                      carry["state"])
    _, z_target = common.batched_map(
        lambda rows: encoders.embed(
            net, head, variables, carry["params"]["projection"],
            data.input(common.take(v.student_test, rows), "student",
                       hparams, eval_key)),
        data.n_test, c.eval_batch_size)
    return {"source": carry["tests"]["source"],
            "target": encoders.unit(z_target)}

  def finish(carry, hparams, arrays):
    del hparams, arrays
    z_source, z_target = carry["tests"]["source"], carry["tests"]["target"]
    # MMD's estimator assumes independent samples and row i of both is the
    # same test example: the source's first half against the target's
    # second. The TV bound's half split already keeps a pair together.
    half = data.n_test // 2
    final = {"latent_tv": info.tv_lower_bound(z_source, z_target,
                                              k=neighbours),
             "latent_mmd2": info.mmd2(z_source[:half],
                                      z_target[half:2 * half])}
    return final, {"variables": common.join_variables(
        carry["params"]["model"], carry["state"]),
                   "projection": carry["params"]["projection"]}

  input_spec = {"ssl": ssl.outputs_spec(data, c.source_model, projection,
                                        "teacher")}
  return Program(init, segment, finish, segments, input_spec, data.load)
