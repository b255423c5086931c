"""How the conv models' kernel gradients are formed (``conv_grad``).

A 3×3 convolution's kernel gradient is itself a convolution: with the input
``x: f32[N, H, W, C_in]`` and the output cotangent ``g: f32[N, H, W,
C_out]``, ``dK[i, j, c, o] = Σ_{n,h,w} x_pad[n, h+i, w+j, c] · g[n, h, w, o]``.
JAX's transpose rule writes it as one ``conv_general_dilated`` with
permuted dimension labels. XLA:CPU rewrites such a convolution into its fast
canonical (NHWC input, HWIO kernel) form when it stands in straight-line
code, but not inside a loop body, where a generic emitter runs it 6–14×
slower (one-off timing, jax 0.10.2; upstream jax-ml/jax#12868). Every
training step of the engine is inside a scan, so a CNN sweep on CPU pays it
at every step.

``conv_grad="canonical"`` computes the same sum as one canonical
convolution: the input transposed to ``[C_in, H, W, N]`` (channels as the
batch, examples as the features) convolved with the cotangent transposed to
``[H, W, N, C_out]`` as the kernel, giving ``[C_in, 3, 3, C_out]``, then
transposed to HWIO. For one run the forward pass and the input gradient
are JAX's own, bit for bit; the kernel gradient is the same sum in another
order, so it differs in float32 rounding.

Under ``vmap`` (the engine's blocks of runs) JAX batches a convolution whose
input and kernel both carry the run axis into one grouped convolution
(``feature_group_count`` = runs), which XLA:CPU also runs several times
slower than the runs' convolutions one after another. Here the three
convolutions of a step (forward, input and kernel gradient) run run by run
(``_per_run``), each the single run's own convolution, so a vmapped run's
convolutions have the bits of the same run alone.

``"autodiff"`` (the default) keeps JAX's rules and the bits every recorded
result was computed with.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import custom_batching
from jax import lax

_LAYOUT = ("NHWC", "HWIO", "NHWC")
_UNROLL = 64  # runs per lax.map step under vmap (_per_run)


def conv_general_dilated(conv_grad: str):
  """The ``conv_general_dilated`` argument of ``nn.Conv`` for ``conv_grad``
  (a name in ``CONV_GRADS``)."""
  if conv_grad not in CONV_GRADS:
    raise ValueError(f"conv_grad must be one of {list(CONV_GRADS)}, got "
                     f"{conv_grad!r}.")
  return CONV_GRADS[conv_grad]


def canonical_grad_conv(lhs, rhs, window_strides, padding, lhs_dilation=None,
                        rhs_dilation=None, dimension_numbers=None,
                        feature_group_count=1, batch_group_count=1,
                        precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` (same signature) whose kernel gradient is
  one canonical convolution (module docstring).

  Takes what the conv models build: 2-D, NHWC input, HWIO kernel, unit
  strides and dilations, one group. ``lhs: f32[N, H, W, C_in]``, ``rhs:
  f32[kh, kw, C_in, C_out]`` → ``f32[N, H', W', C_out]``.

  Raises:
    ValueError: any other layout, stride, dilation or grouping.
  """
  ones = (1,) * (lhs.ndim - 2)
  layout = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _LAYOUT)
  given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  settings = {"window_strides": tuple(window_strides),
              "lhs_dilation": tuple(lhs_dilation or ones),
              "rhs_dilation": tuple(rhs_dilation or ones),
              "feature_group_count": feature_group_count,
              "batch_group_count": batch_group_count,
              "preferred_element_type": preferred_element_type}
  expected = {"window_strides": (1, 1), "lhs_dilation": (1, 1),
              "rhs_dilation": (1, 1), "feature_group_count": 1,
              "batch_group_count": 1, "preferred_element_type": None}
  if lhs.ndim != 4 or given != layout or settings != expected:
    wrong = {k: v for k, v in settings.items() if v != expected.get(k)}
    raise ValueError(
        "conv_grad='canonical' takes 2-D NHWC/HWIO convolutions with unit "
        f"strides and dilations and one group; got ndim {lhs.ndim}, "
        f"dimension_numbers {dimension_numbers!r}, {wrong}.")
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1),
                                  padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv(lhs, rhs, pads, precision)


