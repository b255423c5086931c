"""Flax (linen) networks of the reproduced experiments, and their registry.

A model is a static config ``{"name": ..., **fields}`` (one for the teacher,
one for the student); ``normalise`` fills every default so that one network
has one spelling, and ``build(config, num_classes)`` returns a ``Net``, the
only interface the training code uses::

  net = build({"name": "cnn", "batch_norm": True}, num_classes=10)
  variables = net.init(key, x[:1])        # {"params", maybe "batch_stats"}
  logits, features, variables = net.apply(variables, x, train=True, key=k)
  net.feature_shape((28, 28, 1))          # (128,)

Registered networks (``MODELS``):

* ``"mlp"`` — ``MLP``, the NTDH synthetic network; ``reference_mlp()`` is the
  reference's ``TwoLayerNN`` (elonchern/Non-target-Divergence-Hypothesis,
  ``sklearn/network/two_layer.py``): 50 → 16 → 16 → 4 with ReLU. Its
  ``fc2_1`` layer is never called in ``forward``, so it is left out, and its
  dropout rate is 0 in every reference experiment.
* ``"linear"`` — ``LinearClassifier``, the MFH Gaussian experiment's single
  linear layer (Xue et al., ICLR'23; zihuixue/MFH ``gauss/main.py``).
* ``"mnist_fc"`` — ``MnistFC``, NTDH's MNIST / MNIST-M fully connected net.
* ``"cnn"`` — ``SmallCNN``, a small image classifier for digits / MNIST.
* ``"conv2d"`` — ``ConvNet``, a conv net for log-mel spectrograms and video
  frames (a small stand-in for NTDH's RAVDESS audio / image CNNs).
* ``"segnet"`` — ``SegmentationNet``, a small U-Net giving per-pixel logits.

``init_scheme`` (the field cannot be called ``init``: that would shadow
``Module.init``):

* ``"torch"`` (default) — PyTorch's default ``nn.Linear`` / ``nn.Conv2d``
  initialisation, which the reference networks use: kaiming-uniform with
  a = √5 for weights and U(±1/√fan_in) for biases, i.e. both
  U(−1/√fan_in, 1/√fan_in), fan_in = inputs of one output unit (in_features,
  or in_channels·kh·kw). Same distribution, not torch's random numbers.
* ``"lecun"`` — flax's defaults (LeCun-normal kernels, zero biases).

``conv_grad`` (the conv models ``cnn``, ``conv2d``, ``segnet``): the
name of the convolution in ``ntdh_jax.convolution.CONV_GRADS``.
``"autodiff"`` (default) is JAX's; ``"canonical"`` forms each kernel
gradient as one canonical convolution, runs vmapped runs' convolutions as
separate single-run ones and differentiates the 2×2 max-pools by selecting
each window's first maximum (``ntdh_jax.pooling``), the forms XLA:CPU runs
fast inside training loops (same function, other float32 rounding). The
transposed convolutions of ``segnet`` keep JAX's rules. Left out of a
normalised config at its default, so existing run ids do not change.

BatchNorm (where a model has it) uses torch's defaults — running-average
momentum 0.1 (flax's ``momentum=0.9``), ε = 1e-5, scale 1, offset 0 — and
follows a bias-free layer (the bias would be cancelled by the mean). Its
statistics live in the ``"batch_stats"`` collection and are reduced over the
batch axis of one call only (no ``axis_name``), so under ``vmap`` every run
keeps its own statistics. One difference from torch: the running variance is
updated with the biased batch variance (flax), torch uses the unbiased one.
Dropout draws from the ``"dropout"`` rng.

Every module's ``__call__(x, *, train=False, return_features=False)`` maps
inputs to logits (``f32[N, C]``; ``f32[N, H, W, C]`` for ``segnet``) and with
``return_features`` also returns the penultimate representation that
feature-based KD losses (FitNet, RKD, PKT, SP, CRD) read — taken *before*
dropout, so in eval mode the logits are the head applied to the features.
Initialisation is deterministic given the key, and ``apply`` is pure, so
variables stacked on a leading axis run under ``jax.vmap``.

``mlp`` and ``mnist_fc`` (with hidden layers) begin with a Dense layer on
the flattened input, ``hidden_0``; their ``__call__`` also takes
``from_first_layer=True``, which reads ``x`` as that layer's output
(``flatten(input) @ kernel + bias``) and runs the rest of the network, and
``Net.first_layer`` returns the layer's ``(kernel, bias)``. Algorithm 1 uses
them to permute input units by a rank-K update of the first pre-activation
(``masks.permutation_importance(first_layer=...)``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import convolution
from ntdh_jax import pooling
from ntdh_jax import validation

INIT_SCHEMES = ("torch", "lecun")


# -- layers --------------------------------------------------------------------


def _torch_uniform(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _initializers(init_scheme: str, fan_in: int) -> dict:
  """``kernel_init``/``bias_init`` keyword arguments for one layer."""
  if init_scheme == "torch":
    uniform = _torch_uniform(fan_in)
    return {"kernel_init": uniform, "bias_init": uniform}
  if init_scheme == "lecun":
    return {}
  raise ValueError(
      f"init_scheme must be one of {INIT_SCHEMES}, got {init_scheme!r}.")


def _dense(x, features: int, init_scheme: str, name: str, use_bias=True):
  layer = nn.Dense(features, use_bias=use_bias, name=name,
                   **_initializers(init_scheme, x.shape[-1]))
  return layer(x)


def _conv(x, features: int, init_scheme: str, name: str, conv_grad: str,
          use_bias=True, kernel=(3, 3)):
  fan_in = x.shape[-1] * math.prod(kernel)
  layer = nn.Conv(features, kernel, padding="SAME", use_bias=use_bias,
                  name=name, **_initializers(init_scheme, fan_in),
                  conv_general_dilated=convolution.conv_general_dilated(
                      conv_grad))
  return layer(x)


def _up_conv(x, features: int, init_scheme: str, name: str):
  """2×2 transposed conv with stride 2: ``[N, H, W, ·] → [N, 2H, 2W, F]``.

  torch computes a ``ConvTranspose2d``'s fan_in from its weight's second
  axis, i.e. out_channels·kh·kw; the torch scheme follows it.
  """
  fan_in = features * 2 * 2
  layer = nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="VALID",
                           name=name, **_initializers(init_scheme, fan_in))
  return layer(x)


def _batch_norm(x, train: bool, name: str):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, name=name)(x)


def _dropout(x, rate: float, train: bool):
  return nn.Dropout(rate, deterministic=not train)(x) if rate > 0 else x


def _flatten(x, model: str):
  """``f[N, ...] → f[N, D]``; a no-op for ``[N, D]``."""
  if x.ndim < 2:
    raise ValueError(
        f"{model} expects inputs of rank >= 2 ([N, D] or [N, ...]), got shape "
        f"{x.shape}.")
  return x if x.ndim == 2 else x.reshape(x.shape[0], -1)


def _first_input(x, from_first_layer: bool, module) -> jax.Array:
  """The input of ``module``'s hidden stack: the flattened ``x``, or with
  ``from_first_layer`` ``x`` itself, checked to be ``hidden_0``'s output
  ``f[N, hidden[0]]``."""
  model = type(module).__name__
  if not from_first_layer:
    return _flatten(x, model)
  if not module.hidden:
    raise ValueError(
        f"from_first_layer needs a hidden layer (hidden_0), but {model} has "
        "hidden=().")
  if x.ndim != 2 or x.shape[1] != module.hidden[0]:
    raise ValueError(
        f"with from_first_layer, {model} expects hidden_0's output of shape "
        f"[N, {module.hidden[0]}], got {x.shape}.")
  return x


def _check_images(x, model: str, min_size: int):
  """``x`` is NHWC with H, W >= ``min_size`` (what the pooling needs)."""
  if x.ndim != 4:
    raise ValueError(
        f"{model} expects NHWC images of rank 4, got shape {x.shape}.")
  if min(x.shape[1:3]) < min_size:
    raise ValueError(
        f"{model} halves H and W once per entry of channels, so it needs H, W "
        f">= {min_size}; got H×W = {x.shape[1]}×{x.shape[2]}.")


# -- networks ------------------------------------------------------------------


def _conv_pool_blocks(module, x, train: bool):
  """(3×3 conv → [BatchNorm] → ReLU → 2×2 max-pool) per ``module.channels``,
  inside ``module``'s compact ``__call__`` (layers ``conv_i``, ``bn_i``)."""
  for i, width in enumerate(module.channels):
    x = _conv(x, width, module.init_scheme, f"conv_{i}", module.conv_grad,
              use_bias=not module.batch_norm)
    if module.batch_norm:
      x = _batch_norm(x, train, f"bn_{i}")
    x = pooling.MAX_POOLS[module.conv_grad](nn.relu(x))
  return x


