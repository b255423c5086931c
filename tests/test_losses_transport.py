"""UCMKD's alignment terms (ntdh_jax.losses.transport) against float64
NumPy and POT references, their limits (C.4 of the companion notes),
gradients (first and second order) and transforms."""

import chex
import jax
from jax.scipy.special import logsumexp
from jax.test_util import check_grads
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from ntdh_jax import losses
from ntdh_jax import validation

COST_NAMES = ("cosine", "chordal", "l2", "l1", "sqeuclidean")
B, B2, D, C = 8, 6, 5, 4


def _clouds(seed, n=B, m=B2, d=D, scale=1.0):
  rng = np.random.default_rng(seed)
  return ((rng.normal(size=(n, d)) * scale).astype(np.float32),
          (rng.normal(size=(m, d)) * scale).astype(np.float32))


# -- float64 references --------------------------------------------------------


def _unit(x):
  """torch's F.normalize: x / max(‖x‖, 1e-12)."""
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cost_ref(x, y, cost):
  """The code's pairwise_ot_cost (and ‖x − y‖²), clamped at 0, float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if cost in ("cosine", "chordal"):
    x, y = _unit(x), _unit(y)
  diff = x[:, None, :] - y[None, :, :]
  c = {"cosine": lambda: 1.0 - x @ y.T,
       "chordal": lambda: np.sqrt(np.sum(diff ** 2, -1)),
       "l2": lambda: np.sqrt(np.sum(diff ** 2, -1)),
       "l1": lambda: np.sum(np.abs(diff), -1),
       "sqeuclidean": lambda: np.sum(diff ** 2, -1)}[cost]()
  return np.maximum(c, 0.0)


def _uniform(n):
  return np.full(n, 1.0 / n)


def pot_sinkhorn(m, eps, iterations=100_000, stop=1e-12):
  """POT's sinkhorn2 = ⟨P, M⟩ (standard-domain Sinkhorn-Knopp), float64."""
  n, k = m.shape
  return float(ot.sinkhorn2(_uniform(n), _uniform(k), m, reg=eps,
                            numItermax=iterations, stopThr=stop))


def log_softmax_ref(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def smoothed_ce_ref(z, y, s):
  """torch's cross_entropy(label_smoothing=s): target (1−s)·onehot + s/C."""
  c = z.shape[-1]
  target = (1 - s) * np.eye(c)[y] + s / c
  return -(target * log_softmax_ref(z)).sum(-1)


def unrolled_fa(x, y, eps, iterations):
  """FA by a hand-written log-domain Sinkhorn (no ott), differentiated by
  plain autodiff through ``lax.scan``: the gradients' reference."""
  c = losses.cost_matrix(x, jax.lax.stop_gradient(y))
  n, m = c.shape
  log_a, log_b = -jnp.log(n) * jnp.ones(n), -jnp.log(m) * jnp.ones(m)

  def step(fg, _):
    f, g = fg
    g = eps * log_b - eps * logsumexp((f[:, None] - c) / eps, axis=0)
    f = eps * log_a - eps * logsumexp((g[None, :] - c) / eps, axis=1)
    return (f, g), None

  (f, g), _ = jax.lax.scan(step, (jnp.zeros(n), jnp.zeros(m)), None,
                           length=iterations)
  return jnp.sum(jnp.exp((f[:, None] + g[None, :] - c) / eps) * c)


# Compiled once per shape and static arguments and shared by the tests; ε is
# traced, so every ε of a shape shares one program.
SINKHORN = jax.jit(losses.sinkhorn, static_argnames=("cost", "iterations"))
COST_MATRIX = jax.jit(losses.cost_matrix, static_argnames="cost")
KAPPA = jax.jit(losses.label_transport_kernel, static_argnames="form")
LA = jax.jit(losses.label_alignment, static_argnames="reduction")


# -- ground costs ----------------------------------------------------------------


def _with_edge_rows(x, y):
  """x's row 0 is zero and y's row 0 equals x's row 1 (clamp, zero norm)."""
  x, y = x.copy(), y.copy()
  x[0] = 0.0
  y[0] = x[1]
  return x, y


@pytest.mark.parametrize("cost", COST_NAMES)
def test_cost_matrix_matches_reference(cost):
  x, y = _with_edge_rows(*_clouds(0))
  got = COST_MATRIX(x, y, cost=cost)
  want = cost_ref(x, y, cost)
  chex.assert_shape(got, (B, B2))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-6 * max(1.0, want.max()))
  assert np.all(np.asarray(got) >= 0.0)  # clamped: no −1e-7 from rounding
  if cost in ("cosine", "chordal"):  # a zero row is 1 from every unit row
    np.testing.assert_allclose(got[0], 1.0, atol=1e-6)


