"""CMCD's losses (ntdh_jax.losses.cmcd) against float64 NumPy references,
their limits (B.4 of the companion notes), gradients, queue and transforms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import losses
from ntdh_jax import validation
from tests import reference_losses as ref

TOL = dict(rtol=2e-5, atol=1e-5)
N, D, K = 6, 8, 5


def _pair(seed, n=N, d=D):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          rng.normal(size=(n, d)).astype(np.float32))


def _queue_rows(seed, k=K, d=D):
  """Extra anchors, unnormalised, with the unfilled rows holding NaN."""
  rng = np.random.default_rng(seed)
  rows = rng.normal(size=(k, d)).astype(np.float32) * 3
  filled = np.array([True, True, False, True, False])[:k]
  rows[~filled] = np.nan
  return rows, filled


WHERE = np.array([True, False, True, True, False, True])
PERM = np.array([1, 2, 3, 4, 5, 0])  # a derangement of the pairs


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _both(fn):
  """``fn`` jitted, returning its ``("none", "mean")`` reductions at once."""
  return jax.jit(lambda *args, **kwargs: (fn(*args, reduction="none",
                                             **kwargs), fn(*args, **kwargs)))


# Compiled once per shape and argument structure and shared by the tests:
# eager dispatch compiles every primitive separately and would dominate the
# file's runtime. Every argument is passed positionally, so temperatures are
# traced and all their values share one program.
SIMCLR = jax.jit(losses.simclr)
_CMD = jax.jit(lambda b, a, anchors, anchor_where, where, tau_s, tau_t: tuple(
    losses.cmd(b, a, anchors, anchor_where=anchor_where, where=where,
               tau_source=tau_s, tau_target=tau_t, reduction=reduction)
    for reduction in ("none", "mean")))
_CMC = jax.jit(lambda b, a, temperature, where: tuple(
    losses.cmc(b, a, temperature, where=where, reduction=reduction)
    for reduction in ("none", "mean")))


def CMD(b, a, anchors=None, anchor_where=None, where=None, tau_source=0.01,
        tau_target=0.2):
  """``cmd``'s ``("none", "mean")`` values, compiled."""
  return _CMD(b, a, anchors, anchor_where, where, tau_source, tau_target)


def CMC(b, a, temperature=0.07, where=None):
  """``cmc``'s ``("none", "mean")`` values, compiled."""
  return _CMC(b, a, temperature, where)


ALIGN = {"l2": _both(losses.align_l2), "cosine": _both(losses.align_cosine)}
DEFAULTS = jax.jit(lambda b, a: (losses.simclr(b, a), losses.cmd(b, a),
                                 losses.cmc(b, a)))
ALIGN_REF = {"l2": ref.align_l2_ref, "cosine": ref.align_cosine_ref}
PUSH = jax.jit(losses.cmd_queue_push)


def _entropy(p):
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0),
                 axis=-1)


# -- simclr --------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_simclr_matches_reference(temperature):
  z1, z2 = _pair(0)
  np.testing.assert_allclose(SIMCLR(z1, z2, temperature),
                             ref.simclr_ref(z1, z2, temperature), **TOL)


def test_defaults_are_simclrs_seeds_and_clips():
  """simclr τ = 0.5 (SimCLR, CIFAR-10); cmd τ_A = 0.01, τ_B = 0.2 (SEED);
  cmc τ = 0.07 (CLIP's initial value)."""
  b, a = _pair(1)
  got = DEFAULTS(b, a)
  np.testing.assert_allclose(got[0], ref.simclr_ref(b, a, 0.5), **TOL)
  np.testing.assert_allclose(
      got[1], ref.cmd_ref(b, a, None, None, 0.01, 0.2).mean(), **TOL)
  np.testing.assert_allclose(got[2], ref.cmc_ref(b, a, 0.07).mean(), **TOL)


