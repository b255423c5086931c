"""UCMKD's stage (``ucmkd``) and experiment: the bi-level step against a
hand-unrolled restatement on a linear model, its hypergradients against
finite differences, κ and LA, the tiny unpaired study through the engine
(rows, report, resume), vmapped runs against looped ones, determinism, and
the configs refused."""

import csv
import dataclasses
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ntdh_jax import experiments
from ntdh_jax import losses
from ntdh_jax import models
from ntdh_jax.data import source as source_lib
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import ucmkd as ucmkd_exp
from ntdh_jax.train import stages
from ntdh_jax.train.stages import common
from ntdh_jax.train.stages import ucmkd
from tests.fast_jit import fast_jit

# ------------------------------------------------- a linear bi-level problem
#
# "Network": features z = x W (the encoder, ``params["enc"]``), logits
# z H + b (the head). Teacher head: z T + t. Everything below the stage's
# own `_inner` / `_bilevel_grads` is restated here in float64 NumPy, except
# FA's gradient, which is `losses.feature_alignment`'s (tested against POT
# in tests/test_losses_transport.py).

B, D, F, C = 6, 5, 3, 3
_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(B, D)).astype(np.float32)
_Y = np.array([0, 1, 2, 0, 1, 2])
_TF = _RNG.normal(size=(B, F)).astype(np.float32)  # partners' features
_TL = _RNG.normal(size=(B, C)).astype(np.float32)  # partners' logits
_T = _RNG.normal(size=(F, C)).astype(np.float32)  # teacher head
_TB = _RNG.normal(size=C).astype(np.float32)
PARAMS = {"enc": {"kernel": jnp.asarray(0.5 * _RNG.normal(size=(D, F)),
                                        jnp.float32)},
          "head": {"kernel": jnp.asarray(0.5 * _RNG.normal(size=(F, C)),
                                         jnp.float32),
                   "bias": jnp.asarray(0.1 * _RNG.normal(size=C),
                                       jnp.float32)}}
BATCH = ucmkd.Batch(jnp.asarray(_X), jnp.asarray(_Y), jnp.asarray(_TF),
                    jnp.asarray(_TL))
KEY = jax.random.PRNGKey(0)
ITERATIONS = 50
HP = {"label_smoothing": 0.1, "fa_weight": 0.7, "la_weight": 1.3,
      "sinkhorn_epsilon": 1.0, "inner_lr": 0.3, "inner_weight_decay": 0.05}


def _hp(**changes):
  return {k: jnp.float32(v) for k, v in {**HP, **changes}.items()}


def _forward(p, state, x, key):
  del key
  z = x @ p["enc"]["kernel"]
  return z @ p["head"]["kernel"] + p["head"]["bias"], z, state


def _config(**static):
  static = {"method": "bilevel", "fa_gradient": "danskin", **static}
  return ucmkd.UCMKDConfig(
      data={"name": "ntdh"}, model={"name": "mlp", "hidden": [F]}, epochs=1,
      eval_every=1, sinkhorn_iterations=ITERATIONS, **static)


def _context(hparams, **static):
  return ucmkd._Context(
      _forward, lambda head, z: z @ head["kernel"] + head["bias"],
      lambda z: z @ _T + _TB, _config(**static), hparams)


_JITTED = {}


def _step(hparams, params=PARAMS, **static):
  """``_bilevel_grads`` of the linear problem, compiled once per static
  config (the hyperparameters are traced)."""
  key = tuple(sorted(static.items()))
  if key not in _JITTED:
    _JITTED[key] = fast_jit(lambda h, p: ucmkd._bilevel_grads(
        _context(h, **static), p, {}, BATCH, KEY))
  return _JITTED[key](hparams, params)


def _mean_smoothed_ce(logits, labels, smoothing):
  return jnp.mean(losses.smoothed_cross_entropy(logits, labels, smoothing))


def _objective(hparams, **static):
  """θ ↦ the outer smoothed CE at θ′(θ), θ′ the stage's own inner steps:
  the function whose gradient the unrolled hypergradient is."""
  ctx = _context(hparams, **static)

  def f(p):
    adapted, state, _ = ucmkd._inner(ctx, p, {}, BATCH, KEY)
    logits, _, _ = _forward(adapted, state, BATCH.x, KEY)
    return jnp.mean(losses.smoothed_cross_entropy(
        logits, BATCH.y, hparams["label_smoothing"]))

  return f


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _targets(y, s):
  return (1 - s) * np.eye(C)[y] + s / C


