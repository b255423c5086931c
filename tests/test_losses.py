"""ntdh_jax.losses against float64 NumPy references, and under jit/vmap/scan."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ntdh_jax import divergences
from ntdh_jax import losses
from ntdh_jax.losses import contrastive
from tests import reference_losses as ref

TOL = dict(rtol=2e-5, atol=2e-6)
GRAD_TOL = dict(order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)


def _logits(seed, n, c, scale=3.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, c)).astype(np.float32) * scale,
          rng.normal(size=(n, c)).astype(np.float32) * scale,
          rng.integers(0, c, size=n).astype(np.int32))


def _features(seed, n, d_s, d_t):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d_s)).astype(np.float32),
          rng.normal(size=(n, d_t)).astype(np.float32))


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# Compiled once per shape and shared by the tests: eager dispatch compiles
# every primitive separately and would dominate this file's runtime. Eager
# mode itself is covered by test_jit_equals_eager.
KD = jax.jit(losses.kd, static_argnames="reduction")
DKD = jax.jit(losses.dkd, static_argnames="reduction")
FITNET = jax.jit(losses.fitnet, static_argnames="reduction")
RKD, PKT, SP = jax.jit(losses.rkd), jax.jit(losses.pkt), jax.jit(losses.sp)
CRD_LOSS = jax.jit(losses.crd_loss)


# -- logit losses --------------------------------------------------------------

GRID = pytest.mark.parametrize("c,temperature", [
    (c, t) for c in (3, 10, 100) for t in (0.5, 1.0, 4.0)])


@GRID
def test_kd_matches_reference(c, temperature):
  s, t, _ = _logits(c, 32, c)
  got = KD(s, t, temperature, reduction="none")
  chex.assert_shape(got, (32,))
  np.testing.assert_allclose(got, ref.kd(s, t, temperature), **TOL)


@GRID
def test_dkd_matches_reference(c, temperature):
  s, t, y = _logits(c + 1, 32, c)
  np.testing.assert_allclose(
      DKD(s, t, y, 0.7, 3.0, temperature, reduction="none"),
      ref.dkd(s, t, y, 0.7, 3.0, temperature), **TOL)


@pytest.mark.parametrize("c", [3, 10, 100])
def test_dkd_uses_mdistiller_defaults(c):
  s, t, y = _logits(c + 2, 32, c)
  np.testing.assert_allclose(DKD(s, t, y, reduction="none"),
                             ref.dkd(s, t, y, 1.0, 8.0, 4.0), **TOL)


def _former_decoupled_kl(s, t, y, alpha, beta, temperature, reduction):
  """The body of the former ``losses.decoupled_kl``, written out."""
  parts = divergences.decompose(teacher_logits=t, student_logits=s, labels=y,
                                temperature=temperature)
  temp = jnp.asarray(temperature, jnp.float32)
  per_example = (jnp.asarray(alpha, jnp.float32) * parts.tckl
                 + jnp.asarray(beta, jnp.float32) * parts.nckl) * temp**2
  return jnp.mean(per_example) if reduction == "mean" else per_example


def test_dkd_is_the_former_decoupled_kl_bit_for_bit():
  """NTDH's weighted KD kept its numbers when it became ``dkd``."""
  # Eager on the shapes test_jit_equals_eager already dispatches.
  s, t, y = _logits(9, 8, 10)
  args = (s, t, y, 0.5, 4.0, 2.0)
  np.testing.assert_array_equal(losses.dkd(*args, reduction="none"),
                                _former_decoupled_kl(*args, "none"))
  np.testing.assert_array_equal(
      DKD(*args), jax.jit(_former_decoupled_kl, static_argnums=6)(*args,
                                                                  "mean"))


def test_mean_reduction_is_the_batch_mean():
  # Eager, on the shapes test_jit_equals_eager already dispatches.
  s, t, y = _logits(3, 8, 10)
  f_s, f_t = _features(3, 8, 6, 6)
  for fn, args in ((losses.kd, (s, t, 2.0)),
                   (losses.dkd, (s, t, y, 0.5, 2.0)),
                   (losses.dkd, (s, t, y)), (losses.fitnet, (f_s, f_t))):
    np.testing.assert_allclose(fn(*args), np.mean(fn(*args, reduction="none")),
                               rtol=1e-6)