def test_simclr_lower_when_views_coincide_than_shuffled():
  z1, _ = _pair(2)
  same = float(SIMCLR(z1, z1, 0.5))
  shuffled = float(SIMCLR(z1, z1[PERM], 0.5))
  assert same < shuffled - 0.1


# -- cmd -----------------------------------------------------------------------

CMD_CASES = {
    "batch": dict(),
    "queue": dict(queue=True),
    "where": dict(where=True),
    "queue+where": dict(queue=True, where=True),
}


def _cmd_case(name, seed):
  b, a = _pair(seed)
  case = CMD_CASES[name]
  kwargs, ref_kwargs = {}, {}
  if case.get("queue"):
    rows, filled = _queue_rows(seed + 100)
    kwargs.update(anchors=rows, anchor_where=filled)
    ref_kwargs.update(anchors=rows, anchor_where=filled)
  if case.get("where"):
    b[~WHERE] *= 1e3  # garbage padding; also excluded from the anchors
    a[~WHERE] *= -1e3
    kwargs.update(where=WHERE)
    ref_kwargs.update(where=WHERE)
  return b, a, kwargs, ref_kwargs


@pytest.mark.parametrize("taus", [(0.01, 0.2), (0.3, 0.5)])
@pytest.mark.parametrize("name", list(CMD_CASES))
def test_cmd_matches_reference(name, taus):
  b, a, kwargs, ref_kwargs = _cmd_case(name, 3)
  tau_s, tau_t = taus
  want = ref.cmd_ref(b, a, tau_source=tau_s, tau_target=tau_t, **ref_kwargs)
  got, mean = CMD(b, a, tau_source=tau_s, tau_target=tau_t, **kwargs)
  chex.assert_shape(got, (N,))
  np.testing.assert_allclose(got, want, **TOL)
  valid = kwargs.get("where", np.ones(N, bool))
  np.testing.assert_allclose(mean, want[valid].mean(), **TOL)


def test_cmd_unfilled_queue_rows_are_ignored():
  """Unfilled rows are excluded, not scored: any values there, same loss;
  a fully unfilled queue is the batch alone."""
  b, a = _pair(5)
  rows, filled = _queue_rows(6)
  other = rows.copy()
  other[~filled] = 7.0
  np.testing.assert_array_equal(
      CMD(b, a, rows, anchor_where=filled)[0],
      CMD(b, a, other, anchor_where=filled)[0])
  np.testing.assert_allclose(
      CMD(b, a, rows, anchor_where=np.zeros(K, bool))[0],
      CMD(b, a)[0], **TOL)


@pytest.mark.parametrize("queue", [False, True])
def test_cmd_with_target_equal_to_source_is_the_entropy_of_p(queue):
  """q = p: CMD is H(p), its minimum over q; moving z_B raises it."""
  _, a = _pair(7)
  kwargs, bank = {}, _unit(a)
  if queue:
    rows, filled = _queue_rows(8)
    kwargs = dict(anchors=rows, anchor_where=filled)
    bank = np.concatenate([bank, _unit(rows[filled])])
  tau = 0.3
  p = ref.softmax(_unit(a) @ bank.T / tau)
  got = CMD(a, a, tau_source=tau, tau_target=tau, **kwargs)[0]
  np.testing.assert_allclose(got, _entropy(p), **TOL)
  noise = np.random.default_rng(9).normal(size=a.shape).astype(np.float32)
  moved = CMD(a + 0.3 * noise, a, tau_source=tau, tau_target=tau,
              **kwargs)[0]
  assert np.all(np.asarray(moved) > np.asarray(got))


def test_cmd_as_tau_source_goes_to_zero_is_one_directional_infonce():
  """p one-hot on the own anchor: −log softmax_j(s(z_Bi, z_Aj)/τ_B)_{j=i}."""
  b, a = _pair(10)
  tau_t = 0.2
  logits = _unit(b) @ _unit(a).T / tau_t
  want = -np.log(np.diag(ref.softmax(logits)))
  got = CMD(b, a, tau_source=1e-3, tau_target=tau_t)[0]
  np.testing.assert_allclose(got, want, **TOL)