def _ce(logits, y, s):
  """Mean label-smoothed cross-entropy (torch's), float64."""
  log_p = np.log(_softmax(logits))
  return -np.mean(np.sum(_targets(y, s) * log_p, -1))


def _dce(logits, y, s):
  """d mean CE_ls / d logits."""
  return (_softmax(logits) - _targets(y, s)) / len(y)


def _fa_grad(w, h):
  """∇_W of λ₁·FA(x W, partners' features) (Danskin's form, as configured)."""
  def fa(w_):
    return h["fa_weight"] * losses.feature_alignment(
        jnp.asarray(_X) @ w_, jnp.asarray(_TF), cost="cosine",
        epsilon=h["sinkhorn_epsilon"], iterations=ITERATIONS,
        gradient="danskin")
  return np.asarray(jax.grad(fa)(jnp.asarray(w, jnp.float32)), np.float64)


def _adam_first_update(g, theta, wd):
  """AdamW's first update before the −lr: m̂ = g, v̂ = g², so
  g / (√(g² + eps_root) + eps) + wd·θ (optax's defaults, the stage's
  eps_root)."""
  return g / (np.sqrt(g * g + 1e-16) + 1e-8) + wd * theta


def _restated(h, optimizer):
  """θ′ and the first-order outer gradient, by hand: one FA step on W, one
  LA step on (H, b) (whose gradient is λ₂·∇CE_ls of the head on the
  detached features: κ and the teacher term are constants), then ∇CE_ls at
  θ′."""
  h = {k: float(v) for k, v in h.items()}
  p = _np(PARAMS)
  w, hk, hb = p["enc"]["kernel"], p["head"]["kernel"], p["head"]["bias"]
  lr, s = h["inner_lr"], h["label_smoothing"]
  u = ((lambda g, theta: g) if optimizer == "sgd" else
       (lambda g, theta: _adam_first_update(g, theta,
                                            h["inner_weight_decay"])))
  w1 = w - lr * u(_fa_grad(w, h), w)
  z1 = _X @ w1
  d1 = h["la_weight"] * _dce(z1 @ hk + hb, _Y, s)
  hk1 = hk - lr * u(z1.T @ d1, hk)
  hb1 = hb - lr * u(d1.sum(0), hb)
  d2 = _dce(z1 @ hk1 + hb1, _Y, s)
  grads = {"enc": {"kernel": _X.T @ d2 @ hk1.T},
           "head": {"kernel": z1.T @ d2, "bias": d2.sum(0)}}
  # LA at the LA step (κ: the teacher head on the student's features).
  t_logits = z1 @ _T + _TB
  kappa = _softmax(t_logits)[np.arange(B), _Y]
  la = np.mean(
      -np.sum(_targets(_Y, s) * np.log(_softmax(z1 @ hk + hb)), -1)
      + kappa * np.sum(_targets(_Y, s) * np.log(_softmax(t_logits)), -1))
  return grads, {"ce": _ce(z1 @ hk1 + hb1, _Y, s), "la": la}


def _ce_grad_at(params, h):
  """∇_θ CE_ls at θ itself, by hand."""
  p = _np(params)
  w, hk, hb = p["enc"]["kernel"], p["head"]["kernel"], p["head"]["bias"]
  z = _X @ w
  d = _dce(z @ hk + hb, _Y, float(h["label_smoothing"]))
  return {"enc": {"kernel": _X.T @ d @ hk.T},
          "head": {"kernel": z.T @ d, "bias": d.sum(0)}}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_first_order_step_equals_a_hand_unrolled_two_step_update(optimizer):
  h = _hp(inner_lr=0.3 if optimizer == "sgd" else 0.05)
  grads, state, metrics = _step(h, inner_optimizer=optimizer,
                                hypergrad="first_order")
  want, want_metrics = _restated(h, optimizer)
  chex.assert_trees_all_close(_np(grads), want, rtol=2e-4, atol=2e-6)
  assert state == {}
  np.testing.assert_allclose(metrics["ce"], want_metrics["ce"], rtol=1e-5)
  np.testing.assert_allclose(metrics["la"], want_metrics["la"], rtol=1e-5)
  want_fa = losses.feature_alignment(
      BATCH.x @ PARAMS["enc"]["kernel"], BATCH.teacher_features,
      epsilon=h["sinkhorn_epsilon"], iterations=ITERATIONS,
      gradient="danskin")
  np.testing.assert_allclose(metrics["fa"], want_fa, rtol=1e-6)
  # The step moved: the adapted copy's gradient, not the gradient at θ.
  assert not np.allclose(want["enc"]["kernel"],
                         _ce_grad_at(PARAMS, h)["enc"]["kernel"], rtol=1e-2)