def _dense_head(module, x, train: bool, return_features: bool):
  """ReLU dense layer (the features), [dropout], linear head."""
  features = nn.relu(_dense(x, module.dense, module.init_scheme, "dense"))
  x = _dropout(features, module.dropout, train)
  logits = _dense(x, module.num_classes, module.init_scheme, "head")
  return (logits, features) if return_features else logits


class MLP(nn.Module):
  """ReLU multilayer perceptron: (Dense → [BatchNorm] → ReLU → [Dropout]) per
  entry of ``hidden``, then a linear head.

  Attributes:
    hidden: widths of the hidden layers (empty: a linear model).
    num_classes: C, the logit width.
    init_scheme: ``"torch"`` or ``"lecun"`` (see the module docstring).
    dropout: rate after every hidden activation (ours; 0 in the reference).
    batch_norm: BatchNorm before every ReLU (ours; off in the reference).
  """
  hidden: Sequence[int] = (16, 16)
  num_classes: int = 4
  init_scheme: str = "torch"
  dropout: float = 0.0
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False,
               from_first_layer: bool = False):
    """``x: f[N, D]`` (rank > 2 is flattened) → logits ``f32[N, C]``.

    With ``return_features``, also the last hidden activation
    ``f32[N, hidden[-1]]`` before dropout (the flattened input when
    ``hidden`` is empty). With ``from_first_layer``, ``x`` is ``hidden_0``'s
    output ``f32[N, hidden[0]]`` (before BatchNorm and ReLU) and the call
    starts after that layer (apply only: the layer's parameters are not
    created).
    """
    x = _first_input(x, from_first_layer, self)
    for i, width in enumerate(self.hidden):
      if i:
        x = _dropout(x, self.dropout, train)
      if i or not from_first_layer:
        x = _dense(x, width, self.init_scheme, f"hidden_{i}",
                   use_bias=not self.batch_norm)
      if self.batch_norm:
        x = _batch_norm(x, train, f"bn_{i}")
      x = nn.relu(x)
    features = x
    if self.hidden:
      x = _dropout(x, self.dropout, train)
    logits = _dense(x, self.num_classes, self.init_scheme, "head")
    return (logits, features) if return_features else logits