# -- cmc -----------------------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_cmc_matches_reference(temperature, masked):
  b, a = _pair(11)
  where = WHERE if masked else None
  want = ref.cmc_ref(b, a, temperature, where)
  got, mean = CMC(b, a, temperature, where=where)
  chex.assert_shape(got, (N,))
  np.testing.assert_allclose(got, want, **TOL)
  valid = WHERE if masked else np.ones(N, bool)
  np.testing.assert_allclose(mean, want[valid].mean(), **TOL)


def test_cmc_is_symmetric_under_swapping_source_and_target():
  b, a = _pair(13)
  np.testing.assert_allclose(CMC(b, a, 0.1)[0], CMC(a, b, 0.1)[0],
                             atol=1e-6)


def test_cmc_of_random_high_dimensional_embeddings_is_about_log_n():
  b, a = _pair(14, n=16, d=1024)
  np.testing.assert_allclose(CMC(b, a, 1.0)[1], np.log(16), rtol=0.02)


def test_cmc_of_aligned_orthogonal_pairs_at_small_tau_is_about_zero():
  rng = np.random.default_rng(15)
  basis = np.eye(N, D, dtype=np.float32)
  a = basis * rng.uniform(0.5, 2.0, size=(N, 1)).astype(np.float32)
  b = basis * rng.uniform(0.5, 2.0, size=(N, 1)).astype(np.float32)
  assert float(CMC(b, a, 0.01)[1]) < 1e-6


@pytest.mark.parametrize("loss", ["cmc", "cmd"])
def test_paired_embeddings_score_lower_than_a_shuffled_pairing(loss):
  _, a = _pair(16)
  noise = np.random.default_rng(17).normal(size=a.shape).astype(np.float32)
  b = a + 0.2 * noise
  fn = CMC if loss == "cmc" else CMD
  assert float(fn(b, a)[1]) < float(fn(b[PERM], a)[1]) - 0.5


# -- alignment baselines -------------------------------------------------------

@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["l2", "cosine"])
def test_alignment_matches_reference(name, masked):
  b, a = _pair(18)
  where = WHERE if masked else None
  want = ALIGN_REF[name](b, a)
  got, mean = ALIGN[name](b, a, where=where)
  got = np.asarray(got)
  valid = WHERE if masked else np.ones(N, bool)
  np.testing.assert_allclose(got[valid], want[valid], **TOL)
  np.testing.assert_array_equal(got[~valid], 0.0)
  np.testing.assert_allclose(mean, want[valid].mean(), **TOL)


def test_alignment_of_identical_embeddings_is_zero():
  b, _ = _pair(19)
  for fn in ALIGN.values():
    np.testing.assert_allclose(fn(b, b)[0], 0.0, atol=1e-6)
  np.testing.assert_allclose(ALIGN["cosine"](b, 3.0 * b)[0], 0.0, atol=1e-6)


def test_align_cosine_of_a_zero_row_is_one_not_nan():
  b, a = _pair(20)
  b[0] = 0.0
  got = np.asarray(ALIGN["cosine"](b, a)[0])
  assert got[0] == 1.0
  grad = jax.jit(jax.grad(lambda x: losses.align_cosine(x, a)))(b)
  assert np.isfinite(np.asarray(grad)).all()


# -- masked padding ------------------------------------------------------------

def _masked_losses(b, a, where):
  return {
      "cmd": losses.cmd(b, a, where=where, tau_source=0.3, reduction="none"),
      "cmc": losses.cmc(b, a, 0.2, where=where, reduction="none"),
      "align_l2": losses.align_l2(b, a, where=where, reduction="none"),
      "align_cosine": losses.align_cosine(b, a, where=where,
                                          reduction="none"),
  }