def test_unrolled_hypergradient_passes_check_grads():
  """The unrolled hypergradient is ∇_θ CE(θ′(θ)): finite differences of the
  inner steps + outer CE agree. With a large Sinkhorn ε the plan is nearly
  constant, so FA's Danskin gradient (plan held fixed) is differentiated
  exactly too; what is left is the LA step's dependence on the encoder:
  θ′_head = θ_head − η λ₂ ∇_head CE(head, x W′) moves with W."""
  h = _hp(sinkhorn_epsilon=20.0)
  static = dict(inner_optimizer="sgd", hypergrad="unrolled")
  f = _objective(h, **static)
  grads, _, _ = _step(h, **static)
  chex.assert_trees_all_close(grads, jax.grad(f)(PARAMS), rtol=1e-6,
                              atol=1e-7)
  f = jax.jit(f)  # check_grads differentiates it: no compiler options
  check_grads(f, (PARAMS,), order=1, modes=["rev"], atol=2e-3, rtol=2e-3,
              eps=3e-3)
  # The encoder alone (the direction where a cut path would hide).
  check_grads(lambda w: f({**PARAMS, "enc": {"kernel": w}}),
              (PARAMS["enc"]["kernel"],), order=1, modes=["rev"], atol=2e-3,
              rtol=2e-3, eps=3e-3)


def _inner_map(h):
  """G(θ) = (∇_W λ₁FA(xW), ∇_(H,b) λ₂CE_ls(head, xW)): θ′ = θ − η G(θ) to
  first order in η (inner SGD)."""
  def g(p):
    z = jnp.asarray(_X) @ p["enc"]["kernel"]
    enc = jax.grad(lambda w: h["fa_weight"] * losses.feature_alignment(
        jnp.asarray(_X) @ w, jnp.asarray(_TF), epsilon=h["sinkhorn_epsilon"],
        iterations=ITERATIONS, gradient="danskin"))(p["enc"]["kernel"])
    head = jax.grad(lambda hd: h["la_weight"] * _mean_smoothed_ce(
        z @ hd["kernel"] + hd["bias"], jnp.asarray(_Y),
        h["label_smoothing"]))(p["head"])
    return {"enc": {"kernel": enc}, "head": head}
  return g


def test_unrolled_minus_first_order_is_the_second_order_term():
  """g_unrolled − g_first_order = −η (∂G/∂θ)ᵀ ∇CE(θ′) + O(η²): the
  second-order term, which vanishes with the inner learning rate. Its
  encoder part holds the cross term (∂G_head/∂W)ᵀ: the LA step's head
  gradient reads the features x W′, so it moves with the encoder."""
  diffs = {}
  for lr in (2e-3, 1e-3):
    h = _hp(inner_lr=lr)
    g_unr, _, _ = _step(h, inner_optimizer="sgd", hypergrad="unrolled")
    g_fo, _, _ = _step(h, inner_optimizer="sgd", hypergrad="first_order")
    diffs[lr] = jax.tree.map(lambda a, b: (np.asarray(a, np.float64)
                                           - np.asarray(b, np.float64)),
                             g_unr, g_fo)
    # The first-order gradient is ∇CE at θ′, the point the term acts on.
    _, vjp = jax.vjp(_inner_map(h), PARAMS)
    (want,) = vjp(g_fo)
    want = jax.tree.map(lambda a: -lr * np.asarray(a, np.float64), want)
    for path in (("head", "kernel"), ("head", "bias"), ("enc", "kernel")):
      got, w = diffs[lr][path[0]][path[1]], want[path[0]][path[1]]
      np.testing.assert_allclose(
          got, w, rtol=3e-2, atol=3e-2 * np.abs(w).max(),
          err_msg=f"inner_lr {lr}: {'.'.join(path)}")
  norm = lambda t: np.sqrt(sum(np.sum(x * x) for x in jax.tree.leaves(t)))
  assert 1.8 < norm(diffs[2e-3]) / norm(diffs[1e-3]) < 2.2


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_inner_lr_zero_reduces_both_hypergradients_to_plain_ce(optimizer):
  h = _hp(inner_lr=0.0)
  want = _ce_grad_at(PARAMS, h)
  hypergrads = ("first_order", "unrolled") if optimizer == "sgd" else (
      "first_order",)
  for hypergrad in hypergrads:
    grads, _, _ = _step(h, inner_optimizer=optimizer, hypergrad=hypergrad)
    chex.assert_trees_all_close(_np(grads), want, rtol=1e-5, atol=1e-7)


