"""The conv models' 2×2 max-pool, and a form of its derivative XLA:CPU runs
faster (``conv_grad="canonical"``).

``MAX_POOLS[conv_grad]`` is the pool a conv model with that ``conv_grad``
uses (the names of ``ntdh_jax.convolution.CONV_GRADS``):

* ``"autodiff"``: ``flax_max_pool_2x2``, ``nn.max_pool(x, (2, 2), strides=(2,
  2))`` with JAX's derivative, the program every recorded result ran.
* ``"canonical"``: ``max_pool_2x2``, the same forward pass with another
  derivative. ``nn.max_pool`` is a ``reduce_window`` whose gradient XLA runs
  as a ``select_and_scatter``, which XLA:CPU runs slowly: in a digits-CNN
  training step of 16 vmapped runs with ``conv_grad="canonical"`` it took
  about a third of the step (one-off timing, jax 0.10.2). Here the
  derivative views the input as ``[N, H/2, 2, W/2, 2, C]`` windows and takes
  each window's tangent from the element ``select_and_scatter`` picks: the
  first element, in row-major window order, equal to the window's maximum
  (ties included). Selecting copies values, so nothing is rounded: the
  pool's gradients are ``nn.max_pool``'s bit for bit (tested, ties and odd
  sizes included). A training program around it can still differ in its
  last bits, because XLA fuses the neighbouring operations differently
  (one-off: 1e-7 after two SGD steps of a small CNN), which is why it is not
  the default's pool. A window holding a NaN has a NaN maximum and passes
  no gradient. A ``custom_jvp``, so forward mode (``jax.jvp``,
  ``jax.jacfwd``) works too; reverse mode is its transpose.

Both are VALID: an odd last row or column is dropped.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def flax_max_pool_2x2(x: jax.Array) -> jax.Array:
  """``nn.max_pool(x, (2, 2), strides=(2, 2))``: ``f[N, H, W, C]`` →
  ``f[N, H // 2, W // 2, C]``."""
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max-pool with stride 2, VALID: ``f[N, H, W, C]`` → ``f[N, H // 2,
  W // 2, C]``; ``flax_max_pool_2x2`` bit for bit, its gradient too, in a
  form XLA:CPU differentiates faster (module docstring).

  Raises:
    ValueError: ``x`` is not of rank 4 or has H or W below 2.
  """
  if x.ndim != 4 or min(x.shape[1:3]) < 2:
    raise ValueError(f"max_pool_2x2 takes x of shape [N, H, W, C] with H, W "
                     f">= 2, got {x.shape}.")
  height, width = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  return _pool(x[:, :height, :width])


def _windows(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c)


@jax.custom_jvp
def _pool(x):
  # flax's forward pass: XLA:CPU runs a reduce_window fast, faster than a
  # reshaped max where the pool is batched without a gradient (Algorithm 1's
  # vmapped scores of a CNN).
  return flax_max_pool_2x2(x)


@_pool.defjvp
def _pool_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  y = _pool(x)
  windows, t_windows = _windows(x), _windows(t)
  # Each window's first element equal to its maximum, in row-major order:
  # the one select_and_scatter (the reduce_window max's transpose) picks.
  taken = jnp.zeros(y.shape, bool)
  out = jnp.zeros(y.shape, t.dtype)
  for i in range(2):
    for j in range(2):
      first = (windows[:, :, i, :, j] == y) & ~taken
      taken = taken | first
      out = jnp.where(first, t_windows[:, :, i, :, j], out)
  return y, out


# conv_grad name -> the 2×2 max-pool of a conv model with that conv_grad.
MAX_POOLS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "autodiff": flax_max_pool_2x2,
    "canonical": max_pool_2x2,
}