MASKED = jax.jit(_masked_losses)
MASKED_GRAD = jax.jit(jax.grad(
    lambda b, a, w: sum(jnp.sum(v) for v in _masked_losses(b, a, w).values())))


def test_nan_padding_does_not_reach_valid_values_or_gradients():
  """Masked rows are neither anchors nor candidates: the valid rows' values
  are those of the valid sub-batch alone, whatever the padding holds."""
  b, a = _pair(21)
  b[~WHERE], a[~WHERE] = np.nan, np.inf
  got = MASKED(b, a, WHERE)
  sub_b, sub_a = b[WHERE], a[WHERE]
  want = {"cmd": ref.cmd_ref(sub_b, sub_a, tau_source=0.3, tau_target=0.2),
          "cmc": ref.cmc_ref(sub_b, sub_a, 0.2),
          "align_l2": ref.align_l2_ref(sub_b, sub_a),
          "align_cosine": ref.align_cosine_ref(sub_b, sub_a)}
  for name, value in got.items():
    value = np.asarray(value)
    np.testing.assert_allclose(value[WHERE], want[name], **TOL,
                               err_msg=name)
    np.testing.assert_array_equal(value[~WHERE], 0.0)
  grad = np.asarray(MASKED_GRAD(b, a, WHERE))
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(grad[~WHERE], 0.0)
  assert np.abs(grad[WHERE]).sum() > 0


def test_all_masked_batch_gives_zero_and_zero_gradients():
  b, a = _pair(22)
  nothing = np.zeros(N, bool)
  for value in MASKED(b, a, nothing).values():
    np.testing.assert_array_equal(value, 0.0)
  np.testing.assert_array_equal(MASKED_GRAD(b, a, nothing), 0.0)


# -- gradients -----------------------------------------------------------------

def _grad_cases():
  rows, filled = _queue_rows(23)
  rows = np.where(filled[:, None], rows, 0.0).astype(np.float32)
  return {
      "cmd": lambda b, a, q: losses.cmd(b, a, q, anchor_where=filled),
      "cmc": lambda b, a, q: losses.cmc(b, a, 0.1),
      "align_l2": lambda b, a, q: losses.align_l2(b, a),
      "align_cosine": lambda b, a, q: losses.align_cosine(b, a),
  }, rows


GRAD_CASES, GRAD_ROWS = _grad_cases()


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradients_are_finite_and_none_reach_the_frozen_source(name):
  b, a = _pair(24)
  grads = jax.jit(jax.grad(GRAD_CASES[name], argnums=(0, 1, 2)))(
      b, a, GRAD_ROWS)
  g_b, g_a, g_q = map(np.asarray, grads)
  assert np.isfinite(g_b).all() and np.abs(g_b).sum() > 0
  np.testing.assert_array_equal(g_a, 0.0)
  np.testing.assert_array_equal(g_q, 0.0)


def test_simclr_gradients_are_finite_and_reach_both_views():
  z1, z2 = _pair(25)
  g1, g2 = jax.jit(jax.grad(losses.simclr, argnums=(0, 1)))(z1, z2, 0.5)
  for g in (g1, g2):
    assert np.isfinite(np.asarray(g)).all() and np.abs(g).sum() > 0


def test_traced_temperature_gets_a_finite_nonzero_gradient():
  b, a = _pair(26)
  grads = jax.jit(lambda t: (
      jax.grad(lambda u: losses.cmc(b, a, u))(t),
      jax.grad(lambda u: losses.cmd(b, a, tau_target=u))(t),
      # CLIP's parametrisation: a learnable log-temperature.
      jax.grad(lambda log_t: losses.cmc(b, a, jnp.exp(log_t)))(jnp.log(t)),
  ))(jnp.float32(0.2))
  for g in map(float, grads):
    assert np.isfinite(g) and g != 0.0