# -------------------------------- inner lr 0 is CE, on a real (BN) network


def test_bilevel_at_inner_lr_zero_takes_the_ce_step():
  """Same batch, same label smoothing: a BatchNorm MLP's bilevel gradient
  at inner_lr 0 (AdamW and SGD, either hypergradient) is `ce`'s."""
  net = models.build({"name": "mlp", "hidden": [6, 4], "batch_norm": True},
                     C)
  params, state = common.split_variables(
      net.init(jax.random.PRNGKey(1), jnp.zeros((1, D))))
  x = jnp.asarray(_RNG.normal(size=(8, D)), jnp.float32)
  batch = ucmkd.Batch(x, jnp.arange(8) % C,
                      jnp.asarray(_RNG.normal(size=(8, 4)), jnp.float32),
                      jnp.asarray(_RNG.normal(size=(8, C)), jnp.float32))
  t_head = {"head": {"kernel": jnp.asarray(_RNG.normal(size=(4, C)),
                                           jnp.float32),
                     "bias": jnp.zeros(C)}}

  def forward(p, st, x, key):
    logits, feats, new = net.apply(common.join_variables(p, st), x,
                                   train=True, key=key)
    return logits, feats, common.split_variables(new)[1]

  def grads(method, **static):
    def step(h, p, st):
      ctx = ucmkd._Context(
          forward, lambda head, z: net.head({"head": head}, z),
          lambda z: net.head(t_head, z), _config(method=method, **static),
          h)
      return ucmkd.METHODS[method].grads(ctx, p, st, batch, KEY)[0]
    return fast_jit(step)(_hp(inner_lr=0.0), params, state)

  want = grads("ce")
  for static in (dict(inner_optimizer="adamw", hypergrad="first_order"),
                 dict(inner_optimizer="sgd", hypergrad="unrolled")):
    chex.assert_trees_all_close(grads("bilevel", **static), want,
                                rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------- κ and LA


@pytest.mark.parametrize("kappa", ["teacher_only", "paper_ratio"])
def test_la_reads_the_teacher_head_on_the_student_features(kappa):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(16, F)).astype(np.float32)
  logits = (z @ rng.normal(size=(F, C))).astype(np.float32)
  y = rng.integers(0, C, 16)
  s, kappa_max = 0.1, 2.0
  ctx = _context(_hp(), kappa=kappa, kappa_max=kappa_max)
  got = ucmkd._la(ctx, jnp.asarray(logits), jnp.asarray(z), jnp.asarray(y),
                  s)
  t_logits = z.astype(np.float64) @ _T + _TB
  p_t = _softmax(t_logits)[np.arange(16), y]
  p_s = _softmax(logits.astype(np.float64))[np.arange(16), y]
  k = p_t if kappa == "teacher_only" else np.minimum(p_t / p_s, kappa_max)
  if kappa == "paper_ratio":  # the clip acts on some rows, not all
    assert 0 < np.sum(p_t / p_s > kappa_max) < 16
  else:
    assert np.all((k > 0) & (k <= 1))
  want = losses.label_alignment(jnp.asarray(logits), jnp.asarray(t_logits,
                                                                 jnp.float32),
                                jnp.asarray(y), jnp.asarray(k, jnp.float32),
                                label_smoothing=s, reduction="mean")
  np.testing.assert_allclose(got, want, rtol=1e-5)
  by_hand = np.mean(
      -np.sum(_targets(y, s) * np.log(_softmax(logits.astype(np.float64))),
              -1)
      + k * np.sum(_targets(y, s) * np.log(_softmax(t_logits)), -1))
  np.testing.assert_allclose(got, by_hand, rtol=1e-5)