def reference_mlp() -> MLP:
  """The reference ``TwoLayerNN``: 50 → 16 → 16 → 4, ReLU, torch init."""
  return MLP(hidden=(16, 16), num_classes=4, init_scheme="torch")


class LinearClassifier(nn.Module):
  """One linear layer, the MFH Gaussian-experiment classifier.

  Attributes:
    num_classes: C (2 in MFH).
    init_scheme: ``"torch"`` or ``"lecun"``.
  """
  num_classes: int = 2
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    """``x: f[N, D]`` (rank > 2 is flattened) → logits ``f32[N, C]``; the
    features are the flattened input ``f[N, D]`` itself."""
    del train  # nothing behaves differently
    x = _flatten(x, "LinearClassifier")
    logits = _dense(x, self.num_classes, self.init_scheme, "head")
    return (logits, x) if return_features else logits


class MnistFC(nn.Module):
  """NTDH's fully connected MNIST / MNIST-M network.

  Source: elonchern/Non-target-Divergence-Hypothesis ``MNIST/network/LR_3.py``
  (class ``MLP``, lines 53–73; built in ``MNIST/main.py`` as
  ``MLP(input_dim=28*28)`` for MNIST or ``28*28*3`` for MNIST-M, on inputs
  flattened with ``view``): ``Linear(D, 1024) → LeakyReLU → Linear(1024, 256)
  → LeakyReLU → Linear(256, 10) → LeakyReLU``, torch's default init and
  LeakyReLU slope 0.01, no dropout, no BatchNorm.

  Two things to know. The reference applies a LeakyReLU to the logits too;
  ``leaky_logits=True`` keeps that (set False for a plain linear head). And
  it has 1.07 M parameters on MNIST (2.67 M on MNIST-M), not the paper's
  "3-layer MLPs (0.53 M parameters)"; ``hidden=(512, 256)`` on MNIST gives
  0.54 M, the closest plain reading of the paper's number.

  We flatten NHWC (the reference flattens NCHW): for an MLP this only
  permutes the input units. The features are the 256-wide activation before
  the head; the reference's feature mask (``--place 1``) acts on the
  1024-wide first layer instead.

  Attributes:
    num_classes: C (10).
    hidden: widths of the hidden layers, (1024, 256) in the reference.
    negative_slope: LeakyReLU slope, torch's default 0.01.
    leaky_logits: LeakyReLU on the logits, as in the reference.
    dropout: rate after each hidden activation (ours; 0 in the reference).
    init_scheme: ``"torch"`` (the reference) or ``"lecun"``.
  """
  num_classes: int = 10
  hidden: Sequence[int] = (1024, 256)
  negative_slope: float = 0.01
  leaky_logits: bool = True
  dropout: float = 0.0
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False,
               from_first_layer: bool = False):
    """``x: f[N, ...]`` (flattened to ``[N, D]``) → logits ``f32[N, C]``.

    With ``return_features``, also the last hidden activation
    ``f32[N, hidden[-1]]`` before dropout. With ``from_first_layer``, ``x``
    is ``hidden_0``'s output ``f32[N, hidden[0]]`` (before the LeakyReLU)
    and the call starts after that layer (apply only).
    """
    x = _first_input(x, from_first_layer, self)
    for i, width in enumerate(self.hidden):
      if i:
        x = _dropout(x, self.dropout, train)
      if i or not from_first_layer:
        x = _dense(x, width, self.init_scheme, f"hidden_{i}")
      x = nn.leaky_relu(x, self.negative_slope)
    features = x
    if self.hidden:
      x = _dropout(x, self.dropout, train)
    logits = _dense(x, self.num_classes, self.init_scheme, "head")
    if self.leaky_logits:
      logits = nn.leaky_relu(logits, self.negative_slope)
    return (logits, features) if return_features else logits