def _plain(lhs, rhs, pads, precision):
  return lax.conv_general_dilated(lhs, rhs, (1, 1), pads,
                                  dimension_numbers=_LAYOUT,
                                  precision=precision)


@functools.cache
def _run_by_run(pads, precision):
  """``_plain`` whose vmap runs the batched convolutions one after another
  (``_per_run``) instead of as one grouped convolution
  (``feature_group_count`` = batch), which XLA:CPU runs several times
  slower; an unbatched kernel folds the batch into the examples."""
  conv = custom_batching.custom_vmap(
      lambda lhs, rhs: _plain(lhs, rhs, pads, precision))

  @conv.def_vmap
  def _rule(axis_size, in_batched, lhs, rhs):
    lhs_batched, rhs_batched = in_batched
    if lhs_batched and rhs_batched:
      return _per_run(conv, axis_size, (lhs, rhs)), True
    if rhs_batched:
      return _per_run(lambda r: conv(lhs, r), axis_size, (rhs,)), True
    out = conv(lhs.reshape((-1,) + lhs.shape[2:]), rhs)
    return out.reshape(lhs.shape[:2] + out.shape[1:]), True
  return conv


def _per_run(fn, size: int, operands):
  """``fn`` of each run's slices of ``operands`` (run axis first), stacked:
  ``_UNROLL`` runs written out one after another per ``lax.map`` step.
  XLA:CPU runs the independent convolutions of a step concurrently: a
  digits-CNN training step of 16 (64) vmapped runs ran 1.3× (1.7×) faster
  than with one run per step, and 4 steps of 16 runs only 1.2× faster at
  64 (one-off timings; compile 6 s with 64 runs written out, 1 s with one
  per step). The map bounds a wide block's program size. A step of
  fewer runs (``lax.map``'s vmap of ``fn``) comes back here and is written
  out."""
  if size <= _UNROLL:
    return jnp.stack([fn(*(x[i] for x in operands)) for i in range(size)])
  return lax.map(lambda xs: fn(*xs), operands, batch_size=_UNROLL)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(lhs, rhs, pads, precision):
  return _run_by_run(pads, precision)(lhs, rhs)


def _conv_fwd(lhs, rhs, pads, precision):
  return _conv(lhs, rhs, pads, precision), (lhs, rhs)


def _conv_bwd(pads, precision, residuals, g):
  lhs, rhs = residuals
  kh, kw = rhs.shape[:2]
  # The input gradient as JAX's transpose rule forms it (the kernel flipped,
  # its in/out channels swapped, the padding complemented): the same bits.
  flipped = jnp.swapaxes(rhs[::-1, ::-1], 2, 3)
  (top, bottom), (left, right) = pads
  back = ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right))
  d_lhs = _run_by_run(back, precision)(g, flipped)
  # dK[i, j, c, o] = Σ_{n,h,w} x_pad[n, h+i, w+j, c] g[n, h, w, o]: a
  # convolution of x as [C_in, H, W, N] with g as the kernel [H, W, N, C_out].
  # The output's spatial size is H + pad_lo + pad_hi − H' + 1 = kh, kw.
  d_rhs = _run_by_run(pads, precision)(jnp.transpose(lhs, (3, 1, 2, 0)),
                                       jnp.transpose(g, (1, 2, 0, 3)))
  return d_lhs, jnp.transpose(d_rhs, (1, 2, 0, 3)).astype(rhs.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


# name -> the ``conv_general_dilated`` flax's ``nn.Conv`` calls (``None``:
# flax's default, ``lax.conv_general_dilated``).
CONV_GRADS = {"autodiff": None, "canonical": canonical_grad_conv}
