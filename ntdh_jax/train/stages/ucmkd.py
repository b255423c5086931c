"""``ucmkd``: distil a frozen teacher of one modality into a student of the
other without paired rows (UCMKD; Tran et al., ICML 2026, arXiv
2606.10504; reference code Duckduck-05/UCMKD, ``ravdess/utils/helper.py``).

The teacher is an upstream ``teacher`` run (role ``"teacher"``: network
``teacher_model`` on the teacher view), frozen; the student is ``model`` on
the student view. Each step draws ``batch_size`` student rows from the
student's pool and, for each, a teacher row (``data.unpaired``):
``pairing`` ``"paired"`` (the same row: the paired setting, for
comparison), ``"class_paired"`` (a random teacher row of the same class:
the reference code's unpaired loader) or ``"unpaired"`` (a random teacher
row: no pairing at all). The pools are the robustness presets, traced:
``student_share`` < 1 splits every class into disjoint student and
teacher pools (marginal mismatch), ``imbalance`` > 1 thins the student's
classes into a long tail; domain shift is the data source's own knob
(``digits_blur``'s ``student_blur``). Rows are drawn with replacement, so
every preset trains ``n // batch_size`` steps per epoch with one shape.

The student's loss is one of ``METHODS``:

* ``"ce"`` — cross-entropy only (the teacher is not read).
* ``"kd"`` — vanilla KD on the partner rows' teacher logits,
  (1 − α)·CE + α·KL_T·T² (``kd_weight`` α, ``temperature`` T; the code's
  ``vanillaKD``: α 0.9, T 4).
* ``"fa"`` — CE + λ₁·FA, FA the entropic-OT transport cost between the
  batch's student features and its partners' frozen teacher features
  (``losses.feature_alignment``; ott-jax Sinkhorn, ``cost``, ε =
  ``sinkhorn_epsilon``, ``sinkhorn_iterations`` fixed); the code's
  ``feadistill``.
* ``"sumall"`` — CE + λ₁·FA + λ₂·LA in one step (the code's single-level
  ablation). LA = ℓ(h_S(z), y) − κ·ℓ(h_T(z), y) (``losses.
  label_alignment``) with z the student's features, h_T the frozen
  teacher's head and κ the label transport kernel (stop-gradient): the
  teacher head *is* differentiated w.r.t. z, so minimising LA pushes the
  teacher head's likelihood of the true class on the student's features
  down — the code's sign, kept.
* ``"bilevel"`` — the method. Per batch, from the current parameters θ:
  n₁ = ``inner_steps_fa`` steps of λ₁·FA on the encoder, then n₂ =
  ``inner_steps_la`` steps of λ₂·LA on the head with the features
  detached (κ and the teacher term are then constants, so LA's head
  gradient is the head's cross-entropy), giving θ′; the outer loss is the
  cross-entropy at θ′. ``hypergrad="first_order"`` (the code: the adapted
  copy's gradient is applied to θ) or ``"unrolled"`` (``jax.grad``
  through the inner steps: the paper's bi-level hypergradient, exact but
  for how the transport plan moves with the encoder, which FA's Danskin
  gradient holds fixed — close at large ε, ~10× off in the encoder's
  second-order term at ε = 0.1 on a tiny linear problem,
  ``tests/test_ucmkd.py``). The inner optimiser is ``"adamw"`` (the code: a fresh
  AdamW per batch, ``inner_lr`` 5e-5, ``inner_weight_decay`` 0.05) or
  ``"sgd"`` (the paper's θ − η∇). BatchNorm statistics move with every
  forward pass of the adapted copy and are kept, as the code copies its
  buffers back.

κ (``kappa``): ``"teacher_only"`` — the code's softmax(h_T(z))_y — or
``"paper_ratio"`` — the paper's D_T(y|z)/D_S(y|z), clipped at
``kappa_max`` (``losses.label_transport_kernel``). The code's LA and
cross-entropies use label smoothing 0.1 in the bi-level method and none in
the others: ``label_smoothing`` is one hyperparameter applied to every
cross-entropy of a method (the configs set the code's values).

Metrics per segment: the training cross-entropy (the outer one for
``bilevel``), FA and LA of the last step where the method computes them,
and the student's test accuracy (rows paired by position, as the code
evaluates). The final row adds the terms of the paper's bound measured on
the test split: ``teacher_test_acc`` (the teacher on its own view),
``test_fa`` (the Sinkhorn cost between the student's and the teacher's
features of two independent random draws of ``eval_ot_size`` test rows:
unpaired, between the two distributions) and ``test_la`` (LA's mean over
the test rows, no smoothing).

Outputs ``{"variables"}`` of the student.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import hparams as hparams_lib
from ntdh_jax import losses
from ntdh_jax.data import unpaired
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import encoders
from ntdh_jax.train.stages import teacher as teacher_stage

POOL_KEY = 7  # after encoders.SUBSET_KEY
HYPERGRADS = ("first_order", "unrolled")
# Differentiating Adam's √v̂ at a zero gradient is 0·∞ = NaN; a root
# epsilon far below `eps` keeps the unrolled hypergradient finite and
# changes no update beyond float32 rounding.
_ADAM_EPS_ROOT = 1e-16


class Batch(NamedTuple):
  """One step's inputs: the student rows' model input ``x``, labels ``y``,
  and their partner rows' frozen teacher features and logits."""
  x: jax.Array
  y: jax.Array
  teacher_features: jax.Array
  teacher_logits: jax.Array


