"""``student``: cross-entropy on the student view, plus distillation.

With ``distill != "none"`` a frozen upstream teacher (role ``"teacher"``)
adds a distillation term (``objectives.DISTILLERS``), optionally masked per
sample (or per pixel) by Algorithm 2 (``sample_mask="ncjsd"``). The
combination is ``CE + λ·KD`` (``kd_form="additive"``, the reference code's,
λ = 1 there) or ``(1 − λ)·CE + λ·KD`` (``"convex"``).

``feature_wiring`` says what the feature methods (FitNet, CRD, RKD, PKT, SP)
compare (``objectives.WIRINGS``; the module docstring of ``objectives`` has
the details and the authors' lines):

* ``"features"`` (default): the penultimate features ``f32[N, D]``, as the
  methods' own papers wire them; KD is the method alone.
* ``"logits"``: the NTDH authors' code's wiring (``train_kd`` in their
  ``sklearn/main.py``, lines 249-333): the logits ``f32[N, C]`` in place of
  the features, plus a KL term, KD = method_weight·M(z_s, z_t) +
  kl_weight·KL_T·T²; FitNet's regressor is their parameter-free
  BatchNorm + ReLU and CRD's heads (C → 128) are not trained. Their numbers
  are ``objectives.AUTHORS_LOGIT_HPARAMS`` (T = 1, λ = 1, additive).

The teacher's logits and features on the training set are computed once
per segment (in evaluation batches) rather than at every step: the teacher
is frozen, and a segment spans ``eval_every`` epochs.

Hyperparameters: ``lr`` (+ ``momentum``), the gap knob, and with a teacher
``kd_weight`` (λ), ``temperature``, ``alpha``/``beta`` (dkd),
``method_weight``/``kl_weight`` (logits wiring), and with Algorithm 2
``mask_ratio`` and ``mask_kind``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import divergences
from ntdh_jax import hparams as hparams_lib
from ntdh_jax import losses
from ntdh_jax import masks
from ntdh_jax.train import objectives
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import teacher as teacher_stage

SAMPLE_MASKS = ("none", "ncjsd")
KD_FORMS = ("additive", "convex")
_MAX_BATCH = 512
_MINIBATCH_ONLY = {
    "rkd": "compares all triplets of a batch (O(N³) memory)",
    "crd": "scores every sample against K+1 memory rows (O(N·K·feat_dim))"}


@dataclasses.dataclass(frozen=True)
class StudentConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s):
    distill: ``"none"`` or a name in ``objectives.DISTILLERS``.
    sample_mask: ``"none"`` or ``"ncjsd"`` (Algorithm 2).
    kd_form: ``"additive"`` or ``"convex"``.
    teacher_model: the teacher's model config (default: ``model``).
    feature_wiring: ``"features"`` or ``"logits"`` (``objectives.WIRINGS``);
      ``"logits"`` needs a feature method. Added after results were
      recorded, so left out of run ids at its default.
  """
  OMIT_AT_DEFAULT = ("feature_wiring",)
  distill: str = "none"
  sample_mask: str = "none"
  kd_form: str = "additive"
  teacher_model: Mapping | None = None
  feature_wiring: str = "features"

  def __post_init__(self):
    super().__post_init__()
    common.fill_teacher_model(self)
    common.check_choice("distill", self.distill,
                        ("none",) + tuple(objectives.DISTILLERS))
    common.check_choice("sample_mask", self.sample_mask, SAMPLE_MASKS)
    common.check_choice("kd_form", self.kd_form, KD_FORMS)
    common.check_choice("feature_wiring", self.feature_wiring,
                        objectives.WIRINGS)
    # The default wiring holds every method; another rewires only some.
    wired = objectives.WIRINGS[self.feature_wiring].distillers
    if self.feature_wiring != "features" and self.distill not in wired:
      raise ValueError(
          f"feature_wiring={self.feature_wiring!r} rewires the feature "
          f"methods {sorted(wired)}; distill={self.distill!r} is not one.")