def test_identical_logits_give_zero_and_finite_gradients():
  s, _, y = _logits(1, 8, 10)
  for fn in (lambda a: losses.kd(a, s), lambda a: losses.dkd(a, s, y)):
    value, grad = jax.jit(jax.value_and_grad(fn))(s)
    np.testing.assert_allclose(value, 0.0, atol=1e-6)
    assert np.isfinite(np.asarray(grad)).all()


_SEG = (2, 3, 4)  # [B, H, W] pixels, C = 5


def _segmentation(seed, c=5):
  rng = np.random.default_rng(seed)
  s = rng.normal(size=(*_SEG, c)).astype(np.float32) * 3
  t = rng.normal(size=(*_SEG, c)).astype(np.float32) * 3
  where = rng.random(_SEG) < 0.6
  where[0, 0, 0] = True
  y = np.where(where, rng.integers(0, c, size=_SEG), 255).astype(np.int32)
  return s, t, y, where


def _logit_losses(s, t, y, where, reduction):
  return {"kd": losses.kd(s, t, 2.0, where=where, reduction=reduction),
          "dkd": losses.dkd(s, t, y, 0.5, 4.0, 2.0, where=where,
                            reduction=reduction)}


_SEG_LOSSES = jax.jit(_logit_losses, static_argnums=4)


def test_logit_losses_on_segmentation_batch_with_ignore_label():
  """[B, H, W, C] with ignored pixels: "none" is the float64 reference at
  valid pixels and 0 elsewhere; "mean" averages over valid pixels only."""
  s, t, y, where = _segmentation(0)
  valid = dict(kd=ref.kd(s[where], t[where], 2.0),
               dkd=ref.dkd(s[where], t[where], y[where], 0.5, 4.0, 2.0))
  per_pixel = _SEG_LOSSES(s, t, y, where, "none")
  mean = _SEG_LOSSES(s, t, y, where, "mean")
  for name, want in valid.items():
    chex.assert_shape(per_pixel[name], _SEG)
    np.testing.assert_allclose(np.asarray(per_pixel[name])[where], want,
                               **TOL)
    np.testing.assert_array_equal(np.asarray(per_pixel[name])[~where], 0.0)
    np.testing.assert_allclose(mean[name], want.sum() / where.sum(), **TOL)


_SEG_GRAD = jax.jit(jax.grad(lambda s, t, y, where: sum(
    _logit_losses(s, t, y, where, "mean").values())))


def test_masked_mean_of_an_all_ignored_batch_is_zero_with_zero_gradients():
  s, t, y, _ = _segmentation(1)
  nothing = np.zeros(_SEG, bool)
  for value in _SEG_LOSSES(s, t, y, nothing, "mean").values():
    assert float(value) == 0.0
  np.testing.assert_array_equal(_SEG_GRAD(s, t, y, nothing), 0.0)


def test_ignored_pixels_get_zero_gradients():
  s, t, y, where = _segmentation(2)
  grads = _SEG_GRAD(s, t, y, where)
  assert np.isfinite(np.asarray(grads)).all()
  np.testing.assert_array_equal(np.asarray(grads)[~where], 0.0)
  assert np.abs(np.asarray(grads)[where]).sum() > 0


def test_fitnet_where_averages_over_valid_examples():
  f_s, f_t = _features(3, 8, 6, 6)
  where = np.array([True, False] * 4)
  per_example = ref.fitnet(f_s, f_t)
  np.testing.assert_allclose(losses.fitnet(f_s, f_t, where=where),
                             per_example[where].mean(), **TOL)
  np.testing.assert_array_equal(
      np.asarray(losses.fitnet(f_s, f_t, where=where, reduction="none"))[
          ~where], 0.0)


# -- feature losses ------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 5), (3, 2, 2, 4)])
def test_fitnet_matches_reference(shape):
  rng = np.random.default_rng(0)
  s, t = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
  np.testing.assert_allclose(FITNET(s, t, reduction="none"),
                             ref.fitnet(s, t), **TOL)


RELATIONAL_SHAPES = pytest.mark.parametrize("n,d_s,d_t", [(2, 3, 3),
                                                          (7, 16, 5)])