class Method(NamedTuple):
  """A student loss: the hyperparameters it reads, whether it compares
  student and teacher features (FA, LA: equal widths needed), the step
  metrics it records, and
  ``grads(ctx, params, state, batch, key) -> (grads, state, metrics)``."""
  hparams: tuple[str, ...]
  features: bool
  metrics: tuple[str, ...]
  grads: Callable


def _ce(ctx, logits, labels):
  """The batch's mean cross-entropy at the method's label smoothing."""
  return common.cross_entropy(logits, labels, None,
                              common.hp(ctx.hparams, "label_smoothing"))


class _Context(NamedTuple):
  """What a method's step reads besides its batch: the student network's
  train-mode forward and head, the frozen teacher's head, the config and
  the hyperparameters."""
  forward: Callable  # (model_params, state, x, key) -> (logits, feats, state)
  student_head: Callable  # (head_params, features) -> logits
  teacher_head: Callable  # features -> the frozen teacher head's logits
  config: "UCMKDConfig"
  hparams: Mapping


def _fa(ctx, features, teacher_features):
  c = ctx.config
  return losses.feature_alignment(
      features, teacher_features, cost=c.cost,
      epsilon=common.hp(ctx.hparams, "sinkhorn_epsilon"),
      iterations=c.sinkhorn_iterations, gradient=c.fa_gradient)


def _la(ctx, logits, features, labels, smoothing):
  """Mean LA over the batch; κ from the teacher head on ``features``."""
  t_logits = ctx.teacher_head(features)
  kappa = losses.label_transport_kernel(
      t_logits, logits, labels, form=ctx.config.kappa,
      max_ratio=ctx.config.kappa_max)
  return jnp.mean(losses.label_alignment(
      logits, t_logits, labels, kappa, label_smoothing=smoothing))


def _single_level(loss):
  """A method whose step is one gradient, at the current parameters, of
  ``loss(ctx, ce, logits, feats, batch) -> (value, metrics)``, ``ce`` the
  batch's cross-entropy."""

  def grads(ctx, params, state, batch, key):
    def objective(p):
      logits, feats, new = ctx.forward(p, state, batch.x, key)
      ce = _ce(ctx, logits, batch.y)
      value, metrics = loss(ctx, ce, logits, feats, batch)
      return value, (new, {"ce": ce, **metrics})

    g, (state_, metrics) = jax.grad(objective, has_aux=True)(params)
    return g, state_, metrics

  return grads


def _ce_loss(ctx, ce, logits, feats, batch):
  del ctx, logits, feats, batch
  return ce, {}


