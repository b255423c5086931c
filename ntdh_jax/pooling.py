"""The conv models' 2×2 max-pool, with JAX's values and gradients, faster.

``max_pool_2x2(x)`` is ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))``
(VALID padding: an odd last row or column is dropped) with another
derivative that gives the same gradient bits. ``nn.max_pool`` is a
``reduce_window`` whose gradient XLA runs as a ``select_and_scatter``, which
XLA:CPU runs slowly: in a digits-CNN training step of 16 vmapped runs with
``conv_grad="canonical"`` it took about a third of the step (one-off timing,
jax 0.10.2). The forward pass here is flax's; the derivative views the input
as ``[N, H/2, 2, W/2, 2, C]`` windows and routes each window's tangent from
the element ``select_and_scatter`` picks: the first element, in row-major
window order, equal to the window's maximum (ties included). Routing copies
values, so nothing is rounded: the gradients are ``nn.max_pool``'s bit for
bit (tested, ties and odd sizes included). A window holding a NaN has a NaN
maximum and passes no gradient.

A ``custom_jvp``, so forward mode (``jax.jvp``, ``jax.jacfwd``) works too;
reverse mode is its transpose.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max-pool with stride 2, VALID: ``f[N, H, W, C]`` → ``f[N, H // 2,
  W // 2, C]``; ``nn.max_pool(x, (2, 2), strides=(2, 2))`` bit for bit, its
  gradient too (module docstring).

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
  # The forward pass is flax's own: XLA:CPU runs a reduce_window fast, and
  # faster than the reshaped max when the pool is batched without a gradient
  # (Algorithm 1's vmapped scores of a CNN).
  return nn.max_pool(x, (2, 2), strides=(2, 2))


@_pool.defjvp
def _pool_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  y = _pool(x)
  windows = _windows(x)
  # The first element equal to the maximum, in row-major window order: the
  # one select_and_scatter (the reduce_window max's transpose) picks.
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for i in range(2):
    row = []
    for j in range(2):
      first = (windows[:, :, i, :, j] == y) & ~taken
      taken = taken | first
      row.append(first)
    rows.append(jnp.stack(row, axis=3))
  chosen = jnp.stack(rows, axis=2)
  return y, jnp.sum(jnp.where(chosen, _windows(t), 0), axis=(2, 4))