# ------------------------------------------------ one program, vmapped

DATA = {"name": "digits_blur", "size": 8, "teacher_noise": 0.0,
        "student_noise": 0.0}
MODEL = {"name": "mnist_fc", "hidden": [16, 8], "leaky_logits": False}
STATIC = {"data": DATA, "model": MODEL, "epochs": 1, "eval_every": 1,
          "batch_size": 16, "optimizer": "adam", "eval_batch_size": 512,
          "method": "bilevel", "pairing": "class_paired",
          "sinkhorn_iterations": 10, "eval_ot_size": 64,
          "max_grad_norm": 5.0}
# Two runs: the clean preset at the code's inner lr; marginal mismatch,
# imbalance and a larger inner step.
RUNS = {"lr": [1e-3, 1e-3], "momentum": [0.0, 0.0],
        "teacher_blur": [0.0, 0.0], "student_blur": [0.0, 1.0],
        "student_share": [1.0, 0.5], "imbalance": [1.0, 4.0],
        "label_smoothing": [0.1, 0.1], "fa_weight": [1.0, 1.0],
        "la_weight": [1.0, 1.0], "sinkhorn_epsilon": [0.1, 0.1],
        "inner_lr": [5e-5, 1e-3], "inner_weight_decay": [0.05, 0.05]}


def _teacher_inputs(program):
  """A randomly initialised teacher in the upstream ``teacher`` outputs'
  form (every pixel kept)."""
  spec = program.input_spec["teacher"]
  net = models.build(MODEL, 10)
  variables = net.init(jax.random.PRNGKey(5), jnp.zeros((1, 8, 8, 1)))
  inputs = {"teacher": {"variables": variables,
                        "feature_mask": jnp.ones(spec["feature_mask"].shape)}}
  chex.assert_trees_all_equal_shapes_and_dtypes(inputs, program.input_spec)
  return inputs


@pytest.fixture(scope="module")
def vmapped():
  """The two runs as one vmapped program, and the looped program."""
  program = stages.build_program("ucmkd", STATIC)
  data = program.load()
  inputs = _teacher_inputs(program)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in RUNS.items()}
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), inputs)

  @chex.assert_max_traces(n=1)
  def train(h, k, d, i):
    return program.train(h, k, d, i)

  out = fast_jit(jax.vmap(train, in_axes=(0, 0, None, 0)))(hp, keys, data,
                                                            stacked)
  # The looped runs: several traced hyperparameter values, one trace.
  looped = fast_jit(chex.assert_max_traces(program.train, n=1))
  runs = [looped(jax.tree.map(lambda x: x[i], hp), keys[i], data, inputs)
          for i in range(2)]
  return program, data, inputs, hp, keys, out, (looped, runs)


def test_vmapped_runs_equal_looped_runs_traced_once(vmapped):
  _, _, _, _, _, out, (_, runs) = vmapped
  for i, one in enumerate(runs):
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], out), one,
                                rtol=1e-4, atol=1e-5)
    final, history, _ = one
    assert set(final) == {"test_acc", "teacher_test_acc", "test_fa",
                          "test_la"}
    assert all(np.isfinite(float(v)) for v in final.values()), final
    assert 0.0 <= float(final["test_acc"]) <= 1.0
    assert all(np.isfinite(np.asarray(v)).all() for v in history.values())
  # The two settings are two different runs.
  assert float(out[0]["test_fa"][0]) != float(out[0]["test_fa"][1])


def test_same_run_twice_is_bit_identical(vmapped):
  _, data, inputs, hp, keys, _, (looped, runs) = vmapped
  again = looped(jax.tree.map(lambda x: x[1], hp), keys[1], data, inputs)
  chex.assert_trees_all_equal(again, runs[1])