class SmallCNN(nn.Module):
  """(3×3 conv → [BatchNorm] → ReLU → 2×2 max-pool) per entry of
  ``channels``, flatten, a ReLU dense layer, [dropout], a linear head.

  Attributes:
    num_classes: C.
    channels: output channels of each conv block.
    dense: width of the dense layer, whose activation is the feature vector.
    init_scheme: ``"torch"`` or ``"lecun"``.
    batch_norm: BatchNorm after every conv (ours).
    dropout: rate between the features and the head (ours).
    conv_grad: ``"autodiff"`` or ``"canonical"`` (module docstring).
  """
  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  init_scheme: str = "torch"
  batch_norm: bool = False
  dropout: float = 0.0
  conv_grad: str = "autodiff"

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    """``x: f[N, H, W, C_in]`` (NHWC; 8×8 digits or 28×28 MNIST, 1 or 3
    channels) → logits ``f32[N, C]``.

    With ``return_features``, also the dense activation ``f32[N, dense]``.
    Each pool halves H and W (rounding down), so H, W >= 2**len(channels).
    """
    _check_images(x, "SmallCNN", 2 ** len(self.channels))
    x = _conv_pool_blocks(self, x, train)
    return _dense_head(self, x.reshape(x.shape[0], -1), train,
                       return_features)