@RELATIONAL_SHAPES
def test_rkd_matches_reference(n, d_s, d_t):
  s, t = _features(n, n, d_s, d_t)
  for weights in ((25.0, 50.0), (1.0, 0.0), (0.0, 1.0)):
    np.testing.assert_allclose(RKD(s, t, *weights), ref.rkd(s, t, *weights),
                               **TOL)


@RELATIONAL_SHAPES
def test_pkt_matches_reference(n, d_s, d_t):
  s, t = _features(n + 1, n, d_s, d_t)
  np.testing.assert_allclose(PKT(s, t), ref.pkt(s, t), rtol=1e-4, atol=1e-7)


@RELATIONAL_SHAPES
def test_sp_matches_reference(n, d_s, d_t):
  s, t = _features(n + 2, n, d_s, d_t)
  np.testing.assert_allclose(SP(s, t), ref.sp(s, t), **TOL)


def test_relational_losses_flatten_trailing_axes():
  # Eager, on the shapes test_jit_equals_eager already dispatches.
  s, t = _features(3, 8, 6, 4)
  four_d = s.reshape(8, 2, 3), t.reshape(8, 2, 2, 1)
  for fn in (losses.rkd, losses.pkt, losses.sp):
    np.testing.assert_allclose(fn(*four_d), fn(s, t), rtol=1e-6)


DEGENERATE = {  # all [6, 4], so each loss compiles once
    "identical rows": np.ones((6, 4), np.float32),
    "repeated row": np.repeat(_features(5, 3, 4, 4)[0], 2, axis=0),
    "zero rows": np.zeros((6, 4), np.float32),
}


@pytest.mark.parametrize("fn", [losses.fitnet, losses.rkd, losses.pkt,
                                losses.sp], ids=lambda f: f.__name__)
def test_degenerate_features_give_finite_values_and_gradients(fn):
  value_and_grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
  s, t = _features(6, 6, 4, 4)
  np.testing.assert_allclose(value_and_grads(s, s)[0], 0.0, atol=1e-6)
  for case, degenerate in DEGENERATE.items():
    for args in ((degenerate, t), (degenerate, degenerate)):
      value, grads = value_and_grads(*args)
      assert np.isfinite(float(value)), case
      assert all(np.isfinite(np.asarray(g)).all() for g in grads), case


def test_fitnet_regressor_maps_student_to_teacher_shape():
  module = losses.FitNetRegressor(features=7)

  @jax.jit
  def init_and_grad(x, t):
    params = module.init(jax.random.key(0), x)
    return jax.grad(lambda p: losses.fitnet(module.apply(p, x), t))(params)

  for x, out in ((np.ones((3, 5), np.float32), (3, 7)),
                 (np.ones((2, 4, 4, 5), np.float32), (2, 4, 4, 7))):
    params = jax.eval_shape(module.init, jax.random.key(0), x)
    chex.assert_shape(jax.eval_shape(module.apply, params, x), out)
    grads = init_and_grad(x, np.zeros(out, np.float32))
    assert any(np.abs(np.asarray(g)).sum() > 0
               for g in jax.tree_util.tree_leaves(grads))


def test_fitnet_regressor_rejects_other_ranks():
  with pytest.raises(ValueError, match="student_features must have rank 2"):
    losses.FitNetRegressor(features=3).init(jax.random.key(0),
                                            np.ones((2, 3, 4), np.float32))


# -- CRD -----------------------------------------------------------------------

N_DATA, FEAT, K = 20, 8, 5


def _crd_case(seed, z=(-1.0, -1.0), n=4):
  rng = np.random.default_rng(seed)
  mem_s = rng.uniform(-0.6, 0.6, size=(N_DATA, FEAT)).astype(np.float32)
  mem_t = rng.uniform(-0.6, 0.6, size=(N_DATA, FEAT)).astype(np.float32)
  state = losses.CRDState(jnp.asarray(mem_s), jnp.asarray(mem_t),
                          jnp.float32(z[0]), jnp.float32(z[1]))
  v_s = _unit(rng.normal(size=(n, FEAT))).astype(np.float32)
  v_t = _unit(rng.normal(size=(n, FEAT))).astype(np.float32)
  idx = rng.choice(N_DATA, size=n, replace=False).astype(np.int32)
  neg = rng.integers(0, N_DATA, size=(n, K)).astype(np.int32)
  return state, v_s, v_t, idx, np.concatenate([idx[:, None], neg], axis=1)