def test_costs_registry_names_the_code_metrics():
  assert tuple(losses.COSTS) == COST_NAMES
  # Scale-invariant on normalised rows, not on raw ones.
  x, y = _clouds(1)
  for cost in ("cosine", "chordal"):
    np.testing.assert_allclose(COST_MATRIX(3 * x, y, cost=cost),
                               COST_MATRIX(x, y, cost=cost), atol=1e-6)


@pytest.mark.parametrize("cost", COST_NAMES)
def test_cost_matrix_gradient_is_finite_at_zero_and_coinciding_rows(cost):
  x, y = _with_edge_rows(*_clouds(2))
  grad = jax.jit(jax.grad(lambda a: jnp.sum(losses.cost_matrix(a, y, cost))))
  assert np.all(np.isfinite(grad(x)))


# -- Sinkhorn against POT --------------------------------------------------------

# Converged (marginal error < 1e-6 in float32), the plan is POT's fixed point
# up to float32 rounding of the potentials: |Δ⟨P, C⟩| <= max C · ‖ΔP‖₁,
# ‖ΔP‖₁ of order the marginal error plus ~1e-6 relative rounding, so
# 2e-5 · (1 + max C) has a 10x margin over the observed ~2e-6.
CONVERGED = 2000


@pytest.mark.parametrize("cost,scale", [("cosine", 1.0), ("chordal", 1.0),
                                        ("l2", 0.5)])
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_sinkhorn_cost_matches_pot_at_convergence(cost, scale, eps):
  x, y = _clouds(3, scale=scale)
  out = SINKHORN(x, y, cost=cost, epsilon=eps, iterations=CONVERGED)
  m = cost_ref(x, y, cost)
  assert float(out.marginal_error) < 1e-5
  np.testing.assert_allclose(float(out.cost), pot_sinkhorn(m, eps),
                             rtol=0, atol=2e-5 * (1 + m.max()))


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("cost,eps", [("cosine", 0.1), ("l2", 0.05),
                                      ("l1", 0.1)])
def test_sinkhorn_iterates_are_pots_iterates(cost, eps):
  """From ott's zero potentials and POT's uniform scalings the iterates are
  the same plans in exact arithmetic (each iteration a column then a row
  update, the plan invariant to the scalings' constant factor), so even an
  unconverged 100th iterate (l2 here: marginal error ~7e-4) agrees."""
  x, y = _clouds(4)
  out = SINKHORN(x, y, cost=cost, epsilon=eps, iterations=100)
  m = cost_ref(x, y, cost)
  np.testing.assert_allclose(float(out.cost),
                             pot_sinkhorn(m, eps, iterations=100, stop=0.0),
                             rtol=2e-5)
  if cost == "l2":
    assert float(out.marginal_error) > 1e-4  # the check has teeth


