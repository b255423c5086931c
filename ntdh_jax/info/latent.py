"""Latent mutual information (LMI): KSG between learned low-dimensional
latents of two modalities.

The estimator the CCH paper uses for high-dimensional representations
(Gowri et al., *Approximating mutual information of high-dimensional
variables using learned representations*, arXiv 2409.02732; their package
``latentmi`` 0.1.3, the model ``AECross``): compress each modality with its
own autoencoder to an 8-d latent, trained so that each latent also
reconstructs the *other* modality (cross-reconstruction), then estimate
I(Z_a; Z_b) with KSG (k = 3) on the rows the autoencoders did not train on.

Procedure (``latentmi`` 0.1.3 unless marked *ours*):

1. z-score every column over all rows (ddof 0) and clip to [−10, 10]. A
   constant column is refused (*ours*, as ``ksg`` and ``neural`` refuse it).
2. Split the rows at random: ``int(N · (1 − holdout))`` train, the rest
   held out; ``holdout = 0.5``.
3. Encoders E_a, E_b: Dense layers d → L → L/2 → L/4 → 8, LeakyReLU(0.2)
   after every layer including the last; L = 1024, or 2^⌊log₂ d⌋ when
   d > 2048 (per modality). Self-decoders D_aa, D_bb mirror the encoder
   (8 → L/4 → L/2 → L → d, LeakyReLU(0.2) between, linear output);
   cross-decoders D_ab (Z_a → x_b) and D_ba (Z_b → x_a) likewise, with
   dropout 0.5 before every Dense layer. Weights Xavier-uniform, biases 0.
4. Loss α[MSE(D_aa(Z_a), x_a) + MSE(D_bb(Z_b), x_b)] + λ[MSE(D_ba(Z_b), x_a)
   + MSE(D_ab(Z_a), x_b)], α = λ = 1; Adam (lr 1e-4, eps 1e-7), batches of
   512 (a fresh shuffle each epoch, the last batch partial), at most 300
   epochs, early stopping when the held-out loss has not improved for 30
   epochs, keeping the weights of the best held-out loss.
5. KSG with k = 3 between the latents of the held-out rows only (the same
   rows early stopping watched), in nats (``latentmi`` reports bits).

Reconstructions and deliberate differences (*ours*):

* The held-out loss for early stopping is computed without dropout, over
  all held-out rows at once; ``latentmi`` evaluates it in shuffled batches
  with the model still in training mode (dropout on), a noisier signal.
* The best weights are really restored: ``latentmi``'s early stopper keeps
  ``state_dict()`` references, which the optimiser then updates in place,
  so in effect it ends with the weights of its last epoch.
* ``hidden`` overrides L (small inputs and tests); ``lr``, ``alpha`` and
  ``lam`` are traced hyperparameters so estimates vmap over them.
* Training is a ``lax.while_loop`` over epochs that ends when early
  stopping fires; under ``vmap`` it runs until every estimate has stopped,
  the stopped ones unchanged.

LMI usually *under*-estimates; Gowri et al. suggest trying several latent
sizes and keeping the largest estimate, and warn that KSG degrades above
about 20 dimensions per latent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from ntdh_jax import validation
from ntdh_jax.info import neural
from ntdh_jax.info import units
from ntdh_jax.info.ksg import ksg

# fold_in tags of a run's key (0 is the split's, in neural.split_rows).
_INIT_KEY, _LOOP_KEY, _KSG_KEY = 1, 2, 3
_CLIP = 10.0  # latentmi clips z-scores to [-10, 10]
_ADAM_EPS = 1e-7  # latentmi's Adam eps (torch's default is 1e-8)


@dataclasses.dataclass(frozen=True)
class LatentConfig:
  """Static options of an LMI run (what is compiled); defaults latentmi's.

  Attributes:
    latent_dim: width of each latent (``N_dims``), 8.
    hidden: the encoders' first width L; ``None``: 1024, or 2^⌊log₂ d⌋ for
      d > 2048, per modality. Must be divisible by 4.
    batch_size: rows per Adam step, 512.
    epochs: most epochs, 300.
    patience: epochs without a better held-out loss before stopping, 30.
    holdout: fraction of rows held out (early stopping and KSG), 0.5.
    dropout: rate before every Dense layer of the cross-decoders, 0.5.
    k: KSG's neighbour count, 3.
  """
  latent_dim: int = 8
  hidden: Optional[int] = None
  batch_size: int = 512
  epochs: int = 300
  patience: int = 30
  holdout: float = 0.5
  dropout: float = 0.5
  k: int = 3


def default_hparams() -> dict[str, jax.Array]:
  """The traced hyperparameters at latentmi's defaults (``f32[]``): Adam's
  ``lr`` 1e-4, self-reconstruction weight ``alpha`` 1, cross-reconstruction
  weight ``lam`` 1."""
  return {"lr": jnp.float32(1e-4), "alpha": jnp.float32(1.0),
          "lam": jnp.float32(1.0)}


def first_width(d: int, hidden: Optional[int]) -> int:
  """L for a modality of ``d`` features (latentmi's rule unless given)."""
  if hidden is not None:
    return hidden
  return 2 ** int(math.floor(math.log2(d))) if d > 2048 else 1024


def _check_config(c: LatentConfig) -> None:
  validation.check_type(c, LatentConfig, "config", "a LatentConfig")
  for name in ("latent_dim", "batch_size", "epochs", "patience", "k"):
    validation.check_positive_int(getattr(c, name), name)
  if c.hidden is not None:
    validation.check_positive_int(c.hidden, "hidden")
    if c.hidden % 4:
      raise ValueError(f"hidden must be divisible by 4 (the widths are L, "
                       f"L/2, L/4), got {c.hidden}.")
  validation.check_scalar(c.holdout, "holdout")
  if not 0 < c.holdout < 1:
    raise ValueError(f"holdout must lie in (0, 1), got {c.holdout}.")
  validation.check_fraction(c.dropout, "dropout")


def min_rows(c: LatentConfig) -> int:
  """The fewest rows accepted: each split needs k + 1 rows (KSG's k
  neighbours on the held-out rows, at least one training row as well)."""
  n = 2
  while min(neural.split_sizes(n, c.holdout)) < c.k + 1:
    n += 1
  return n


# -- the paired autoencoders --------------------------------------------------


def _dense(width: int) -> nn.Dense:
  return nn.Dense(width, kernel_init=nn.initializers.xavier_uniform(),
                  bias_init=nn.initializers.zeros)


class _Stack(nn.Module):
  """Dense layers of ``widths``, LeakyReLU(0.2) after each but (unless
  ``last_activation``) the last, and dropout before each when ``dropout``."""
  widths: Sequence[int]
  last_activation: bool
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    for i, width in enumerate(self.widths):
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = _dense(width)(x)
      if self.last_activation or i < len(self.widths) - 1:
        x = nn.leaky_relu(x, 0.2)
    return x


class PairedAutoencoders(nn.Module):
  """latentmi's ``AECross`` for inputs ``f32[N, d_a]`` and ``f32[N, d_b]``.

  Attributes:
    d_a, d_b: input widths.
    l_a, l_b: first widths L of each modality's encoder.
    latent_dim: latent width.
    dropout: the cross-decoders' dropout rate.
  """
  d_a: int
  d_b: int
  l_a: int
  l_b: int
  latent_dim: int
  dropout: float

  def setup(self):
    def down(l):
      return (l, l // 2, l // 4, self.latent_dim)

    def up(l, d):
      return (l // 4, l // 2, l, d)

    self.enc_a = _Stack(down(self.l_a), last_activation=True)
    self.enc_b = _Stack(down(self.l_b), last_activation=True)
    self.dec_aa = _Stack(up(self.l_a, self.d_a), last_activation=False)
    self.dec_bb = _Stack(up(self.l_b, self.d_b), last_activation=False)
    self.dec_ba = _Stack(up(self.l_a, self.d_a), last_activation=False,
                         dropout=self.dropout)
    self.dec_ab = _Stack(up(self.l_b, self.d_b), last_activation=False,
                         dropout=self.dropout)

  def encode(self, x_a, x_b):
    """Latents ``(f32[N, latent_dim], f32[N, latent_dim])``."""
    return self.enc_a(x_a, False), self.enc_b(x_b, False)

  def __call__(self, x_a, x_b, train: bool = False):
    """Per-row squared errors ``(self f32[N], cross f32[N])``: each the sum
    over both modalities of the row's mean squared reconstruction error."""
    z_a, z_b = self.encode(x_a, x_b)

    def mse(x_hat, x):
      return jnp.mean((x_hat - x) ** 2, axis=-1)

    own = mse(self.dec_aa(z_a, train), x_a) + mse(self.dec_bb(z_b, train),
                                                  x_b)
    cross = (mse(self.dec_ba(z_b, train), x_a)
             + mse(self.dec_ab(z_a, train), x_b))
    return own, cross


def _prepare(x):
  """Step 1: z-score (``neural.zscore``) and clip to [−10, 10]."""
  return jnp.clip(neural.zscore(x), -_CLIP, _CLIP)


class Latents(NamedTuple):
  """The trained latents (leading axes added by ``vmap``).

  Attributes:
    z_a, z_b: ``f32[N, latent_dim]``, latents of every row (best weights).
    held_out: ``int32[N_h]``, the held-out rows (KSG's sample).
    val_loss: ``f32[]``, the best held-out loss.
    epochs: ``int32[]``, epochs trained before early stopping.
  """
  z_a: jax.Array
  z_b: jax.Array
  held_out: jax.Array
  val_loss: jax.Array
  epochs: jax.Array


def make_trainer(config: LatentConfig):
  """``train(hparams, key, x_a, x_b) -> Latents``: steps 1–4, pure.

  ``hparams`` holds the traced scalars of ``default_hparams()``;
  ``x_a: f[N, d_a]``, ``x_b: f[N, d_b]`` (or ``f[N]``). jit and vmap it
  freely.
  """
  _check_config(config)
  c = config

  def train(hparams, key, x_a, x_b) -> Latents:
    x_a, x_b = neural.check_pair(x_a, x_b, ("x_a", "x_b"), min_rows(c))
    x_a, x_b = _prepare(x_a), _prepare(x_b)
    n, d_a = x_a.shape
    d_b = x_b.shape[1]
    net = PairedAutoencoders(d_a, d_b, first_width(d_a, c.hidden),
                             first_width(d_b, c.hidden), c.latent_dim,
                             c.dropout)
    train_rows, held = neural.split_rows(key, n, c.holdout)
    n_train = len(train_rows)
    batch = min(c.batch_size, n_train)
    steps = -(-n_train // batch)  # the last batch of an epoch is partial
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=hparams["lr"],
                                              eps=_ADAM_EPS)
    # The parameters live as one flat vector (unravelled inside the loss):
    # Adam's update and keeping the best weights are then a few ops on one
    # array instead of on each of the 48 kernels and biases, which about
    # halves the compile time; the arithmetic is elementwise, so unchanged.
    flat, unravel = jax.flatten_util.ravel_pytree(
        net.init(jax.random.fold_in(key, _INIT_KEY), x_a[:1], x_b[:1]))

    def loss(params, rows, weight, k):
      own, cross = net.apply(unravel(params), x_a[rows], x_b[rows], train=True,
                             rngs={"dropout": k})
      per_row = hparams["alpha"] * own + hparams["lam"] * cross
      return jnp.sum(weight * per_row) / jnp.sum(weight)

    def val_loss(params):
      own, cross = net.apply(unravel(params), x_a[held], x_b[held])
      return jnp.mean(hparams["alpha"] * own + hparams["lam"] * cross)

    def epoch(s):
      k_order, k_dropout = jax.random.split(jax.random.fold_in(
          jax.random.fold_in(key, _LOOP_KEY), s["epoch"]))
      order = train_rows[jax.random.permutation(k_order, n_train)]
      pad = steps * batch - n_train
      order = jnp.concatenate([order, jnp.zeros(pad, order.dtype)])
      weight = (jnp.arange(steps * batch) < n_train).astype(jnp.float32)

      def step(carry, i):
        params, opt_state = carry
        grads = jax.grad(loss)(params, order.reshape(steps, batch)[i],
                               weight.reshape(steps, batch)[i],
                               jax.random.fold_in(k_dropout, i))
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

      (params, opt_state), _ = jax.lax.scan(
          step, (s["params"], s["opt_state"]), jnp.arange(steps))
      val = val_loss(params)
      better = val < s["best_loss"]
      bad = jnp.where(better, 0, s["bad"] + 1)
      return {"params": params, "opt_state": opt_state,
              "best": jnp.where(better, params, s["best"]),
              "best_loss": jnp.where(better, val, s["best_loss"]),
              "bad": bad, "epoch": s["epoch"] + 1,
              "done": (bad >= c.patience) | (s["epoch"] + 1 >= c.epochs)}

    state = jax.lax.while_loop(
        lambda s: ~s["done"], epoch,
        {"params": flat, "opt_state": tx.init(flat), "best": flat,
         "best_loss": jnp.float32(jnp.inf), "bad": jnp.int32(0),
         "epoch": jnp.int32(0), "done": jnp.bool_(False)})
    z_a, z_b = net.apply(unravel(state["best"]), x_a, x_b, method=net.encode)
    return Latents(z_a, z_b, held, state["best_loss"], state["epoch"])

  return train


class LatentEstimate(NamedTuple):
  """An LMI estimate.

  Attributes:
    mi: ``f32[]``, KSG's I(Z_a; Z_b) on the held-out rows, nats.
    latents: the ``Latents`` it was computed from.
  """
  mi: jax.Array
  latents: Latents


def make_estimator(config: LatentConfig):
  """``estimate(hparams, key, x_a, x_b) -> LatentEstimate``: the trainer,
  then KSG (``ntdh_jax.info.ksg``) on the held-out latents, in nats; pure,
  so jit and vmap it."""
  train = make_trainer(config)

  def estimate(hparams, key, x_a, x_b) -> LatentEstimate:
    latents = train(hparams, key, x_a, x_b)
    held = latents.held_out
    # KSG's tie-breaking jitter from the run's key, so runs differ in it too.
    mi = ksg(latents.z_a[held], latents.z_b[held], k=config.k,
             key=jax.random.fold_in(key, _KSG_KEY)).mean
    return LatentEstimate(mi, latents)

  return estimate


@functools.lru_cache(maxsize=None)
def _compiled(config: LatentConfig):
  return jax.jit(make_estimator(config))


def latent_mi(x_a, x_b, key: jax.Array, *, lr: float = 1e-4,
              alpha: float = 1.0, lam: float = 1.0, latent_dim: int = 8,
              hidden: Optional[int] = None, batch_size: int = 512,
              epochs: int = 300, patience: int = 30, holdout: float = 0.5,
              dropout: float = 0.5, k: int = 3,
              base: Optional[float] = None) -> LatentEstimate:
  """Latent MI of two paired modalities (Gowri et al. 2024; CCH's LMI), nats.

  Defaults are latentmi 0.1.3's (see the module docstring for the
  procedure, and which parts are ours).

  Args:
    x_a: ``f[N, d_a]`` (or ``f[N]``), modality a (e.g. teacher features).
    x_b: ``f[N, d_b]`` (or ``f[N]``), the paired rows of modality b.
    key: a PRNG key (split, initialisation, shuffles, dropout).
    lr, alpha, lam: Adam's learning rate and the self- and
      cross-reconstruction weights.
    latent_dim, hidden, batch_size, epochs, patience, holdout, dropout, k:
      ``LatentConfig``'s fields.
    base: ``None`` for nats, 2 for bits (latentmi's unit).

  Returns:
    ``LatentEstimate``; ``.mi`` the estimate in ``base``, ``.latents`` the
    latents and the held-out rows.

  Raises:
    ValueError: naming ``x_a`` or ``x_b``: different N, too few rows, a
      non-finite entry, a constant column; or a bad option.
  """
  config = LatentConfig(latent_dim, hidden, batch_size, epochs, patience,
                        holdout, dropout, k)
  _check_config(config)
  validation.check_array(key, "key")
  validation.check_positive(lr, "lr")
  validation.check_nonnegative(alpha, "alpha")
  validation.check_nonnegative(lam, "lam")
  units.check_base(base)
  neural.check_pair(x_a, x_b, ("x_a", "x_b"), min_rows(config))
  out = _compiled(config)(
      {"lr": jnp.float32(lr), "alpha": jnp.float32(alpha),
       "lam": jnp.float32(lam)}, key, x_a, x_b)
  return out._replace(mi=units.in_base(out.mi, base))
