"""Tests of ntdh_jax.train.stages: every stage compiles under jit, runs,
and keeps the Program contract the sweep engine relies on."""

import functools
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import data as data_lib
from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import models
from ntdh_jax.errors import UserError
from ntdh_jax.train import objectives
from ntdh_jax.train import stages
from ntdh_jax.train.stages import common
from tests import reference_losses as ref
from tests.fast_jit import fast_jit

_jit = fast_jit  # many small programs: compile them cheaply

NTDH = {"data": {"name": "ntdh"}, "model": {"name": "mlp", "hidden": [8]},
        "epochs": 4, "eval_every": 2}
MFH = {"data": {"name": "mfh", "n_train": 128, "n_test": 128},
       "model": {"name": "mlp", "hidden": []}, "epochs": 2, "eval_every": 1}
NTDH_DATA = data_lib.load_arrays(NTDH["data"])
MFH_DATA = data_lib.load_arrays(MFH["data"])
NTDH_HP = {"gamma": 0.5, "lr": 0.1, "momentum": 0.9}
MFH_HP = {"overlap": 5.0, "lr": 0.1, "momentum": 0.9}
KD_HP = {"temperature": 4.0, "alpha": 1.0, "beta": 8.0, "kd_weight": 1.0}
KEY = jax.random.PRNGKey(0)
ALL_DIVERGENCES = {"kl", "tckl", "nckl", "tcjsd", "ncjsd"}
BINARY_DIVERGENCES = {"kl", "tckl", "tcjsd"}  # C = 2 has no non-target part
JOINT_KEYS = {"ce_teacher", "ce_student", "distance", "teacher_test_acc",
              "student_test_acc"}


def _static(base, **changes):
  return {**base, **changes}


def _hparams(*dicts, **changes):
  """One run's hparams as strong f32 scalars (weak Python floats would
  compile a second program)."""
  merged = {k: v for d in dicts for k, v in d.items()}
  merged.update(changes)
  return {k: jnp.asarray(v, jnp.float32) for k, v in merged.items()}


def _stack(hparams_list):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *hparams_list)


@functools.lru_cache(maxsize=None)
def _compiled(stage, static_json):
  program = stages.build_program(stage, json.loads(static_json))
  return program, _jit(program.train)


def _run(stage, static, hparams, key=KEY, inputs=None):
  """``jit(program.train)``, compiled once per (stage, static)."""
  program, train = _compiled(stage, json.dumps(static, sort_keys=True))
  return program, jax.device_get(train(hparams, key, program.load(), inputs))


def _teacher_inputs(result):
  return {"teacher": result[2]}


def _assert_finite(tree):
  for leaf in jax.tree.leaves(tree):
    assert np.all(np.isfinite(leaf)), tree


def _check_run(program, result, final_keys, history_keys):
  """Documented keys, scalar finals and ``[num_segments]`` finite history."""
  final, history, outputs = result
  assert set(final) == set(final_keys)
  assert set(history) == set(history_keys)
  for value in final.values():
    assert np.shape(value) == ()
  for value in history.values():
    assert np.shape(value) == (program.num_segments,)
  _assert_finite((final, history, outputs))


def _shapes(tree):
  return jax.tree.map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), tree)