def test_sinkhorn_approaches_exact_ot_as_epsilon_vanishes():
  """⟨P_ε, C⟩ − OT ∈ [0, ε log B] for B = B' (entropy of P_ε <= 2 log B, of
  a permutation plan = log B), up to the marginal error times max C."""
  x, y = _clouds(5, n=6, m=6)
  m = cost_ref(x, y, "cosine")
  exact = float(ot.emd2(_uniform(6), _uniform(6), m))
  gaps = []
  for eps, iterations in ((1e-3, 10_000), (0.1, CONVERGED), (0.5, CONVERGED)):
    out = SINKHORN(x, y, cost="cosine", epsilon=eps, iterations=iterations)
    tol = float(out.marginal_error) * m.max() + 1e-5
    gap = float(out.cost) - exact
    assert -tol <= gap <= eps * np.log(6) + tol, (eps, gap)
    gaps.append(gap)
  assert abs(gaps[0]) < 1e-4  # ε = 1e-3: within 1e-4 of the LP value
  assert gaps[1] < gaps[2]  # the bias grows with ε


def test_plan_is_a_coupling_of_uniform_marginals():
  x, y = _clouds(6)
  out = SINKHORN(x, y, cost="cosine", epsilon=0.1, iterations=100)
  plan = np.asarray(out.plan, np.float64)
  chex.assert_shape(out.plan, (B, B2))
  chex.assert_shape((out.cost, out.marginal_error), ((), ()))
  assert np.all(plan >= 0)
  np.testing.assert_allclose(plan.sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(plan.sum(1), 1 / B, atol=1e-6)  # rows exact
  np.testing.assert_allclose(plan.sum(0), 1 / B2, atol=1e-5)
  error = (np.abs(plan.sum(1) - 1 / B).sum()
           + np.abs(plan.sum(0) - 1 / B2).sum())
  np.testing.assert_allclose(float(out.marginal_error), error, atol=1e-6)
  np.testing.assert_allclose(float(out.cost),
                             (plan * cost_ref(x, y, "cosine")).sum(),
                             rtol=1e-5)


def test_feature_alignment_of_identical_clouds_is_the_entropic_bias():
  x, y = _clouds(7, n=6, m=6)
  fa = jax.jit(losses.feature_alignment)
  same = float(fa(x, x))
  # OT(x, x) = 0, so FA(x, x) = the bias, in [0, ε log B].
  assert 0.0 <= same <= 0.1 * np.log(6)
  # Transport does not see the order of the rows: a shuffled copy is the
  # same cloud.
  np.testing.assert_allclose(float(fa(x, x[::-1])), same, rtol=1e-5)
  assert float(fa(x, y)) > same + 0.1  # a different cloud costs more
  # Smaller ε, smaller bias.
  assert float(fa(x, x, epsilon=0.02)) < same


# -- transforms ------------------------------------------------------------------


@chex.assert_max_traces(n=1)
def _fa_once(x, y, eps):
  return losses.feature_alignment(x, y, epsilon=eps, iterations=50)


FA_ONCE = jax.jit(_fa_once)


def _fa_mapped(x, y, eps):
  return losses.feature_alignment(x, y, epsilon=eps, iterations=50)


def test_jit_vmap_over_clouds_and_epsilons_matches_a_loop():
  rng = np.random.default_rng(8)
  xs = rng.normal(size=(3, B, D)).astype(np.float32)
  ys = rng.normal(size=(3, B2, D)).astype(np.float32)
  eps = np.array([0.05, 0.1, 0.5], np.float32)
  mapped = jax.jit(jax.vmap(_fa_mapped))(xs, ys, eps)
  looped = [FA_ONCE(x, y, e) for x, y, e in zip(xs, ys, eps)]
  looped.append(FA_ONCE(xs[0], ys[0], np.float32(0.3)))  # another ε, the same program
  np.testing.assert_allclose(mapped, looped[:3], rtol=1e-5)
  plans = jax.jit(jax.vmap(
      lambda x, y, e: losses.sinkhorn(x, y, epsilon=e, iterations=50)))(
          xs, ys, eps)
  chex.assert_shape(plans.plan, (3, B, B2))
  np.testing.assert_allclose(plans.cost, mapped, rtol=1e-6)


def _derivatives(fa):
  """(FA, ∂FA/∂x, ∂FA/∂ε, ∇_x Σ(∂FA/∂x)²) of ``fa(x, y, eps)``."""
  grad = jax.grad(fa, argnums=(0, 2))

  def run(x, y, eps):
    gx, geps = grad(x, y, eps)
    second = jax.grad(lambda a: jnp.sum(jax.grad(fa)(a, y, eps) ** 2))(x)
    return fa(x, y, eps), gx, geps, second

  return jax.jit(run)


def test_unrolled_gradients_match_a_hand_unrolled_loop():
  """First and second order, and in ε: ott's unrolled backward pass, run as
  one block (``_sinkhorn``), is plain autodiff through the iterations."""
  x, y = _clouds(9, n=5, m=4, d=3)
  ours = _derivatives(lambda a, b, e: losses.feature_alignment(
      a, b, epsilon=e, iterations=20))(x, y, 0.1)
  ref = _derivatives(lambda a, b, e: unrolled_fa(a, b, e, 20))(x, y, 0.1)
  for got, want in zip(ours, ref):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(ours[3])).max() > 1e-2  # the check has teeth
  # The teacher side is frozen.
  gy = jax.grad(lambda b: losses.feature_alignment(x, b, iterations=20))(y)
  np.testing.assert_array_equal(gy, 0.0)


