"""Tests of ntdh_jax.info.neural (MINE, InfoNCE) and ntdh_jax.info.latent
(latent MI): closed forms on correlated Gaussians, the bounds' algebra,
vmapped == looped, one trace per estimator, bad input.

Trainings are short (a few hundred steps on ~1000 rows) and each test
vmaps its runs into one compiled program; the tolerances are those of short
training, stated where they are asserted.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntdh_jax
from ntdh_jax.info import correlation_mi
from ntdh_jax.info import latent
from ntdh_jax.info import neural
from tests.fast_jit import fast_jit

SEEDS = (0, 1, 2)
RHO = 0.9
TRUE_MI = float(correlation_mi(RHO))  # −½ log(1 − ρ²) = 0.830 nats
# Short trainings: 300 Adam steps, batches of 128 from 512 training rows;
# the bound is read on the other 512 rows.
N = 1024
MINE = neural.MineConfig(hidden=(32, 32), steps=300, batch_size=128,
                         num_segments=3)
INFONCE = neural.InfoNCEConfig(hidden=(32, 32), embed=16, steps=300,
                               batch_size=128, num_segments=3)
TINY = neural.MineConfig(hidden=(8,), steps=20, batch_size=16, num_segments=2)


def _gaussian(n, rho, seed, d=1):
  """``n`` draws of (x, y), each ``f32[n, d]``, corr(x_j, y_j) = rho."""
  r = np.random.RandomState(seed)
  x = r.normal(size=(n, d))
  y = rho * x + math.sqrt(1 - rho ** 2) * r.normal(size=(n, d))
  return x.astype(np.float32), y.astype(np.float32)


def _gaussian_runs(config, lr):
  """The held-out estimates for rho = 0.9 and rho = 0, one per seed, from
  one vmapped program: ``(f32[3], f32[3])``."""
  pairs = [_gaussian(N, rho, seed) for rho in (RHO, 0.0) for seed in SEEDS]
  x, y = (np.stack(a) for a in zip(*pairs))
  keys = jax.random.split(jax.random.PRNGKey(0), len(pairs))
  hparams = {**neural.default_hparams(config), "lr": jnp.float32(lr)}
  run = fast_jit(jax.vmap(neural.make_estimator(config),
                          in_axes=(None, 0, 0, 0)))
  mi = np.asarray(run(hparams, keys, x, y).mi)
  return mi[:len(SEEDS)], mi[len(SEEDS):]


# ------------------------------------------------------- Gaussian closed form


def test_mine_estimates_gaussian_mi():
  """MINE within 0.15 nats of −½ log(1 − ρ²) = 0.830 at ρ = 0.9 after 300
  steps, not above it by more than noise (0.05), and within 0.05 of 0 at
  ρ = 0; three seeds (data, split and critic). Over ten seeds these
  settings gave 0.740–0.846 and |·| ≤ 0.013."""
  correlated, independent = _gaussian_runs(MINE, lr=3e-3)
  np.testing.assert_array_less(np.abs(correlated - TRUE_MI), 0.15)
  np.testing.assert_array_less(correlated, TRUE_MI + 0.05)
  np.testing.assert_array_less(np.abs(independent), 0.05)


def test_infonce_estimates_gaussian_mi():
  """InfoNCE (K = 128, so log K = 4.85 is far above the truth) as MINE:
  within 0.15 nats of 0.830 at ρ = 0.9, not above it by more than 0.05,
  within 0.05 of 0 at ρ = 0; three seeds. Over ten seeds: 0.742–0.848 and
  −0.024 to 0.002 (a critic fitted to noise scores held-out independent
  rows slightly below 0)."""
  correlated, independent = _gaussian_runs(INFONCE, lr=3e-3)
  np.testing.assert_array_less(np.abs(correlated - TRUE_MI), 0.15)
  np.testing.assert_array_less(correlated, TRUE_MI + 0.05)
  np.testing.assert_array_less(np.abs(independent), 0.05)


def test_infonce_saturates_below_log_k():
  """With K = 8 and I = 3.1 nats (ρ = 0.999) the estimate climbs well above
  1.3 nats (1.7 at this seed) towards log 8 = 2.08 and never passes it,
  although the truth lies far above. Through ``infonce`` in bits
  (``base=2``): log₂ 8 = 3."""
  config = neural.InfoNCEConfig(hidden=(32, 32), embed=8, steps=400,
                                batch_size=8, num_segments=2)
  x, y = _gaussian(256, 0.999, seed=0)
  bits = neural.infonce(x, y, jax.random.PRNGKey(0), lr=3e-3,
                        hidden=config.hidden, embed=config.embed,
                        steps=config.steps, batch_size=config.batch_size,
                        num_segments=config.num_segments, base=2)
  ceiling = neural.log_ceiling(config) / math.log(2)
  assert ceiling == pytest.approx(3.0)
  assert 1.3 / math.log(2) < float(bits.mi) <= ceiling
  assert np.all(np.asarray(bits.heldout_bound) <= ceiling)
  assert np.all(np.asarray(bits.train_bound) <= ceiling)


# ------------------------------------------------------------- bound algebra


# Compiled once per shape: eager op-by-op dispatch is far slower.
_infonce_bound = fast_jit(jax.value_and_grad(neural.infonce_bound))
_mine_loss = fast_jit(jax.value_and_grad(neural.mine_loss, argnums=(0, 1),
                                         has_aux=True))


def test_infonce_bound_at_most_log_k_with_finite_gradients():
  rng = np.random.RandomState(0)
  for k in (2, 64):
    bound, _ = _infonce_bound(
        jnp.asarray(rng.normal(size=(k, k)) * 10, jnp.float32))
    assert float(bound) <= math.log(k)
  # A diagonal that dominates by 1e4 reaches log K (in float32) and no
  # further; the gradient stays finite.
  bound, grad = _infonce_bound(jnp.where(jnp.eye(64, dtype=bool), 1e4, -1e4))
  assert float(bound) == pytest.approx(math.log(64), abs=1e-6)
  assert np.all(np.isfinite(grad))


def test_mine_loss_gives_the_bias_corrected_gradient():
  """Against float64 NumPy: the bound is the DV bound, the moving average
  is (1 − r)·ema + r·mean(e^T), and the gradient is
  −(E_P[∇T] − E_Q[e^T ∇T] / ema'), i.e. −1/B on each joint value and
  e^{t_j} / (M·ema') on each product value; finite for T of order 1e3,
  where e^T overflows float32."""
  rng = np.random.RandomState(0)
  for scale in (1.0, 1e3):
    t_joint = rng.normal(size=6) * scale
    t_product = rng.normal(size=9) * scale
    log_ema, rate = np.logaddexp.reduce(t_product / 2) - np.log(9), 0.01
    (_, (bound, new_log_ema)), (g_joint, g_product) = _mine_loss(
        jnp.float32(t_joint), jnp.float32(t_product), jnp.float32(log_ema),
        jnp.float32(rate))
    shift = t_product.max()  # evaluate e^T relative to its largest value
    mean_exp = np.mean(np.exp(t_product - shift))
    want_log_ema = np.logaddexp(np.log1p(-rate) + log_ema,
                                np.log(rate) + shift + np.log(mean_exp))
    want_bound = t_joint.mean() - shift - np.log(mean_exp)
    want_g_product = np.exp(t_product - want_log_ema) / t_product.size
    np.testing.assert_allclose(float(bound), want_bound, rtol=1e-5,
                               atol=1e-5 * scale)
    np.testing.assert_allclose(float(new_log_ema), want_log_ema, rtol=1e-5)
    np.testing.assert_allclose(g_joint, np.full(6, -1 / 6), rtol=1e-6)
    np.testing.assert_allclose(g_product, want_g_product, rtol=1e-4,
                               atol=1e-7)
    assert np.all(np.isfinite(g_product))
  # The first batch (rate 1) sets the average to its own mean.
  (_, (_, first)), _ = _mine_loss(
      jnp.zeros(6), jnp.log(jnp.arange(1., 10.)), jnp.float32(-jnp.inf),
      jnp.float32(1.0))
  assert float(first) == pytest.approx(math.log(5.0))


# ------------------------------------------------- vmap, traces, Program


LRS = (1e-3, 3e-2)
KEYS = jax.random.split(jax.random.PRNGKey(1), 2)


@pytest.fixture(scope="module")
def looped():
  """TINY run once per (lr, key) of ``LRS``, ``KEYS`` by one jitted estimator
  that may be traced only once; and the data."""
  x, y = _gaussian(64, RHO, seed=3)
  estimate = fast_jit(chex.assert_max_traces(neural.make_estimator(TINY),
                                             n=1))
  base = neural.default_hparams(TINY)
  return [estimate({**base, "lr": jnp.float32(lr)}, key, x, y)
          for lr, key in zip(LRS, KEYS)], (x, y)


def test_vmap_over_lr_and_seed_equals_loop_with_one_trace(looped):
  looped, (x, y) = looped
  base = neural.default_hparams(TINY)
  lrs = jnp.float32(LRS)
  vmapped = fast_jit(jax.vmap(neural.make_estimator(TINY),
                              in_axes=({"lr": 0, "ema_rate": None}, 0, None,
                                       None)))({**base, "lr": lrs}, KEYS, x, y)
  for i, one in enumerate(looped):
    for field in neural.Estimate._fields:
      np.testing.assert_allclose(getattr(vmapped, field)[i],
                                 getattr(one, field), rtol=1e-5, atol=1e-5)
  # Different learning rates and keys trained differently; the estimate is
  # the best held-out bound (early stopping).
  assert float(looped[0].mi) != float(looped[1].mi)
  np.testing.assert_array_equal(vmapped.mi, vmapped.heldout_bound.max(-1))


def test_program_segments_resume_like_one_run(looped):
  """The Program run segment by segment (as the sweep engine does between
  checkpoints) gives the estimator's (one ``Program.train``) result."""
  looped, (x, y) = looped
  program = neural.make_program(TINY)
  data = {"x": x, "y": y}
  hp = {**neural.default_hparams(TINY), "lr": jnp.float32(LRS[0])}
  carry = fast_jit(program.init)(hp, KEYS[0], data, None)
  segment = fast_jit(program.segment)
  for i in range(program.num_segments):
    carry, metrics = segment(carry, hp, data)
    for name in ("heldout_bound", "train_bound"):
      np.testing.assert_allclose(metrics[name], getattr(looped[0], name)[i],
                                 rtol=1e-5, atol=1e-6)
  final, outputs = fast_jit(program.finish)(carry, hp, data)
  np.testing.assert_allclose(final["mi"], looped[0].mi, rtol=1e-5,
                             atol=1e-6)
  assert set(outputs) == {"params"}


# ------------------------------------------------------------------ latent MI


def _latent_data(n, seed, shared, d=16):
  """Two 16-d views of an 8-d latent s (noise 0.3), or of independent ones."""
  r = np.random.RandomState(seed)
  s = r.normal(size=(n, 8))
  other = s if shared else r.normal(size=(n, 8))
  a = s @ r.normal(size=(8, d)) + 0.3 * r.normal(size=(n, d))
  b = other @ r.normal(size=(8, d)) + 0.3 * r.normal(size=(n, d))
  return a.astype(np.float32), b.astype(np.float32)


def test_latent_mi_finds_a_shared_latent():
  """LMI (8-d latents, KSG k = 3 on the held-out half) on two views of one
  8-d latent is clearly above LMI on independent views, which is ≈ 0.
  Small autoencoders (L = 32), 30 epochs at lr 1e-2 on 800 rows instead of
  latentmi's L = 1024, lr 1e-4 and up to 300 epochs: about 1.2 nats against
  ±0.05."""
  config = latent.LatentConfig(hidden=32, batch_size=100, epochs=30)
  pairs = [_latent_data(800, seed, shared) for shared in (True, False)
           for seed in (0, 1)]
  a, b = (np.stack(v) for v in zip(*pairs))
  hp = {**latent.default_hparams(), "lr": jnp.float32(1e-2)}
  keys = jax.random.split(jax.random.PRNGKey(0), len(pairs))
  out = fast_jit(jax.vmap(latent.make_estimator(config),
                          in_axes=(None, 0, 0, 0)))(hp, keys, a, b)
  shared, independent = np.asarray(out.mi[:2]), np.asarray(out.mi[2:])
  assert shared.min() > independent.max() + 0.8, (shared, independent)
  np.testing.assert_array_less(np.abs(independent), 0.3)
  assert out.latents.z_a.shape == (4, 800, 8)
  assert out.latents.held_out.shape == (4, 400)
  assert np.all(np.asarray(out.latents.epochs) <= config.epochs)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("estimator", ["mine", "infonce", "latent_mi"])
def test_bad_input_names_the_argument(estimator):
  fn = {"mine": neural.mine, "infonce": neural.infonce,
        "latent_mi": latent.latent_mi}[estimator]
  first, second = ("x_a", "x_b") if estimator == "latent_mi" else ("x", "y")
  key = jax.random.PRNGKey(0)
  x, y = _gaussian(600, RHO, seed=0)
  with pytest.raises(ValueError, match=f"{first} and {second} must have the "
                     "same number of rows"):
    fn(x, y[:-1], key)
  with pytest.raises(ValueError, match=f"{first} has N = 3 rows"):
    fn(x[:3], y[:3], key)
  with pytest.raises(ValueError, match=f"{second} must be finite in float32 "
                     r".* it holds 1 non-finite entries, the first at row 5"):
    fn(x, np.where(np.arange(600)[:, None] == 5, np.nan, y), key)
  # One constant column among varying ones is refused, as KSG refuses it.
  with pytest.raises(ValueError, match=f"{first} must have no constant "
                     "column .* column 1 is constant"):
    fn(np.c_[x, np.ones(600, np.float32)], y, key)
  with pytest.raises(ValueError, match=f"{first} must have rank 1 or 2"):
    fn(x[:, :, None], y, key)
  with pytest.raises(TypeError, match=f"{second} must be a floating array"):
    fn(x, np.ones((600, 1), np.int32), key)
  with pytest.raises(ValueError, match="lr must be > 0"):
    fn(x, y, key, lr=0.0)


def test_bad_options_name_the_option():
  x, y = _gaussian(600, RHO, seed=0)
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="steps must be a multiple of "
                     "num_segments"):
    neural.mine(x, y, key, steps=101)
  with pytest.raises(ValueError, match="ema_rate must lie in"):
    neural.mine(x, y, key, ema_rate=1.5)
  with pytest.raises(ValueError, match="holdout must lie in"):
    neural.infonce(x, y, key, holdout=1.0)
  with pytest.raises(ValueError, match="hidden must be divisible by 4"):
    latent.latent_mi(x, y, key, hidden=30)


def test_traced_non_finite_input_raises_under_checked():
  """Inside jit the value checks are checkify checks: off by default,
  raised by ``ntdh_jax.checked``."""
  x, y = _gaussian(64, RHO, seed=0)
  x[3, 0] = np.inf
  estimate = ntdh_jax.checked(jax.jit(neural.make_estimator(TINY)))
  with pytest.raises(ValueError, match="x must be finite in float32 .* it "
                     "holds 1"):
    estimate(neural.default_hparams(TINY), jax.random.PRNGKey(0), x, y)