def _assert_trees_equal(a, b):
  """Bitwise equality of two pytrees of arrays (same structure)."""
  chex.assert_trees_all_equal_structs(a, b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _differs(a, b):
  return any(not np.array_equal(x, y)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def teacher():
  """The plain ntdh teacher: program, its jitted train (retrace-guarded) and
  one result."""
  program = stages.build_program("teacher", NTDH)
  train = _jit(chex.assert_max_traces(program.train, n=1))
  return program, train, jax.device_get(train(_hparams(NTDH_HP), KEY,
                                              NTDH_DATA))


@pytest.fixture(scope="module")
def mfh_teacher():
  return _run("teacher", MFH, _hparams(MFH_HP))


@pytest.fixture(scope="module")
def joint():
  return _run("joint", _static(NTDH, importance_repeats=2), _hparams(NTDH_HP))


# ------------------------------------------------------------------ teacher


def test_teacher_runs(teacher):
  """jit(train) of the teacher: finite documented metrics, all 50 features."""
  program, _, result = teacher
  _check_run(program, result, {"kept_features"}, {"train_ce", "test_acc"})
  final, history, outputs = result
  assert program.num_segments == 2 and program.input_spec is None
  assert final["kept_features"] == 50
  np.testing.assert_array_equal(outputs["feature_mask"], np.ones(50))
  assert history["train_ce"][-1] < history["train_ce"][0]
  # The outputs are what a student stage expects of its teacher.
  student = stages.build_program("student", _static(NTDH, distill="kl"))
  assert _shapes({"teacher": outputs}) == _shapes(student.input_spec)


def test_mfh_teacher_with_linear_model_runs(mfh_teacher):
  """MFH data and ``hidden: []``: a linear teacher over the 25-d view."""
  program, result = mfh_teacher
  _check_run(program, result, {"kept_features"}, {"train_ce", "test_acc"})
  assert result[0]["kept_features"] == 25
  params = result[2]["variables"]["params"]
  assert set(params) == {"head"} and params["head"]["kernel"].shape == (25, 2)


def test_minibatch_teacher_runs_and_differs_from_full_batch(teacher):
  """batch_size 500 takes 12 shuffled steps per epoch, not one full step."""
  _, _, full = teacher
  program, result = _run("teacher", _static(NTDH, batch_size=500),
                         _hparams(NTDH_HP))
  _check_run(program, result, {"kept_features"}, {"train_ce", "test_acc"})
  assert _differs(result[1], full[1]) and _differs(result[2], full[2])
  # 12× the steps: the minibatch run fits the training data better.
  assert result[1]["train_ce"][-1] < full[1]["train_ce"][-1]


# ------------------------------------------------------------------ student


@pytest.mark.parametrize("distill",
                         ("none", "kl", "dkd", "fitnet"))
def test_student_runs_on_ntdh(distill, teacher):
  """Each per-example distillation trains with finite documented metrics."""
  inputs = None if distill == "none" else _teacher_inputs(teacher[2])
  program, result = _run("student", _static(NTDH, distill=distill),
                         _hparams(NTDH_HP, KD_HP), inputs=inputs)
  keys = {"train_ce", "test_acc"}
  if distill != "none":
    keys |= {"train_kd"} | ALL_DIVERGENCES
  _check_run(program, result, set(), keys)
  _, history, outputs = result
  assert set(outputs) == {"variables"}
  if distill != "none":
    assert np.all(history["train_kd"] >= 0)
    _, plain = _run("student", NTDH, _hparams(NTDH_HP, KD_HP))
    assert _differs(outputs, plain[2])  # the KD term changed training


@pytest.mark.parametrize("distill, batch_size",
                         (("pkt", 0), ("sp", 0), ("rkd", 64), ("crd", 64)))
def test_student_runs_on_mfh(distill, batch_size, mfh_teacher):
  """Batch-level distillations on MFH (2 classes: only binary divergences);
  RKD/CRD on 64-sample mini-batches."""
  program, result = _run(
      "student", _static(MFH, distill=distill, batch_size=batch_size),
      _hparams(MFH_HP, KD_HP), inputs=_teacher_inputs(mfh_teacher[1]))
  _check_run(program, result, set(),
             {"train_ce", "test_acc", "train_kd"} | BINARY_DIVERGENCES)


# ----------------------------------------------------- feature wiring

# Weights unlike the authors' 1 and 0.1, and T != 1, so a swapped weight or
# a dropped T² shows.
WIRING_HP = {"method_weight": 0.3, "kl_weight": 0.7, "temperature": 2.0}


def _wiring_batch(n=12, classes=5, d_student=7, d_teacher=6):
  """A fixed batch whose features and logits differ, so a match with the
  reference also says which of them a wiring compared."""
  rng = np.random.default_rng(3)
  normal = lambda *shape: rng.normal(size=shape).astype(np.float32)
  labels = np.arange(n) % classes
  return objectives.Batch(
      student_logits=2.0 * normal(n, classes),
      teacher_logits=2.0 * normal(n, classes),
      student_features=normal(n, d_student),
      teacher_features=normal(n, d_teacher), labels=labels, where=None,
      indices=np.arange(n), dataset_labels=labels, key=KEY)


def _plus_kl(method_values, b):
  """The logits wiring's KD from the method's float64 values (per example
  or a batch mean, as the method is)."""
  kl = ref.kd(b.student_logits, b.teacher_logits, WIRING_HP["temperature"])
  kl = kl if np.ndim(method_values) else kl.mean()
  return (WIRING_HP["method_weight"] * method_values
          + WIRING_HP["kl_weight"] * kl)


def _fitnet_features(b, params):
  kernel = np.asarray(params["params"]["Dense_0"]["kernel"], np.float64)
  bias = np.asarray(params["params"]["Dense_0"]["bias"], np.float64)
  hint = np.asarray(b.student_features, np.float64) @ kernel + bias
  return ref.fitnet(hint, b.teacher_features)


# (wiring, method) -> float64 reference of its values on (batch, aux params).
WIRED_REFERENCES = {
    ("features", "pkt"): lambda b, p: ref.pkt(b.student_features,
                                              b.teacher_features),
    ("features", "sp"): lambda b, p: ref.sp(b.student_features,
                                            b.teacher_features),
    ("features", "fitnet"): _fitnet_features,
    ("logits", "pkt"): lambda b, p: _plus_kl(
        ref.pkt(b.student_logits, b.teacher_logits), b),
    ("logits", "sp"): lambda b, p: _plus_kl(
        ref.sp(b.student_logits, b.teacher_logits), b),
    ("logits", "fitnet"): lambda b, p: _plus_kl(
        ref.authors_hint(b.student_logits, b.teacher_logits), b),
}


@pytest.mark.parametrize("wiring, method", sorted(WIRED_REFERENCES))
def test_feature_wiring_loss_equals_float64_reference(wiring, method):
  """Each wiring's distillation values on a fixed batch: the method on the
  penultimate features, or (the authors' train_kd) method_weight · method
  on the logits + kl_weight · KL_T · T², FitNet through the authors'
  BatchNorm + ReLU; per example for FitNet, a batch scalar otherwise."""
  b = _wiring_batch()
  widths = ((b.student_features.shape[1], b.teacher_features.shape[1])
            if wiring == "features" else (5, 5))
  distiller = objectives.make_distiller(method, wiring)
  params, state = _jit(distiller.init, static_argnums=(1, 2, 3))(
      jax.random.PRNGKey(1), *widths, 12)
  values, _ = _jit(distiller.loss)(params, state, b, _hparams(WIRING_HP))
  want = WIRED_REFERENCES[wiring, method](b, params)
  assert np.shape(values) == np.shape(want) == ((12,) if method == "fitnet"
                                                else ())
  np.testing.assert_allclose(values, want, rtol=2e-5, atol=1e-6)


def test_logit_wired_crd_keeps_its_heads_untrained():
  """The authors never optimise CRD's heads: with the logits wiring they
  are C-wide state, not parameters, and a loss call returns them as they
  were (while the memory banks move)."""
  b = _wiring_batch()
  distiller = objectives.make_distiller("crd", "logits")
  params, (heads, memory) = _jit(distiller.init, static_argnums=(1, 2, 3))(
      jax.random.PRNGKey(1), 5, 5, 12)
  assert params == {}
  assert heads["student"]["params"]["Dense_0"]["kernel"].shape == (5, 128)
  values, (new_heads, new_memory) = _jit(distiller.loss)(
      params, (heads, memory), b, _hparams(WIRING_HP))
  assert np.shape(values) == () and np.isfinite(values)
  _assert_trees_equal(new_heads, heads)
  assert _differs(new_memory, memory)


def test_default_feature_wiring_keeps_run_ids():
  """The default wiring is left out of the normalised config, so every run
  planned before the option existed keeps its id (this one was recorded
  then); ``"logits"`` is another program and declares its weights."""
  static = _static(NTDH, distill="pkt")
  spelt = stages.normalise("student", _static(static,
                                              feature_wiring="features"))
  assert spelt == stages.normalise("student", static)
  assert "feature_wiring" not in spelt
  hp = {**NTDH_HP, "kd_weight": 1.0}
  default = stages.run_spec("student", static, hp, 0)
  assert default.run_id == "fbd1a116490b4c62"
  logits = stages.run_spec(
      "student", _static(static, feature_wiring="logits"),
      {**hp, **objectives.AUTHORS_LOGIT_HPARAMS["pkt"]}, 0)
  assert logits.static_dict["feature_wiring"] == "logits"
  assert logits.signature != default.signature
  with pytest.raises(UserError, match="kl_weight.*method_weight"):
    stages.run_spec("student", _static(static, feature_wiring="logits"),
                    hp, 0)


def test_student_with_logit_wiring_trains(mfh_teacher):
  """The authors' wiring with their weights trains: finite documented
  metrics and a non-negative KD term (FitNet: per example, through the
  authors' BatchNorm + ReLU, plus KL)."""
  program, result = _run(
      "student", _static(MFH, distill="fitnet", feature_wiring="logits"),
      _hparams(MFH_HP, objectives.AUTHORS_LOGIT_HPARAMS["fitnet"]),
      inputs=_teacher_inputs(mfh_teacher[1]))
  _check_run(program, result, set(),
             {"train_ce", "test_acc", "train_kd"} | BINARY_DIVERGENCES)
  assert np.all(result[1]["train_kd"] >= 0)


KINDS = {kind: float(code) for code, kind in enumerate(masks.MASK_KINDS)}
SAMPLE_MASKED = _static(NTDH, distill="kl", sample_mask="ncjsd")


@pytest.fixture(scope="module")
def sample_mask_runs(teacher):
  """kl students with each Algorithm 2 mask kind (one compiled program, the
  kind is a traced hparam): ratio 0, ratio 0.5, and ratio 0.5 at lr 0 (where
  training never moves the student)."""
  return {
      kind: {name: _run("student", SAMPLE_MASKED,
                        _hparams(NTDH_HP, KD_HP, mask_kind=code, **hp),
                        inputs=_teacher_inputs(teacher[2]))
             for name, hp in (("zero", {"mask_ratio": 0.0}),
                              ("half", {"mask_ratio": 0.5}),
                              ("frozen", {"mask_ratio": 0.5, "lr": 0.0}))}
      for kind, code in KINDS.items()}


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_student_with_sample_mask(kind, sample_mask_runs, teacher):
  """Masked kl students run; ratio 0 is the unmasked student, ratio 0.5 not."""
  runs = sample_mask_runs[kind]
  program, half = runs["half"]
  _check_run(program, half, set(),
             {"train_ce", "test_acc", "train_kd"} | ALL_DIVERGENCES)
  _, unmasked = _run("student", _static(NTDH, distill="kl"),
                     _hparams(NTDH_HP, KD_HP),
                     inputs=_teacher_inputs(teacher[2]))
  chex.assert_trees_all_close(runs["zero"][1][1:], unmasked[1:], rtol=1e-6,
                              atol=1e-7)
  assert _differs(half[2], unmasked[2])


def test_sample_mask_kinds_keep_the_samples_they_claim(sample_mask_runs):
  """With the student frozen (lr 0) the recorded KD mean is over the kept
  samples: keeping the least NCJSD-divergent half ("true") gives a smaller KD
  than a random half, which is smaller than keeping the most divergent."""
  kd = {kind: sample_mask_runs[kind]["frozen"][1][1]["train_kd"][-1]
        for kind in masks.MASK_KINDS}
  assert kd["true"] < kd["random"] < kd["false"], kd
  halves = [sample_mask_runs[k]["half"][1][2] for k in masks.MASK_KINDS]
  assert _differs(halves[0], halves[1]) and _differs(halves[1], halves[2])


# -------------------------------------------------------------- Algorithm 1


def test_joint_runs_and_scores_every_teacher_feature(joint):
  """Joint training, then importance in [0, 1] for each of the 50 inputs."""
  program, result = joint
  _check_run(program, result, {"baseline_ncjsd"}, JOINT_KEYS)
  final, _, outputs = result
  assert 0 <= final["baseline_ncjsd"] <= math.log(2)
  importance = outputs["importance"]
  assert importance.shape == (50,)
  assert importance.min() == 0.0 and importance.max() == 1.0


def test_joint_importance_form_changes_only_the_score(joint):
  """``importance_form="reference_code"`` trains the same pair and scores it
  with the authors' NCJSD: the same training, another baseline and
  importance."""
  program, result = _run("joint", _static(NTDH, importance_repeats=2,
                                          importance_form="reference_code"),
                         _hparams(NTDH_HP))
  final, history, outputs = result
  _assert_trees_equal(history["ce_teacher"], joint[1][1]["ce_teacher"])
  assert abs(final["baseline_ncjsd"] - joint[1][0]["baseline_ncjsd"]) > 1e-4
  assert outputs["importance"].shape == (50,)
  assert _differs(outputs["importance"], joint[1][2]["importance"])


def test_joint_importance_first_layer_is_the_same_importance(joint):
  """``importance_first_layer=True`` (the MLP teacher scored from its first
  pre-activation, a rank-1 update per feature and repeat) trains the same
  pair and gives the default's baseline and importance up to float32
  rounding (another program: XLA may round its training differently)."""
  program, result = _run("joint", _static(NTDH, importance_repeats=2,
                                          importance_first_layer=True),
                         _hparams(NTDH_HP))
  final, history, outputs = result
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6),
               history, joint[1][1])
  # Off, the option is left out of the static config (run ids unchanged).
  assert "importance_first_layer" not in stages.normalise("joint", NTDH)
  assert stages.normalise("joint", _static(NTDH, importance_first_layer=True))[
      "importance_first_layer"]
  np.testing.assert_allclose(final["baseline_ncjsd"],
                             joint[1][0]["baseline_ncjsd"], rtol=1e-6)
  np.testing.assert_allclose(outputs["importance"], joint[1][2]["importance"],
                             rtol=0, atol=1e-4)