def test_gradient_matches_finite_differences():
  x, y = _clouds(10, n=3, m=3, d=2)
  fa = jax.jit(lambda a: losses.feature_alignment(a, y, epsilon=0.05,
                                                  iterations=20))
  # Reverse mode only: ott's loop is a custom_vjp (no jvp).
  check_grads(fa, (x,), order=1, modes=("rev",), eps=1e-3)


def test_grad_of_grad_at_the_code_defaults_is_finite():
  """The bi-level outer gradient differentiates an inner step on FA."""
  x, y = _clouds(11)

  def outer(a):
    inner = a - 0.5 * jax.grad(lambda s: losses.feature_alignment(s, y))(a)
    return jnp.sum(inner ** 2)

  g = jax.jit(jax.grad(outer))(x)
  assert np.all(np.isfinite(g)) and np.abs(np.asarray(g)).max() > 0


def test_danskin_gradient_is_the_plan_and_twice_differentiable():
  """With the plan held fixed, ∂FA/∂C is the plan itself (the envelope
  gradient of the entropic OT value), and grad-of-grad is finite where the
  unrolled loop's is not: 64 LeakyReLU-like features at the code's
  defaults, the bi-level step's case."""
  rng = np.random.default_rng(12)
  x = np.abs(rng.normal(size=(64, 16))).astype(np.float32)
  y = np.abs(rng.normal(size=(64, 16))).astype(np.float32)

  def second(gradient):
    fa = lambda a: losses.feature_alignment(a, y, gradient=gradient)
    return jax.jit(jax.grad(lambda a: jnp.sum(jax.grad(fa)(a) * x)))(x)

  assert np.all(np.isfinite(second("danskin")))
  assert not np.all(np.isfinite(second("unrolled")))  # ott 0.6; see docs
  # Same value either way; the gradient w.r.t. the student features is
  # ⟨P, ∂C/∂x⟩ with P the (fixed) plan.
  plan = losses.sinkhorn(x, y).plan
  np.testing.assert_allclose(
      losses.feature_alignment(x, y, gradient="danskin"),
      losses.feature_alignment(x, y), rtol=1e-6)
  g = jax.grad(lambda a: losses.feature_alignment(a, y,
                                                  gradient="danskin"))(x)
  want = jax.grad(lambda a: jnp.sum(plan * losses.cost_matrix(a, y)))(x)
  np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="gradient must be one of"):
    losses.feature_alignment(x, y, gradient="implicit")


# -- the label transport kernel ------------------------------------------------


def _heads(seed, n=B, c=C, scale=2.0):
  rng = np.random.default_rng(seed)
  return ((rng.normal(size=(n, c)) * scale).astype(np.float32),
          (rng.normal(size=(n, c)) * scale).astype(np.float32),
          rng.integers(0, c, size=n).astype(np.int32))


