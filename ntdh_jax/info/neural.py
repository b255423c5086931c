"""Neural lower bounds on mutual information: MINE and InfoNCE.

Both train a small Flax critic with optax on one split of the rows and
report the bound on the other split (the held-out rows), in nats.

* **MINE** (Belghazi et al., *Mutual Information Neural Estimation*, ICML
  2018): the Donsker–Varadhan bound

    I(X; Y) ≥ E_P[T(x, y)] − log E_{P_X ⊗ P_Y}[e^{T(x, y)}]

  with T an MLP on the concatenation [x, y]. Samples of P_X ⊗ P_Y come
  from shuffling y within the batch: each x is paired with the y of the
  next row (the rows are drawn at random, so this is a random pairing; an
  x meets its own y only when one row is drawn twice in a row, probability
  1 / N_train). The plain gradient of the log term, E_Q[∇T e^T] / E_Q[e^T],
  is biased when both expectations are batch means; MINE divides by an
  exponential moving average of E_Q[e^T] over batches instead (the paper's
  bias-corrected gradient), ``ema ← (1 − ema_rate)·ema +
  ema_rate·mean_batch(e^T)``, updated with the current batch first and set
  to the first batch's mean at step 0; ``mine_loss`` is the surrogate whose
  gradient is exactly that.
* **InfoNCE** (van den Oord et al., *Representation Learning with
  Contrastive Predictive Coding*, 2018): for a batch of K pairs and the score
  matrix S_ij = f(x_i)·g(y_j),

    I(X; Y) ≥ log K + (1/K) Σ_i [S_ii − log Σ_j exp S_ij],

  which can never exceed **log K** (each summand is ≤ 0): with K = 256 no
  estimate passes log 256 ≈ 5.55 nats, whatever the true MI. The critic is
  *separable* (one MLP per variable, dot product of their embeddings): a
  K × K score matrix then costs 2K network evaluations instead of the K²
  of a critic on concatenated pairs, and separable critics are the usual
  choice for this bound (CPC's bilinear scores are one).

Inputs are z-scored per column over all rows before training (an invertible
affine map per column, which leaves MI unchanged and conditions the
critic). A constant column carries no information and is refused, as KSG
refuses it (``check_pair``).

**Splits.** A run draws a random permutation of the N rows from its key;
the first ``int(N · (1 − holdout))`` rows train the critic, the rest (the
held-out split, ``holdout = 0.5`` by default, latentmi's convention) are
where the reported bound is evaluated: MINE's joint term on all held-out
pairs and its product term on the held-out pairs (x_i, y_{i+s mod N_h}) for
s = 1..``heldout_shifts`` (the held-out rows are in random order, so each
shift is a random pairing without self-pairs); InfoNCE's bound on
consecutive chunks of K held-out rows, averaged. The bound is evaluated
after each of ``num_segments`` segments and the estimate is the largest
(early stopping on the held-out split, as latentmi stops its autoencoders on
the rows it then estimates on): a critic trained on a fixed sample
overfits, and its held-out bound then *falls* (a (128, 128) critic trained
for 2000 steps on 2000 rows of d = 4, ρ = 0.5 ended with an InfoNCE bound
of −0.04 nats after a peak of 0.47; the truth is 0.58). The maximum over
``num_segments`` evaluations of one held-out sample is slightly optimistic
(they are strongly correlated, so the excess is small against the bounds'
own downward bias); ``heldout_bound`` keeps the whole curve.

**Training as a Program.** A run is a ``Program`` (``ntdh_jax.train``):
``init``, ``segment`` (``steps / num_segments`` Adam steps, then the
held-out bound), ``finish``. The data ``{"x": f32[N, Dx], "y": f32[N, Dy]}``
is an argument, so many estimates on one pair of feature sets hold it once;
the learning rate (and MINE's ``ema_rate``) are traced hyperparameters, so
``jax.vmap`` over them, or over keys, trains all the estimates as one
compiled program::

  estimate = make_estimator(MineConfig(steps=1000))
  hp = default_hparams(MineConfig()) | {"lr": jnp.array([1e-4, 1e-3])}
  out = jax.jit(jax.vmap(estimate, in_axes=({"lr": 0, "ema_rate": None},
                                            None, None, None)))(hp, key, x, y)

``mine`` and ``infonce`` are the one-call forms (checked inputs, one
compiled program per static config, ``base=2`` for bits through
``ntdh_jax.info.units``); the pure pieces compute in nats.

Defaults (critic widths, steps, batch, Adam's learning rate, ``ema_rate``)
are ours: the CCH paper does not say how it configured MINE, MINE's paper
fixes no single network, and neither our notes nor, as far as we found,
the paper give the moving average's rate; 0.01 is a common choice.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ntdh_jax import validation
from ntdh_jax.info import units
from ntdh_jax.info.ksg import check_values
from ntdh_jax.train.program import Program

# fold_in tags: one independent stream per use of a run's key.
_SPLIT_KEY, _INIT_KEY, _LOOP_KEY = 0, 1, 2


# -- bounds on critic values --------------------------------------------------


def _log_mean_exp(t: jax.Array) -> jax.Array:
  return jax.nn.logsumexp(t) - jnp.log(t.size)


def dv_bound(t_joint: jax.Array, t_product: jax.Array) -> jax.Array:
  """Donsker–Varadhan bound E_P[T] − log E_Q[e^T] from critic values.

  Args:
    t_joint: ``f32[B]``, T on pairs drawn from the joint P.
    t_product: ``f32[M]``, T on pairs drawn from the product of marginals Q.

  Returns:
    ``f32[]`` in nats; the log-mean-exp is taken in log space, so large T
    stays finite.
  """
  return jnp.mean(t_joint) - _log_mean_exp(t_product)


def mine_loss(t_joint: jax.Array, t_product: jax.Array, log_ema: jax.Array,
              ema_rate) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """MINE's training loss with the moving-average gradient correction.

  With m = mean(e^{t_product}) of this batch and the moving average updated
  first, ``ema' = (1 − ema_rate)·ema + ema_rate·m``, the loss is
  ``−(mean(t_joint) − m / stop_gradient(ema'))``: its value is not the
  bound, its gradient is Belghazi et al.'s bias-corrected one,
  ``−(E_P[∇T] − E_Q[e^T ∇T] / ema')``. Everything is kept in log space
  (``log_ema``), so e^T never overflows.

  Args:
    t_joint: ``f32[B]``, critic values on joint pairs.
    t_product: ``f32[M]``, critic values on product pairs.
    log_ema: ``f32[]``, log of the moving average before this batch.
    ema_rate: weight of this batch in the average, in (0, 1]; 1 (the first
      batch) sets the average to this batch's mean.

  Returns:
    ``(loss, (bound, new_log_ema))``: the surrogate loss, this batch's DV
    bound (nats) and the updated ``log_ema`` (no gradient flows through it).
  """
  lme = _log_mean_exp(t_product)
  new_log_ema = jax.lax.stop_gradient(jnp.logaddexp(
      jnp.log1p(-ema_rate) + log_ema, jnp.log(ema_rate) + lme))
  loss = -(jnp.mean(t_joint) - jnp.exp(lme - new_log_ema))
  return loss, (jnp.mean(t_joint) - lme, new_log_ema)


def infonce_bound(scores: jax.Array) -> jax.Array:
  """InfoNCE bound log K + mean_i [S_ii − logsumexp_j S_ij] (nats).

  Args:
    scores: ``f32[K, K]``, ``scores[i, j]`` the critic's score of x_i with
      y_j; row i's positive is its diagonal entry.

  Returns:
    ``f32[]``, never above log K.
  """
  k = scores.shape[-1]
  return math.log(k) + jnp.mean(
      jnp.diagonal(scores) - jax.nn.logsumexp(scores, axis=-1))


# -- critics ------------------------------------------------------------------


class MLP(nn.Module):
  """``f[N, D] → f32[N, out]``: Dense + ELU per hidden width, linear head.

  ELU rather than ReLU: a smooth critic makes the log-density-ratio it
  approximates smooth too, and no unit dies during short trainings.
  """
  hidden: Sequence[int]
  out: int

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.elu(nn.Dense(width)(x))
    return nn.Dense(self.out)(x)


class ConcatCritic(nn.Module):
  """MINE's critic T(x, y) = MLP([x, y]): ``f[N, Dx], f[N, Dy] → f32[N]``."""
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, x, y):
    return MLP(self.hidden, 1)(jnp.concatenate([x, y], axis=-1))[..., 0]


class SeparableCritic(nn.Module):
  """InfoNCE's critic: embeddings ``f32[N, embed]`` of x and of y, one MLP
  each; the score of (x_i, y_j) is their dot product."""
  hidden: Sequence[int]
  embed: int

  @nn.compact
  def __call__(self, x, y):
    return MLP(self.hidden, self.embed)(x), MLP(self.hidden, self.embed)(y)


# -- static configs -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MineConfig:
  """Static options of a MINE run (what is compiled).

  Attributes:
    hidden: the critic's hidden widths.
    steps: Adam steps in all.
    batch_size: B, training rows per step (and B product pairs).
    holdout: fraction of rows held out for the reported bound.
    num_segments: evaluation intervals; ``steps`` must be a multiple.
    heldout_shifts: product pairings of the held-out rows in the bound's
      second term (more lowers its variance).
  """
  hidden: tuple[int, ...] = (64, 64)
  steps: int = 1000
  batch_size: int = 256
  holdout: float = 0.5
  num_segments: int = 20
  heldout_shifts: int = 8


@dataclasses.dataclass(frozen=True)
class InfoNCEConfig:
  """Static options of an InfoNCE run (what is compiled).

  Attributes:
    hidden: each embedding MLP's hidden widths.
    embed: the embedding width (the score is a dot product of two).
    steps: Adam steps in all.
    batch_size: K, rows per step and per held-out chunk; the bound is at
      most log K.
    holdout: fraction of rows held out for the reported bound.
    num_segments: evaluation intervals; ``steps`` must be a multiple.
  """
  hidden: tuple[int, ...] = (64, 64)
  embed: int = 32
  steps: int = 1000
  batch_size: int = 256
  holdout: float = 0.5
  num_segments: int = 20


Config = MineConfig | InfoNCEConfig


def default_hparams(config: Config) -> dict[str, jax.Array]:
  """The traced hyperparameters a run reads, at their defaults (``f32[]``):
  ``lr`` (Adam, 1e-3) and, for MINE, ``ema_rate`` (0.01)."""
  hp = {"lr": jnp.float32(1e-3)}
  if isinstance(config, MineConfig):
    hp["ema_rate"] = jnp.float32(0.01)
  return hp


def _check_config(config) -> None:
  validation.check_type(config, (MineConfig, InfoNCEConfig), "config",
                        "a MineConfig or an InfoNCEConfig")
  if not isinstance(config.hidden, tuple) or not config.hidden:
    raise ValueError(f"hidden must be a non-empty tuple of widths, got "
                     f"{config.hidden!r}.")
  for width in config.hidden:
    validation.check_positive_int(width, "hidden")
  for name in ("steps", "batch_size", "num_segments"):
    validation.check_positive_int(getattr(config, name), name)
  if isinstance(config, MineConfig):
    validation.check_positive_int(config.heldout_shifts, "heldout_shifts")
  else:
    validation.check_positive_int(config.embed, "embed")
  if config.steps % config.num_segments:
    raise ValueError(
        f"steps must be a multiple of num_segments = {config.num_segments}, "
        f"got {config.steps}.")
  validation.check_scalar(config.holdout, "holdout")
  if not 0 < config.holdout < 1:
    raise ValueError(f"holdout must lie in (0, 1), got {config.holdout}.")


# -- inputs -------------------------------------------------------------------


def split_sizes(n: int, holdout: float) -> tuple[int, int]:
  """(training rows, held-out rows) of N rows: ``int(N · (1 − holdout))``
  train, as latentmi's split."""
  n_train = int(n * (1 - holdout))
  return n_train, n - n_train


def min_rows(config: Config) -> int:
  """The fewest rows a run accepts: the training split must fill a batch,
  and the held-out split must hold one InfoNCE chunk of K rows (MINE:
  ``heldout_shifts + 1`` rows, so no shift pairs a row with its own y)."""
  need_held = (config.heldout_shifts + 1 if isinstance(config, MineConfig)
               else config.batch_size)
  n = 2
  while True:
    n_train, n_held = split_sizes(n, config.holdout)
    if n_train >= config.batch_size and n_held >= need_held:
      return n
    n += 1


def check_pair(x, y, names: tuple[str, str], min_n: int):
  """Checks two floating ``[N]`` or ``[N, D]`` sample arrays of one N.

  Shape and dtype errors raise at once (``TypeError`` for a dtype,
  ``ValueError`` otherwise, naming the argument); the value checks are
  KSG's (``ntdh_jax.info.ksg.check_values``: finite in float32, no constant
  column), raised when the values are concrete and ``checkify`` checks
  under a trace (see ``ntdh_jax.validation``).

  Returns:
    ``x, y`` as ``[N, D]`` arrays (a ``[N]`` array becomes ``[N, 1]``).
  """
  out = []
  for name, a in zip(names, (x, y)):
    validation.check_rank(a, name, (1, 2), "[N] or [N, D]")
    validation.check_floating(a, name)
    if a.ndim == 1:
      a = a[:, None]
    if a.shape[1] == 0:
      raise ValueError(f"{name} must have at least one column, got shape "
                       f"{a.shape}.")
    out.append(a)
  (n_x, _), (n_y, _) = out[0].shape, out[1].shape
  if n_x != n_y:
    raise ValueError(f"{names[0]} and {names[1]} must have the same number of "
                     f"rows N, got {n_x} and {n_y}.")
  if n_x < min_n:
    raise ValueError(f"{names[0]} has N = {n_x} rows; this estimator needs "
                     f"N >= {min_n} with these options.")
  for name, a in zip(names, out):
    check_values(a, name)
  return out[0], out[1]


def zscore(x: jax.Array) -> jax.Array:
  """``f[N, D] → f32[N, D]``: each column minus its mean over its standard
  deviation (over the N rows, ddof 0). ``check_pair`` refuses a constant
  column, but under ``jit`` without ``ntdh_jax.checked`` one still gets
  here: it becomes 0 rather than NaN (tested as max == min, since a rounded
  std of equal values need not be 0)."""
  x = x.astype(jnp.float32)
  varies = x.max(axis=0) > x.min(axis=0)
  std = jnp.where(varies, x.std(axis=0), 1.0)
  return jnp.where(varies, (x - x.mean(axis=0)) / std, 0.0)


def split_rows(key, n: int, holdout: float):
  """Row indices ``(int32[n_train], int32[n_held])`` of a run's split: a
  random permutation of ``n`` rows from ``key``, cut at ``split_sizes``."""
  n_train, _ = split_sizes(n, holdout)
  rows = jax.random.permutation(jax.random.fold_in(key, _SPLIT_KEY), n)
  return rows[:n_train], rows[n_train:]


# -- estimator pieces ---------------------------------------------------------


class _Objective(NamedTuple):
  net: nn.Module
  aux: dict  # per-run state of the loss besides the critic (MINE's EMA)
  loss: callable  # (params, aux, x, y, hparams, step) -> loss, (bound, aux)
  heldout: callable  # (params, x_held, y_held) -> bound


def _mine_objective(c: MineConfig) -> _Objective:
  net = ConcatCritic(c.hidden)

  def loss(params, aux, x, y, hparams, step):
    # The batch rows are drawn at random, so shifting y by one row pairs
    # each x with a random other row's y: a shuffle of y within the batch
    # that leaves no x with its own y (but for a row drawn twice in a row,
    # probability 1 / n_train).
    t = net.apply(params, jnp.concatenate([x, x]),
                  jnp.concatenate([y, jnp.roll(y, 1, axis=0)]))
    rate = jnp.where(step == 0, 1.0, hparams["ema_rate"])
    value, (bound, log_ema) = mine_loss(t[:len(x)], t[len(x):],
                                        aux["log_ema"], rate)
    return value, (bound, {"log_ema": log_ema})

  def heldout(params, x, y):
    # min_rows keeps heldout_shifts < N_h, so no shift returns a row to
    # its own y.
    shifts = range(1, c.heldout_shifts + 1)
    y_product = jnp.concatenate([jnp.roll(y, s, axis=0) for s in shifts])
    return dv_bound(net.apply(params, x, y),
                    net.apply(params, jnp.tile(x, (len(shifts), 1)),
                              y_product))

  return _Objective(net, {"log_ema": jnp.float32(0.0)}, loss, heldout)


def _infonce_objective(c: InfoNCEConfig) -> _Objective:
  net = SeparableCritic(c.hidden, c.embed)

  def loss(params, aux, x, y, hparams, step):
    del hparams, step
    fx, gy = net.apply(params, x, y)
    bound = infonce_bound(fx @ gy.T)
    return -bound, (bound, aux)

  def heldout(params, x, y):
    k = c.batch_size
    chunks = len(x) // k
    fx, gy = net.apply(params, x[:chunks * k], y[:chunks * k])
    fx = fx.reshape(chunks, k, -1)
    gy = gy.reshape(chunks, k, -1)
    return jnp.mean(jax.vmap(infonce_bound)(
        jnp.einsum("cie,cje->cij", fx, gy)))

  return _Objective(net, {}, loss, heldout)


def _optimizer(hparams):
  return optax.inject_hyperparams(optax.adam)(learning_rate=hparams["lr"])


def make_program(config: Config) -> Program:
  """The run as a ``Program`` on ``data = {"x": f32[N, Dx], "y": f32[N, Dy]}``.

  ``segment`` metrics: ``train_bound`` (the mean batch bound of the
  segment's steps) and ``heldout_bound``; ``finish`` gives
  ``{"mi": the largest held-out bound}`` (nats) and outputs ``{"params":
  the critic that reached it}``.
  ``data`` is not checked here: ``make_estimator``'s function and ``mine``
  / ``infonce`` check it.
  """
  _check_config(config)
  objective = (_mine_objective(config) if isinstance(config, MineConfig)
               else _infonce_objective(config))
  steps = config.steps // config.num_segments

  def standardised(data):
    return zscore(data["x"]), zscore(data["y"])

  def init(hparams, key, data, inputs):
    del inputs
    params = objective.net.init(jax.random.fold_in(key, _INIT_KEY),
                                data["x"][:1], data["y"][:1])
    return {"params": params, "opt_state": _optimizer(hparams).init(params),
            "aux": objective.aux, "step": jnp.int32(0), "key": key,
            "best_params": params, "best_bound": jnp.float32(-jnp.inf)}

  def segment(carry, hparams, data):
    x, y = standardised(data)
    train, held = split_rows(carry["key"], len(x), config.holdout)
    x_train, y_train = x[train], y[train]
    tx = _optimizer(hparams)
    loop_key = jax.random.fold_in(carry["key"], _LOOP_KEY)

    def step(c, _):
      # Rows drawn uniformly with replacement: O(B) per step, where drawing
      # B distinct rows would sort the whole training split every step.
      rows = jax.random.randint(jax.random.fold_in(loop_key, c["step"]),
                                (config.batch_size,), 0, len(train))
      grads, (bound, aux) = jax.grad(objective.loss, has_aux=True)(
          c["params"], c["aux"], x_train[rows], y_train[rows], hparams,
          c["step"])
      updates, opt_state = tx.update(grads, c["opt_state"], c["params"])
      return {**c, "params": optax.apply_updates(c["params"], updates),
              "opt_state": opt_state, "aux": aux,
              "step": c["step"] + 1}, bound

    carry, bounds = jax.lax.scan(step, carry, None, length=steps)
    heldout = objective.heldout(carry["params"], x[held], y[held])
    # Early stopping on the held-out bound: keep the best critic so far.
    better = heldout > carry["best_bound"]
    carry = {**carry, "best_bound": jnp.maximum(heldout, carry["best_bound"]),
             "best_params": jax.tree.map(
                 lambda new, old: jnp.where(better, new, old),
                 carry["params"], carry["best_params"])}
    return carry, {"train_bound": jnp.mean(bounds), "heldout_bound": heldout}

  def finish(carry, hparams, data):
    del hparams, data
    return {"mi": carry["best_bound"]}, {"params": carry["best_params"]}

  return Program(init, segment, finish, config.num_segments)


class Estimate(NamedTuple):
  """One estimate (leading axes added by ``vmap``).

  Attributes:
    mi: ``f32[]``, the estimate: the largest held-out bound over the
      segments (nats).
    heldout_bound: ``f32[num_segments]``, the held-out bound after each
      segment (the training curve).
    train_bound: ``f32[num_segments]``, the mean training-batch bound of each
      segment.
  """
  mi: jax.Array
  heldout_bound: jax.Array
  train_bound: jax.Array


def make_estimator(config: Config):
  """``estimate(hparams, key, x, y) -> Estimate``: one pure training.

  ``hparams`` holds the traced scalars of ``default_hparams(config)``;
  ``key`` a PRNG key (the split, the critic's init and the batches);
  ``x: f[N, Dx]`` or ``f[N]``, ``y: f[N, Dy]`` or ``f[N]``. jit it, vmap it
  over hyperparameters, keys or data; its shapes are checked when traced.
  """
  program = make_program(config)
  need = min_rows(config)

  def estimate(hparams, key, x, y) -> Estimate:
    x, y = check_pair(x, y, ("x", "y"), need)
    final, history, _ = program.train(hparams, key, {"x": x, "y": y})
    return Estimate(final["mi"], history["heldout_bound"],
                    history["train_bound"])

  return estimate


@functools.lru_cache(maxsize=None)
def _compiled(config: Config):
  return jax.jit(make_estimator(config))


def _run(config, hparams, key, x, y, base) -> Estimate:
  """``mine`` / ``infonce``: checks what both take, runs the compiled
  estimator, converts to ``base``."""
  _check_config(config)  # before min_rows, which loops on a bad holdout
  validation.check_positive(hparams["lr"], "lr")
  validation.check_array(key, "key")
  units.check_base(base)
  check_pair(x, y, ("x", "y"), min_rows(config))
  out = _compiled(config)(
      {k: jnp.float32(v) for k, v in hparams.items()}, key, x, y)
  return Estimate(*(units.in_base(v, base) for v in out))


def check_ema_rate(ema_rate) -> None:
  """MINE's moving-average rate must be a number in (0, 1]."""
  validation.check_scalar(ema_rate, "ema_rate")
  if not 0 < ema_rate <= 1:
    raise ValueError(f"ema_rate must lie in (0, 1], got {ema_rate}.")


def mine(x, y, key: jax.Array, *, lr: float = 1e-3, ema_rate: float = 0.01,
         hidden: Sequence[int] = (64, 64), steps: int = 1000,
         batch_size: int = 256, holdout: float = 0.5, num_segments: int = 20,
         heldout_shifts: int = 8, base: Optional[float] = None) -> Estimate:
  """MINE estimate of I(X; Y) in nats (Belghazi et al., ICML 2018).

  Trains the concatenated critic T(x, y) with Adam (``lr``) on the training
  split, using the bias-corrected gradient (moving average of E_Q[e^T] at
  ``ema_rate``), and returns the Donsker–Varadhan bound on the held-out
  split. See the module docstring for the split and ``MineConfig`` for the
  options.

  Args:
    x: ``f[N, Dx]`` (or ``f[N]``), samples of X.
    y: ``f[N, Dy]`` (or ``f[N]``), the paired samples of Y.
    key: a PRNG key.
    base: ``None`` for nats, 2 for bits.

  Returns:
    ``Estimate`` in ``base``; ``.mi`` is the estimate. A lower bound up to
    estimation noise: short training under-estimates.

  Raises:
    ValueError: naming ``x`` or ``y``: different N, too few rows, a
      non-finite entry, a constant column; or a bad option.
  """
  config = MineConfig(tuple(hidden), steps, batch_size, holdout, num_segments,
                      heldout_shifts)
  check_ema_rate(ema_rate)
  return _run(config, {"lr": lr, "ema_rate": ema_rate}, key, x, y, base)


def infonce(x, y, key: jax.Array, *, lr: float = 1e-3,
            hidden: Sequence[int] = (64, 64), embed: int = 32,
            steps: int = 1000, batch_size: int = 256, holdout: float = 0.5,
            num_segments: int = 20,
            base: Optional[float] = None) -> Estimate:
  """InfoNCE estimate of I(X; Y) in nats (van den Oord et al., 2018).

  Trains the separable critic with Adam (``lr``) on the training split and
  returns the bound averaged over chunks of K = ``batch_size`` held-out
  rows. **The estimate is at most log K** (5.55 nats at K = 256): for large
  MI it saturates there, raise ``batch_size`` (and N) to see more.

  Args:
    x: ``f[N, Dx]`` (or ``f[N]``), samples of X.
    y: ``f[N, Dy]`` (or ``f[N]``), the paired samples of Y.
    key: a PRNG key.
    base: ``None`` for nats, 2 for bits.

  Returns:
    ``Estimate`` in ``base``; ``.mi`` is the estimate.

  Raises:
    ValueError: naming ``x`` or ``y``: different N, too few rows (each split
      needs ``batch_size`` rows), a non-finite entry, a constant column;
      or a bad option.
  """
  config = InfoNCEConfig(tuple(hidden), embed, steps, batch_size, holdout,
                         num_segments)
  return _run(config, {"lr": lr}, key, x, y, base)


def log_ceiling(config: InfoNCEConfig) -> float:
  """log K, the most an InfoNCE run with ``config`` can report (nats)."""
  return math.log(config.batch_size)