def _kd_loss(ctx, ce, logits, feats, batch):
  del feats
  h = ctx.hparams
  kd = losses.kd(logits, batch.teacher_logits, common.hp(h, "temperature"))
  alpha = common.hp(h, "kd_weight")
  return (1.0 - alpha) * ce + alpha * kd, {"kd": kd}


def _fa_loss(ctx, ce, logits, feats, batch):
  del logits
  fa = _fa(ctx, feats, batch.teacher_features)
  return ce + common.hp(ctx.hparams, "fa_weight") * fa, {"fa": fa}


def _sumall_loss(ctx, ce, logits, feats, batch):
  h = ctx.hparams
  fa = _fa(ctx, feats, batch.teacher_features)
  la = _la(ctx, logits, feats, batch.y, common.hp(h, "label_smoothing"))
  total = ce + common.hp(h, "fa_weight") * fa + common.hp(h, "la_weight") * la
  return total, {"fa": fa, "la": la}


def _inner_optimizer(ctx):
  """The inner steps' update rule, fresh for every batch as in the code."""
  lr = common.hp(ctx.hparams, "inner_lr")
  if ctx.config.inner_optimizer == "sgd":
    return optax.sgd(lr)
  return optax.adamw(lr, eps_root=_ADAM_EPS_ROOT,
                     weight_decay=common.hp(ctx.hparams,
                                            "inner_weight_decay"))


def _inner(ctx, params, state, batch, key):
  """θ′: n₁ FA steps on the encoder, then n₂ LA steps on the head.
  Returns ``(θ′, state, {"fa", "la"})`` (the last steps' values);
  differentiable w.r.t. ``params`` (the unrolled hypergradient)."""
  c, h = ctx.config, ctx.hparams
  tx = _inner_optimizer(ctx)
  encoder = {k: v for k, v in params.items() if k != "head"}
  head = params["head"]
  fa = la = jnp.zeros(())

  def fa_value(enc, st, k):
    _, feats, new = ctx.forward({**enc, "head": head}, st, batch.x, k)
    value = _fa(ctx, feats, batch.teacher_features)
    return common.hp(h, "fa_weight") * value, (new, value)

  opt = tx.init(encoder)
  for i in range(c.inner_steps_fa):
    g, (state, fa) = jax.grad(fa_value, has_aux=True)(
        encoder, state, jax.random.fold_in(key, i))
    updates, opt = tx.update(g, opt, encoder)
    encoder = optax.apply_updates(encoder, updates)

  smoothing = common.hp(h, "label_smoothing")

  def la_value(hd, feats):
    logits = ctx.student_head(hd, feats)
    value = _la(ctx, logits, feats, batch.y, smoothing)
    return common.hp(h, "la_weight") * value, value

  opt = tx.init(head)
  for j in range(c.inner_steps_la):
    _, feats, state = ctx.forward(
        {**encoder, "head": head}, state, batch.x,
        jax.random.fold_in(key, c.inner_steps_fa + j))
    # The gradient is w.r.t. the head only (the features are "detached" in
    # the step itself); the features stay differentiable so the unrolled
    # hypergradient keeps the head's dependence on the adapted encoder.
    g, la = jax.grad(la_value, has_aux=True)(head, feats)
    updates, opt = tx.update(g, opt, head)
    head = optax.apply_updates(head, updates)
  return {**encoder, "head": head}, state, {"fa": fa, "la": la}


def _bilevel_grads(ctx, params, state, batch, key):
  k_inner, k_outer = jax.random.split(key)

  def outer(adapted, st):
    logits, _, new = ctx.forward(adapted, st, batch.x, k_outer)
    ce = _ce(ctx, logits, batch.y)
    return ce, (new, ce)

  if ctx.config.hypergrad == "unrolled":
    def objective(p):
      adapted, st, inner_metrics = _inner(ctx, p, state, batch, k_inner)
      _, (new, ce) = outer(adapted, st)
      return ce, (new, {"ce": ce, **inner_metrics})
    g, (state_, metrics) = jax.grad(objective, has_aux=True)(params)
    return g, state_, metrics
  # First order (the code): the adapted copy's own gradient, applied to θ.
  adapted, st, inner_metrics = _inner(ctx, params, state, batch, k_inner)
  adapted = jax.lax.stop_gradient(adapted)
  g, (state_, ce) = jax.grad(outer, has_aux=True)(adapted, st)
  return g, state_, {"ce": ce, **inner_metrics}


