"""Tests of ntdh_jax.models: shapes, features, torch init, vmap over params."""

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from scipy import stats

from ntdh_jax import models

KEY = jax.random.key(0)

# name: (module, input shape, logits shape, features shape)
CASES = {
    "reference_mlp": (models.reference_mlp(), (5, 50), (5, 4), (5, 16)),
    "mlp": (models.MLP(hidden=(32, 8), num_classes=3), (5, 10), (5, 3),
            (5, 8)),
    "no_hidden_mlp": (models.MLP(hidden=(), num_classes=3), (5, 10), (5, 3),
                      (5, 10)),
    "linear": (models.LinearClassifier(), (5, 25), (5, 2), (5, 25)),
    "cnn": (models.SmallCNN(), (3, 28, 28, 1), (3, 10), (3, 128)),
}
# One jitted init per module, shared by every test: random-init programs are
# slow to compile on CPU, and jit caches per function object and input shape.
INITS = {name: jax.jit(case[0].init) for name, case in CASES.items()}


class Case(NamedTuple):
  model: nn.Module
  x: jax.Array
  init: Callable  # jitted (key, x) -> variables
  apply: Callable  # jitted (variables, x) -> (logits, features)
  params: dict
  logits_shape: tuple
  features_shape: tuple


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
  model, x_shape, logits_shape, features_shape = CASES[request.param]
  x = np.random.default_rng(1).standard_normal(x_shape, dtype=np.float32)
  init = INITS[request.param]
  apply = jax.jit(functools.partial(model.apply, return_features=True))
  return Case(model, x, init, apply, init(KEY, x), logits_shape,
              features_shape)


def test_shapes(case):
  logits = jax.jit(case.model.apply)(case.params, case.x)
  logits2, features = case.apply(case.params, case.x)
  assert logits.shape == case.logits_shape and logits.dtype == jnp.float32
  assert features.shape == case.features_shape
  np.testing.assert_allclose(logits, logits2, rtol=1e-6, atol=1e-6)


def test_small_cnn_shapes_follow_its_configuration():
  # Shapes only: tracing is enough, and compiling another CNN init is slow.
  model = models.SmallCNN(num_classes=4, channels=(8, 16, 24), dense=32)
  x = jax.ShapeDtypeStruct((2, 9, 9, 3), jnp.float32)
  params = jax.eval_shape(model.init, KEY, x)
  conv = params["params"]["conv_2"]["kernel"]
  assert conv.shape == (3, 3, 16, 24)
  # 9 -> 4 -> 2 -> 1 after three floor-halving pools.
  assert params["params"]["dense"]["kernel"].shape == (24, 32)
  logits, features = jax.eval_shape(
      functools.partial(model.apply, return_features=True), params, x)
  assert logits.shape == (2, 4) and features.shape == (2, 32)


def test_reference_mlp_is_torch_two_layer_nn():
  params = INITS["reference_mlp"](KEY, np.ones((5, 50), np.float32))["params"]
  # torch.nn.Linear(in, out) draws weight and bias from U(±1/√in).
  for name, shape in (("hidden_0", (50, 16)), ("hidden_1", (16, 16)),
                      ("head", (16, 4))):
    kernel, bias = params[name]["kernel"], params[name]["bias"]
    assert kernel.shape == shape and bias.shape == shape[1:]
    for w in (kernel, bias):
      assert 0 < np.abs(w).max() <= 1 / math.sqrt(shape[0])
  assert set(params) == {"hidden_0", "hidden_1", "head"}


def test_logits_are_the_head_applied_to_the_features(case):
  logits, features = case.apply(case.params, case.x)
  head = case.params["params"]["head"]
  want = np.asarray(features) @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(logits, want,
                             rtol=1e-5, atol=1e-5)
  if case.features_shape == case.x.shape:  # no hidden layer: the input
    np.testing.assert_array_equal(features, case.x)
  else:  # a ReLU activation
    assert np.all(np.asarray(features) >= 0)


def _layers(params):
  """(kernel, bias) of every layer; fan_in = kernel entries per output unit."""
  for layer in params["params"].values():
    yield layer["kernel"], layer["bias"]


@pytest.mark.parametrize("name", ["cnn", "reference_mlp"])
def test_torch_init_is_uniform_within_one_over_sqrt_fan_in(name):
  params = INITS[name](KEY, np.ones(CASES[name][1], np.float32))
  scaled = []
  for kernel, bias in _layers(params):
    bound = 1 / math.sqrt(math.prod(kernel.shape[:-1]))
    for w in (kernel, bias):
      assert np.abs(w).max() <= bound
      scaled.append(np.ravel(w) / bound)
    assert np.abs(kernel).max() > 0.9 * bound  # fills the interval
  scaled = np.concatenate(scaled)
  # Spread: U(-1, 1) has standard deviation 1/√3; Kolmogorov–Smirnov overall.
  assert abs(scaled.std() - 1 / math.sqrt(3)) < 0.03
  assert stats.kstest(scaled, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_lecun_scheme_uses_flax_defaults():
  model = models.MLP(hidden=(64,), num_classes=4, init_scheme="lecun")
  params = jax.jit(model.init)(KEY, np.ones((1, 50), np.float32))
  for kernel, bias in _layers(params):
    np.testing.assert_array_equal(bias, 0.0)
  kernel = params["params"]["hidden_0"]["kernel"]
  assert abs(float(kernel.std()) - 1 / math.sqrt(50)) < 0.02


def test_unknown_init_scheme_raises():
  with pytest.raises(ValueError, match="init_scheme must be one of"):
    models.MLP(init_scheme="xavier").init(KEY, np.ones((1, 50), np.float32))


def test_small_cnn_rejects_flat_input():
  with pytest.raises(ValueError, match="NHWC"):
    models.SmallCNN().init(KEY, np.ones((2, 64), np.float32))


def test_init_is_deterministic_in_the_key(case):
  again = case.init(KEY, case.x)
  other = case.init(jax.random.key(1), case.x)
  jax.tree.map(np.testing.assert_array_equal, case.params, again)
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, case.params,
                                              other)))


def test_vmap_over_stacked_params_equals_loop(case):
  keys = jax.random.split(jax.random.key(3), 3)
  singles = [case.init(key, case.x) for key in keys]
  stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *singles)
  batched = jax.jit(jax.vmap(case.apply, in_axes=(0, None)))(stacked, case.x)
  for i, single in enumerate(singles):
    for got, want in zip(batched, case.apply(single, case.x)):
      np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


def test_vmapped_init_equals_looped_init():
  # The sweep engine initialises its stacked runs with vmap(init).
  x = np.ones(CASES["reference_mlp"][1], np.float32)
  keys = jax.random.split(jax.random.key(3), 3)
  stacked = jax.jit(jax.vmap(INITS["reference_mlp"], in_axes=(0, None)))(
      keys, x)
  for i, key in enumerate(keys):
    jax.tree.map(np.testing.assert_array_equal, INITS["reference_mlp"](key, x),
                 jax.tree.map(lambda leaf, i=i: leaf[i], stacked))