def hparams(c: StudentConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads."""
  names = ()
  if c.distill != "none":
    names = ("kd_weight",) + objectives.WIRINGS[
        c.feature_wiring].hparams.get(c.distill, ())
  if c.sample_mask != "none":
    names += ("mask_ratio", "mask_kind")
  ranges = common.base_hparams(c, *names)
  if c.distill != "none" and c.kd_form == "convex":  # (1 − λ)·CE + λ·KD
    ranges["kd_weight"] = hparams_lib.Range(0.0, 1.0)
  return ranges


def make(c: StudentConfig) -> Program:
  data = common.Data(c.data)
  spec = data.spec
  net = common.network(c.model, spec)
  teacher = common.network(c.teacher_model, spec)
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  n, bs = data.n_train, c.batch_size
  wiring = objectives.WIRINGS[c.feature_wiring]
  distiller = (None if c.distill == "none"
               else objectives.make_distiller(c.distill, c.feature_wiring))
  sample_masked = c.sample_mask != "none"
  segmentation = spec.label_shape != ()
  if sample_masked:
    if distiller is None or not distiller.per_example:
      raise ValueError(
          "sample_mask='ncjsd' needs a per-example distill (kl, dkd, "
          f"fitnet), got distill={c.distill!r}.")
    if spec.num_classes < 3:
      raise ValueError("sample_mask ranks samples by NCJSD, which needs >= 3 "
                       f"classes; data has {spec.num_classes}.")
  if c.distill in _MINIBATCH_ONLY and not 0 < bs <= _MAX_BATCH:
    raise ValueError(
        f"distill={c.distill!r} {_MINIBATCH_ONLY[c.distill]}; set "
        f"batch_size to 1..{_MAX_BATCH}, got {bs} (0 = full batch of {n}).")
  student_x, teacher_x = data.example("student"), data.example("teacher")
  # The widths of the distiller's own parameters (FitNet's regressor, CRD's
  # heads): of what it compares.
  if wiring.on_logits:
    d_student = d_teacher = spec.num_classes
  else:
    d_student = net.feature_shape(student_x.shape[1:])[-1]
    d_teacher = teacher.feature_shape(teacher_x.shape[1:])[-1]

  def init(hparams, key, arrays, inputs):
    del arrays
    key = common.raw_key(key)
    # Same init key as the teacher stage: same seed, same initial weights.
    model_params, state = common.split_variables(
        net.init(jax.random.fold_in(key, common.INIT_KEY), student_x))
    params = {"model": model_params}
    aux_state = {}
    if distiller is not None:
      params["aux"], aux_state = distiller.init(
          jax.random.fold_in(key, common.AUX_KEY), d_student, d_teacher, n)
    return {"params": params, "state": state,
            "opt_state": opt_init(params, hparams), "aux_state": aux_state,
            "key": key, "loop_key": jax.random.fold_in(key, common.LOOP_KEY),
            "teacher": inputs["teacher"] if inputs else None}

  def combine(ce, kd, hparams):
    weight = common.hp(hparams, "kd_weight")
    return ce + weight * kd if c.kd_form == "additive" else (
        (1.0 - weight) * ce + weight * kd)

  def teacher_outputs(t_in, x_stored, hparams, key, rows):
    x = data.input(common.take(x_stored, rows), "teacher", hparams, key)
    return common.apply_eval(teacher, t_in["variables"],
                             x * t_in["feature_mask"])

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    t_in = carry["teacher"]
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)
    if distiller is not None:
      t_logits, t_feats = common.batched_map(
          lambda rows: teacher_outputs(t_in, v.teacher_train, hparams,
                                       eval_key, rows),
          n, c.eval_batch_size)

    def loss_fn(params, state, aux_state, rows, k):
      x = data.input(common.take(v.student_train, rows), "student", hparams,
                     jax.random.fold_in(k, common.PREPARE_KEY))
      s_logits, s_feats, new = net.apply(
          common.join_variables(params["model"], state), x, train=True,
          key=jax.random.fold_in(k, common.DROPOUT_KEY))
      _, state = common.split_variables(new)
      y = common.take(v.y_train, rows)
      where = data.valid(y)
      ce = common.cross_entropy(s_logits, y, where)
      if distiller is None:
        return ce, (ce, jnp.zeros(()), state, aux_state)
      k_loss, k_mask = jax.random.split(k)
      t_batch = common.take(t_logits, rows)
      batch = objectives.Batch(
          s_logits, t_batch, s_feats, common.take(t_feats, rows), y, where,
          jnp.arange(n) if rows is None else rows, v.y_train, k_loss)
      values, aux_state = distiller.loss(params["aux"], aux_state, batch,
                                         hparams)
      if sample_masked:
        ncjsd = divergences.decompose(
            teacher_logits=t_batch,
            student_logits=jax.lax.stop_gradient(s_logits),
            labels=y, where=where).ncjsd
        keep = masks.sample_keep_mask(
            ncjsd, common.hp(hparams, "mask_ratio"),
            common.hp(hparams, "mask_kind"), k_mask, where=where)
        kd = jnp.sum(keep * values) / jnp.maximum(jnp.sum(keep), 1.0)
      else:  # batch-level losses (RKD, PKT, SP, CRD) are already a mean
        kd = losses.reduce_loss(values, where if values.ndim else None,
                                "mean")
      return combine(ce, kd, hparams), (ce, kd, state, aux_state)

    def step(carry_, rows, k):
      params, state, opt_state, aux_state = carry_
      grads, (ce, kd, state, aux_state) = jax.grad(loss_fn, has_aux=True)(
          params, state, aux_state, rows, k)
      updates, opt_state = tx.update(grads, opt_state, params)
      return ((optax.apply_updates(params, updates), state, opt_state,
               aux_state), {"ce": ce, "kd": kd})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state, aux_state), m = common.run_epochs(
        step, (carry["params"], carry["state"], carry["opt_state"],
               carry["aux_state"]), k_seg, n, bs, c.eval_every)
    variables = common.join_variables(params["model"], state)

    def sums(rows, weight):
      x = data.input(common.take(v.student_test, rows), "student", hparams,
                     eval_key)
      y = common.take(v.y_test, rows)
      where = data.valid(y)
      s_logits, _ = common.apply_eval(net, variables, x)
      out = common.classification_sums(s_logits, y, where, weight,
                                        spec.num_classes, segmentation)
      if distiller is not None:
        t_logits_test, _ = teacher_outputs(t_in, v.teacher_test, hparams,
                                           eval_key, rows)
        out.update(common.divergence_sums(t_logits_test, s_logits, y, where,
                                          weight))
      return out

    totals = common.batched_sums(sums, data.n_test, c.eval_batch_size)
    metrics = {"train_ce": m["ce"],
               **common.classification_metrics(totals, "test_")}
    if distiller is not None:
      metrics["train_kd"] = m["kd"]
      metrics.update({k: totals[k] / jnp.maximum(totals["count"], 1.0)
                      for k in common.DIVERGENCES if k in totals})
    return {**carry, "params": params, "state": state,
            "opt_state": opt_state, "aux_state": aux_state,
            "loop_key": k_next}, metrics

  def finish(carry, hparams, arrays):
    del hparams, arrays
    return {}, {"variables": common.join_variables(carry["params"]["model"],
                                                   carry["state"])}

  input_spec = (None if distiller is None else
                {"teacher": teacher_stage.outputs_spec(data, c.teacher_model)})
  return Program(init, segment, finish, segments, input_spec, data.load)
