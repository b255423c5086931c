"""``pooling``: ``max_pool_2x2`` has ``nn.max_pool``'s values and gradients
bit for bit (ties, odd sizes, signed zeros, infinities, under vmap), a
float64 NumPy reference for the routing, forward mode, one trace, bad input
refused; ``MAX_POOLS`` gives the default's conv models flax's pool."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import convolution
from ntdh_jax import models
from ntdh_jax import pooling


def _flax(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def _tied(shape, seed=0):
  """Values from {-1, 0, 1, 2}: most windows hold a tie for the maximum."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(-1, 3, shape).astype(np.float32))


def _vjp(pool, x, g):
  return jax.vjp(pool, x)[1](g)[0]


def _route_f64(x, g):
  """The gradient as select_and_scatter defines it: each window's cotangent
  goes to its first maximal element in row-major order."""
  x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
  dx = np.zeros_like(x)
  n, h, w, c = g.shape
  for b, i, j, k in np.ndindex(n, h, w, c):
    window = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, k].ravel()
    di, dj = divmod(int(np.argmax(window)), 2)  # argmax: the first maximum
    dx[b, 2 * i + di, 2 * j + dj, k] = g[b, i, j, k]
  return dx


SHAPES = [(2, 8, 8, 3), (3, 7, 5, 2), (1, 2, 3, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("values", ["normal", "tied"])
def test_values_and_gradient_are_flax_bits(shape, values):
  if values == "tied":
    x = _tied(shape)
  else:
    x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  y = pooling.max_pool_2x2(x)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(_flax(x)))
  g = jax.random.normal(jax.random.key(2), y.shape, jnp.float32)
  ours = _vjp(pooling.max_pool_2x2, x, g)
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(_vjp(_flax, x, g)))
  np.testing.assert_array_equal(np.asarray(ours, np.float64), _route_f64(x, g))


def test_ties_go_to_the_first_element_in_row_major_order():
  x = jnp.array([[[[1.0], [3.0]], [[3.0], [3.0]]]])  # [1, 2, 2, 1]
  grad = jax.grad(lambda x: pooling.max_pool_2x2(x).sum())(x)
  np.testing.assert_array_equal(np.asarray(grad).ravel(), [0, 1, 0, 0])


def test_signed_zeros_and_infinities_are_flax_bits():
  x = jnp.array([-0.0, 0.0, -np.inf, np.inf, -np.inf, -np.inf, 0.0, -0.0],
                jnp.float32).reshape(2, 2, 2, 1)
  g = jnp.array([1.5, -2.0], jnp.float32).reshape(2, 1, 1, 1)
  np.testing.assert_array_equal(np.asarray(pooling.max_pool_2x2(x)),
                                np.asarray(_flax(x)))
  np.testing.assert_array_equal(
      np.asarray(_vjp(pooling.max_pool_2x2, x, g)),
      np.asarray(_vjp(_flax, x, g)))


def test_a_window_holding_a_nan_passes_no_gradient():
  """The forward pass is flax's (NaN maximum); that window's gradient is
  zero and the other windows' are flax's."""
  x = _tied((1, 4, 4, 1)).at[0, 0, 1, 0].set(jnp.nan)
  y = pooling.max_pool_2x2(x)
  assert np.isnan(np.asarray(y)[0, 0, 0, 0])
  g = jnp.arange(1.0, 5.0, dtype=jnp.float32).reshape(1, 2, 2, 1)
  ours = np.array(_vjp(pooling.max_pool_2x2, x, g))
  np.testing.assert_array_equal(ours[0, :2, :2], 0)
  flax = np.array(_vjp(_flax, x, g))
  ours[0, :2, :2] = flax[0, :2, :2] = 0
  np.testing.assert_array_equal(ours, flax)
  assert np.count_nonzero(ours) == 3  # one element in each other window


def test_vmapped_gradient_equals_looped_and_flax():
  xs = _tied((4, 3, 6, 6, 2), seed=3)
  gs = jax.random.normal(jax.random.key(4), (4, 3, 3, 3, 2), jnp.float32)
  batched = jax.vmap(lambda x, g: _vjp(pooling.max_pool_2x2, x, g))(xs, gs)
  for x, g, got in zip(xs, gs, batched):
    np.testing.assert_array_equal(
        np.asarray(got), np.asarray(_vjp(pooling.max_pool_2x2, x, g)))
    np.testing.assert_array_equal(np.asarray(got),
                                  np.asarray(_vjp(_flax, x, g)))


def test_forward_mode_is_the_transpose_of_reverse_mode():
  x = _tied((2, 6, 4, 3), seed=5)
  t = jax.random.normal(jax.random.key(6), x.shape, jnp.float32)
  g = jax.random.normal(jax.random.key(7), (2, 3, 2, 3), jnp.float32)
  _, tangent = jax.jvp(pooling.max_pool_2x2, (x,), (t,))
  dx = _vjp(pooling.max_pool_2x2, x, g)
  # <J t, g> = <t, Jᵀ g>: each side picks the same elements.
  np.testing.assert_allclose(float(jnp.vdot(tangent, g)),
                             float(jnp.vdot(t, dx)), rtol=1e-5)
  window = jnp.array([[[[1.0], [3.0]], [[3.0], [3.0]]]])
  jacobian = jax.jacfwd(pooling.max_pool_2x2)(window)
  np.testing.assert_array_equal(np.asarray(jacobian).ravel(), [0, 1, 0, 0])


def test_one_trace_per_shape():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def grad(x):
    return jax.grad(lambda x: pooling.max_pool_2x2(x).sum())(x)

  x = _tied((2, 4, 4, 1))
  grad(x)
  grad(x + 1)


@pytest.mark.parametrize("shape", [(4, 4, 1), (2, 1, 4, 1), (2, 4, 1, 3)])
def test_bad_shape_is_refused(shape):
  with pytest.raises(ValueError, match=r"max_pool_2x2 takes x of shape"):
    pooling.max_pool_2x2(jnp.zeros(shape))


def test_one_pool_per_conv_grad():
  assert set(pooling.MAX_POOLS) == set(convolution.CONV_GRADS)
  assert pooling.MAX_POOLS["autodiff"] is pooling.flax_max_pool_2x2


@pytest.mark.parametrize("name", ["cnn", "conv2d", "segnet"])
def test_canonical_models_have_flax_pool_gradients(name, monkeypatch):
  """A ``canonical`` model's gradients are the same with flax's pool in the
  place of ``max_pool_2x2`` (eagerly, op by op: no fusion in between)."""
  net = models.build({"name": name, "channels": [4, 8],
                      "conv_grad": "canonical"}, 3)
  x = _tied((2, 8, 8, 3), seed=8) / 2
  variables = net.init(jax.random.key(0), x[:1])

  def grads():
    def loss(params):
      logits, _, _ = net.apply({**variables, "params": params}, x, train=True)
      return jnp.sum(logits ** 2)
    with jax.disable_jit():
      return jax.grad(loss)(variables["params"])

  ours = grads()
  monkeypatch.setitem(pooling.MAX_POOLS, "canonical",
                      pooling.flax_max_pool_2x2)
  chex.assert_trees_all_equal(ours, grads())