class ConvNet(nn.Module):
  """A 2-D conv net for log-mel spectrograms (``[N, 40, 256, 1]``) and video
  frames (``[N, 64, 64, 3]``): (3×3 conv → BatchNorm → ReLU → 2×2 max-pool)
  per entry of ``channels``, global average pooling, a ReLU dense layer (the
  features), [dropout], a linear head.

  An equal-depth stand-in for NTDH's RAVDESS ``AudioNet`` / ``ImageNet``
  (elonchern/Non-target-Divergence-Hypothesis ``ravdess/utils/model.py``):
  those have the same three conv widths 32, 64, 128 with max-pooling, but an
  adaptive max-pool to 7×14 and ``Linear(12544, 1024) → Linear(1024, 128)``,
  ~13 M parameters. Global average pooling, BatchNorm and one dense layer are
  our choices, so the default is small (~0.13 M parameters); widen
  ``channels`` / ``dense`` to approach the paper's size.

  Attributes:
    num_classes: C (8 emotions in RAVDESS).
    channels: output channels of each conv block.
    dense: width of the dense layer, whose activation is the feature vector.
    batch_norm: BatchNorm after every conv.
    dropout: rate between the features and the head.
    init_scheme: ``"torch"`` or ``"lecun"``.
    conv_grad: ``"autodiff"`` or ``"canonical"`` (module docstring).
  """
  num_classes: int = 8
  channels: Sequence[int] = (32, 64, 128)
  dense: int = 256
  batch_norm: bool = True
  dropout: float = 0.0
  init_scheme: str = "torch"
  conv_grad: str = "autodiff"

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    """``x: f[N, H, W, C_in]`` (NHWC) → logits ``f32[N, C]``.

    With ``return_features``, also the dense activation ``f32[N, dense]``.
    Each pool halves H and W (rounding down), so H, W >= 2**len(channels).
    """
    _check_images(x, "ConvNet", 2 ** len(self.channels))
    x = _conv_pool_blocks(self, x, train)
    return _dense_head(self, x.mean(axis=(1, 2)), train, return_features)


