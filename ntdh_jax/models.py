"""Flax (linen) classifiers of the reproduced experiments.

* ``MLP`` — the NTDH synthetic network; ``reference_mlp()`` is the reference's
  ``TwoLayerNN`` (elonchern/Non-target-Divergence-Hypothesis,
  ``sklearn/network/two_layer.py``): 50 → 16 → 16 → 4 with ReLU. Its
  ``fc2_1`` layer is never called in ``forward``, so it is left out, and its
  dropout rate is 0 in every reference experiment, so there is no dropout.
* ``LinearClassifier`` — the MFH Gaussian experiment's single linear layer
  (Xue et al., ICLR'23; zihuixue/MFH ``gauss/main.py``).
* ``SmallCNN`` — a small image classifier for digits / MNIST-style data.

``init_scheme`` (the field cannot be called ``init``: that would shadow
``Module.init``):

* ``"torch"`` (default) — PyTorch's default ``nn.Linear`` / ``nn.Conv2d``
  initialisation, which the reference networks use: kaiming-uniform with
  a = √5 for weights and U(±1/√fan_in) for biases, i.e. both
  U(−1/√fan_in, 1/√fan_in), fan_in = inputs of one output unit (in_features,
  or in_channels·kh·kw). Same distribution, not torch's random numbers.
* ``"lecun"`` — flax's defaults (LeCun-normal kernels, zero biases).

Every module maps inputs to logits ``f32[N, C]``; ``return_features=True``
also returns the representation that feature-based KD losses (FitNet, RKD,
PKT, SP, CRD) read. Initialisation is deterministic given the key, and
``apply`` is pure, so parameters stacked on a leading axis run under
``jax.vmap(model.apply, in_axes=(0, None))``.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INIT_SCHEMES = ("torch", "lecun")


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


def _dense(x, features: int, init_scheme: str, name: str):
  layer = nn.Dense(features, name=name,
                   **_initializers(init_scheme, x.shape[-1]))
  return layer(x)


class MLP(nn.Module):
  """ReLU multilayer perceptron.

  Attributes:
    hidden: widths of the hidden layers (empty: a linear model).
    num_classes: C, the logit width.
    init_scheme: ``"torch"`` or ``"lecun"`` (see the module docstring).
  """
  hidden: Sequence[int] = (16, 16)
  num_classes: int = 4
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x, *, return_features: bool = False):
    """``x: f[N, D]`` → logits ``f32[N, C]``.

    With ``return_features``, also the last hidden activation
    ``f32[N, hidden[-1]]`` (the input itself when ``hidden`` is empty).
    """
    for i, width in enumerate(self.hidden):
      x = nn.relu(_dense(x, width, self.init_scheme, f"hidden_{i}"))
    logits = _dense(x, self.num_classes, self.init_scheme, "head")
    return (logits, x) if return_features else logits


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
  def __call__(self, x, *, return_features: bool = False):
    """``x: f[N, D]`` → logits ``f32[N, C]``; the features are ``x`` itself."""
    logits = _dense(x, self.num_classes, self.init_scheme, "head")
    return (logits, x) if return_features else logits


class SmallCNN(nn.Module):
  """(3×3 conv → ReLU → 2×2 max-pool) per entry of ``channels``, then a ReLU
  dense layer and a linear head.

  Attributes:
    num_classes: C.
    channels: output channels of each conv block.
    dense: width of the dense layer, whose activation is the feature vector.
    init_scheme: ``"torch"`` or ``"lecun"``.
  """
  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  dense: int = 128
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x, *, return_features: bool = False):
    """``x: f[N, H, W, C_in]`` (NHWC) → logits ``f32[N, C]``.

    With ``return_features``, also the dense activation ``f32[N, dense]``.
    Each pool halves H and W (rounding down), so H, W >= 2**len(channels).
    """
    if x.ndim != 4:
      raise ValueError(
          f"SmallCNN expects NHWC images of rank 4, got shape {x.shape}.")
    for i, width in enumerate(self.channels):
      fan_in = x.shape[-1] * 3 * 3
      x = nn.Conv(width, (3, 3), padding="SAME", name=f"conv_{i}",
                  **_initializers(self.init_scheme, fan_in))(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(_dense(x, self.dense, self.init_scheme, "dense"))
    logits = _dense(features, self.num_classes, self.init_scheme, "head")
    return (logits, features) if return_features else logits