def kappa_ref(t, s, y, form, max_ratio):
  rows = np.arange(len(y))
  log_t = log_softmax_ref(t)[rows, y]
  if form == "teacher_only":
    return np.exp(log_t)
  return np.minimum(np.exp(log_t - log_softmax_ref(s)[rows, y]), max_ratio)


@pytest.mark.parametrize("form", losses.KAPPAS)
def test_kappa_matches_reference(form):
  t, s, y = _heads(12)
  s[0, y[0]] = -20.0  # an under-confident student: the ratio is clipped
  for max_ratio in (10.0, 3.0):
    got = KAPPA(t, s, y, form=form, max_ratio=max_ratio)
    chex.assert_shape(got, (B,))
    np.testing.assert_allclose(got, kappa_ref(t, s, y, form, max_ratio),
                               rtol=2e-5)
  if form == "paper_ratio":
    assert float(got[0]) == pytest.approx(3.0, rel=1e-6)
    assert float(KAPPA(t, s, y, form=form, max_ratio=1e9)[0]) > 1e6
  else:
    assert np.all((np.asarray(got) > 0) & (np.asarray(got) <= 1))


@pytest.mark.parametrize("form", losses.KAPPAS)
def test_kappa_has_no_gradient(form):
  t, s, y = _heads(13)
  grads = jax.grad(lambda a, b: jnp.sum(losses.label_transport_kernel(
      a, b, y, form=form)), argnums=(0, 1))(t, s)
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)


# -- label alignment ------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_alignment_matches_reference(smoothing):
  t, s, y = _heads(14)
  kappa = np.random.default_rng(15).uniform(0, 2, size=B).astype(np.float32)
  got = LA(s, t, y, kappa, label_smoothing=smoothing)
  want = (smoothed_ce_ref(s, y, smoothing)
          - kappa * smoothed_ce_ref(t, y, smoothing))
  chex.assert_shape(got, (B,))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  mean = LA(s, t, y, kappa, label_smoothing=smoothing, reduction="mean")
  np.testing.assert_allclose(mean, want.mean(), rtol=1e-5, atol=1e-5)


def test_label_alignment_ignores_masked_rows():
  t, s, y = _heads(16)
  kappa = np.ones(B, np.float32)
  where = np.arange(B) % 3 != 0
  t[~where], s[~where], y[~where] = np.nan, np.nan, 99
  got = LA(s, t, y, kappa, where=where)
  want = smoothed_ce_ref(s, y % C, 0.0) - smoothed_ce_ref(t, y % C, 0.0)
  np.testing.assert_allclose(got[where], want[where], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got[~where], 0.0)
  grads = jax.grad(lambda a, b: losses.label_alignment(
      a, b, y, kappa, where=where, reduction="mean"), argnums=(0, 1))(s, t)
  for g in grads:
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[~where], 0.0)