@pytest.mark.parametrize("z", [(-1.0, -1.0), (7.0, 3.5)])
@pytest.mark.parametrize("nce_t,momentum", [(0.07, 0.5), (0.5, 0.9)])
def test_crd_loss_and_memory_update_match_reference(z, nce_t, momentum):
  state, v_s, v_t, idx, cidx = _crd_case(1, z)
  loss, new = CRD_LOSS(state, v_s, v_t, idx, cidx, nce_t, momentum)
  want = ref.crd(*state, v_s, v_t, idx, cidx, nce_t, momentum)
  np.testing.assert_allclose(loss, want[0], rtol=1e-5)
  for got, expected in zip(new, want[1:]):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_crd_z_is_set_once_then_frozen():
  state, v_s, v_t, idx, cidx = _crd_case(2)
  _, first = CRD_LOSS(state, v_s, v_t, idx, cidx)
  assert float(first.z_student) > 0 and float(first.z_teacher) > 0
  state2, v_s, v_t, idx, cidx = _crd_case(3)
  _, second = CRD_LOSS(first._replace(student_memory=state2[0]),
                       v_s, v_t, idx, cidx)
  assert float(second.z_student) == float(first.z_student)
  assert float(second.z_teacher) == float(first.z_teacher)


def test_crd_gradients_reach_embeddings_not_memory():
  state, v_s, v_t, idx, cidx = _crd_case(4, z=(5.0, 5.0))
  g_state, g_s, g_t = jax.jit(jax.grad(
      lambda st, a, b: losses.crd_loss(st, a, b, idx, cidx)[0],
      argnums=(0, 1, 2)))(state, v_s, v_t)
  assert np.abs(np.asarray(g_s)).sum() > 0 and np.abs(np.asarray(g_t)).sum() > 0
  for leaf in jax.tree_util.tree_leaves(g_state):
    np.testing.assert_array_equal(leaf, 0.0)


def test_crd_scores_in_blocks_equal_one_gather_bit_for_bit_in_less_memory(
    monkeypatch):
  """The contrast scores, gathered a block of examples at a time and again
  in the backward pass, give the single gather's loss, gradients and banks
  bit for bit, for a vmapped block of runs, in a fraction of its memory."""
  runs, n, n_data, feat, k = 4, 40, 300, 32, 255  # 40: blocks of 16 + 8
  rng = np.random.default_rng(11)
  unit = lambda *shape: _unit(rng.normal(size=shape)).astype(np.float32)
  state = losses.CRDState(unit(runs, n_data, feat), unit(runs, n_data, feat),
                          np.full(runs, -1.0, np.float32),
                          np.full(runs, 2.0, np.float32))
  idx = np.stack([rng.choice(n_data, n, replace=False) for _ in range(runs)])
  cidx = np.concatenate(
      [idx[..., None], rng.integers(0, n_data, (runs, n, k))], -1)
  args = (state, unit(runs, n, feat), unit(runs, n, feat), idx, cidx)

  def one(st, v_s, v_t, i, c):
    loss = lambda a, b: losses.crd_loss(st, a, b, i, c)
    return jax.value_and_grad(loss, (0, 1), has_aux=True)(v_s, v_t)

  step = lambda: jax.jit(jax.vmap(one)).lower(*args).compile()
  blocked = step()
  # crd_loss as it was: one gather of every example's K+1 rows.
  monkeypatch.setattr(contrastive, "_contrast_scores", lambda memory, c, e:
                      jnp.einsum("nkd,nd->nk", memory[c], e))
  one_gather = step()
  for got, want in zip(jax.tree.leaves(blocked(*args)),
                       jax.tree.leaves(one_gather(*args))):
    np.testing.assert_array_equal(got, want)
  # One gather of both banks, kept for the backward pass, is 2 * 4 * 40 *
  # 256 * 32 * 4 bytes = 10.5 MB.
  temp = lambda c: c.memory_analysis().temp_size_in_bytes
  assert temp(blocked) < 0.5 * temp(one_gather)