def test_final_la_is_the_teacher_heads_on_the_students_test_features(
    vmapped):
  """``test_la`` and ``test_acc`` recomputed from the run's outputs: the
  student's test features under the frozen teacher's head (its inputs),
  in NumPy."""
  _, data, inputs, hp, keys, out, _ = vmapped
  final, _, outputs = out
  d = common.Data(stages.normalise("ucmkd", STATIC)["data"])
  net = models.build(MODEL, 10)
  head = inputs["teacher"]["variables"]["params"]["head"]
  for i in range(2):
    h = jax.tree.map(lambda x: x[i], hp)
    v = d.views(data, h, common.raw_key(keys[i]))
    x = d.input(v.student_test, "student", h, keys[i])
    variables = jax.tree.map(lambda a: a[i], outputs["variables"])
    logits, feats, _ = net.apply(variables, x, train=False)
    logits, feats = np.asarray(logits, np.float64), np.asarray(feats,
                                                                np.float64)
    y = np.asarray(v.y_test)
    t_logits = feats @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    kappa = _softmax(t_logits)[np.arange(len(y)), y]
    la = np.mean(-np.log(_softmax(logits)[np.arange(len(y)), y])
                 + kappa * np.log(_softmax(t_logits)[np.arange(len(y)), y]))
    np.testing.assert_allclose(final["test_la"][i], la, rtol=1e-4)
    np.testing.assert_allclose(final["test_acc"][i],
                               np.mean(logits.argmax(-1) == y), atol=1e-6)


# ------------------------------------------------------------ the study

_PRESETS = {"clean": {"student_share": 1.0, "imbalance": 1.0,
                      "knobs": {"teacher_blur": 0.0, "student_blur": 0.0}},
            "mismatch": {"student_share": 0.5, "imbalance": 1.0,
                         "knobs": {"teacher_blur": 0.0,
                                   "student_blur": 0.0}}}


def _study_config(**kwargs):
  c = ucmkd_exp.study_config(
      "tiny", data=DATA, model=MODEL, presets=_PRESETS, batch_size=16,
      **{"methods": ["bilevel"], "pairings": ["paired", "class_paired"],
         **kwargs})
  with c.unlocked():
    c.student.sinkhorn_iterations = 10
    c.student.eval_ot_size = 64
  return c


def _run_study(config, workdir):
  experiments.run([config], str(workdir), progress=False)
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ucmkd_tiny")
  config = _study_config()
  return workdir, config, _run_study(config, workdir)


def test_tiny_study_has_a_row_per_planned_run(study):
  workdir, config, rows = study
  planned = {s.run_id for s in ucmkd_exp.plan([config])}
  assert {r["run_id"] for r in rows} == planned and len(rows) == len(planned)
  teachers = [r for r in rows if r["stage"] == "teacher"]
  students = [r for r in rows if r["stage"] == "ucmkd"]
  # Both presets leave the teacher view alone: one teacher, shared.
  assert len(teachers) == 1
  assert {r["needs"]["teacher"] for r in students} == {teachers[0]["run_id"]}
  # The paired setting has one pool: no paired run under mismatch.
  got = sorted((r["tag.preset"], r["tag.pairing"]) for r in students)
  assert got == [("clean", "class_paired"), ("clean", "paired"),
                 ("mismatch", "class_paired")]
  for r in students:
    assert r["hp.student_share"] == _PRESETS[r["tag.preset"]]["student_share"]
    for k in ("final.test_fa", "final.test_la", "final.teacher_test_acc",
              "final.test_acc"):
      assert np.isfinite(r[k]), k
    for k in ("final.teacher_test_acc", "final.test_acc"):
      assert 0.0 <= r[k] <= 1.0, k
    assert all(0.0 <= a <= 1.0 for a in r["history.test_acc"])
    assert np.isfinite(r["history.train_ce"]).all()


def test_tiny_study_writes_its_report(study):
  workdir, config, _ = study
  for name in ("report.md", "summary.csv", "ucmkd_accuracy.png",
               "ucmkd_bound_terms.png"):
    assert (workdir / name).stat().st_size > 0, name
  with open(workdir / "summary.csv") as f:
    lines = list(csv.DictReader(f))
  assert sorted((l["preset"], l["pairing"]) for l in lines) == [
      ("clean", "class_paired"), ("clean", "paired"),
      ("mismatch", "class_paired")]
  assert all(np.isfinite(float(l["test_fa_mean"])) for l in lines)
  text = (workdir / "report.md").read_text()
  assert "## clean" in text and "## mismatch" in text
  mismatch = text.split("## mismatch")[1].split("\n## ")[0]
  assert "| bilevel | – |" in mismatch.replace("  ", " ")