def test_masked_teacher_keeps_d_minus_floor_rd_features(joint, teacher):
  """An importance-masked teacher, vmapped over (kind, ratio), keeps
  D − floor(r·D) inputs: "true" the most important, "false" the least;
  ratio 0 is the plain teacher."""
  importance = joint[1][2]["importance"]
  program = stages.build_program("teacher",
                                 _static(NTDH, feature_mask="importance"))
  assert _shapes(program.input_spec) == _shapes({"joint": joint[1][2]})
  runs = (("true", 0.0), ("true", 0.1), ("true", 0.5), ("true", 0.9),
          ("false", 0.5), ("random", 0.5))
  hp = _stack([_hparams(NTDH_HP, mask_kind=KINDS[k], mask_ratio=r)
               for k, r in runs])
  final, history, outputs = jax.device_get(
      _jit(jax.vmap(program.train, in_axes=(0, None, None, None)))(
          hp, KEY, NTDH_DATA, {"joint": {"importance": importance}}))
  _assert_finite((final, history, outputs))
  np.testing.assert_array_equal(final["kept_features"],
                                [50, 45, 25, 5, 25, 25])
  kept = outputs["feature_mask"] == 1
  np.testing.assert_array_equal(kept.sum(-1), final["kept_features"])
  for i, (kind, ratio) in enumerate(runs):
    if kind != "random":
      np.testing.assert_array_equal(
          outputs["feature_mask"][i],
          masks.feature_keep_mask(importance, ratio, kind, KEY))
  for i in (1, 2, 3):  # "true": every kept input outranks every removed one
    assert importance[kept[i]].min() >= importance[~kept[i]].max()
  assert importance[kept[4]].max() <= importance[~kept[4]].min()  # "false"
  assert not np.array_equal(kept[5], kept[2]) and not np.array_equal(
      kept[5], kept[4])
  plain = teacher[2]
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], history),
                              plain[1], rtol=1e-6)
  assert _differs(jax.tree.map(lambda x: x[3], history), plain[1])


