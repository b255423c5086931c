"""Stable argsorts by radix passes of single-operand ``uint32`` sorts.

XLA:CPU sorts one ``uint32`` array about five times faster than it sorts a
key with a value (``jnp.argsort``: ~4 ms for 20,000 float32 on one core
here, against ~0.8 ms for 20,000 ``uint32``), so the library's hot sorts —
``jax.random.permutation``'s rounds in permutation importance
(``masks._permutation``) and KSG's sorted orders (``info.plane``) — go
through these. Each gives exactly ``jnp.argsort(keys, stable=True)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stable_argsort_u32(keys: jax.Array) -> jax.Array:
  """``argsort(keys, stable=True)`` of ``u32[N]`` by single-operand sorts.

  Each pass sorts words ``digit << p | position`` (the low p bits hold the
  position, so all words differ and the result is stable) and reads the
  order from the sorted words' low bits; the digits are taken from the low
  bits of ``keys`` up (LSD radix), two passes for N <= 2^16.
  """
  n = keys.shape[0]
  p = max(1, (n - 1).bit_length())
  if p > 30:
    raise ValueError(f"argsorts of more than 2^30 entries, got N = {n}.")
  width = 32 - p
  positions = jnp.arange(n, dtype=jnp.uint32)
  order = jnp.arange(n, dtype=jnp.int32)
  for shift in range(0, 32, width):
    digit = (keys[order] >> shift) & jnp.uint32((1 << width) - 1)
    words = jax.lax.sort((digit << p) | positions)
    order = order[(words & jnp.uint32((1 << p) - 1)).astype(jnp.int32)]
  return order


def argsort_f32(values: jax.Array) -> jax.Array:
  """``argsort(values, stable=True)`` of ``f32[N]`` without NaNs.

  The float's bits made order-preserving as ``uint32`` (negatives: all bits
  flipped; others: the sign bit set), so −0.0 sorts just before +0.0.
  """
  bits = jax.lax.bitcast_convert_type(values, jnp.uint32)
  negative = (bits >> 31) == 1
  return stable_argsort_u32(
      jnp.where(negative, ~bits, bits | jnp.uint32(1 << 31)))