def test_tiny_study_resumes_without_recomputing(study, monkeypatch):
  workdir, config, rows = study
  report = {n: (workdir / n).read_bytes() for n in ("report.md",
                                                     "summary.csv")}

  def no_program(*args):
    raise AssertionError(f"recompiled a finished run: {args[0]}")

  monkeypatch.setitem(experiments.EXPERIMENTS, "ucmkd", dataclasses.replace(
      experiments.get("ucmkd"), build_program=no_program))
  again = _run_study(config, workdir)
  key = lambda r: r["run_id"]
  assert sorted(again, key=key) == sorted(rows, key=key)
  for name, content in report.items():
    assert (workdir / name).read_bytes() == content, name


# ------------------------------------------------------- refused configs


@pytest.mark.parametrize("extra, match", [
    ({"method": "vanillaKD"}, "method"),
    ({"pairing": "random"}, "pairing"),
    ({"cost": "euclidean"}, "cost"),
    ({"kappa": "ratio"}, "kappa"),
    ({"hypergrad": "implicit"}, "hypergrad"),
    ({"inner_optimizer": "adam"}, "inner_optimizer"),
    ({"fa_gradient": "implicit"}, "fa_gradient"),
    ({"hypergrad": "unrolled"}, "fa_gradient"),  # needs "danskin"
    ({"kappa_max": 0.0}, "kappa_max"),
    ({"sinkhorn_iterations": 0}, "sinkhorn_iterations"),
    ({"inner_steps_la": 0}, "inner_steps_la"),
])
def test_bad_stage_options_are_refused_naming_them(extra, match):
  with pytest.raises(ValueError, match=match):
    stages.normalise("ucmkd", {**STATIC, **extra})


def test_unrolled_with_danskin_is_accepted():
  stages.normalise("ucmkd", {**STATIC, "hypergrad": "unrolled",
                             "fa_gradient": "danskin"})


@pytest.mark.parametrize("method", ["fa", "sumall", "bilevel"])
def test_feature_methods_need_one_feature_width(method):
  static = {**STATIC, "method": method,
            "teacher_model": {**MODEL, "hidden": [16, 4]}}
  with pytest.raises(ValueError, match=r"\(8,\) and \(4,\)"):
    stages.build_program("ucmkd", static)
  # Methods that read only the teacher's logits do not care.
  stages.build_program("ucmkd", {**static, "method": "kd"})


@pytest.mark.parametrize("batch_size", [0, 1])
def test_batches_need_two_rows(batch_size):
  with pytest.raises(ValueError, match="batch_size"):
    stages.build_program("ucmkd", {**STATIC, "batch_size": batch_size})


def _hparams(**changes):
  return {**{k: v[0] for k, v in RUNS.items()}, **changes}


def test_paired_with_a_mismatched_pool_is_refused_at_planning():
  paired = {**STATIC, "pairing": "paired"}
  stages.run_spec("ucmkd", paired, _hparams(), 0)
  with pytest.raises(UserError, match="student_share"):
    stages.run_spec("ucmkd", paired, _hparams(student_share=0.5), 0)
  stages.run_spec("ucmkd", STATIC, _hparams(student_share=0.5), 0)
  # The experiment names the preset's key.
  with pytest.raises(UserError, match=r"presets\.mismatch\.student_share"):
    stages.run_spec(
        "ucmkd", paired, _hparams(student_share=0.5), 0,
        keys={"student_share": "presets.mismatch.student_share"})


@pytest.mark.parametrize("hp, match", [
    ({"kd_weight": 1.5, "temperature": 4.0}, "kd_weight"),
    ({"kd_weight": 0.9, "temperature": 0.0}, "temperature"),
])
def test_kd_hyperparameters_out_of_range_are_refused(hp, match):
  static = {**STATIC, "method": "kd"}
  base = {k: v[0] for k, v in RUNS.items()
          if k in ("lr", "momentum", "teacher_blur", "student_blur",
                   "student_share", "imbalance", "label_smoothing")}
  stages.run_spec("ucmkd", static, {**base, "kd_weight": 1.0,
                                    "temperature": 4.0}, 0)
  with pytest.raises(UserError, match=match):
    stages.run_spec("ucmkd", static, {**base, **hp}, 0)