class SegmentationNet(nn.Module):
  """A small U-Net (Ronneberger et al., MICCAI'15) giving per-pixel logits.

  Encoder level i (i = 0..L−1, L = len(channels)) is two (3×3 conv →
  [BatchNorm] → ReLU) at resolution H/2^i with ``channels[i]`` outputs,
  levels joined by 2×2 max-pools. The decoder climbs back: a 2×2 stride-2
  transposed conv to ``channels[i]``, concatenation with encoder level i's
  output (the skip connection), two conv blocks. A 1×1 conv gives the
  logits. Depth, widths and the two convs per block are ours — a stand-in
  for the networks of NTDH's NYU Depth V2 experiment (``NYUDepthv2/models/``,
  e.g. DDRNet), which do 3-D semantic scene completion and are far larger.

  Attributes:
    num_classes: C per pixel (``build`` sets it from the data; the default
      is the 13-class NYU Depth V2 labelling).
    channels: widths of the encoder levels, finest first.
    batch_norm: BatchNorm after every 3×3 conv.
    dropout: per-pixel rate between the features and the 1×1 head.
    init_scheme: ``"torch"`` or ``"lecun"``.
    conv_grad: ``"autodiff"`` or ``"canonical"`` (module docstring).
  """
  num_classes: int = 13
  channels: Sequence[int] = (16, 32, 64)
  batch_norm: bool = True
  dropout: float = 0.0
  init_scheme: str = "torch"
  conv_grad: str = "autodiff"

  def _block(self, x, width: int, train: bool, name: str):
    for j in range(2):
      x = _conv(x, width, self.init_scheme, f"{name}_conv_{j}",
                self.conv_grad, use_bias=not self.batch_norm)
      if self.batch_norm:
        x = _batch_norm(x, train, f"{name}_bn_{j}")
      x = nn.relu(x)
    return x

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    """``x: f[N, H, W, C_in]`` (NHWC) → logits ``f32[N, H, W, C]``.

    With ``return_features``, also the last decoder activation
    ``f32[N, H, W, channels[0]]`` (per-pixel penultimate features). H and W
    must be divisible by 2**(len(channels) − 1).
    """
    if x.ndim != 4:
      raise ValueError(
          f"SegmentationNet expects NHWC images of rank 4, got shape "
          f"{x.shape}.")
    factor = 2 ** (len(self.channels) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f"SegmentationNet with {len(self.channels)} levels needs H and W "
          f"divisible by {factor}; got H×W = {x.shape[1]}×{x.shape[2]}.")
    skips = []
    for i, width in enumerate(self.channels):
      if i:
        x = pooling.MAX_POOLS[self.conv_grad](x)
      x = self._block(x, width, train, f"down_{i}")
      skips.append(x)
    for i in reversed(range(len(self.channels) - 1)):
      x = _up_conv(x, self.channels[i], self.init_scheme, f"up_{i}")
      x = jnp.concatenate([skips[i], x], axis=-1)
      x = self._block(x, self.channels[i], train, f"dec_{i}")
    features = x
    x = _dropout(features, self.dropout, train)
    logits = _conv(x, self.num_classes, self.init_scheme, "head",
                   self.conv_grad, kernel=(1, 1))
    return (logits, features) if return_features else logits


# -- registry ------------------------------------------------------------------

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "linear": LinearClassifier,
    "mnist_fc": MnistFC,
    "cnn": SmallCNN,
    "conv2d": ConvNet,
    "segnet": SegmentationNet,
}

# Networks whose first operation is a Dense layer ``hidden_0`` on the
# flattened input, when they have hidden layers (``from_first_layer``).
_FIRST_DENSE = (MLP, MnistFC)

# Module dataclass fields that are not part of a model config: flax's own, and
# the class count, which the data decides.
_NOT_CONFIG = ("parent", "name", "num_classes")
# Fields a model gained after results were recorded: ``normalise`` leaves
# each out while it has its default, so the runs that predate it keep their
# run ids and signatures.
_OMIT_AT_DEFAULT = ("conv_grad",)


def field_defaults(name: str) -> dict[str, Any]:
  """``{field: default}`` of model ``name``'s config (``{}`` for a name not
  in ``MODELS``): what a model config may set."""
  return _defaults(MODELS[name]) if name in MODELS else {}


def _defaults(cls: type[nn.Module]) -> dict[str, Any]:
  return {f.name: f.default for f in dataclasses.fields(cls)
          if f.name not in _NOT_CONFIG}