def test_crd_init_follows_the_original():
  state = jax.jit(losses.crd_init, static_argnums=(1, 2))(
      jax.random.key(0), 500, 48)
  bound = 1.0 / np.sqrt(48 / 3)
  for memory in state[:2]:
    chex.assert_shape(memory, (500, 48))
    assert np.abs(np.asarray(memory)).max() <= bound
    assert np.abs(np.asarray(memory)).max() > 0.95 * bound
  assert not np.allclose(state.student_memory, state.teacher_memory)
  assert float(state.z_student) < 0 and float(state.z_teacher) < 0


def test_crd_embed_gives_unit_rows():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2, 5)), jnp.float32)
  module = losses.CRDEmbed(feat_dim=6)
  out = jax.jit(lambda v: module.apply(module.init(jax.random.key(0), v), v))(
      x)
  chex.assert_shape(out, (3, 6))
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-6)


def test_contrast_indices_are_positive_then_other_class():
  labels = np.random.default_rng(0).integers(0, 4, size=N_DATA).astype(
      np.int32)
  idx = np.array([0, 5, 19, 7], np.int32)
  cidx = jax.jit(losses.crd_contrast_indices, static_argnums=2)(
      jax.random.key(0), labels, 2000, idx)
  chex.assert_shape(cidx, (4, 2001))
  chex.assert_type(cidx, jnp.int32)
  cidx = np.asarray(cidx)
  np.testing.assert_array_equal(cidx[:, 0], idx)
  for row, i in zip(cidx, idx):
    negatives = row[1:]
    assert (labels[negatives] != labels[i]).all()
    allowed = np.flatnonzero(labels != labels[i])
    counts = np.bincount(negatives, minlength=N_DATA)[allowed]
    # uniform over the other classes: every candidate drawn, none hugely often
    assert counts.min() > 0 and counts.max() < 3 * 2000 / len(allowed)


def test_contrast_indices_default_to_every_example():
  labels = np.arange(N_DATA, dtype=np.int32) % 3
  cidx = jax.jit(losses.crd_contrast_indices, static_argnums=2)(
      jax.random.key(1), labels, 3)
  chex.assert_shape(cidx, (N_DATA, 4))
  np.testing.assert_array_equal(np.asarray(cidx)[:, 0], np.arange(N_DATA))


def test_crd_runs_in_scan_like_a_python_loop():
  state, *_ = _crd_case(5)
  rng = np.random.default_rng(5)
  v_s = _unit(rng.normal(size=(3, 4, FEAT))).astype(np.float32)
  v_t = _unit(rng.normal(size=(3, 4, FEAT))).astype(np.float32)
  idx = np.stack([rng.choice(N_DATA, 4, replace=False) for _ in range(3)])
  cidx = np.concatenate([idx[..., None],
                         rng.integers(0, N_DATA, size=(3, 4, K))], axis=-1)
  idx, cidx = idx.astype(np.int32), cidx.astype(np.int32)

  def step(st, xs):
    loss, st = losses.crd_loss(st, *xs)
    return st, loss

  final, scanned = jax.jit(lambda st: jax.lax.scan(
      step, st, (v_s, v_t, idx, cidx)))(state)
  looped = state
  for i in range(3):
    loss, looped = CRD_LOSS(looped, v_s[i], v_t[i], idx[i], cidx[i])
    np.testing.assert_allclose(np.asarray(scanned)[i], loss, rtol=1e-5)
  chex.assert_trees_all_close(final, looped, rtol=1e-5, atol=1e-6)


# -- transformations -----------------------------------------------------------

def _all_losses():
  """name → (fn of arrays only, args) covering every public loss."""
  s, t, y = _logits(9, 8, 10)
  f_s, f_t = _features(9, 8, 6, 4)
  # z_student unset, z_teacher set: both branches of the sentinel run.
  state, v_s, v_t, idx, cidx = _crd_case(9, z=(-1.0, 4.0))
  return {
      "kd": (losses.kd, (s, t, 2.0)),
      "dkd_weights": (lambda a, b, al, be, temp: losses.dkd(
          a, b, y, al, be, temp), (s, t, 0.5, 4.0, 2.0)),
      "dkd": (lambda a, b: losses.dkd(a, b, y), (s, t)),
      "fitnet": (losses.fitnet, (f_s, f_s[:, ::-1] + 1.0)),
      "rkd": (losses.rkd, (f_s, f_t)),
      "pkt": (losses.pkt, (f_s, f_t)),
      "sp": (losses.sp, (f_s, f_t)),
      "crd": (lambda a, b, st, tau, m: losses.crd_loss(
          st, a, b, idx, cidx, tau, m), (v_s, v_t, state, 0.1, 0.5)),
  }