@pytest.mark.parametrize("name, value, match", [
    ("student_share", 0.0, "student_share"),
    ("imbalance", 0.5, "imbalance"),
    ("inner_lr", -1e-3, "inner_lr"),
    ("label_smoothing", 1.0, "label_smoothing"),
])
def test_pool_and_inner_hyperparameters_out_of_range_are_refused(
    name, value, match):
  with pytest.raises(UserError, match=match):
    stages.run_spec("ucmkd", STATIC, _hparams(**{name: value}), 0)


class _Segmentation(source_lib.DataSource):
  name = "ucmkd_test_segmentation"

  def spec(self, config):
    m = source_lib.Modality("image", (4, 4, 1), "float32")
    return source_lib.DataSpec(m, m, 3, {"train": 32, "test": 8},
                               label_shape=(4, 4))


def test_segmentation_sources_are_refused(monkeypatch):
  monkeypatch.setitem(source_lib.SOURCES, _Segmentation.name, _Segmentation())
  with pytest.raises(ValueError, match="per-pixel labels"):
    stages.build_program("ucmkd", {**STATIC, "data": {
        "name": _Segmentation.name}})


@pytest.mark.parametrize("change, match", [
    (lambda c: setattr(c, "pairings", ["paired", "shuffled"]),
     r"config\.pairings"),
    (lambda c: c.methods.bilevel.__setitem__("method", "ucmkd"),
     r"config\.methods\.bilevel\.method"),
    (lambda c: c.presets.clean.knobs.__delitem__("student_blur"),
     r"config\.presets\.clean\.knobs"),
    (lambda c: c.methods.bilevel.__setitem__("inner_lr", -1.0),
     r"methods\.bilevel\.inner_lr"),
    (lambda c: setattr(c, "presets", {}), r"config\.presets"),
])
def test_bad_study_config_is_refused_naming_the_key(change, match):
  config = _study_config()
  with config.unlocked():
    change(config)
  with pytest.raises(UserError, match=match):
    ucmkd_exp.plan([config])


def test_study_config_refuses_unknown_methods_and_scales():
  with pytest.raises(ValueError, match="vanillaKD"):
    _study_config(methods=["bilevel", "vanillaKD"])
  with pytest.raises(ValueError, match="scale"):
    ucmkd_exp.study_config("huge", data=DATA, model=MODEL, presets=_PRESETS)


def test_mismatch_presets_plan_no_paired_runs():
  specs = ucmkd_exp.plan([_study_config(methods=["ce", "kd", "bilevel"])])
  students = [s.tags_dict for s in specs if s.stage == "ucmkd"]
  assert not [t for t in students
              if t["preset"] == "mismatch" and t["pairing"] == "paired"]
  # ce reads no teacher: one run per preset.
  assert sorted(t["preset"] for t in students if t["method"] == "ce") == [
      "clean", "mismatch"]
  assert sum(s.stage == "teacher" for s in specs) == len(_PRESETS)


@pytest.mark.parametrize("name, arg, students", [
    # 5 seeds × (clean, shift, imbalance: ce + 5 methods × 3 pairings = 16;
    # mismatch: ce + 5 × 2 = 11).
    ("ucmkd_digits", "", 5 * (3 * 16 + 11)),
    ("ucmkd_digits", "tiny", 16 + 11),
    # 5 seeds × 5 γ × (ce + 3 methods × 3 pairings).
    ("ucmkd_synthetic", "", 5 * 5 * 10),
    ("ucmkd_synthetic", "quick", 2 * 3 * 10),
])
def test_configs_plan_their_documented_runs(name, arg, students):
  from ntdh_jax import config as config_lib
  path = os.path.join(os.path.dirname(__file__), "..", "sweeps", "configs",
                      f"{name}.py")
  base, configs, _ = config_lib.load_sweep(f"{path}:{arg}" if arg else path)
  specs = ucmkd_exp.plan(configs)
  assert sum(s.stage == "ucmkd" for s in specs) == students
  # Presets that leave the teacher view alone share one teacher per seed.
  teachers = {s.run_id for s in specs if s.stage == "teacher"}
  assert len(teachers) == base.num_seeds * len(
      {json.dumps(p.knobs.to_dict(), sort_keys=True)
       for p in base.presets.values()})
