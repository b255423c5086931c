"""Tests of ntdh_jax.models: the registry and Net contract, every registered
network trained under jit(vmap(scan)), shapes, features, torch init."""

import functools
import json
import math
import types
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from scipy import stats

from ntdh_jax import models
from tests.fast_jit import fast_jit

KEY = jax.random.key(0)

_jit = fast_jit  # many small programs: compile them cheaply

# -- the modules themselves ----------------------------------------------------

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
INITS = {name: _jit(case[0].init) for name, case in CASES.items()}


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
  apply = _jit(functools.partial(model.apply, return_features=True))
  return Case(model, x, init, apply, init(KEY, x), logits_shape,
              features_shape)


def test_shapes(case):
  logits = _jit(case.model.apply)(case.params, case.x)
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
  params = _jit(model.init)(KEY, np.ones((1, 50), np.float32))
  for kernel, bias in _layers(params):
    np.testing.assert_array_equal(bias, 0.0)
  kernel = params["params"]["hidden_0"]["kernel"]
  assert abs(float(kernel.std()) - 1 / math.sqrt(50)) < 0.02


def test_unknown_init_scheme_raises():
  with pytest.raises(ValueError, match="init_scheme must be one of"):
    models.MLP(init_scheme="xavier").init(KEY, np.ones((1, 50), np.float32))


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
  apply = functools.partial(case.model.apply, return_features=True)
  batched = _jit(jax.vmap(apply, in_axes=(0, None)))(stacked, case.x)
  for i, single in enumerate(singles):
    for got, want in zip(batched, case.apply(single, case.x)):
      np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


def test_vmapped_init_equals_looped_init():
  # The sweep engine initialises its stacked runs with vmap(init).
  x = np.ones(CASES["reference_mlp"][1], np.float32)
  keys = jax.random.split(jax.random.key(3), 3)
  init = CASES["reference_mlp"][0].init
  stacked = _jit(jax.vmap(init, in_axes=(0, None)))(
      keys, x)
  for i, key in enumerate(keys):
    jax.tree.map(np.testing.assert_array_equal, INITS["reference_mlp"](key, x),
                 jax.tree.map(lambda leaf, i=i: leaf[i], stacked))


# -- registry and config -------------------------------------------------------


def test_registry_names():
  assert set(models.MODELS) == {"mlp", "linear", "mnist_fc", "cnn", "conv2d",
                                "segnet"}
  for cls in models.MODELS.values():
    assert issubclass(cls, nn.Module)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_normalise_fills_every_field_and_is_idempotent(name):
  config = models.normalise({"name": name})
  assert next(iter(config)) == "name" and config["name"] == name
  assert "num_classes" not in config
  assert "init_scheme" in config
  assert models.normalise(config) == config
  assert json.loads(json.dumps(config)) == config  # JSON-able: lists
  assert not any(isinstance(v, tuple) for v in config.values())


def test_normalise_equates_spellings():
  spelled = {"init_scheme": "torch", "batch_norm": False, "dropout": 0,
             "hidden": (16, 16), "name": "mlp"}
  short = models.normalise({"name": "mlp"})
  assert models.normalise(spelled) == short
  assert json.dumps(models.normalise(spelled)) == json.dumps(short)
  assert short == {"name": "mlp", "hidden": [16, 16], "init_scheme": "torch",
                   "dropout": 0.0, "batch_norm": False}
  assert models.normalise(types.MappingProxyType({"name": "mlp"})) == short


def test_normalise_leaves_its_argument_alone():
  config = {"name": "cnn", "channels": (4,)}
  models.normalise(config)
  assert config == {"name": "cnn", "channels": (4,)}


def test_unknown_name_is_named_with_the_registered_ones():
  with pytest.raises(ValueError, match="'resnet'") as info:
    models.normalise({"name": "resnet"})
  for name in models.MODELS:
    assert repr(name) in str(info.value)
  with pytest.raises(ValueError, match="'name'"):
    models.normalise({"hidden": [8]})


def test_unknown_key_is_named_with_the_valid_ones():
  with pytest.raises(ValueError, match="'widths'") as info:
    models.normalise({"name": "mlp", "widths": [8]})
  for key in ("hidden", "init_scheme", "dropout", "batch_norm"):
    assert repr(key) in str(info.value)


