"""``joint``: Algorithm 1's joint training, then permutation importance.

The teacher (``teacher_model`` on the teacher view) and the student
(``model`` on the student view) train together on Dist + CE + CE (NTDH
Eq. 26, Dist = NCJSD by default); then every teacher input feature (a
column, or a pixel of an image) is scored by how much permuting it across
samples moves the teacher–student NCJSD on the training set, ``M`` repeats
per feature, in batches of features and rows (``masks.
permutation_importance``). Outputs ``{"importance"}`` (min–max normalised,
the shape of Algorithm 1's mask) for masked teachers.

Hyperparameters: ``lr`` (+ ``momentum``) and the gap knob.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import divergences
from ntdh_jax import losses
from ntdh_jax import masks
from ntdh_jax.train.program import Program
from ntdh_jax.train.stages import common

DISTANCES = ("ncjsd", "kl", "mse")
# Algorithm 1's importance score → the ``divergences`` form computing it per
# example: the textbook NCJSD, or the authors' code's ½[KL(M‖P) + KL(M‖Q)]
# (``MNIST/distances/jsd.py``'s torch ``kl_div`` argument order).
IMPORTANCE_FORMS = {"paper": "paper", "reference_code": "reference_order"}


@dataclasses.dataclass(frozen=True)
class JointConfig(common.StageConfig):
  """Attributes (besides ``StageConfig``'s):
    joint_distance: ``"ncjsd"`` (the paper), ``"kl"`` or ``"mse"`` on logits.
    importance_repeats: M, permutations per feature.
    importance_permutations: ``"per_unit"`` (a fresh permutation per feature
      and repeat, the reference's) or ``"shared"`` (one per repeat for all
      features: M sorts instead of M·D; see ``masks.permutation_importance``).
    importance_form: the score whose change under permutation is a unit's
      importance: ``"paper"`` (the textbook NCJSD, Eq. 19) or
      ``"reference_code"`` (the authors' code's NCJSD,
      ½[KL(M‖P) + KL(M‖Q)]; ``divergences`` form ``"reference_order"``).
    importance_first_layer: score from the teacher's first pre-activation
      where the teacher begins with a Dense layer on its flattened input
      (``mlp``, ``mnist_fc`` with hidden layers): ``x W + b`` once, then a
      rank-K update per (repeat, feature) instead of a permuted copy of the
      input (``masks.permutation_importance(first_layer=...)``); another
      teacher is refused at build time. Equal to the
      default up to float32 rounding, not bit for bit, so off by default
      (the synthetic study's recorded results are bit for bit).
    teacher_model: the teacher network's config (default: ``model``).
  """
  # Added after results were recorded: left out of run ids at their defaults.
  OMIT_AT_DEFAULT = ("importance_form", "importance_first_layer")
  joint_distance: str = "ncjsd"
  importance_repeats: int = 10
  importance_permutations: str = "per_unit"
  importance_form: str = "paper"
  importance_first_layer: bool = False
  teacher_model: Mapping | None = None

  def __post_init__(self):
    super().__post_init__()
    common.fill_teacher_model(self)
    common.check_choice("joint_distance", self.joint_distance, DISTANCES)
    common._check_int("importance_repeats", self.importance_repeats, low=1)
    common.check_choice("importance_permutations",
                        self.importance_permutations, masks.PERMUTATIONS)
    common.check_choice("importance_form", self.importance_form,
                        tuple(IMPORTANCE_FORMS))
    if not isinstance(self.importance_first_layer, bool):
      raise ValueError("importance_first_layer must be True or False, got "
                       f"{self.importance_first_layer!r}.")


def hparams(c: JointConfig) -> dict:
  """``{name: Range}`` of the hyperparameters the program reads."""
  return common.base_hparams(c)


def _per_example(values, where):
  """Per-example mean over the pixels of a segmentation example."""
  if values.ndim == 1:
    return values
  axes = tuple(range(1, values.ndim))
  where = jnp.ones(values.shape, bool) if where is None else where
  return (jnp.sum(jnp.where(where, values, 0.0), axes)
          / jnp.maximum(jnp.sum(where, axes), 1))


def make(c: JointConfig) -> Program:
  data = common.Data(c.data)
  spec = data.spec
  student = common.network(c.model, spec)
  teacher = common.network(c.teacher_model, spec)
  if c.importance_first_layer and not teacher.has_first_layer:
    raise ValueError(
        "importance_first_layer=True needs a teacher that begins with a Dense "
        "layer on its flattened input (mlp or mnist_fc with hidden layers), "
        f"got teacher_model {dict(c.teacher_model)}.")
  tx, opt_init = common.make_optimizer(c.optimizer)
  segments = c.epochs // c.eval_every
  n = data.n_train
  segmentation = spec.label_shape != ()

  def dist(t_logits, s_logits, y, where):
    if c.joint_distance == "mse":
      return jnp.mean((t_logits - s_logits) ** 2)
    d = divergences.decompose(teacher_logits=t_logits,
                              student_logits=s_logits, labels=y, where=where)
    return losses.reduce_loss(getattr(d, c.joint_distance), where, "mean")

  def init(hparams, key, arrays, inputs):
    del arrays, inputs
    key = common.raw_key(key)
    k_t, k_s = jax.random.split(jax.random.fold_in(key, common.INIT_KEY))
    t_params, t_state = common.split_variables(
        teacher.init(k_t, data.example("teacher")))
    s_params, s_state = common.split_variables(
        student.init(k_s, data.example("student")))
    params = {"teacher": t_params, "student": s_params}
    return {"params": params, "state": {"teacher": t_state,
                                        "student": s_state},
            "opt_state": opt_init(params, hparams), "key": key,
            "loop_key": jax.random.fold_in(key, common.LOOP_KEY)}

  def segment(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])

    def loss_fn(params, state, rows, k):
      def forward(net, role, x_stored, salt):
        x = data.input(common.take(x_stored, rows), role, hparams,
                       jax.random.fold_in(k, common.PREPARE_KEY + salt))
        logits, _, new = net.apply(
            common.join_variables(params[role], state[role]), x, train=True,
            key=jax.random.fold_in(k, common.DROPOUT_KEY + salt))
        return logits, common.split_variables(new)[1]

      t, t_state = forward(teacher, "teacher", v.teacher_train, 0)
      s, s_state = forward(student, "student", v.student_train, 10)
      y = common.take(v.y_train, rows)
      where = data.valid(y)
      ce_t = common.cross_entropy(t, y, where)
      ce_s = common.cross_entropy(s, y, where)
      d = dist(t, s, y, where)
      return ce_t + ce_s + d, ({"ce_teacher": ce_t, "ce_student": ce_s,
                                "distance": d},
                               {"teacher": t_state, "student": s_state})

    def step(c_, rows, k):
      params, state, opt_state = c_
      grads, (m, state) = jax.grad(loss_fn, has_aux=True)(params, state,
                                                          rows, k)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), state, opt_state), m

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, state, opt_state), m = common.run_epochs(
        step, (carry["params"], carry["state"], carry["opt_state"]), k_seg,
        n, c.batch_size, c.eval_every)
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)

    def sums(rows, weight):
      out = {}
      for role, net, x_stored in (("teacher", teacher, v.teacher_test),
                                  ("student", student, v.student_test)):
        x = data.input(common.take(x_stored, rows), role, hparams, eval_key)
        y = common.take(v.y_test, rows)
        logits, _ = common.apply_eval(
            net, common.join_variables(params[role], state[role]), x)
        out[role] = common.classification_sums(
            logits, y, data.valid(y), weight, spec.num_classes, segmentation)
      return out

    totals = common.batched_sums(sums, data.n_test, c.eval_batch_size)
    metrics = {**m,
               **common.classification_metrics(totals["teacher"],
                                                "teacher_test_"),
               **common.classification_metrics(totals["student"],
                                               "student_test_")}
    return {**carry, "params": params, "state": state,
            "opt_state": opt_state, "loop_key": k_next}, metrics

  def finish(carry, hparams, arrays):
    v = data.views(arrays, hparams, carry["key"])
    params, state = carry["params"], carry["state"]
    eval_key = jax.random.fold_in(carry["key"], common.EVAL_KEY)
    t_vars = common.join_variables(params["teacher"], state["teacher"])
    s_vars = common.join_variables(params["student"], state["student"])

    def student_logits(rows):
      x = data.input(common.take(v.student_train, rows), "student", hparams,
                     eval_key)
      return common.apply_eval(student, s_vars, x)[0]

    s_logits = common.batched_map(student_logits, n, c.eval_batch_size)
    x_teacher = data.input(v.teacher_train, "teacher", hparams, eval_key)
    first_layer = (teacher.first_layer(t_vars) if c.importance_first_layer
                   else None)

    def score(x_rows, rows):
      """Per-example teacher–student NCJSD (``importance_form``) of
      training rows ``rows``; with ``first_layer``, ``x_rows`` are the
      teacher's first pre-activation rows.

      ``permutation_importance`` hands over contiguous blocks of rows, so a
      slice (which XLA folds away) rather than a gather picks their labels
      and student logits: with one block that keeps the arithmetic of a
      full-batch pass."""
      t_logits = teacher.apply(t_vars, x_rows, train=False,
                               from_first_layer=first_layer is not None)[0]
      block = lambda a: jax.lax.dynamic_slice_in_dim(a, rows[0], rows.shape[0])
      y = block(v.y_train)
      where = data.valid(y)
      d = divergences.decompose(teacher_logits=t_logits,
                                student_logits=block(s_logits), labels=y,
                                where=where,
                                form=IMPORTANCE_FORMS[c.importance_form])
      return _per_example(d.ncjsd, where)

    scores = masks.permutation_importance(
        score, x_teacher, jax.random.fold_in(carry["key"], common.MASK_KEY),
        c.importance_repeats, row_batch=c.eval_batch_size,
        permutations=c.importance_permutations, first_layer=first_layer)
    baseline = masks.mean_score(score, x_teacher, row_batch=c.eval_batch_size,
                                first_layer=first_layer)
    return ({"baseline_ncjsd": baseline},
            {"importance": masks.normalise_importance(scores)})

  return Program(init, segment, finish, segments, None, data.load)