# ------------------------------------------------------- Program contract


def test_train_equals_engine_path():
  """train (one scan) == init, segment × k, finish called one by one, bitwise
  (minibatch teacher, so the loop key's hand-over between segments counts)."""
  static = _static(NTDH, batch_size=500)
  program, result = _run("teacher", static, _hparams(NTDH_HP))
  hp = _hparams(NTDH_HP)
  carry = _jit(program.init)(hp, KEY, NTDH_DATA, None)
  segment = _jit(program.segment)
  history = []
  for _ in range(program.num_segments):
    carry, metrics = segment(carry, hp, NTDH_DATA)
    history.append(metrics)
  final, outputs = _jit(program.finish)(carry, hp, NTDH_DATA)
  by_hand = (final, _stack(history), outputs)
  _assert_trees_equal(jax.device_get(by_hand), result)


def test_vmapped_teacher_equals_loop(teacher):
  """vmap over 3 learning rates and 3 keys == 3 single runs."""
  program, train, _ = teacher
  keys = jax.random.split(jax.random.PRNGKey(7), 3)
  runs = [_hparams(NTDH_HP, lr=lr) for lr in (0.05, 0.1, 0.3)]
  stacked = jax.device_get(
      _jit(jax.vmap(program.train, in_axes=(0, 0, None)))(
          _stack(runs), keys, NTDH_DATA))
  looped = _stack([train(hp, k, NTDH_DATA) for hp, k in zip(runs, keys)])
  chex.assert_trees_all_close(stacked, jax.device_get(looped), rtol=1e-6,
                              atol=1e-6)
  assert _differs(jax.tree.map(lambda x: x[0], stacked[2]),
                  jax.tree.map(lambda x: x[1], stacked[2]))