ALL_LOSSES = _all_losses()  # built once so each fn's jit cache is shared


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_jit_equals_eager(name):
  fn, args = ALL_LOSSES[name]
  chex.assert_trees_all_close(jax.jit(fn)(*args), fn(*args), rtol=1e-5,
                              atol=1e-6)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_vmap_over_leading_axis_equals_loop(name):
  fn, args = ALL_LOSSES[name]
  # Three scaled copies of every argument, so scalars (temperatures,
  # weights) and the CRD state vary across the mapped axis too.
  stacked = jax.tree.map(
      lambda x: np.stack([np.asarray(x) * (1.0 + 0.1 * i) for i in range(3)]),
      args)
  vmapped = jax.tree.map(np.asarray, jax.jit(jax.vmap(fn))(*stacked))
  compiled = jax.jit(fn)
  for i in range(3):
    looped = compiled(*jax.tree.map(lambda x: x[i], stacked))
    chex.assert_trees_all_close(jax.tree.map(lambda v: v[i], vmapped), looped,
                                rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["kd", "dkd_weights", "fitnet", "sp",
                                  "crd"])
def test_jit_does_not_retrace_on_new_values(name):
  fn, args = ALL_LOSSES[name]
  traced = jax.jit(chex.assert_max_traces(fn, n=1))
  for scale in (1.0, 1.5):
    traced(*jax.tree.map(lambda x: np.asarray(x) * scale, args))


# Which arguments of ALL_LOSSES[name] to differentiate: dkd_weights covers
# the logit family (kd's KL is checked in test_divergences) including the
# traced α, β, T; fitnet's gradient is that of a square.
GRAD_ARGNUMS = {"dkd_weights": (0, 1, 2, 3, 4), "rkd": (0, 1),
                "pkt": (0, 1), "sp": (0, 1), "crd": (0, 1)}


@pytest.mark.parametrize("name", list(GRAD_ARGNUMS))
def test_gradients_match_finite_differences(name):
  fn, args = ALL_LOSSES[name]
  args = list(args)
  if name == "crd":  # a first-call Z is a constant that differences would move
    args[2] = args[2]._replace(z_student=jnp.float32(6.0))
  argnums = GRAD_ARGNUMS[name]

  def loss_of(*checked):
    full = list(args)
    for i, value in zip(argnums, checked):
      full[i] = value
    return jax.tree_util.tree_leaves(fn(*full))[0]

  check_grads(jax.jit(loss_of), tuple(jnp.asarray(args[i]) for i in argnums),
              **GRAD_TOL)


def test_defaults_are_the_reference_libraries():
  # Eager, on the shapes test_jit_equals_eager already dispatches.
  s, t, y = _logits(9, 8, 10)
  f_s, f_t = _features(9, 8, 6, 4)
  np.testing.assert_allclose(losses.kd(s, t), ref.kd(s, t, 4.0).mean(), **TOL)
  np.testing.assert_allclose(losses.dkd(s, t, y),
                             ref.dkd(s, t, y, 1.0, 8.0, 4.0).mean(),
                             **TOL)
  np.testing.assert_allclose(losses.rkd(f_s, f_t),
                             ref.rkd(f_s, f_t, 25.0, 50.0), **TOL)
  np.testing.assert_allclose(losses.pkt(f_s, f_t), ref.pkt(f_s, f_t, 1e-7),
                             rtol=1e-4)
  state, v_s, v_t, idx, cidx = _crd_case(9, z=(-1.0, 4.0))
  loss, new = losses.crd_loss(state, v_s, v_t, idx, cidx)
  want = ref.crd(*state, v_s, v_t, idx, cidx, 0.07, 0.5)
  np.testing.assert_allclose(loss, want[0], rtol=1e-5)
  np.testing.assert_allclose(new.student_memory, want[1], rtol=1e-5,
                             atol=1e-6)


# -- validation ----------------------------------------------------------------