def test_sumall_identity():
  """The code's sumall LA, NLL(log p_S − κ ⊙ log p_T, y) with κ the detached
  teacher-head softmax vector, is label_alignment with teacher_only κ."""
  t, s, y = _heads(17)
  rows = np.arange(B)
  kappa_vec = np.exp(log_softmax_ref(t))
  code = -(log_softmax_ref(s) - kappa_vec * log_softmax_ref(t))[rows, y]
  kappa = KAPPA(t, s, y, form="teacher_only")
  np.testing.assert_allclose(LA(s, t, y, kappa), code, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_alignment_gradients_and_their_sign(smoothing):
  """∂LA/∂h_S = p_S − target; ∂LA/∂h_T = −κ (p_T − target), whose
  true-class entry κ (1 − s + s/C − p_T(y)) is > 0: raising the teacher
  head's true-class logit raises LA, so minimising LA lowers it."""
  t, s, y = _heads(18, scale=1.0)
  kappa = KAPPA(t, s, y, form="teacher_only")
  gs, gt = jax.grad(lambda a, b: jnp.sum(losses.label_alignment(
      a, b, y, kappa, label_smoothing=smoothing)), argnums=(0, 1))(s, t)
  target = (1 - smoothing) * np.eye(C)[y] + smoothing / C
  kappa64 = np.asarray(kappa, np.float64)[:, None]
  np.testing.assert_allclose(gs, np.exp(log_softmax_ref(s)) - target,
                             atol=1e-6)
  np.testing.assert_allclose(
      gt, -kappa64 * (np.exp(log_softmax_ref(t)) - target), atol=1e-6)
  true_class = np.asarray(gt)[np.arange(B), y]
  assert np.all(true_class > 0)
  # Moving along that gradient (a step down) lowers p_T(y | z).
  p_t = np.exp(log_softmax_ref(t))[np.arange(B), y]
  stepped = np.exp(log_softmax_ref(t - 0.5 * np.asarray(gt)))
  assert np.all(stepped[np.arange(B), y] < p_t)


# -- argument checks -----------------------------------------------------------


def _bad_calls():
  x, y = _clouds(19, n=3, m=2, d=2)
  t, s, lab = _heads(20, n=3)
  kappa = np.ones(3, np.float32)
  return [
      (lambda: losses.cost_matrix(x, y, "cosin"), "cost must be one of"),
      (lambda: losses.sinkhorn(x, y, cost="L2"), "cost must be one of"),
      (lambda: losses.sinkhorn(x, y, epsilon=0.0), "epsilon must be > 0"),
      (lambda: losses.sinkhorn(x, y, epsilon=-0.1), "epsilon must be > 0"),
      (lambda: losses.sinkhorn(x, y, iterations=0), "iterations must be >= 1"),
      (lambda: losses.sinkhorn(x, y[:, :1]),
       "x and y must have the same feature width D"),
      (lambda: losses.sinkhorn(x[0], y), "x must have rank 2"),
      (lambda: losses.sinkhorn(x[:0], y), "x is an empty batch"),
      (lambda: losses.feature_alignment(x, y[:, :1]),
       "student_features and teacher_features must have the same feature "
       "width D"),
      (lambda: losses.feature_alignment(x, y, epsilon=0),
       "epsilon must be > 0"),
      (lambda: losses.feature_alignment(x, y, iterations=0),
       "iterations must be >= 1"),
      (lambda: losses.label_transport_kernel(t, s, lab, form="ratio"),
       "form must be one of"),
      (lambda: losses.label_transport_kernel(t, s, lab, max_ratio=0.0),
       "max_ratio must be > 0"),
      (lambda: losses.label_transport_kernel(t, s, lab[:2]),
       r"labels must have shape"),
      (lambda: losses.label_transport_kernel(t, s, lab + C),
       r"labels must lie in \[0, 4\)"),
      (lambda: losses.label_transport_kernel(t, s[:, :3], lab),
       "teacher_head_logits and student_logits must have the same shape"),
      (lambda: losses.label_alignment(s, t, lab[:2], kappa),
       "labels must have shape"),
      (lambda: losses.label_alignment(s, t, lab, kappa[:2]),
       "kappa must have shape"),
      (lambda: losses.label_alignment(s, t, lab, kappa, label_smoothing=1.0),
       r"label_smoothing must lie in \[0, 1\)"),
      (lambda: losses.label_alignment(s, t, lab, kappa, reduction="sum"),
       "reduction must be one of"),
  ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_arguments_raise_naming_them(index):
  call, match = _bad_calls()[index]
  with pytest.raises(ValueError, match=match):
    call()


def test_traced_epsilon_is_checked_under_checked():
  x, y = _clouds(21, n=3, m=2, d=2)
  fa = validation.checked(jax.jit(
      lambda e: losses.feature_alignment(x, y, epsilon=e, iterations=1)))
  assert np.isfinite(float(fa(0.1)))
  with pytest.raises(ValueError, match="epsilon must be > 0"):
    fa(-0.1)