def test_vmapped_student_equals_loop(teacher):
  """vmap over 3 temperatures and 3 keys (one frozen teacher) == 3 runs."""
  program, _ = _compiled("student",
                         json.dumps(_static(NTDH, distill="kl"), sort_keys=True))
  inputs = _teacher_inputs(teacher[2])
  keys = jax.random.split(jax.random.PRNGKey(8), 3)
  runs = [_hparams(NTDH_HP, KD_HP, temperature=t) for t in (1.0, 2.0, 4.0)]
  stacked = jax.device_get(
      _jit(jax.vmap(program.train, in_axes=(0, 0, None, None)))(
          _stack(runs), keys, NTDH_DATA, inputs))
  looped = _stack([
      _run("student", _static(NTDH, distill="kl"), hp, k, inputs)[1]
      for hp, k in zip(runs, keys)])
  chex.assert_trees_all_close(stacked, looped, rtol=1e-6, atol=1e-6)
  assert _differs(stacked[1]["train_kd"][0], stacked[1]["train_kd"][2])


def test_new_hparams_do_not_retrace(teacher):
  """jit(train) called with new hparam values and a new key reuses its trace
  (the fixture's train is wrapped in chex.assert_max_traces(n=1))."""
  _, train, first = teacher
  again = jax.device_get(train(_hparams(NTDH_HP, lr=0.02, gamma=0.0),
                               jax.random.PRNGKey(3), NTDH_DATA))
  assert _differs(again[1], first[1])  # the new values were used
  assert train._cache_size() == 1