def _canonical(key: str, value: Any, default: Any) -> Any:
  """``value`` in the JSON form of ``default``'s type (tuples → lists of ints,
  ints → floats where the field is a float), so that one network has one
  spelling; checks the field's range."""
  name = f"model config {key!r}"
  if isinstance(default, bool):
    validation.check_type(value, (bool, np.bool_), name, "a bool")
    return bool(value)
  if isinstance(default, int):
    validation.check_positive_int(value, name)
    return int(value)
  if isinstance(default, float):
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)):
      raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    value = float(value)
    if key == "dropout":
      validation.check_fraction(value, name)
    return value
  if isinstance(default, str):
    validation.check_type(value, str, name, "a str")
    if key == "init_scheme":
      validation.check_choice(value, name, INIT_SCHEMES)
    if key == "conv_grad":
      validation.check_choice(value, name, convolution.CONV_GRADS)
    return value
  if isinstance(default, tuple):  # layer widths
    if isinstance(value, (str, Mapping)) or not isinstance(
        value, (Sequence, np.ndarray)):
      raise TypeError(
          f"{name} must be a list of ints, got {type(value).__name__}.")
    for width in value:
      validation.check_positive_int(width, f"each entry of {name}")
    if key == "channels" and not len(value):
      raise ValueError(f"{name} must not be empty.")
    return [int(width) for width in value]
  raise AssertionError(f"no canonical form for field {key!r}")  # a new type


def normalise(config: Mapping) -> dict:
  """``{"name": ..., **every field}`` with defaults filled, JSON-able.

  Args:
    config: ``{"name": one of MODELS, **some fields}``; a ``ConfigDict`` or
      any mapping. ``num_classes`` is not a field: the data decides it.

  Returns:
    A new dict: ``"name"`` first, then every field of the model in its
    declared order (but a field of ``_OMIT_AT_DEFAULT`` at its default),
    lists for tuples. Idempotent, so configs spelled
    differently (defaults omitted, tuples or lists, ``0`` or ``0.0``) give
    equal dicts and equal hashes.

  Raises:
    ValueError: unknown name or key, ``num_classes`` given, or a value out
      of range. TypeError: a value of the wrong type.
  """
  config = dict(config.items())
  name = config.pop("name", None)
  if name not in MODELS:
    raise ValueError(
        f"model config 'name' must be one of {sorted(MODELS)}, got {name!r}.")
  defaults = _defaults(MODELS[name])
  if "num_classes" in config:
    raise ValueError(
        "model config must not set 'num_classes': the data source decides "
        "it and build(config, num_classes) receives it.")
  unknown = sorted(set(config) - set(defaults))
  if unknown:
    raise ValueError(
        f"unknown model config key(s) {unknown} for {name!r}; valid keys: "
        f"{['name', *defaults]}.")
  fields = {key: _canonical(key, config.get(key, default), default)
            for key, default in defaults.items()}
  return {"name": name, **{
      key: value for key, value in fields.items()
      if not (key in _OMIT_AT_DEFAULT and value == defaults[key])}}