def test_num_classes_is_not_a_config_field():
  with pytest.raises(ValueError, match="num_classes"):
    models.normalise({"name": "mlp", "num_classes": 4})
  with pytest.raises(ValueError, match="num_classes"):
    models.build({"name": "mlp", "num_classes": 4}, 4)


@pytest.mark.parametrize("config, error, match", [
    ({"name": "mlp", "dropout": 1.0}, ValueError, "dropout"),
    ({"name": "mlp", "dropout": True}, TypeError, "dropout"),
    ({"name": "cnn", "init_scheme": "xavier"}, ValueError, "init_scheme"),
    ({"name": "mlp", "hidden": "16"}, TypeError, "hidden"),
    ({"name": "mlp", "hidden": [16, 0]}, ValueError, "hidden"),
    ({"name": "segnet", "channels": []}, ValueError, "channels"),
    ({"name": "cnn", "batch_norm": 1}, TypeError, "batch_norm"),
    ({"name": "conv2d", "dense": 2.5}, TypeError, "dense"),
])
def test_bad_config_values_are_named(config, error, match):
  with pytest.raises(error, match=match):
    models.normalise(config)


def test_build_gives_a_net_of_the_registered_class():
  net = models.build({"name": "segnet", "channels": [4, 8]}, num_classes=3)
  assert isinstance(net, models.Net)
  assert type(net.module) is models.SegmentationNet
  assert net.module.num_classes == 3 and net.module.channels == (4, 8)
  hash(net.module)  # static: lists became tuples
  with pytest.raises(ValueError, match="num_classes"):
    models.build({"name": "mlp"}, 0)


def test_net_init_and_apply_are_todays_module_calls():
  # Existing experiments keep their numbers bit for bit.
  net = models.build({"name": "mlp"}, 4)
  module = models.reference_mlp()
  assert net.module == module
  x = np.random.default_rng(2).standard_normal((5, 50), dtype=np.float32)
  variables = _jit(net.init)(KEY, x[:1])
  jax.tree.map(np.testing.assert_array_equal, variables,
               INITS["reference_mlp"](KEY, x))
  want = _jit(functools.partial(module.apply, return_features=True))(
      variables, x)
  for train in (False, True):
    got = _jit(functools.partial(net.apply, train=train))(variables, x)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    jax.tree.map(np.testing.assert_array_equal, got[2], variables)
  assert net.apply(variables, x, train=True)[2] is variables


def test_flat_models_flatten_images():
  net = models.build({"name": "mlp", "hidden": [4]}, 3)
  x = np.random.default_rng(2).standard_normal((2, 3, 3, 2), dtype=np.float32)
  variables = _jit(net.init)(KEY, x[:1])
  assert variables["params"]["hidden_0"]["kernel"].shape == (18, 4)
  apply = _jit(functools.partial(net.apply, train=False))
  got, want = apply(variables, x), apply(variables, x.reshape(2, 18))
  for g, w in zip(got[:2], want[:2]):
    np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("config, shape, train", [
    ({"name": "mlp", "hidden": [6, 5], "batch_norm": True, "dropout": 0.5},
     (3, 7), True),
    ({"name": "mnist_fc", "hidden": [6, 5]}, (3, 2, 2, 2), False),
])
def test_apply_from_first_layer_equals_apply(config, shape, train):
  """Running from the first Dense layer's output (``first_layer``) gives
  apply's logits, features and BatchNorm statistics; in training, dropout
  draws the same masks from the same key."""
  net = models.build(config, 4)
  x = np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
  variables = _jit(net.init)(KEY, x[:1])
  assert net.has_first_layer
  kernel, bias = net.first_layer(variables)
  assert kernel.shape == (math.prod(shape[1:]), config["hidden"][0])
  assert (bias is None) == config.get("batch_norm", False)
  h = x.reshape(3, -1) @ kernel + (0.0 if bias is None else bias)
  got, want = _jit(lambda v, x, h: (  # one program: compiles are the cost
      net.apply(v, h, train=train, key=KEY, from_first_layer=True),
      net.apply(v, x, train=train, key=KEY)))(variables, x, h)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6,
                                 atol=1e-6), got, want)