def test_teacher_and_student_see_the_same_data(teacher):
  """Both stages build their views from the run key's data fold: their
  reported test metrics are reproduced from the source's ``views`` at that
  key, and not at another key."""
  source, config = data_lib.parse(NTDH["data"])
  net = models.build(NTDH["model"], 4)
  hp = _hparams(NTDH_HP, KD_HP)
  _, _, (_, t_history, t_out) = teacher
  _, (_, s_history, s_out) = _run("student", _static(NTDH, distill="kl"), hp,
                                  inputs={"teacher": t_out})

  @_jit
  def reproduce(data_key):
    views = source.views(config, NTDH_DATA, hp, data_key)
    t_logits = net.apply(t_out["variables"], views.teacher_test,
                         train=False)[0]
    s_logits = net.apply(s_out["variables"], views.student_test,
                         train=False)[0]
    accuracy = lambda z: jnp.mean(jnp.argmax(z, -1) == views.y_test)
    kl = divergences.kl(teacher_logits=t_logits, student_logits=s_logits,
                        labels=views.y_test)
    return accuracy(t_logits), accuracy(s_logits), jnp.mean(kl)

  reported = (t_history["test_acc"][-1], s_history["test_acc"][-1],
              s_history["kl"][-1])
  same = reproduce(jax.random.fold_in(KEY, common.DATA_KEY))
  other = reproduce(jax.random.fold_in(KEY, common.DATA_KEY + 1))
  np.testing.assert_allclose(same, reported, rtol=1e-5)
  assert not np.allclose(other[1:], reported[1:], rtol=1e-5)