def _logit_bad_cases():
  s, t, y = _logits(0, 4, 5)
  return [
      (losses.kd, (s[0, 0], t), {}, ValueError,
       "student_logits must have rank >= 1"),
      (losses.kd, (s[0], t), {}, ValueError, "same shape"),
      (losses.kd, (s, t[:, :4]), {}, ValueError, "same shape"),
      (losses.kd, (s[:0], t[:0]), {}, ValueError, "empty batch"),
      (losses.kd, (s, t, 0.0), {}, ValueError, "temperature must be > 0"),
      (losses.kd, (s, t), dict(reduction="sum"), ValueError,
       "reduction must be one of"),
      (losses.kd, (s.astype(np.int32), t), {}, TypeError,
       "student_logits must be a floating"),
      (losses.dkd, (s, t, np.array([0, 1, 2, 5], np.int32)), {}, ValueError,
       r"labels must lie in \[0, 5\)"),
      (losses.dkd, (s, t, y[:3]), {}, ValueError, "labels must have shape"),
      (losses.dkd, (s, t, y.astype(np.float32)), {}, TypeError,
       "labels must be an integer"),
      (losses.dkd, (s[:, :2], t[:, :2], y % 2), {}, ValueError, "C >= 3"),
      (losses.dkd, (s, t, y, 1.0, 8.0, -4.0), {}, ValueError,
       "temperature must be > 0"),
      (losses.dkd, (s, t, y), dict(reduction=None), ValueError,
       "reduction must be one of"),
      (losses.dkd, (s, t, y, np.ones(2), 1.0), {}, ValueError,
       "alpha must be a scalar"),
      (losses.dkd, (s, t, y, 1.0, np.ones(2)), {}, ValueError,
       "beta must be a scalar"),
      (losses.dkd, (s, t, y), dict(where=np.ones(4, np.int32)), TypeError,
       "where must be a boolean"),
      (losses.kd, (s, t), dict(where=np.ones(3, bool)), ValueError,
       "where must have"),
      (losses.dkd, (s, t, np.array([0, 1, 2, 5], np.int32)),
       dict(where=np.array([True, True, True, True])), ValueError,
       r"labels must lie in \[0, 5\)"),
      # Non-finite, negative, NaN and non-numeric hyperparameters.
      (losses.kd, (s, t, np.inf), {}, ValueError,
       "temperature must be > 0 and finite, got inf"),
      (losses.kd, (s, t, "2.0"), {}, TypeError,
       "temperature must be a number"),
      (losses.dkd, (s, t, y, np.nan), {}, ValueError,
       "alpha must be >= 0 and finite, got nan"),
      (losses.dkd, (s, t, y, 1.0, -1.0), {}, ValueError,
       "beta must be >= 0 and finite, got -1"),
      (losses.dkd, (s, t, y, 1.0, np.inf), {}, ValueError,
       "beta must be >= 0 and finite, got inf"),
      (losses.dkd, (s, t, y, "1.0"), {}, TypeError, "alpha must be a number"),
      (losses.dkd, (s, t, y, 1.0, True), {}, TypeError,
       "beta must be a number"),
      (losses.dkd, (s, t, y, 1.0, 8.0, "4"), {}, TypeError,
       "temperature must be a number"),
      (losses.dkd, (s, t, y.tolist()), {}, TypeError,
       r"labels must be an array \(jax.Array or numpy.ndarray\), got list"),
      (losses.kd, (s.tolist(), t), {}, TypeError,
       "student_logits must be an array"),
  ]