def test_from_first_layer_refuses_other_networks_and_shapes():
  for config in ({"name": "cnn"}, {"name": "mlp", "hidden": []},
                 {"name": "linear"}):
    net = models.build(config, 3)
    assert not net.has_first_layer
    with pytest.raises(ValueError, match="first_layer needs a network that "
                                         "begins with a Dense layer"):
      net.first_layer({"params": {}})
    with pytest.raises(ValueError, match=r"apply\(from_first_layer=True\) "
                                         "needs"):
      net.apply({"params": {}}, np.ones((2, 4), np.float32), train=False,
                from_first_layer=True)
  net = models.build({"name": "mnist_fc", "hidden": [6]}, 3)
  params = jax.eval_shape(net.init, KEY, jax.ShapeDtypeStruct((1, 4),
                                                              jnp.float32))
  with pytest.raises(ValueError, match=r"hidden_0's output of shape \[N, 6\]"
                                       r", got \(2, 4\)"):
    jax.eval_shape(functools.partial(net.apply, train=False,
                                     from_first_layer=True), params,
                   jax.ShapeDtypeStruct((2, 4), jnp.float32))


def test_feature_shape_of_the_default_networks():
  build = models.build
  assert build({"name": "mlp"}, 4).feature_shape((50,)) == (16,)
  assert build({"name": "linear"}, 2).feature_shape((4, 5)) == (20,)
  assert build({"name": "mnist_fc"}, 10).feature_shape((28, 28, 3)) == (256,)
  assert build({"name": "cnn"}, 10).feature_shape((8, 8, 1)) == (128,)
  assert build({"name": "conv2d"}, 8).feature_shape((40, 256, 1)) == (256,)
  assert build({"name": "conv2d"}, 8).feature_shape((64, 64, 3)) == (256,)
  assert build({"name": "segnet"}, 14).feature_shape((16, 24, 3)) == (16, 24,
                                                                       16)


def test_mnist_fc_is_the_ntdh_reference_network():
  # MNIST/network/LR_3.py: 784 -> 1024 -> 256 -> 10, LeakyReLU after each.
  net = models.build({"name": "mnist_fc"}, 10)
  x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
  params = jax.eval_shape(net.init, KEY, x)["params"]
  assert {k: v["kernel"].shape for k, v in params.items()} == {
      "hidden_0": (784, 1024), "hidden_1": (1024, 256), "head": (256, 10)}
  assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 1_068_810
  small = models.build({"name": "mnist_fc", "hidden": [2]}, 3)
  variables = {"params": {  # negative pre-activations everywhere
      "hidden_0": {"kernel": -np.ones((4, 2), np.float32),
                   "bias": np.zeros(2, np.float32)},
      "head": {"kernel": np.ones((2, 3), np.float32),
               "bias": np.zeros(3, np.float32)}}}
  logits, features, _ = small.apply(variables, np.ones((1, 4), np.float32),
                                    train=False)
  np.testing.assert_allclose(features, [[-0.04, -0.04]], rtol=1e-6)
  np.testing.assert_allclose(logits, [[-0.0008] * 3], rtol=1e-5)


@pytest.mark.parametrize("config, shape", [
    ({"name": "mlp", "hidden": [6, 5]}, (3, 7)),
    ({"name": "linear"}, (3, 7)),
    # leaky_logits: the head includes the reference's LeakyReLU on logits.
    ({"name": "mnist_fc", "hidden": [6, 5]}, (3, 2, 2, 1)),
    ({"name": "mnist_fc", "hidden": [6], "leaky_logits": False}, (3, 4)),
    ({"name": "cnn", "channels": [2, 3], "dense": 5}, (3, 8, 8, 1)),
    ({"name": "segnet", "channels": [2, 3]}, (2, 8, 8, 1)),
])
def test_head_alone_gives_the_evaluation_logits(config, shape):
  net = models.build(config, 4)
  x = np.random.default_rng(2).standard_normal(shape, dtype=np.float32)
  variables = net.init(KEY, x[:1])
  logits, features, _ = net.apply(variables, x, train=False)
  np.testing.assert_allclose(net.head(variables["params"], features), logits,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config, shape, match", [
    ({"name": "mlp"}, (4,), "rank >= 2"),
    ({"name": "linear"}, (4,), "rank >= 2"),
    ({"name": "cnn"}, (2, 64), "NHWC"),
    ({"name": "conv2d"}, (2, 8, 8), "NHWC"),
    ({"name": "segnet"}, (2, 64), "NHWC"),
    ({"name": "cnn", "channels": [4, 4]}, (2, 3, 8, 1), "H, W >= 4"),
    ({"name": "conv2d"}, (2, 4, 8, 1), "H, W >= 8"),
    ({"name": "segnet"}, (2, 12, 10, 1), "divisible by 4"),
])
def test_bad_input_shape_is_named(config, shape, match):
  net = models.build(config, 3)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(net.init, KEY, x)