def test_teacher_and_student_start_from_the_same_weights():
  """Same seed, same architecture and width: identical initial parameters."""
  hp = _hparams(NTDH_HP)
  init = lambda stage: _jit(stages.build_program(stage, NTDH).init)(
      hp, KEY, NTDH_DATA, None)["params"]
  _assert_trees_equal(init("teacher"), init("student")["model"])


# ------------------------------------------------------------ bad configs


@pytest.mark.parametrize("stage, changes, match", (
    ("teacher", {"epochs": 5}, "epochs"),
    ("teacher", {"eval_every": 0}, "eval_every"),
    ("teacher", {"optimizer": "rmsprop"}, "optimizer"),
    ("teacher", {"data": {"name": "cifar"}}, "data.name"),
    ("teacher", {"data": {"name": "ntdh", "seed": 1}}, "seed"),
    ("teacher", {"model": {"name": "mlp", "width": 3}}, "width"),
    ("teacher", {"model": {"name": "resnet"}}, "resnet"),
    ("student", {"distill": "decoupled"}, "distill"),
    ("student", {"distill": "kd"}, "distill"),
    ("student", {"distill": "pkt", "sample_mask": "ncjsd"}, "sample_mask"),
    ("student", {"distill": "kl", "sample_mask": "true"}, "sample_mask"),
    ("teacher", {"feature_mask": "true"}, "feature_mask"),
    ("student", {"distill": "rkd"}, "batch_size"),
    ("student", {"distill": "crd"}, "batch_size"),
    ("student", {"distill": "crd", "batch_size": 1000}, "batch_size"),
    ("student", {"distill": "kl", "kd_form": "product"}, "kd_form"),
    ("student", {"distill": "pkt", "feature_wiring": "logit"},
     r"feature_wiring must be one of \['features', 'logits'\], got 'logit'"),
    ("student", {"distill": "kl", "feature_wiring": "logits"},
     r"feature_wiring='logits' rewires the feature methods \['crd', "
     r"'fitnet', 'pkt', 'rkd', 'sp'\]; distill='kl'"),
    ("joint", {"joint_distance": "l1"}, "joint_distance"),
    ("joint", {"importance_form": "authors"}, "importance_form"),
    ("joint", {"importance_first_layer": 1}, "importance_first_layer"),
    ("joint", {"importance_first_layer": True,
               "teacher_model": {"name": "mlp", "hidden": []}},
     r"importance_first_layer=True needs a teacher that begins with a Dense"),
))
def test_bad_static_config_raises(stage, changes, match):
  """A bad static value is a ValueError naming its key, at build time."""
  with pytest.raises(ValueError, match=match):
    stages.build_program(stage, _static(NTDH, **changes))