class Net(NamedTuple):
  """A built model: the linen module and the calls the training code makes."""
  module: nn.Module

  def init(self, key: jax.Array, x: jax.Array) -> dict:
    """Variables ``{"params": ...}`` (+ ``"batch_stats"`` with BatchNorm).

    ``x``: one example batch ``f32[1, *input_shape]`` (only shapes matter).
    Equals ``module.init(key, x)`` bit for bit.
    """
    return self.module.init({"params": key}, x, train=False)

  @property
  def has_first_layer(self) -> bool:
    """Whether the network begins with a Dense layer on the flattened input
    (``mlp``, ``mnist_fc`` with hidden layers), so that ``first_layer`` and
    ``apply(from_first_layer=True)`` work."""
    return (isinstance(self.module, _FIRST_DENSE)
            and bool(self.module.hidden))

  def _check_first_layer(self, what: str):
    if not self.has_first_layer:
      raise ValueError(
          f"{what} needs a network that begins with a Dense layer on the "
          "flattened input (mlp or mnist_fc with hidden layers), got "
          f"{type(self.module).__name__}"
          + (" with hidden=()" if isinstance(self.module, _FIRST_DENSE)
             else "") + ".")

  def first_layer(self, variables: dict):
    """``(kernel f32[D, F], bias f32[F] or None)`` of the first Dense layer
    (``hidden_0``; no bias when BatchNorm follows it), D = values of one
    flattened example, F = ``hidden[0]``: ``apply(variables, flatten(x) @
    kernel (+ bias), from_first_layer=True)`` is ``apply(variables, x)`` up
    to float32 rounding. The form ``masks.permutation_importance`` takes.

    Raises:
      ValueError: the network does not begin with one (``has_first_layer``).
    """
    self._check_first_layer("first_layer")
    layer = variables["params"]["hidden_0"]
    return layer["kernel"], layer.get("bias")

  def apply(self, variables: dict, x: jax.Array, *, train: bool,
            key: jax.Array | None = None, from_first_layer: bool = False
            ) -> tuple[jax.Array, jax.Array, dict]:
    """``(logits, features, variables)`` for a batch ``x``.

    train=True: BatchNorm normalises with the batch's statistics and the
    returned variables carry the updated running statistics; dropout is on,
    drawn from ``key`` (required when the model's ``dropout`` > 0).
    train=False: running statistics, no dropout, ``variables`` returned as
    given; ``key`` is ignored. from_first_layer=True (networks with
    ``has_first_layer``): ``x`` is the first Dense layer's output
    ``f32[N, F]`` (see ``first_layer``) and the network runs from there.
    """
    if from_first_layer:
      self._check_first_layer("apply(from_first_layer=True)")
    # Only the networks that have a first layer take the flag.
    kwargs = {"from_first_layer": True} if from_first_layer else {}
    rate = getattr(self.module, "dropout", 0.0)
    rngs = {}
    if train and rate > 0:
      if key is None:
        raise ValueError(
            f"Net.apply(train=True) needs key= to draw the dropout of "
            f"{type(self.module).__name__} (dropout={rate}).")
      rngs["dropout"] = key
    if train and "batch_stats" in variables:
      (logits, features), updates = self.module.apply(
          variables, x, train=True, return_features=True, rngs=rngs,
          mutable=["batch_stats"], **kwargs)
      return logits, features, {**variables, **updates}
    logits, features = self.module.apply(
        variables, x, train=train, return_features=True, rngs=rngs, **kwargs)
    return logits, features, variables

  def head(self, params: dict, features: jax.Array) -> jax.Array:
    """The linear head alone: ``features f32[..., F]`` (as ``apply``
    returns them) → logits ``f32[..., C]``, equal to ``apply``'s logits in
    evaluation mode. ``params`` is ``variables["params"]``; only its
    ``"head"`` is read, so a head can be applied to another network's
    features of the same width (UCMKD's κ reads the teacher's head on the
    student's features)."""
    layer = params["head"]
    kernel = layer["kernel"]  # [F, C], or [1, 1, F, C] for segnet's 1×1
    logits = features @ kernel.reshape(-1, kernel.shape[-1])
    if "bias" in layer:
      logits = logits + layer["bias"]
    if getattr(self.module, "leaky_logits", False):
      logits = nn.leaky_relu(logits, self.module.negative_slope)
    return logits

  def feature_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of one example's features for one example's ``input_shape``
    (traced with ``jax.eval_shape``: nothing is computed)."""

    def features(x):
      variables = self.init(jax.random.key(0), x)
      return self.apply(variables, x, train=False)[1]

    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return tuple(jax.eval_shape(features, x).shape[1:])


def build(config: Mapping, num_classes: int) -> Net:
  """The ``Net`` of a model config (normalised first) with ``num_classes``
  outputs per example (per pixel for ``segnet``)."""
  validation.check_positive_int(num_classes, "num_classes")
  config = normalise(config)
  cls = MODELS[config.pop("name")]
  fields = {key: tuple(value) if isinstance(value, list) else value
            for key, value in config.items()}
  return Net(cls(num_classes=int(num_classes), **fields))