def test_dropout_in_train_mode_needs_a_key():
  net = models.build({"name": "mlp", "hidden": [4], "dropout": 0.5}, 3)
  x = jax.ShapeDtypeStruct((2, 5), jnp.float32)
  variables = jax.eval_shape(net.init, KEY, x)
  with pytest.raises(ValueError, match="key="):
    jax.eval_shape(functools.partial(net.apply, train=True), variables, x)
  # eval needs none
  jax.eval_shape(functools.partial(net.apply, train=False), variables, x)


# -- every network trained under jit(vmap(scan)) -------------------------------

RUNS, STEPS, N = 2, 2, 4
# name: (config without the switches, one example's input shape, C)
NETWORKS = {
    "mlp": ({"name": "mlp", "hidden": [8, 8]}, (6,), 3),
    "linear": ({"name": "linear"}, (6,), 3),
    "mnist_fc": ({"name": "mnist_fc", "hidden": [16, 8]}, (8, 8, 1), 3),
    "cnn": ({"name": "cnn", "channels": [4, 8], "dense": 8}, (8, 8, 1), 3),
    "conv2d": ({"name": "conv2d", "channels": [4, 8], "dense": 8},
               (8, 16, 1), 3),
    "segnet": ({"name": "segnet", "channels": [4, 8]}, (8, 8, 2), 3),
}
MATRIX = [
    (name, batch_norm, dropout)
    for name, (config, _, _) in NETWORKS.items()
    for batch_norm in ((False, True) if "batch_norm" in models.normalise(
        config) else (None,))
    for dropout in ((0.0, 0.5) if "dropout" in models.normalise(config) else
                    (None,))
]
MATRIX_IDS = [f"{n}-bn{b}-drop{d}".replace("None", "NA")
              for n, b, d in MATRIX]


def _net(name, batch_norm, dropout):
  config, shape, num_classes = NETWORKS[name]
  switches = {"batch_norm": batch_norm, "dropout": dropout}
  config = {**config, **{k: v for k, v in switches.items() if v is not None}}
  rng = np.random.default_rng(4)
  x = rng.standard_normal((N, *shape), dtype=np.float32)
  labels_shape = (N, *shape[:2]) if name == "segnet" else (N,)
  y = rng.integers(0, num_classes, labels_shape)
  return models.build(config, num_classes), x, y


def _program(net, x, y):
  """One run: init, STEPS SGD steps in a scan, then train/eval probes."""
  tx = optax.sgd(0.1)

  def loss(params, variables, key):
    logits, _, variables = net.apply({**variables, "params": params}, x,
                                     train=True, key=key)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return ce.mean(), variables

  def step(carry, key):
    variables, opt_state = carry
    grads, variables = jax.grad(loss, has_aux=True)(variables["params"],
                                                    variables, key)
    updates, opt_state = tx.update(grads, opt_state)
    params = optax.apply_updates(variables["params"], updates)
    return ({**variables, "params": params}, opt_state), None

  def run(init_key, step_keys, probe_keys):
    initial = net.init(init_key, x[:1])
    (trained, _), _ = lax.scan(
        step, (initial, tx.init(initial["params"])), step_keys)
    probes = {
        f"{mode}_{k}": net.apply(trained, x, train=mode == "train",
                                 key=probe_keys[k])
        for mode in ("train", "eval") for k in (0, 1)}
    return initial, trained, probes

  return run


def _keys():
  keys = jax.random.split(jax.random.key(7), RUNS * (1 + STEPS + 2))
  keys = keys.reshape(RUNS, 1 + STEPS + 2)
  return keys[:, 0], keys[:, 1:1 + STEPS], keys[:, 1 + STEPS:]


@functools.cache
def _trained(name, batch_norm, dropout):
  """Outputs of RUNS stacked runs (shared by the tests, compiled once)."""
  net, x, y = _net(name, batch_norm, dropout)
  out = _jit(jax.vmap(_program(net, x, y)))(*_keys())
  return net, x, jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("name, batch_norm, dropout", MATRIX, ids=MATRIX_IDS)
