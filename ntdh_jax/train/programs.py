"""The training programs of the NTDH study, as ``make_train(static) -> Program``.

Stages (``build_program(stage, static)``):

* ``teacher``: cross-entropy on the teacher view, optionally on a masked
  input (``feature_mask="importance"``: Algorithm 1's mask, built from an
  upstream ``joint`` run's importance). Outputs ``{"params",
  "feature_mask"}``; masked features are zeroed, so every mask ratio shares
  one input shape (the reference code slices the kept columns out instead,
  which for an MLP spans the same functions).
* ``student``: cross-entropy on the student view, plus a distillation term
  from a frozen upstream teacher when ``static["distill"] != "none"``, with
  Algorithm 2's per-sample mask when ``static["sample_mask"] == "ncjsd"``.
  The combination is ``CE + λ·KD`` (``kd_form="additive"``, the reference
  code's, λ = 1 there) or ``(1 − λ)·CE + λ·KD`` (``"convex"``).
* ``joint``: Algorithm 1's joint training of the two networks with
  Dist + CE + CE (Eq. 26), then the permutation importance of every teacher
  input feature on NCJSD. Outputs ``{"importance": f32[D_t]}``.

``static`` (hashable; decides the compiled program):
  ``data``: ``{"name": "ntdh", "random_state": 42}`` or ``{"name": "mfh",
  "n_train": 200, "n_test": 1000}``; ``model``: ``{"hidden": [16, 16],
  "init_scheme": "torch"}`` (``hidden: []`` is a linear classifier);
  ``epochs``; ``eval_every``; ``batch_size`` (0 = full batch);
  ``optimizer`` (``"sgd"`` or ``"adam"``); and per stage ``distill``,
  ``sample_mask``, ``kd_form``, ``feature_mask``, ``joint_distance``,
  ``importance_repeats``.

``hparams`` (traced scalars; swept under vmap): ``gamma`` (ntdh) or
``overlap`` (mfh), ``lr``, ``momentum`` (sgd), and as the stage needs
``temperature``, ``alpha``, ``beta``, ``kd_weight``, ``mask_ratio`` and
``mask_kind`` (0 = true, 1 = false, 2 = random; see ``ntdh_jax.masks`` —
traced, so the three kinds share one compiled program).

Data are regenerated from the run's data key at every segment (a few ms)
rather than carried, so checkpoints hold only parameters and optimiser state.
Teacher and student runs with the same seed see identical data, and start
from the same initial weights, as in the reference code.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import models
from ntdh_jax.data import synthetic
from ntdh_jax.train import objectives
from ntdh_jax.train.program import Program

STAGES = ("teacher", "student", "joint")
_DATA_KEY, _INIT_KEY, _LOOP_KEY, _MASK_KEY, _AUX_KEY = range(5)
_COMMON_KEYS = ("data", "model", "epochs", "eval_every", "batch_size",
                "optimizer")
_STAGE_KEYS = {
    "teacher": ("feature_mask",),
    "student": ("distill", "sample_mask", "kd_form", "teacher_model"),
    "joint": ("joint_distance", "importance_repeats"),
}
_MAX_BATCH = 512
_MINIBATCH_ONLY = {
    "rkd": "compares all triplets of a batch (O(N³) memory)",
    "crd": "scores every sample against K+1 memory rows (O(N·K·feat_dim))"}


def _hp(hparams, name: str):
  try:
    return hparams[name]
  except KeyError:
    raise KeyError(
        f"hparams is missing {name!r} (has {sorted(hparams)}).") from None


def _choice(static, name: str, options: tuple) -> str:
  value = static.get(name, options[0])
  if value not in options:
    raise ValueError(f"{name} must be one of {options}, got {value!r}.")
  return value


def _raw_key(key):
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  return key


# ----------------------------------------------------------------- pieces


def make_views(data: dict) -> tuple[Callable, int, int, int, int]:
  """``(views(hparams, key) -> Views, d_teacher, d_student, classes, n_train)``."""
  name = data.get("name")
  if name == "ntdh":
    base = synthetic.ntdh_base(data.get("random_state", 42))
    views = lambda hp, key: synthetic.ntdh_views(base, _hp(hp, "gamma"), key)
    d = synthetic.NTDH_NUM_FEATURES
    return views, d, d, synthetic.NTDH_NUM_CLASSES, base.x_train.shape[0]
  if name == "mfh":
    n_train, n_test = data.get("n_train", 200), data.get("n_test", 1000)
    views = lambda hp, key: synthetic.mfh_views(key, _hp(hp, "overlap"),
                                                n_train, n_test)
    shapes = jax.eval_shape(lambda: views({"overlap": 0},
                                          jax.random.PRNGKey(0)))
    return (views, shapes.teacher_train.shape[1],
            shapes.student_train.shape[1], 2, n_train)
  raise ValueError(f"data.name must be 'ntdh' or 'mfh', got {name!r}.")


def make_model(model: dict, num_classes: int) -> models.MLP:
  return models.MLP(hidden=tuple(model.get("hidden", (16, 16))),
                    num_classes=num_classes,
                    init_scheme=model.get("init_scheme", "torch"))


def make_optimizer(name: str) -> Callable[[Any, dict], tuple]:
  """``init(params, hparams) -> (tx, opt_state)`` with traced hyperparameters.

  ``optax.inject_hyperparams`` keeps the learning rate (and momentum) in the
  optimiser state, so each vmapped run carries its own values.
  """
  if name == "sgd":
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0)
    names = {"learning_rate": "lr", "momentum": "momentum"}
  elif name == "adam":
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    names = {"learning_rate": "lr"}
  else:
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}.")

  def init(params, hparams):
    state = tx.init(params)
    injected = {k: jnp.asarray(_hp(hparams, v), jnp.float32)
                for k, v in names.items()}
    return state._replace(hyperparams={**state.hyperparams, **injected})

  return tx, init


def _accuracy(logits, labels):
  return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _divergence_metrics(teacher_logits, student_logits, labels) -> dict:
  """Batch means of the NTDH metrics (only the binary ones when C = 2)."""
  kw = dict(teacher_logits=teacher_logits, student_logits=student_logits,
            labels=labels)
  if teacher_logits.shape[-1] >= 3:
    d = divergences.decompose(**kw)
    return {k: jnp.mean(getattr(d, k))
            for k in ("kl", "tckl", "nckl", "tcjsd", "ncjsd")}
  return {"kl": jnp.mean(divergences.kl(**kw)),
          "tckl": jnp.mean(divergences.tckl(**kw)),
          "tcjsd": jnp.mean(divergences.tcjsd(**kw))}


def _epochs_per_segment(static) -> tuple[int, int]:
  epochs, every = static["epochs"], static["eval_every"]
  if epochs < 1 or every < 1 or epochs % every:
    raise ValueError(
        f"epochs ({epochs}) must be a positive multiple of eval_every "
        f"({every}).")
  return epochs // every, every


def _take(x, rows):
  """``x[rows]``, or ``x`` itself for a full batch (``rows is None``)."""
  return x if rows is None else x[rows]


def _run_epochs(step, carry, key, n: int, batch_size: int, epochs: int):
  """Scans ``step(carry, rows, key) -> (carry, metrics)`` over epochs×batches.

  Full batch (``batch_size`` 0 or n) passes ``rows=None`` so no gather copies
  the data every step. Mini-batches reshuffle every epoch and drop the last
  partial batch, so all batches share one shape.
  """
  if batch_size in (0, n):
    epoch = lambda c, k: step(c, None, k)
  elif 0 < batch_size < n:
    num_batches = n // batch_size

    def epoch(c, k):
      k_perm, k_steps = jax.random.split(k)
      rows = jax.random.permutation(k_perm, n)[: num_batches * batch_size]
      keys = jax.random.split(k_steps, num_batches)
      c, metrics = jax.lax.scan(lambda c, rk: step(c, *rk), c,
                                (rows.reshape(num_batches, batch_size), keys))
      return c, jax.tree.map(lambda m: m[-1], metrics)
  else:
    raise ValueError(f"batch_size must be in [0, {n}], got {batch_size}.")

  carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
  return carry, jax.tree.map(lambda m: m[-1], metrics)


# ----------------------------------------------------------------- stages


def make_teacher(static: dict) -> Program:
  """Cross-entropy on the (optionally masked) teacher view."""
  views, d_t, _, classes, n = make_views(static["data"])
  model = make_model(static["model"], classes)
  tx, opt_init = make_optimizer(static.get("optimizer", "sgd"))
  segments, every = _epochs_per_segment(static)
  masked = _choice(static, "feature_mask", ("none", "importance")) != "none"
  bs = static.get("batch_size", 0)

  def init(hparams, key, inputs):
    key = _raw_key(key)
    params = model.init(jax.random.fold_in(key, _INIT_KEY),
                        jnp.zeros((1, d_t)))
    if masked:
      feature_mask = masks.feature_keep_mask(
          inputs["importance"], _hp(hparams, "mask_ratio"),
          _hp(hparams, "mask_kind"), jax.random.fold_in(key, _MASK_KEY))
    else:
      feature_mask = jnp.ones((d_t,), jnp.float32)
    return {"params": params, "opt_state": opt_init(params, hparams),
            "feature_mask": feature_mask, "key": key,
            "loop_key": jax.random.fold_in(key, _LOOP_KEY)}

  def segment(carry, hparams):
    v = views(hparams, jax.random.fold_in(carry["key"], _DATA_KEY))
    x = v.teacher_train * carry["feature_mask"]

    def step(c, rows, k):
      del k
      params, opt_state = c
      loss, grads = jax.value_and_grad(
          lambda p: jnp.mean(_ce(model.apply(p, _take(x, rows)),
                                 _take(v.y_train, rows))))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), {"ce": loss}

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, opt_state), m = _run_epochs(
        step, (carry["params"], carry["opt_state"]), k_seg, n, bs, every)
    test_logits = model.apply(params, v.teacher_test * carry["feature_mask"])
    metrics = {"train_ce": m["ce"],
               "test_acc": _accuracy(test_logits, v.y_test)}
    return {**carry, "params": params, "opt_state": opt_state,
            "loop_key": k_next}, metrics

  def finish(carry, hparams):
    del hparams
    kept = jnp.sum(carry["feature_mask"])
    return ({"kept_features": kept},
            {"params": carry["params"], "feature_mask": carry["feature_mask"]})

  input_spec = ({"importance": jax.ShapeDtypeStruct((d_t,), jnp.float32)}
                if masked else None)
  return Program(init, segment, finish, segments, input_spec)


def _teacher_outputs_spec(static: dict, d_t: int, classes: int):
  model = make_model(static.get("teacher_model", static["model"]), classes)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, d_t)))
  return {"params": params,
          "feature_mask": jax.ShapeDtypeStruct((d_t,), jnp.float32)}


def make_student(static: dict) -> Program:
  """Cross-entropy on the student view, plus distillation if configured."""
  views, d_t, d_s, classes, n = make_views(static["data"])
  model = make_model(static["model"], classes)
  teacher = make_model(static.get("teacher_model", static["model"]), classes)
  tx, opt_init = make_optimizer(static.get("optimizer", "sgd"))
  segments, every = _epochs_per_segment(static)
  bs = static.get("batch_size", 0)
  distill_name = static.get("distill", "none")
  sample_masked = _choice(static, "sample_mask", ("none", "ncjsd")) != "none"
  kd_form = _choice(static, "kd_form", ("additive", "convex"))
  distiller = (None if distill_name == "none"
               else objectives.make_distiller(distill_name))
  if sample_masked:
    if distiller is None or not distiller.per_example:
      raise ValueError(
          "sample_mask='ncjsd' needs a per-example distill (kl, decoupled, "
          f"dkd, fitnet), got distill={distill_name!r}.")
    if classes < 3:
      raise ValueError("sample_mask ranks samples by NCJSD, which needs >= 3 "
                       f"classes; data has {classes}.")
  if distill_name in _MINIBATCH_ONLY and not 0 < bs <= _MAX_BATCH:
    raise ValueError(
        f"distill={distill_name!r} {_MINIBATCH_ONLY[distill_name]}; set "
        f"batch_size to 1..{_MAX_BATCH}, got {bs} (0 = full batch of {n}).")
  d_hidden = (static["model"].get("hidden") or [d_s])[-1]
  d_teacher_hidden = (static.get("teacher_model", static["model"]).get("hidden")
                      or [d_t])[-1]

  def init(hparams, key, inputs):
    key = _raw_key(key)
    # Same init key as the teacher stage: same seed, same initial weights.
    params = {"model": model.init(jax.random.fold_in(key, _INIT_KEY),
                                  jnp.zeros((1, d_s)))}
    aux_state = {}
    if distiller is not None:
      params["aux"], aux_state = distiller.init(
          jax.random.fold_in(key, _AUX_KEY), d_hidden, d_teacher_hidden, n)
    return {"params": params, "opt_state": opt_init(params, hparams),
            "aux_state": aux_state, "key": key,
            "loop_key": jax.random.fold_in(key, _LOOP_KEY),
            "teacher": inputs}

  def combine(ce, kd, hparams):
    weight = _hp(hparams, "kd_weight")
    return ce + weight * kd if kd_form == "additive" else (
        (1.0 - weight) * ce + weight * kd)

  def segment(carry, hparams):
    v = views(hparams, jax.random.fold_in(carry["key"], _DATA_KEY))
    teacher_in = carry["teacher"]
    if distiller is not None:
      t_logits, t_feats = teacher.apply(
          teacher_in["params"], v.teacher_train * teacher_in["feature_mask"],
          return_features=True)

    def loss_fn(params, aux_state, rows, k):
      s_logits, s_feats = model.apply(
          params["model"], _take(v.student_train, rows), return_features=True)
      y = _take(v.y_train, rows)
      ce = jnp.mean(_ce(s_logits, y))
      if distiller is None:
        return ce, (ce, jnp.zeros(()), aux_state)
      k_loss, k_mask = jax.random.split(k)
      batch = objectives.Batch(
          s_logits, _take(t_logits, rows), s_feats, _take(t_feats, rows), y,
          jnp.arange(n) if rows is None else rows, v.y_train, k_loss)
      values, aux_state = distiller.loss(params["aux"], aux_state, batch,
                                         hparams)
      if not sample_masked:
        kd = jnp.mean(values)
      else:
        ncjsd = divergences.decompose(
            teacher_logits=_take(t_logits, rows),
            student_logits=jax.lax.stop_gradient(s_logits), labels=y).ncjsd
        keep = masks.sample_keep_mask(ncjsd, _hp(hparams, "mask_ratio"),
                                      _hp(hparams, "mask_kind"), k_mask)
        kd = jnp.sum(keep * values) / jnp.maximum(jnp.sum(keep), 1.0)
      return combine(ce, kd, hparams), (ce, kd, aux_state)

    def step(c, rows, k):
      params, opt_state, aux_state = c
      grads, (ce, kd, aux_state) = jax.grad(loss_fn, has_aux=True)(
          params, aux_state, rows, k)
      updates, opt_state = tx.update(grads, opt_state, params)
      return ((optax.apply_updates(params, updates), opt_state, aux_state),
              {"ce": ce, "kd": kd})

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, opt_state, aux_state), m = _run_epochs(
        step, (carry["params"], carry["opt_state"], carry["aux_state"]),
        k_seg, n, bs, every)
    s_test = model.apply(params["model"], v.student_test)
    metrics = {"train_ce": m["ce"], "test_acc": _accuracy(s_test, v.y_test)}
    if distiller is not None:
      metrics["train_kd"] = m["kd"]
      t_test = teacher.apply(teacher_in["params"],
                             v.teacher_test * teacher_in["feature_mask"])
      metrics.update(_divergence_metrics(t_test, s_test, v.y_test))
    return {**carry, "params": params, "opt_state": opt_state,
            "aux_state": aux_state, "loop_key": k_next}, metrics

  def finish(carry, hparams):
    del hparams
    return {}, {"params": carry["params"]["model"]}

  input_spec = (None if distiller is None
                else _teacher_outputs_spec(static, d_t, classes))
  return Program(init, segment, finish, segments, input_spec)


def make_joint(static: dict) -> Program:
  """Algorithm 1: joint Dist + CE + CE training, then permutation importance."""
  views, d_t, d_s, classes, n = make_views(static["data"])
  model = make_model(static["model"], classes)
  tx, opt_init = make_optimizer(static.get("optimizer", "sgd"))
  segments, every = _epochs_per_segment(static)
  bs = static.get("batch_size", 0)
  distance = _choice(static, "joint_distance", ("ncjsd", "kl", "mse"))
  repeats = static.get("importance_repeats", 10)

  def dist(t_logits, s_logits, y):
    if distance == "mse":
      return jnp.mean((t_logits - s_logits) ** 2)
    d = divergences.decompose(teacher_logits=t_logits,
                              student_logits=s_logits, labels=y)
    return jnp.mean(getattr(d, distance))

  def init(hparams, key, inputs):
    del inputs
    key = _raw_key(key)
    k_t, k_s = jax.random.split(jax.random.fold_in(key, _INIT_KEY))
    params = {"teacher": model.init(k_t, jnp.zeros((1, d_t))),
              "student": model.init(k_s, jnp.zeros((1, d_s)))}
    return {"params": params, "opt_state": opt_init(params, hparams),
            "key": key, "loop_key": jax.random.fold_in(key, _LOOP_KEY)}

  def segment(carry, hparams):
    v = views(hparams, jax.random.fold_in(carry["key"], _DATA_KEY))

    def loss_fn(params, rows):
      t = model.apply(params["teacher"], _take(v.teacher_train, rows))
      s = model.apply(params["student"], _take(v.student_train, rows))
      y = _take(v.y_train, rows)
      ce_t, ce_s = jnp.mean(_ce(t, y)), jnp.mean(_ce(s, y))
      d = dist(t, s, y)
      return ce_t + ce_s + d, {"ce_teacher": ce_t, "ce_student": ce_s,
                               "distance": d}

    def step(c, rows, k):
      del k
      params, opt_state = c
      grads, m = jax.grad(loss_fn, has_aux=True)(params, rows)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), m

    k_seg, k_next = jax.random.split(carry["loop_key"])
    (params, opt_state), m = _run_epochs(
        step, (carry["params"], carry["opt_state"]), k_seg, n, bs, every)
    metrics = {
        **m,
        "teacher_test_acc": _accuracy(
            model.apply(params["teacher"], v.teacher_test), v.y_test),
        "student_test_acc": _accuracy(
            model.apply(params["student"], v.student_test), v.y_test)}
    return {**carry, "params": params, "opt_state": opt_state,
            "loop_key": k_next}, metrics

  def finish(carry, hparams):
    v = views(hparams, jax.random.fold_in(carry["key"], _DATA_KEY))
    params = carry["params"]
    s_logits = model.apply(params["student"], v.student_train)

    def score(x_t):
      t_logits = model.apply(params["teacher"], x_t)
      return jnp.mean(divergences.decompose(
          teacher_logits=t_logits, student_logits=s_logits,
          labels=v.y_train).ncjsd)

    scores = masks.permutation_importance(
        score, v.teacher_train, jax.random.fold_in(carry["key"], _MASK_KEY),
        repeats)
    importance = masks.normalise_importance(scores)
    return {"baseline_ncjsd": score(v.teacher_train)}, {"importance": importance}

  return Program(init, segment, finish, segments, None)


_FACTORIES = {"teacher": make_teacher, "student": make_student,
              "joint": make_joint}


def build_program(stage: str, static: dict) -> Program:
  """The ``Program`` for ``stage`` (one of ``STAGES``) and its static config."""
  if stage not in _FACTORIES:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}.")
  unknown = sorted(set(static) - set(_COMMON_KEYS) - set(_STAGE_KEYS[stage]))
  if unknown:
    raise ValueError(
        f"static config of stage {stage!r} has unknown keys {unknown}; valid "
        f"keys: {sorted(_COMMON_KEYS + _STAGE_KEYS[stage])}.")
  return _FACTORIES[stage](static)
