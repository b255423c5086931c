"""``conv_grad="canonical"``: JAX's forward and input gradient bit for bit,
the kernel gradient equal to a float64 NumPy reference, the models' configs
and run ids unchanged at the default, bad input refused."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ntdh_jax import convolution
from ntdh_jax import models

LAYOUT = ("NHWC", "HWIO", "NHWC")


def _inputs(n=3, h=7, w=5, c_in=2, c_out=4, k=3, seed=0):
  kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (n, h, w, c_in), jnp.float32)
  rhs = jax.random.normal(kw, (k, k, c_in, c_out), jnp.float32)
  return x, rhs, kg


def _plain(x, rhs, padding):
  return lax.conv_general_dilated(x, rhs, (1, 1), padding,
                                  dimension_numbers=LAYOUT)


def _canonical(x, rhs, padding):
  return convolution.canonical_grad_conv(x, rhs, (1, 1), padding,
                                         dimension_numbers=LAYOUT)


def _kernel_grad_f64(x, g, k, padding):
  """dK[i, j, c, o] = Σ_{n,h,w} x_pad[n, h+i, w+j, c] g[n, h, w, o], as a
  float64 loop over the kernel taps."""
  x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
  (top, bottom), (left, right) = padding
  xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  _, h_out, w_out, _ = g.shape
  out = np.zeros((k, k, x.shape[-1], g.shape[-1]))
  for i in range(k):
    for j in range(k):
      patch = xp[:, i:i + h_out, j:j + w_out, :]
      out[i, j] = np.einsum("nhwc,nhwo->co", patch, g)
  return out


@pytest.mark.parametrize("padding,pads", [
    ("SAME", ((1, 1), (1, 1))), ("VALID", ((0, 0), (0, 0))),
    (((2, 0), (1, 2)), ((2, 0), (1, 2)))])
def test_forward_and_input_gradient_are_jax_s_and_kernel_gradient_exact(
    padding, pads):
  x, rhs, kg = _inputs()
  out = _canonical(x, rhs, padding)
  np.testing.assert_array_equal(out, _plain(x, rhs, padding))
  g = jax.random.normal(kg, out.shape, jnp.float32)
  d_x, d_k = jax.vjp(lambda a, b: _canonical(a, b, padding), x, rhs)[1](g)
  d_x_jax, d_k_jax = jax.vjp(lambda a, b: _plain(a, b, padding), x,
                             rhs)[1](g)
  np.testing.assert_array_equal(d_x, d_x_jax)
  reference = _kernel_grad_f64(x, g, 3, pads)
  np.testing.assert_allclose(d_k, reference, rtol=2e-5, atol=2e-5)
  # The reference really is JAX's rule too (same sum, other rounding).
  np.testing.assert_allclose(d_k_jax, reference, rtol=2e-5, atol=2e-5)


def test_inside_a_scan_it_is_the_same_function():
  """The reason it exists is the loop body: there it must still compute
  what it computes in straight-line code."""
  x, rhs, kg = _inputs(n=4, h=6, w=6, c_in=3, c_out=5)
  g = jax.random.normal(kg, (4, 6, 6, 5), jnp.float32)
  grad = lambda k: jax.vjp(lambda b: _canonical(x, b, "SAME"), k)[1](g)[0]
  once = jax.jit(grad)(rhs)
  looped = jax.jit(lambda k: lax.scan(lambda c, _: (c, grad(k)), 0.0, None,
                                      length=3)[1])(rhs)
  for step in looped:
    np.testing.assert_allclose(step, once, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("unroll", [convolution._UNROLL, 2, 1])
@pytest.mark.parametrize("batched", ["both", "input", "kernel"])
def test_vmapped_runs_are_run_by_run_single_convolutions(batched, unroll,
                                                         monkeypatch):
  """Under vmap the convolutions run one run at a time (not as one grouped
  convolution): outputs and both gradients equal a loop of single runs, bit
  for bit where a run's kernel is its own; written out, or in lax.map steps
  of ``unroll`` runs (3 runs: one step of 2 and a remainder of 1)."""
  monkeypatch.setattr(convolution, "_UNROLL", unroll)
  x, rhs, kg = _inputs(n=2, h=6, w=5, c_in=3, c_out=4)
  xs = jnp.stack([x, 2 * x, x - 1]) if batched != "kernel" else x
  ks = jnp.stack([rhs, -rhs, 0.5 * rhs]) if batched != "input" else rhs
  g = jax.random.normal(kg, (3, 2, 6, 5, 4), jnp.float32)

  def run(a, k, gi):
    out, vjp = jax.vjp(lambda u, v: _canonical(u, v, "SAME"), a, k)
    return (out,) + vjp(gi)

  axes = (0 if batched != "kernel" else None,
          0 if batched != "input" else None, 0)
  mapped = jax.jit(jax.vmap(run, in_axes=axes))(xs, ks, g)
  for i in range(3):
    single = jax.jit(run)(xs[i] if axes[0] == 0 else xs,
                          ks[i] if axes[1] == 0 else ks, g[i])
    for got, want in zip(mapped, single):
      if batched == "input":  # the batch folded into the examples
        np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-5)
      else:
        np.testing.assert_array_equal(got[i], want)


def test_one_trace_per_shape():
  x, rhs, _ = _inputs()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(k):
    return jnp.sum(_canonical(x, k, "SAME") ** 2)

  jax.grad(loss)(rhs)
  jax.grad(loss)(rhs + 1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"window_strides": (2, 2)}, "window_strides"),
    ({"rhs_dilation": (2, 2)}, "rhs_dilation"),
    ({"feature_group_count": 2}, "feature_group_count"),
    ({"dimension_numbers": ("NCHW", "OIHW", "NCHW")}, "dimension_numbers"),
])
def test_other_convolutions_are_refused(kwargs, match):
  x, rhs, _ = _inputs(c_in=2, c_out=4)
  args = {"window_strides": (1, 1), "padding": "SAME",
          "dimension_numbers": LAYOUT, **kwargs}
  if "feature_group_count" in kwargs:
    rhs = rhs[:, :, :1, :]
  with pytest.raises(ValueError, match=match):
    convolution.canonical_grad_conv(x, rhs, **args)


def test_unknown_conv_grad_is_refused_naming_it():
  with pytest.raises(ValueError, match="conv_grad must be one of"):
    convolution.conv_general_dilated("fast")
  with pytest.raises(ValueError, match="model config 'conv_grad'"):
    models.normalise({"name": "cnn", "conv_grad": "fast"})


@pytest.mark.parametrize("name", ["cnn", "conv2d", "segnet"])
def test_the_default_is_left_out_of_normalised_configs(name):
  """Configs recorded before the field existed keep their spelling, hence
  their run ids; a non-default value is kept; normalise is idempotent."""
  plain = models.normalise({"name": name})
  assert "conv_grad" not in plain
  assert models.normalise({"name": name, "conv_grad": "autodiff"}) == plain
  fast = models.normalise({"name": name, "conv_grad": "canonical"})
  assert fast == {**plain, "conv_grad": "canonical"}
  assert models.normalise(fast) == fast


def test_the_digits_cnn_trains_the_same_function_either_way():
  """Same logits; gradients equal to float32 rounding."""
  x = jax.random.uniform(jax.random.key(1), (8, 8, 8, 3))
  labels = jnp.arange(8) % 10
  nets = {g: models.build({"name": "cnn", "conv_grad": g}, 10)
          for g in convolution.CONV_GRADS}
  variables = nets["autodiff"].module.init(jax.random.key(0), x)

  def loss(net, params):
    logits = net.module.apply({"params": params}, x)
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(8), labels])

  values = {g: jax.jit(jax.value_and_grad(lambda p, n=n: loss(n, p)))(
      variables["params"]) for g, n in nets.items()}
  assert values["autodiff"][0] == values["canonical"][0]
  chex.assert_trees_all_close(values["canonical"][1], values["autodiff"][1],
                              rtol=1e-5, atol=1e-6)


def test_a_digits_student_trains_to_the_same_metrics_either_way():
  """End to end through a stage program (digits-M, the digits CNN, one Adam
  epoch, two vmapped seeds): the two settings train the same function, so
  the curves agree to float32 rounding carried through 21 steps."""
  from ntdh_jax.train import stages  # pylint: disable=import-outside-toplevel
  history = {}
  for grad in convolution.CONV_GRADS:
    program = stages.build_program("student", {
        "data": {"name": "digits"},
        "model": {"name": "cnn", "channels": [8, 16], "dense": 32,
                  "conv_grad": grad},
        "epochs": 1, "eval_every": 1, "batch_size": 64, "optimizer": "adam",
        "eval_batch_size": 512, "distill": "none"})
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    hparams = {"lr": jnp.full((2,), 1e-3)}
    _, history[grad], _ = jax.jit(jax.vmap(
        program.train, in_axes=(0, 0, None)))(hparams, keys, program.load())
  for name in ("train_ce", "test_acc"):
    np.testing.assert_allclose(history["canonical"][name],
                               history["autodiff"][name], rtol=1e-4,
                               atol=1e-4, err_msg=name)