def test_training_runs_under_vmap_scan(name, batch_norm, dropout):
  net, x, (initial, trained, probes) = _trained(name, batch_norm, dropout)
  config, shape, num_classes = NETWORKS[name]
  out = (N, *shape[:2], num_classes) if name == "segnet" else (N, num_classes)
  features_shape = (RUNS, N, *net.feature_shape(shape))
  for logits, features, variables in probes.values():
    assert logits.shape == (RUNS, *out) and logits.dtype == np.float32
    assert features.shape == features_shape
    for leaf in jax.tree.leaves(variables):
      assert np.all(np.isfinite(leaf))
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(features))
  assert ("batch_stats" in initial) == bool(batch_norm)
  # SGD moved every run's parameters, and the runs differ from each other.
  for before, after in zip(jax.tree.leaves(initial["params"]),
                           jax.tree.leaves(trained["params"])):
    assert not np.array_equal(before, after)
    assert not np.array_equal(after[0], after[1])


@pytest.mark.parametrize(
    "name, batch_norm, dropout", [m for m in MATRIX if m[1]],
    ids=[i for m, i in zip(MATRIX, MATRIX_IDS) if m[1]])
def test_batch_stats_move_in_train_mode_only(name, batch_norm, dropout):
  _, _, (initial, trained, probes) = _trained(name, batch_norm, dropout)
  stats0 = jax.tree.leaves(initial["batch_stats"])
  stats1 = jax.tree.leaves(trained["batch_stats"])
  for before, after in zip(stats0, stats1):  # the scan's train steps
    assert not np.array_equal(before, after)
  for k in (0, 1):
    for before, after in zip(
        stats1, jax.tree.leaves(probes[f"train_{k}"][2]["batch_stats"])):
      assert not np.array_equal(before, after)
    jax.tree.map(np.testing.assert_array_equal, trained,
                 probes[f"eval_{k}"][2])
  # Initial running statistics: mean 0, variance 1, per run.
  for path, leaf in jax.tree_util.tree_leaves_with_path(initial["batch_stats"]):
    want = 1.0 if "var" in jax.tree_util.keystr(path) else 0.0
    np.testing.assert_array_equal(leaf, want)


@pytest.mark.parametrize("name, batch_norm, dropout", MATRIX, ids=MATRIX_IDS)
def test_dropout_follows_the_key_in_train_mode_only(name, batch_norm, dropout):
  _, _, (_, _, probes) = _trained(name, batch_norm, dropout)
  train_0, train_1 = probes["train_0"][0], probes["train_1"][0]
  if dropout:
    assert not np.array_equal(train_0, train_1)
  else:
    np.testing.assert_array_equal(train_0, train_1)
  # Features are taken before the head's dropout: where that is the only
  # dropout, they are the same under both keys (and, without BatchNorm, in
  # eval mode too); the MLPs also drop between hidden layers.
  if not dropout or name not in ("mlp", "mnist_fc"):
    np.testing.assert_array_equal(probes["train_0"][1], probes["train_1"][1])
    if not batch_norm:
      np.testing.assert_allclose(probes["eval_0"][1], probes["train_0"][1],
                                 rtol=1e-6)
  for i in (0, 1):  # eval is deterministic and ignores the key
    np.testing.assert_array_equal(probes["eval_0"][i], probes["eval_1"][i])


def test_vmapped_training_equals_looped_training():
  name, batch_norm, dropout = "cnn", True, 0.5
  net, x, stacked = _trained(name, batch_norm, dropout)
  _, _, y = _net(name, batch_norm, dropout)
  single = _jit(_program(net, x, y))
  for i, keys in enumerate(zip(*_keys())):
    looped = single(*keys)
    jax.tree.map(
        lambda got, want, i=i: np.testing.assert_allclose(
            got[i], want, rtol=1e-5, atol=1e-6), stacked, looped)


def test_torch_init_bounds_of_the_conv_nets():
  # fan_in = in_channels·kh·kw, and out_channels·kh·kw for the transposed
  # conv (torch reads it from the weight's second axis).
  for name in ("conv2d", "segnet"):
    _, _, (initial, _, _) = _trained(name, False, 0.0)
    for layer_name, layer in initial["params"].items():
      kernel = layer["kernel"][0]  # run 0
      if layer_name.startswith("up_"):
        fan_in = math.prod(kernel.shape[:2]) * kernel.shape[-1]
      else:
        fan_in = math.prod(kernel.shape[:-1])
      bound = 1 / math.sqrt(fan_in)
      for w in (kernel, layer["bias"][0]):
        assert np.abs(w).max() <= bound
      assert np.abs(kernel).max() > 0.5 * bound