def _fd_check(b, a, directions, scales, eps=1e-2):
  """⟨∇f, v⟩ by autodiff and by central differences along each direction
  (v over the target, v_τ over the shared temperature), f the sum of the
  three contrastive losses: a wrong gradient in any term shows."""

  def total(x, t):
    return (losses.cmc(x, a, t) + losses.cmd(x, a, tau_target=t)
            + losses.simclr(x, a, t))

  def one(v, v_t):
    g_x, g_t = jax.grad(total, argnums=(0, 1))(b, 0.5)
    exact = jnp.vdot(g_x, v) + g_t * v_t
    diff = (total(b + eps * v, 0.5 + eps * v_t)
            - total(b - eps * v, 0.5 - eps * v_t)) / (2 * eps)
    return exact, diff

  return jax.vmap(one)(directions, scales)


def test_gradients_match_finite_differences():
  b, a = _pair(27)
  rng = np.random.default_rng(28)
  directions = rng.normal(size=(4, N, D)).astype(np.float32)
  scales = np.array([0.0, 0.0, 1.0, 0.3], np.float32)
  exact, diff = jax.jit(_fd_check)(b, a, directions, scales)
  np.testing.assert_allclose(exact, diff, rtol=1e-2, atol=1e-2)
  assert np.abs(np.asarray(exact)).min() > 0.05  # the check has teeth


# -- the queue -----------------------------------------------------------------

def test_queue_init_is_empty():
  queue = losses.cmd_queue_init(K, 3)
  chex.assert_shape(queue.embeddings, (K, 3))
  np.testing.assert_array_equal(queue.embeddings, 0.0)
  np.testing.assert_array_equal(queue.filled, False)
  assert queue.filled.dtype == jnp.bool_ and int(queue.position) == 0
  assert queue.position.dtype == jnp.int32


def test_queue_push_is_fifo_and_wraps_around():
  rng = np.random.default_rng(28)
  x1, x2, x3 = (rng.normal(size=(3, 3)).astype(np.float32) * 4
                for _ in range(3))
  u1, u2, u3 = map(_unit, (x1, x2, x3))
  queue = PUSH(losses.cmd_queue_init(K, 3), x1)
  np.testing.assert_allclose(queue.embeddings[:3], u1, rtol=1e-6)
  np.testing.assert_array_equal(queue.embeddings[3:], 0.0)
  np.testing.assert_array_equal(queue.filled, [1, 1, 1, 0, 0])
  assert int(queue.position) == 3
  queue = PUSH(queue, x2)  # rows 3, 4, then wraps to row 0
  np.testing.assert_allclose(queue.embeddings,
                             np.stack([u2[2], u1[1], u1[2], u2[0], u2[1]]),
                             rtol=1e-6)
  np.testing.assert_array_equal(queue.filled, True)
  assert int(queue.position) == 1
  # Only the valid rows go in, contiguously: x3[0] → row 1, x3[2] → row 2.
  queue = PUSH(queue, x3, where=np.array([True, False, True]))
  np.testing.assert_allclose(queue.embeddings,
                             np.stack([u2[2], u3[0], u3[2], u2[0], u2[1]]),
                             rtol=1e-6)
  assert int(queue.position) == 3


def test_queue_push_of_a_full_size_batch_replaces_every_row():
  x = np.random.default_rng(29).normal(size=(K, 3)).astype(np.float32)
  queue = PUSH(losses.cmd_queue_init(K, 3)._replace(position=jnp.int32(2)),
               x)
  np.testing.assert_allclose(queue.embeddings, np.roll(_unit(x), 2, axis=0),
                             rtol=1e-6)
  assert int(queue.position) == 2


def test_queue_push_sends_no_gradient_to_the_source():
  x = np.random.default_rng(30).normal(size=(3, 3)).astype(np.float32)
  grad = jax.jit(jax.grad(lambda s: jnp.sum(
      losses.cmd_queue_push(losses.cmd_queue_init(K, 3), s).embeddings)))(x)
  np.testing.assert_array_equal(grad, 0.0)