def _feature_bad_cases():
  s, t = _features(0, 4, 3, 3)
  cases = [
      (losses.fitnet, (s, t[:, :2]), {}, ValueError, "same shape"),
      (losses.fitnet, (s, t), dict(reduction="sum"), ValueError,
       "reduction must be one of"),
      (losses.fitnet, (s[0], t[0]), {}, ValueError,
       "student_features must have rank >= 2"),
      (losses.fitnet, (s[:0], t[:0]), {}, ValueError, "N >= 1"),
      (losses.fitnet, (s, t), dict(where=np.ones(3, bool)), ValueError,
       "where must have"),
      (losses.rkd, (s, t, np.ones(2)), {}, ValueError,
       "distance_weight must be a scalar"),
      (losses.pkt, (s, t, 0.0), {}, ValueError, "eps must be > 0"),
      (losses.pkt, (s, t, np.inf), {}, ValueError,
       "eps must be > 0 and finite"),
      (losses.rkd, (s, t, -1.0), {}, ValueError,
       "distance_weight must be >= 0 and finite"),
      (losses.rkd, (s, t, 25.0, "50"), {}, TypeError,
       "angle_weight must be a number"),
      (losses.fitnet, (s.tolist(), t), {}, TypeError,
       "student_features must be an array"),
      (losses.fitnet, (s, t), dict(where=[True] * 4), TypeError,
       "where must be an array"),
  ]
  for fn in (losses.rkd, losses.pkt, losses.sp):
    cases += [
        (fn, (s, t[:3]), {}, ValueError, "same batch size"),
        (fn, (s, t[0]), {}, ValueError, "teacher_features must have rank"),
        (fn, (s.astype(np.int32), t), {}, TypeError,
         "student_features must be a floating"),
        (fn, (s[:1], t[:1]), {}, ValueError, "N >= 2"),
    ]
  return cases


def _crd_bad_cases():
  state, v_s, v_t, idx, cidx = _crd_case(0)
  bad_positive = cidx.copy()
  bad_positive[:, 0] = (idx + 1) % N_DATA
  labels = np.arange(N_DATA, dtype=np.int32) % 2
  key = jax.random.key(0)
  return [
      (losses.crd_loss, (state.student_memory, v_s, v_t, idx, cidx), {},
       TypeError, "state must be a CRDState"),
      (losses.crd_loss, (state, v_s[:, :3], v_t, idx, cidx), {}, ValueError,
       "student_embed must have shape"),
      (losses.crd_loss, (state, v_s, v_t[:3], idx, cidx), {}, ValueError,
       "same batch size"),
      (losses.crd_loss, (state, v_s[:0], v_t[:0], idx[:0], cidx[:0]), {},
       ValueError, "empty batch"),
      (losses.crd_loss, (state, v_s, v_t, idx + N_DATA, cidx), {}, ValueError,
       r"indices must lie in \[0, n_data\)"),
      (losses.crd_loss, (state, v_s, v_t, idx[:3], cidx), {}, ValueError,
       "indices must have shape"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx[:, :1]), {}, ValueError,
       "K >= 1"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx.astype(np.float32)), {},
       TypeError, "contrast_indices must be an integer"),
      (losses.crd_loss, (state, v_s, v_t, idx, bad_positive), {}, ValueError,
       "positive comes first"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx, 0.0), {}, ValueError,
       "nce_t must be > 0"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx, 0.07, 1.0), {},
       ValueError, r"momentum must lie in \[0, 1\)"),
      (losses.crd_init, (key, 0), {}, ValueError, "n_data must be >= 1"),
      (losses.crd_init, (key, 10, 8.0), {}, TypeError, "feat_dim must be"),
      (losses.crd_contrast_indices, (key, labels, 0), {}, ValueError,
       "num_negatives must be >= 1"),
      (losses.crd_contrast_indices, (key, labels * 0, 3), {}, ValueError,
       "at least 2 classes"),
      (losses.crd_contrast_indices, (key, labels[None], 3), {}, ValueError,
       "labels must be the non-empty"),
      (losses.crd_contrast_indices, (key, labels, 3, np.array([N_DATA])), {},
       ValueError, r"indices must lie in \[0, n_data\)"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx, "0.07"), {}, TypeError,
       "nce_t must be a number"),
      (losses.crd_loss, (state, v_s, v_t, idx, cidx, 0.07, np.nan), {},
       ValueError, r"momentum must lie in \[0, 1\), got nan"),
      (losses.crd_loss, (state, v_s, v_t, idx.tolist(), cidx), {}, TypeError,
       "indices must be an array"),
      (losses.crd_contrast_indices, (key, labels.tolist(), 3), {}, TypeError,
       "labels must be an array"),
  ]


BAD = _logit_bad_cases() + _feature_bad_cases() + _crd_bad_cases()


@pytest.mark.parametrize("fn,args,kwargs,error,match", BAD,
                         ids=[f"{c[0].__name__}-{c[4]}" for c in BAD])
def test_bad_input_raises_naming_the_argument(fn, args, kwargs, error, match):
  with pytest.raises(error, match=match):
    fn(*args, **kwargs)
