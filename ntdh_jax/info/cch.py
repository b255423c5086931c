"""The CCH gap Δ = I(H₁; H₂) − I(H₂; Y) with its spread, and a verdict.

The Cross-modal Complementarity Hypothesis (CCH; ``shared/notes/
companions.md`` A.1): knowledge distillation from a teacher whose
representation of modality 1 is H₁ into a student whose representation of
modality 2 is H₂ helps when I(H₁; H₂) > I(H₂; Y), Y the label. Given saved
features (the penultimate activations of a trained teacher and of a
trained student, row i of each for the same example i) and the labels,
``cch_gap`` estimates both terms and Δ several times and says whether Δ is
clearly positive, clearly negative or neither.

**Estimators** (``estimator=``; the paper names LMI, MINE and KSG, how it
configured them is unknown, notes A.3):

* ``"ksg"`` (default): I(H₁; H₂) by KSG (``ksg``, Kraskov et al. 2004) and
  I(H₂; Y) by Ross's mixed continuous–discrete estimator (``ksg_discrete``,
  Ross 2014), both with the same ``k``.
* ``"latent"``: latent MI (``latent``, Gowri et al. 2024), the estimator
  the CCH paper uses for high-dimensional features.
* ``"mine"`` (Belghazi et al. 2018) and ``"infonce"`` (van den Oord et al.
  2018): neural lower bounds (``neural``); InfoNCE is not named by CCH.

For ``"latent"``, ``"mine"`` and ``"infonce"`` the label enters I(H₂; Y) as
a one-hot ``f32[N, C]`` (an invertible map of Y, so the MI is unchanged).
**This label handling is a reconstruction**: how CCH fed class labels to
its estimators is unknown (notes A.3, "Discrete Y"); k-NN and autoencoder
estimators are biased on such discrete inputs, so prefer ``"ksg"`` (Ross)
when Y is a class label, and compare signs and rankings of Δ only within
one estimator (absolute MI differs between estimators, notes A.1).

**Repeats.** Each of ``repeats`` estimates uses its own random subsample
and its own key (jitter, initialisation, splits, batches). The subsample is
drawn *without replacement*, stratified by class: from each class c of
N_c rows, ``clip(round(subsample · N_c), 1, N_c)`` rows, so every repeat
has the same number of rows M ≈ subsample · N and every class keeps its
share (I(H₂; Y) does not move with the class proportions). Rows are never
duplicated: a bootstrap (drawing with replacement) puts copies of a row
~``noise`` apart, its nearest neighbours are then its own copies and KSG's
point-wise MI is inflated (notes A.3). ``subsample = 1.0`` uses all rows in
every repeat; the spread then comes from the estimator's randomness alone
(for ``"ksg"`` only the tie-breaking jitter, so almost none).

Keys: repeat r uses ``key_r = fold_in(PRNGKey(seed), r)``; its rows come
from ``fold_in(key_r, 2)``, I(H₁; H₂) from ``fold_in(key_r, 0)`` and
I(H₂; Y) from ``fold_in(key_r, 1)`` (``result.rows[r]`` are its rows), so a
single repeat can be recomputed with the estimator itself. All repeats of
one term run as one compiled, vmapped call (``make_estimator`` for the
trained estimators) on the gathered rows ``f32[R, M, D]``; one compiled
program serves every call with the same R, M, feature widths, number of
classes and options, whatever N.

**Verdict** (``verdict``, the only place the rule lives). With the repeats'
Δ_r, their mean m and standard deviation s (ddof 1; 0 for one repeat), the
interval is m ± 2·s/√R:

* entirely above 0: "KD expected to help";
* entirely below 0: "KD not expected to help";
* otherwise (it contains 0): "inconclusive".

The interval is the repeat-to-repeat spread of the estimate on *these*
features: how much Δ moves with the choice of rows and the estimator's
randomness. It is not a confidence interval over datasets or trained
models (the subsamples overlap and share one dataset, and training another
teacher or student gives other features), and the estimators' biases, which
every repeat shares, are not in it. With ``repeats = 1`` it has zero width
and the verdict is the sign of a single estimate: use 3 or more. The
paper's own rule for choosing a teacher compares Δ across candidate teacher
modalities and distils only from a positive one (notes A.1).

**Bad input** raises ``ValueError`` (``TypeError`` for a wrong type or a
floating dtype expected) naming the argument and what it must be:
different N of the three arguments, too few rows for the estimator (after
subsampling), non-finite entries, constant columns, labels that are not
integers (a fractional or non-finite float, a non-numeric dtype) or hold
one class, a bad ``repeats``, ``subsample``, ``seed``, ``base``,
``estimator`` or ``options``. The value checks are the estimators' own
(``ksg.check_values``; the option checks of ``neural`` / ``latent``
configs), applied once to the whole arrays under the names of
``cch_gap``'s arguments. A column constant within one subsample only (a
rarely active ReLU unit) is harmless: the estimators then treat it as
noise. Duplicated rows warn for the k-NN based ``"ksg"`` and ``"latent"``.

``cch_gap`` runs on the host (its verdict is a string): call it eagerly,
not under ``jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import validation
from ntdh_jax.info import units
from ntdh_jax.info.ksg import check_samples
from ntdh_jax.info.ksg import warn_duplicates
from ntdh_jax.info.ksg import check_values
from ntdh_jax.info.ksg import ksg
from ntdh_jax.info.ksg import ksg_discrete

HELPS = "KD expected to help"
DOES_NOT_HELP = "KD not expected to help"
INCONCLUSIVE = "inconclusive"
STANDARD_ERRORS = 2.0  # the interval's half-width, in standard errors

# fold_in tags of a repeat's key.
_TEACHER_STUDENT_KEY, _STUDENT_LABEL_KEY, _ROWS_KEY = 0, 1, 2


class Term(NamedTuple):
  """One quantity estimated once per repeat.

  Attributes:
    values: ``f32[R]``, the estimate of each repeat (in the result's unit).
    mean: their mean.
    std: their standard deviation, ddof 1 (0.0 when R = 1).
  """
  values: np.ndarray
  mean: float
  std: float


class CCHResult(NamedTuple):
  """What ``cch_gap`` found.

  Attributes:
    teacher_student: I(H₁; H₂) per repeat, mean and std.
    student_label: I(H₂; Y) per repeat, mean and std.
    gap: Δ = I(H₁; H₂) − I(H₂; Y) per repeat (the difference of the two
      terms on the same rows), mean and std.
    interval: ``(low, high)`` = Δ mean ∓ 2·std/√R, what the verdict reads.
    verdict: ``HELPS``, ``DOES_NOT_HELP`` or ``INCONCLUSIVE`` (module
      docstring).
    estimator: the estimator's name.
    unit: "nats", "bits" or "log base b".
    n: N, rows given.
    classes: the number of distinct labels.
    rows: ``int32[R, M]``, each repeat's rows (sorted, no row twice).
  """
  teacher_student: Term
  student_label: Term
  gap: Term
  interval: tuple[float, float]
  verdict: str
  estimator: str
  unit: str
  n: int
  classes: int
  rows: np.ndarray


def _term(values) -> Term:
  values = np.asarray(values, np.float32)
  v = values.astype(np.float64)
  std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
  return Term(values, float(np.mean(v)), std)


def verdict(gap: Term) -> tuple[tuple[float, float], str]:
  """The CCH verdict from Δ's repeats: ``((low, high), verdict)``.

  ``low, high = mean ∓ STANDARD_ERRORS · std / √R``; ``HELPS`` when
  low > 0, ``DOES_NOT_HELP`` when high < 0, ``INCONCLUSIVE`` otherwise (the
  module docstring says what the interval is and is not).
  """
  half = STANDARD_ERRORS * gap.std / math.sqrt(len(gap.values))
  low, high = gap.mean - half, gap.mean + half
  if low > 0:
    return (low, high), HELPS
  if high < 0:
    return (low, high), DOES_NOT_HELP
  return (low, high), INCONCLUSIVE


# -- estimators ----------------------------------------------------------------


class _Plan(NamedTuple):
  """An estimator with its options checked.

  Attributes:
    min_rows: the fewest rows one repeat may have.
    min_class_rows: the fewest rows of each class one repeat may have.
    needs: why (completes "the estimator needs ...").
    run: ``(teacher f32[R, M, D1], student f32[R, M, D2], codes
      int32[R, M], classes, keys key[R]) -> (f32[R], f32[R])``: the two
      terms of each repeat (its rows already gathered) in nats.
    knn: whether it ends in a k-NN estimate (duplicated rows warn).
  """
  min_rows: int
  min_class_rows: int
  needs: str
  run: Callable
  knn: bool


def _options(options, known: Mapping[str, Any], estimator: str) -> dict:
  """``known`` (name -> default) updated by ``options``; unknown keys
  raise."""
  if options is None:
    options = {}
  if not isinstance(options, Mapping):
    raise TypeError(f"options must be a dict (estimator {estimator!r} takes "
                    f"{sorted(known)}), got {type(options).__name__}.")
  unknown = sorted(set(options) - set(known), key=str)
  if unknown:
    raise ValueError(
        f"options has unknown keys {unknown} for estimator {estimator!r}; "
        f"its options are {sorted(known)}.")
  return {**known, **options}


def _term_keys(keys, tag):
  return jax.vmap(lambda k: jax.random.fold_in(k, tag))(keys)


@functools.partial(jax.jit,
                   static_argnames=("k", "noise", "block_size"))
def _ksg_repeats(teacher, student, codes, keys, *, k, noise, block_size):
  """Both KSG terms of every repeat, nats: ``(f32[R], f32[R])``."""
  def one(t, s, c, key_ts, key_sl):
    ts = ksg(t, s, k, noise=noise, key=key_ts, block_size=block_size).mean
    sl = ksg_discrete(s, c, k, noise=noise, key=key_sl,
                      block_size=block_size).mean
    return ts, sl

  return jax.vmap(one)(teacher, student, codes,
                       _term_keys(keys, _TEACHER_STUDENT_KEY),
                       _term_keys(keys, _STUDENT_LABEL_KEY))


def _ksg_plan(options) -> _Plan:
  params = inspect.signature(ksg).parameters
  o = _options(options, {name: params[name].default
                         for name in ("k", "noise", "block_size")}, "ksg")
  validation.check_positive_int(o["k"], "k")
  validation.check_positive(o["noise"], "noise")
  validation.check_positive_int(o["block_size"], "block_size")
  k = int(o["k"])

  def run(teacher, student, codes, classes, keys):
    del classes
    return _ksg_repeats(teacher, student, codes, keys, k=k,
                        noise=float(o["noise"]),
                        block_size=int(o["block_size"]))

  return _Plan(k + 1, k + 1, f"more than k = {k} (KSG's neighbours; Ross's "
               "same-class neighbours per class)", run, knn=True)


@functools.lru_cache(maxsize=None)
def _vmapped(make_estimator, config):
  """One trained estimator's ``mi`` per repeat: jitted ``(hparams, keys
  key[R], x f32[R, M, Dx], y f32[R, M, Dy]) -> f32[R]``, compiled once per
  config (and shapes)."""
  estimate = make_estimator(config)
  return jax.jit(jax.vmap(lambda hparams, key, x, y:
                          estimate(hparams, key, x, y).mi,
                          in_axes=(None, 0, 0, 0)))


def _trained_plan(module, config_cls, default_hparams, check_hparams,
                  options, estimator, *, splits: str, knn: bool) -> _Plan:
  """A ``make_estimator`` estimator (``neural``, ``latent``): its config's
  fields and traced hyperparameters are the options; one-hot labels.
  ``splits`` says what its fewest rows are for."""
  fields = {f.name: f.default for f in dataclasses.fields(config_cls)}
  hp_defaults = {name: float(v) for name, v in
                 default_hparams(config_cls()).items()}
  o = _options(options, {**fields, **hp_defaults}, estimator)
  if isinstance(o.get("hidden"), list):
    o["hidden"] = tuple(o["hidden"])
  config = config_cls(**{name: o[name] for name in fields})
  module.make_estimator(config)  # checks config (so it can be hashed)
  fn = _vmapped(module.make_estimator, config)
  hparams = {name: o[name] for name in hp_defaults}
  check_hparams(hparams)
  hparams = {name: jnp.float32(v) for name, v in hparams.items()}

  def run(teacher, student, codes, classes, keys):
    onehot = jax.nn.one_hot(codes, classes, dtype=jnp.float32)
    return (fn(hparams, _term_keys(keys, _TEACHER_STUDENT_KEY), teacher,
               student),
            fn(hparams, _term_keys(keys, _STUDENT_LABEL_KEY), student,
               onehot))

  need = module.min_rows(config)
  return _Plan(need, 1, f"at least {need} ({splits} with these options)",
               run, knn)


def _neural_plan(estimator: str, options) -> _Plan:
  neural = importlib.import_module("ntdh_jax.info.neural")
  config_cls = {"mine": neural.MineConfig,
                "infonce": neural.InfoNCEConfig}[estimator]

  def check(hp):
    validation.check_positive(hp["lr"], "lr")
    if "ema_rate" in hp:
      neural.check_ema_rate(hp["ema_rate"])

  return _trained_plan(neural, config_cls, neural.default_hparams, check,
                       options, estimator, knn=False,
                       splits="a training batch and a held-out evaluation")


def _latent_plan(options) -> _Plan:
  latent = importlib.import_module("ntdh_jax.info.latent")

  def check(hp):
    validation.check_positive(hp["lr"], "lr")
    validation.check_nonnegative(hp["alpha"], "alpha")
    validation.check_nonnegative(hp["lam"], "lam")

  return _trained_plan(latent, latent.LatentConfig,
                       lambda config: latent.default_hparams(), check,
                       options, "latent", knn=True,
                       splits="k + 1 rows in each of the train and held-out "
                       "splits")


# name -> options -> _Plan; neural / latent are imported only when asked for.
ESTIMATORS: Mapping[str, Callable[[Optional[Mapping]], _Plan]] = {
    "ksg": _ksg_plan,
    "latent": _latent_plan,
    "mine": functools.partial(_neural_plan, "mine"),
    "infonce": functools.partial(_neural_plan, "infonce"),
}


# -- inputs --------------------------------------------------------------------


def _label_codes(labels, n: int) -> tuple[np.ndarray, np.ndarray]:
  """``(classes, codes int32[N])``: the distinct labels and each row's index
  into them. Integer or bool labels, or floats holding whole numbers."""
  validation.check_array(labels, "labels")
  if jnp.shape(labels) != (n,):
    raise ValueError(
        f"labels must have shape [N] = ({n},), one class label per row of "
        f"teacher_features and student_features, got {jnp.shape(labels)}.")
  values = np.asarray(labels)
  if np.issubdtype(values.dtype, np.floating):
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
      row = int(np.argmin(whole))
      raise ValueError(
          "labels must be integer class labels; these are floats and row "
          f"{row} holds {values[row]} (not a whole number). Pass the "
          "class index of each row.")
  elif not (np.issubdtype(values.dtype, np.integer)
            or values.dtype == np.bool_):
    raise ValueError(
        f"labels must be integer class labels, got dtype {values.dtype} "
        "(non-numeric); map each class to an integer first.")
  classes, codes = np.unique(values, return_inverse=True)
  if len(classes) < 2:
    raise ValueError(
        f"labels must hold at least 2 classes, got the single class "
        f"{classes[0]} (I(H2; Y) is 0 when Y never varies).")
  return classes, codes.reshape(n).astype(np.int32)


def _class_quota(counts: np.ndarray, subsample: float) -> np.ndarray:
  """Rows drawn from each class per repeat: round(subsample · N_c), at
  least 1 and at most N_c."""
  return np.clip(np.floor(subsample * counts + 0.5), 1,
                 counts).astype(np.int64)


def _draw_rows(key, codes: np.ndarray, counts: np.ndarray,
               quota: np.ndarray) -> np.ndarray:
  """``int32[M]``: ``quota[c]`` distinct rows of each class c, at random
  (the classes' rows in a random order from ``key``, the first of each),
  sorted."""
  order = np.lexsort((np.asarray(jax.random.uniform(key, codes.shape)),
                      codes))
  starts = np.cumsum(counts) - counts
  rows = np.concatenate([order[s:s + m] for s, m in zip(starts, quota)])
  return np.sort(rows).astype(np.int32)


def _unit(base) -> str:
  if base is None:
    return "nats"
  return "bits" if base == 2 else f"log base {base:g}"


def _check_scalars(repeats, subsample, seed, base, estimator) -> None:
  validation.check_positive_int(repeats, "repeats")
  validation.check_scalar(subsample, "subsample")
  if not 0 < subsample <= 1:
    raise ValueError(
        f"subsample must lie in (0, 1] (the fraction of rows each repeat "
        f"draws without replacement; 1.0 = all rows), got {subsample}.")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(
      seed, (int, np.integer)):
    raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
  units.check_base(base)
  validation.check_choice(estimator, "estimator", tuple(ESTIMATORS))


# -- public --------------------------------------------------------------------


def drop_constant_columns(h, name: str) -> tuple[np.ndarray, int]:
  """``(h f[N, D'] without its constant columns, how many were dropped)``
  (``f[N]`` is one column). A constant column (a ReLU unit dead on every
  row) carries no information, so dropping it leaves every MI as it is;
  ``cch_gap`` refuses one, as its estimators standardise each column.
  Raises ``ValueError`` naming ``name`` when every column is constant."""
  h = np.asarray(h)
  if h.ndim == 1:
    h = h[:, None]
  live = np.ptp(h, axis=0) > 0
  if not live.any():
    raise ValueError(f"{name}: every column is constant (a collapsed "
                     "network?); its MI cannot be estimated.")
  return h[:, live], int(np.sum(~live))


def cch_gap(teacher_features, student_features, labels, *,
            estimator: str = "ksg", repeats: int = 5,
            subsample: float = 0.5, seed: int = 0,
            base: Optional[float] = None,
            options: Optional[Mapping[str, Any]] = None) -> CCHResult:
  """The CCH gap Δ = I(H₁; H₂) − I(H₂; Y), its spread and a verdict.

  See the module docstring for the estimators (and the reconstructed label
  handling of the trained ones), the stratified subsampling, the keys and
  the verdict rule.

  Args:
    teacher_features: ``f[N, D1]`` (or ``f[N]``), H₁: the teacher's
      representation of each example (modality 1).
    student_features: ``f[N, D2]`` (or ``f[N]``), H₂: the student's
      representation of the same examples (modality 2), row for row.
    labels: ``int[N]``, Y: each example's class (any integer values; bool,
      or floats holding whole numbers, are accepted too).
    estimator: ``"ksg"`` (default), ``"latent"``, ``"mine"`` or
      ``"infonce"``.
    repeats: R >= 1 estimates, each on its own subsample and key.
    subsample: fraction of rows per repeat, in (0, 1], drawn without
      replacement and stratified by class; 1.0 = all rows every time.
    seed: the seed of everything random (``PRNGKey(seed)``).
    base: ``None`` for nats, 2 for bits.
    options: the estimator's options, e.g. ``{"k": 5}`` for ``"ksg"``
      (``k``, ``noise``, ``block_size``), or ``{"steps": 500, "lr": 3e-4}``
      for ``"mine"`` / ``"infonce"`` (the fields of ``MineConfig`` /
      ``InfoNCEConfig`` and ``lr``, MINE's ``ema_rate``) and ``"latent"``
      (``LatentConfig``'s fields, ``lr``, ``alpha``, ``lam``). The same
      options serve both terms.

  Returns:
    ``CCHResult``: both terms and Δ per repeat with mean and std, the
    interval, the verdict, and the rows each repeat used.

  Raises:
    ValueError: naming the argument: N differing between the three
      arguments; too few rows (or rows of a class) per repeat for the
      estimator; a non-finite entry or a constant column in the features;
      labels not integer or of one class; ``repeats`` < 1; ``subsample``
      outside (0, 1]; an unknown ``estimator`` or option key; a bad option
      value.
    TypeError: features not floating arrays; a non-array argument; an
      option of the wrong type.

  Warns:
    UserWarning: duplicated rows, for ``"ksg"`` and ``"latent"``.
  """
  _check_scalars(repeats, subsample, seed, base, estimator)
  plan = ESTIMATORS[estimator](options)
  check_samples(teacher_features, "teacher_features")  # KSG's shape checks
  check_samples(student_features, "student_features")
  n, n_student = jnp.shape(teacher_features)[0], jnp.shape(student_features)[0]
  if n_student != n:
    raise ValueError(
        f"teacher_features and student_features must have the same number "
        f"of rows N (row i of each is example i), got N = {n} and "
        f"N = {n_student}.")
  classes, codes = _label_codes(labels, n)
  check_values(teacher_features, "teacher_features")
  check_values(student_features, "student_features")

  counts = np.bincount(codes, minlength=len(classes))
  quota = _class_quota(counts, subsample)
  m = int(quota.sum())
  if m < plan.min_rows:
    raise ValueError(
        f"teacher_features and student_features have N = {n} rows, so "
        f"each repeat uses M = {m} (subsample = {subsample}); the "
        f"{estimator!r} estimator needs M {plan.needs}. Give more rows, "
        "raise subsample or change the options.")
  short = int(np.argmin(quota))
  if quota[short] < plan.min_class_rows:
    raise ValueError(
        f"labels: class {classes[short]} has {counts[short]} rows, so "
        f"{quota[short]} in each repeat (subsample = {subsample}); the "
        f"{estimator!r} estimator needs {plan.needs}. Raise subsample, "
        "change the options or drop the class.")
  teacher = np.asarray(teacher_features, np.float32).reshape(n, -1)
  student = np.asarray(student_features, np.float32).reshape(n, -1)
  if plan.knn:
    warn_duplicates((teacher, student),
                     "cch_gap(teacher_features, student_features)")
    warn_duplicates((student, codes), "cch_gap(student_features, labels)")

  keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(
      jnp.arange(repeats))
  rows = np.stack([_draw_rows(jax.random.fold_in(key, _ROWS_KEY), codes,
                              counts, quota) for key in keys])
  # Gathered here, so the compiled programs depend on (R, M, D1, D2, C)
  # only, not on N.
  ts, sl = plan.run(teacher[rows], student[rows], codes[rows], len(classes),
                    keys)
  ts, sl = (np.asarray(units.in_base(v, base), np.float32) for v in (ts, sl))
  gap = _term(ts - sl)
  interval, decision = verdict(gap)
  return CCHResult(_term(ts), _term(sl), gap, interval, decision, estimator,
                   _unit(base), int(n), len(classes), rows)


def report(result: CCHResult, sources: Optional[Mapping[str, str]] = None
           ) -> str:
  """A short Markdown report of ``result``: the two terms and Δ (mean ±
  std and each repeat), the interval, the verdict; ``sources`` (e.g.
  ``{"teacher": "T.npy"}``) are listed first."""
  r = len(result.rows)
  lines = ["# CCH gap: Δ = I(H1; H2) − I(H2; Y)", ""]
  for what, where in (sources or {}).items():
    lines.append(f"- {what}: {where}")
  lines += [
      f"- estimator: {result.estimator}; unit: {result.unit}",
      f"- N = {result.n} rows, {result.classes} classes; {r} repeat"
      f"{'s' if r > 1 else ''} of M = {result.rows.shape[1]} rows each "
      "(drawn without replacement, stratified by class)",
      "",
      f"| quantity | mean | std | per repeat ({result.unit}) |",
      "|---|---:|---:|---|"]
  for name, term in (("I(H1; H2), teacher–student", result.teacher_student),
                     ("I(H2; Y), student–label", result.student_label),
                     ("Δ", result.gap)):
    each = ", ".join(f"{v:.4f}" for v in term.values)
    lines.append(f"| {name} | {term.mean:.4f} | {term.std:.4f} | {each} |")
  low, high = result.interval
  lines += [
      "",
      f"Interval (Δ mean ± {STANDARD_ERRORS:g}·std/√{r}): "
      f"[{low:.4f}, {high:.4f}] {result.unit}",
      "",
      f"**Verdict: {result.verdict}.**",
      "",
      "The interval is the repeat-to-repeat spread on these features "
      "(subsample and estimator randomness), not a confidence interval over "
      "datasets or trained models."]
  return "\n".join(lines) + "\n"


__all__ = ["CCHResult", "DOES_NOT_HELP", "ESTIMATORS", "HELPS",
           "INCONCLUSIVE", "STANDARD_ERRORS", "Term", "cch_gap",
           "drop_constant_columns", "report", "verdict"]