def _distil(queue, batch):
  b, a = batch
  loss = losses.cmd(b, a, queue.embeddings, anchor_where=queue.filled,
                    tau_source=0.3)
  return losses.cmd_queue_push(queue, a), loss


def test_cmd_with_queue_in_scan_equals_a_python_loop():
  rng = np.random.default_rng(31)
  batches = (rng.normal(size=(4, 3, D)).astype(np.float32),
             rng.normal(size=(4, 3, D)).astype(np.float32))
  queue, scanned = jax.jit(lambda q, xs: jax.lax.scan(_distil, q, xs))(
      losses.cmd_queue_init(K, D), batches)
  step, looped = jax.jit(_distil), losses.cmd_queue_init(K, D)
  for t in range(4):
    looped, loss = step(looped, (batches[0][t], batches[1][t]))
    np.testing.assert_allclose(scanned[t], loss, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(queue, looped)
  assert int(queue.position) == (4 * 3) % K


# -- transformations -----------------------------------------------------------

def _runs():
  """name → (fn, args stacked over 3 runs), each run's values differ."""
  rng = np.random.default_rng(32)
  b = rng.normal(size=(3, N, D)).astype(np.float32)
  a = rng.normal(size=(3, N, D)).astype(np.float32)
  temps = np.array([0.1, 0.3, 0.7], np.float32)
  queue = losses.CMDQueue(
      rng.normal(size=(3, K, D)).astype(np.float32),
      rng.random((3, K)) < 0.6, np.array([0, 2, 4], np.int32))
  return {
      "simclr": (losses.simclr, (b, a, temps)),
      "cmd": (lambda x, y, q, t: losses.cmd(
          x, y, q.embeddings, anchor_where=q.filled, tau_source=t,
          where=WHERE, reduction="none"), (b, a, queue, temps)),
      "cmc": (lambda x, y, t: losses.cmc(x, y, t, where=WHERE),
              (b, a, temps)),
      "align_l2": (losses.align_l2, (b, a)),
      "align_cosine": (losses.align_cosine, (b, a)),
      "push": (lambda q, y: losses.cmd_queue_push(q, y[:3]), (queue, a)),
  }


RUNS = _runs()


@pytest.mark.parametrize("name", list(RUNS))
def test_vmap_over_runs_equals_a_loop(name):
  fn, args = RUNS[name]
  vmapped = jax.jit(jax.vmap(fn))(*args)
  compiled = jax.jit(fn)
  for i in range(3):
    looped = compiled(*jax.tree.map(lambda x: x[i], args))
    chex.assert_trees_all_close(jax.tree.map(lambda v: v[i], vmapped),
                                looped, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["cmd", "cmc"])
def test_jit_does_not_retrace_on_new_values(name):
  fn, args = RUNS[name]
  traced = jax.jit(chex.assert_max_traces(fn, n=1))
  for i in range(3):
    traced(*jax.tree.map(lambda x: x[i], args))


# -- validation ----------------------------------------------------------------

def test_checked_mode_catches_a_traced_temperature():
  b, a = _pair(35)
  cmc_of = jax.jit(lambda t: losses.cmc(b, a, t))
  cmd_of = jax.jit(lambda t: losses.cmd(b, a, tau_source=t))
  cmc_of(0.0)  # a traced τ cannot raise in the plain program
  with pytest.raises(ValueError, match="temperature must be > 0"):
    validation.checked(cmc_of)(0.0)
  with pytest.raises(ValueError, match="tau_source must be > 0"):
    validation.checked(cmd_of)(-1.0)
  np.testing.assert_allclose(validation.checked(cmc_of)(0.5), cmc_of(0.5),
                             rtol=1e-6)


def _bad_cases():
  b, a = _pair(0)
  rows, filled = _queue_rows(1)
  queue = losses.cmd_queue_init(K, D)
  cases = [
      (losses.simclr, (b, a[:3]), {}, ValueError,
       "z1 and z2 must have the same batch size"),
      (losses.simclr, (b, a, 0.0), {}, ValueError,
       "temperature must be > 0"),
      (losses.simclr, (b[:1], a[:1]), {}, ValueError, "N >= 2"),
      (losses.simclr, (b[0], a), {}, ValueError, "z1 must have rank 2"),
      (losses.cmc, (b[:1], a[:1]), {}, ValueError, "N >= 2"),
      (losses.cmc, (b, a, -1.0), {}, ValueError, "temperature must be > 0"),
      (losses.cmc, (b, a, "0.07"), {}, TypeError,
       "temperature must be a number"),
      (losses.cmd, (b, a), dict(tau_source=0.0), ValueError,
       "tau_source must be > 0"),
      (losses.cmd, (b, a), dict(tau_target=np.inf), ValueError,
       "tau_target must be > 0 and finite"),
      (losses.cmd, (b, a, rows[:, :3]), {}, ValueError,
       "anchors must have shape"),
      (losses.cmd, (b, a, rows[0]), {}, ValueError, "anchors must have rank"),
      (losses.cmd, (b, a, np.ones((K, D), np.int32)), {}, TypeError,
       "anchors must be a floating"),
      (losses.cmd, (b, a, rows), dict(anchor_where=filled[:4]), ValueError,
       "anchor_where must have"),
      (losses.cmd, (b, a, rows), dict(anchor_where=filled.astype(np.float32)),
       TypeError, "anchor_where must be a boolean"),
      (losses.cmd, (b, a), dict(anchor_where=filled), ValueError,
       "anchor_where was given without anchors"),
      (losses.cmd_queue_init, (0, D), {}, ValueError, "size must be >= 1"),
      (losses.cmd_queue_init, (K, 2.0), {}, TypeError, "dim must be an int"),
      (losses.cmd_queue_push, (queue, a), {}, ValueError,
       "source_emb has N = 6 rows, more than the queue's K = 5"),
      (losses.cmd_queue_push, (queue, a[:3, :4]), {}, ValueError,
       "source_emb must have the queue's width"),
      (losses.cmd_queue_push, (queue, a[0]), {}, ValueError,
       "source_emb must have rank 2"),
      (losses.cmd_queue_push, (queue, a[:3]), dict(where=WHERE), ValueError,
       "where must have"),
      (losses.cmd_queue_push, (queue.embeddings, a[:3]), {}, TypeError,
       "queue must be a CMDQueue"),
  ]
  for fn in (losses.cmd, losses.cmc, losses.align_l2, losses.align_cosine):
    cases += [
        (fn, (b.astype(np.int32), a), {}, TypeError,
         "target_emb must be a floating"),
        (fn, (b, a.astype(np.int32)), {}, TypeError,
         "source_emb must be a floating"),
        (fn, (b[0], a), {}, ValueError,
         r"target_emb must have rank 2 \[N, D\]"),
        (fn, (b, a[..., None]), {}, ValueError, "source_emb must have rank 2"),
        (fn, (b, a[:3]), {}, ValueError, "same batch size N"),
        (fn, (b, a[:, :4]), {}, ValueError, "same embedding width D"),
        (fn, (b[:, :0], a[:, :0]), {}, ValueError, "target_emb has D = 0"),
        (fn, (b, a), dict(where=WHERE[:3]), ValueError, "where must have"),
        (fn, (b, a), dict(where=WHERE.astype(np.int32)), TypeError,
         "where must be a boolean"),
        (fn, (b, a), dict(reduction="sum"), ValueError,
         "reduction must be one of"),
        (fn, (b.tolist(), a), {}, TypeError, "target_emb must be an array"),
    ]
  return cases


BAD = _bad_cases()


@pytest.mark.parametrize("fn,args,kwargs,error,match", BAD,
                         ids=[f"{c[0].__name__}-{c[4]}" for c in BAD])
def test_bad_input_raises_naming_the_argument(fn, args, kwargs, error, match):
  with pytest.raises(error, match=match):
    fn(*args, **kwargs)