def test_unknown_stage_and_two_class_sample_mask_raise():
  """Unknown stages, and NCJSD sample masks on 2-class data, are rejected."""
  with pytest.raises(ValueError, match="stage"):
    stages.build_program("distill", NTDH)
  with pytest.raises(ValueError, match="sample_mask"):
    stages.build_program("student",
                         _static(MFH, distill="kl", sample_mask="ncjsd"))


def test_unknown_or_missing_static_key_raises():
  """A misspelt static key is a ValueError naming it, not a silent default;
  so is a missing required one."""
  with pytest.raises(ValueError, match="distil"):
    stages.build_program("student", _static(NTDH, distil="kl"))
  with pytest.raises(ValueError, match="missing.*epochs"):
    stages.build_program("teacher", {k: v for k, v in NTDH.items()
                                     if k != "epochs"})


def test_static_configs_are_normalised_before_hashing():
  """Defaults spelt out or left out: one program, one run id."""
  spelt = _static(NTDH, batch_size=0, optimizer="sgd",
                  data={"name": "ntdh", "random_state": 42},
                  model=models.normalise(NTDH["model"]))
  assert stages.normalise("teacher", spelt) == stages.normalise("teacher",
                                                                NTDH)
  full = stages.normalise("teacher", NTDH)
  assert stages.normalise("teacher", full) == full  # idempotent
  specs = [stages.run_spec("teacher", s, NTDH_HP, 0) for s in (NTDH, spelt)]
  assert specs[0].run_id == specs[1].run_id
  assert specs[0].signature == specs[1].signature
  other = stages.run_spec("teacher", _static(NTDH, batch_size=500), NTDH_HP, 0)
  assert other.signature != specs[0].signature
  # A student's teacher_model defaults to its own model.
  student = stages.normalise("student", _static(NTDH, distill="kl"))
  assert student["teacher_model"] == student["model"]


def test_minibatch_larger_than_data_raises():
  """batch_size above the 6000 training rows is a ValueError naming it."""
  program = stages.build_program("teacher", _static(NTDH, batch_size=7000))
  with pytest.raises(ValueError, match="batch_size"):
    jax.eval_shape(program.train, _hparams(NTDH_HP), KEY, NTDH_DATA)


@pytest.mark.parametrize("stage, changes, missing", (
    ("teacher", {}, "lr"),
    ("teacher", {}, "gamma"),
    ("teacher", {"feature_mask": "importance"}, "mask_ratio"),
    ("student", {"distill": "kl"}, "kd_weight"),
    ("student", {"distill": "kl"}, "temperature"),
    ("student", {"distill": "kl", "sample_mask": "ncjsd"}, "mask_kind"),
))
def test_missing_hparam_raises_key_error(stage, changes, missing, teacher):
  """A missing numeric hyperparameter is a KeyError naming it."""
  program = stages.build_program(stage, _static(NTDH, **changes))
  hp = _hparams(NTDH_HP, KD_HP, mask_ratio=0.5, mask_kind=0)
  del hp[missing]
  inputs = ({"joint": {"importance": jnp.linspace(0, 1, 50)}}
            if "feature_mask" in changes
            else _teacher_inputs(teacher[2]) if stage == "student" else None)
  with pytest.raises(KeyError, match=missing):
    jax.eval_shape(program.train, hp, KEY, NTDH_DATA, inputs)