METHODS: dict[str, Method] = {
    "ce": Method(("label_smoothing",), False, ("ce",),
                 _single_level(_ce_loss)),
    "kd": Method(("label_smoothing", "kd_weight", "temperature"), False,
                 ("ce", "kd"), _single_level(_kd_loss)),
    "fa": Method(("label_smoothing", "fa_weight", "sinkhorn_epsilon"), True,
                 ("ce", "fa"), _single_level(_fa_loss)),
    "sumall": Method(("label_smoothing", "fa_weight", "la_weight",
                      "sinkhorn_epsilon"), True, ("ce", "fa", "la"),
                     _single_level(_sumall_loss)),
    "bilevel": Method(("label_smoothing", "fa_weight", "la_weight",
                       "sinkhorn_epsilon", "inner_lr"), True,
                      ("ce", "fa", "la"), _bilevel_grads),
}
INNER_OPTIMIZERS = ("adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class UCMKDConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s; ``model`` is the student's):
    method: a name in ``METHODS``.
    pairing: a name in ``data.unpaired.PAIRINGS``.
    teacher_model: the teacher's network config (default: ``model``).
    cost: FA's ground cost, a name in ``losses.COSTS`` (the code's default
      ``"cosine"``).
    sinkhorn_iterations: Sinkhorn's fixed iteration count (the code: 100).
    fa_gradient: how FA is differentiated (``losses.FA_GRADIENTS``):
      ``"unrolled"`` through the iterations (the code's autograd) or
      ``"danskin"`` with the plan fixed; ``hypergrad="unrolled"`` needs
      ``"danskin"`` (a second derivative through ott's loop can be NaN).
    kappa: ``"teacher_only"`` (the code) or ``"paper_ratio"`` (the paper).
    kappa_max: the clip of the paper's ratio κ.
    hypergrad: ``"first_order"`` (the code) or ``"unrolled"``.
    inner_optimizer: ``"adamw"`` (the code) or ``"sgd"`` (the paper).
    inner_steps_fa, inner_steps_la: n₁, n₂ (the code: 1, 1).
    max_grad_norm: clip of the outer gradient's global norm (the code:
      5.0); 0 = no clipping.
    eval_ot_size: test rows per side of the final ``test_fa``.
  """
  method: str = "bilevel"
  pairing: str = "class_paired"
  teacher_model: Mapping | None = None
  cost: str = "cosine"
  sinkhorn_iterations: int = 100
  fa_gradient: str = "unrolled"
  kappa: str = "teacher_only"
  kappa_max: float = 10.0
  hypergrad: str = "first_order"
  inner_optimizer: str = "adamw"
  inner_steps_fa: int = 1
  inner_steps_la: int = 1
  max_grad_norm: float = 0.0
  eval_ot_size: int = 512

  def __post_init__(self):
    super().__post_init__()
    common.fill_teacher_model(self)
    common.check_choice("method", self.method, METHODS)
    common.check_choice("pairing", self.pairing, unpaired.PAIRINGS)
    common.check_choice("cost", self.cost, losses.COSTS)
    common.check_choice("fa_gradient", self.fa_gradient,
                        losses.FA_GRADIENTS)
    common.check_choice("kappa", self.kappa, losses.KAPPAS)
    common.check_choice("hypergrad", self.hypergrad, HYPERGRADS)
    common.check_choice("inner_optimizer", self.inner_optimizer,
                        INNER_OPTIMIZERS)
    if (self.method == "bilevel" and self.hypergrad == "unrolled"
        and self.fa_gradient != "danskin"):
      raise ValueError(
          "hypergrad='unrolled' differentiates the inner FA step, and a "
          "second derivative through ott's unrolled Sinkhorn can be NaN: "
          "set fa_gradient='danskin' (the plan held fixed), got "
          f"fa_gradient={self.fa_gradient!r}.")
    for name in ("sinkhorn_iterations", "inner_steps_fa", "inner_steps_la",
                 "eval_ot_size"):
      common._check_int(name, getattr(self, name), low=1)
    for name, low_open in (("kappa_max", True), ("max_grad_norm", False)):
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, (int, float))
          or value < 0 or (low_open and value == 0)):
        raise ValueError(f"{name} must be a number "
                         f"{'>' if low_open else '>='} 0, got {value!r}.")


def hparams(c: UCMKDConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads. The
  paired setting has one pool (``student_share`` 1); vanilla KD's α is a
  convex weight."""
  names = METHODS[c.method].hparams + ("student_share", "imbalance")
  if c.method == "bilevel" and c.inner_optimizer == "adamw":
    names += ("inner_weight_decay",)
  ranges = common.base_hparams(c, *names)
  if c.pairing == "paired":
    ranges["student_share"] = hparams_lib.Range(1.0, 1.0)
  if c.method == "kd":
    ranges["kd_weight"] = hparams_lib.Range(0.0, 1.0)
  return ranges


def make(c: UCMKDConfig) -> Program:
  data = common.Data(c.data)
  spec = data.spec
  n, num_classes = data.n_train, spec.num_classes
  encoders.check_minibatch("ucmkd", c.batch_size, n)
  if spec.label_shape != ():
    raise ValueError(
        f"stage 'ucmkd' trains classifiers; {data.source.name!r} has "
        f"per-pixel labels {spec.label_shape}.")
  net = common.network(c.model, spec)
  teacher = common.network(c.teacher_model, spec)
  method = METHODS[c.method]
  d_student = net.feature_shape(spec.student.shape)
  d_teacher = teacher.feature_shape(spec.teacher.shape)
  if method.features and d_student != d_teacher:
    raise ValueError(
        f"method={c.method!r} compares the student's features with the "
        f"teacher's (FA) and applies the teacher's head to the student's "
        f"(κ): model and teacher_model need one feature width, got "
        f"{d_student} and {d_teacher}.")
  tx, opt_init = common.make_optimizer(c.optimizer)
  clip = (optax.clip_by_global_norm(c.max_grad_norm) if c.max_grad_norm
          else optax.identity())
  segments = c.epochs // c.eval_every
  steps = c.eval_every * (n // c.batch_size)
  ot_size = min(c.eval_ot_size, data.n_test)

  def teacher_outputs(t_in, stored, hparams, key, count):
    return common.batched_map(
        lambda rows: common.apply_eval(
            teacher, t_in["variables"],
            data.input(common.take(stored, rows), "teacher", hparams, key)
            * t_in["feature_mask"]), count, c.eval_batch_size)

  def context(carry, hparams):
    t_params = carry["teacher"]["variables"]["params"]

    def forward(model_params, state, x, key):
      logits, feats, new = net.apply(
          common.join_variables(model_params, state), x, train=True,
          key=jax.random.fold_in(key, common.DROPOUT_KEY))
      return logits, feats, common.split_variables(new)[1]

    return _Context(
        forward, lambda head, feats: net.head({"head": head}, feats),
        lambda feats: teacher.head(t_params, feats), c, hparams)

  def init(hparams, key, arrays, inputs):
    key = common.raw_key(key)
    model_params, state = common.split_variables(
        net.init(jax.random.fold_in(key, common.INIT_KEY),
                 data.example("student")))
    params = {"model": model_params}
    v = data.views(arrays, hparams, key)
    # The teacher is frozen and reads its inputs with the run's fixed
    # evaluation key: its logits and features are computed once.
    eval_key = jax.random.fold_in(key, common.EVAL_KEY)
    t_in = inputs["teacher"]
    t_logits, t_feats = teacher_outputs(t_in, v.teacher_train, hparams,
                                        eval_key, n)
    t_test_logits, t_test_feats = teacher_outputs(
        t_in, v.teacher_test, hparams, eval_key, data.n_test)
    pools = unpaired.pools(
        v.y_train, jax.random.fold_in(key, POOL_KEY),
        student_share=common.hp(hparams, "student_share"),
        imbalance=common.hp(hparams, "imbalance"), num_classes=num_classes)
    return {"params": params, "state": state,
            "opt_state": opt_init(params, hparams), "key": key,
            "loop_key": jax.random.fold_in(key, common.LOOP_KEY),
            "teacher": t_in,
            "teacher_train": {"logits": t_logits, "features": t_feats},
            "teacher_test": {"features": t_test_feats,
                             "acc": jnp.mean(jnp.argmax(t_test_logits, -1)
                                             == v.y_test)},
            "student_index": unpaired.pool_index(v.y_train, pools.student,
                                                 num_classes),
            "teacher_index": unpaired.pool_index(v.y_train, pools.teacher,
                                                 num_classes)}

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    ctx = context(carry, hparams)
    t_train = carry["teacher_train"]

    def step(carry_, k):
      params, state, opt_state = carry_
      rows = unpaired.draw_rows(jax.random.fold_in(k, 0),
                                carry["student_index"], c.batch_size)
      partners = unpaired.partners(jax.random.fold_in(k, 1), rows,
                                   v.y_train, c.pairing,
                                   carry["teacher_index"])
      batch = Batch(
          data.input(v.student_train[rows], "student", hparams,
                     jax.random.fold_in(k, common.PREPARE_KEY)),
          v.y_train[rows], t_train["features"][partners],
          t_train["logits"][partners])
      grads, state, m = method.grads(ctx, params["model"], state, batch,
                                     jax.random.fold_in(k, 2))
      grads, _ = clip.update({"model": grads}, clip.init(params))
      updates, opt_state = tx.update(grads, opt_state, params)
      metrics = {name: m[name] for name in method.metrics}
      return (optax.apply_updates(params, updates), state, opt_state), metrics

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state), m = encoders.run_steps(
        step, (carry["params"], carry["state"], carry["opt_state"]), k_seg,
        steps)
    carry = {**carry, "params": params, "state": state,
             "opt_state": opt_state, "loop_key": k_next}
    acc = test_pass(carry, hparams, v)["acc"]
    return carry, {**{f"train_{k}": v for k, v in m.items()},
                   "test_acc": acc}

  def test_pass(carry, hparams, v):
    """The student's test accuracy and features ``f32[n_test, D]``."""
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)
    variables = common.join_variables(carry["params"]["model"],
                                      carry["state"])
    logits, feats = common.batched_map(
        lambda rows: common.apply_eval(
            net, variables, data.input(common.take(v.student_test, rows),
                                       "student", hparams, eval_key)),
        data.n_test, c.eval_batch_size)
    return {"acc": jnp.mean(jnp.argmax(logits, -1) == v.y_test),
            "logits": logits, "features": feats}

  def finish(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    test = test_pass(carry, hparams, v)
    final = {"test_acc": test["acc"],
             "teacher_test_acc": carry["teacher_test"]["acc"]}
    if method.features:
      ctx = context(carry, hparams)
      k_s, k_t = jax.random.split(jax.random.fold_in(carry["key"],
                                                     common.EVAL_KEY))
      s_rows = jax.random.permutation(k_s, data.n_test)[:ot_size]
      t_rows = jax.random.permutation(k_t, data.n_test)[:ot_size]
      final["test_fa"] = _fa(ctx, test["features"][s_rows],
                             carry["teacher_test"]["features"][t_rows])
      final["test_la"] = _la(ctx, test["logits"], test["features"],
                             v.y_test, 0.0)
    return final, {"variables": common.join_variables(
        carry["params"]["model"], carry["state"])}

  input_spec = {"teacher": teacher_stage.outputs_spec(data,
                                                      c.teacher_model)}
  return Program(init, segment, finish, segments, input_spec, data.load)
