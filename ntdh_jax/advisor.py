"""Will distillation help? A diagnosis from a user's own teacher and student.

``diagnose(teacher_logits, student_logits, labels, teacher_features=None,
student_features=None)`` reads the outputs of a trained teacher (modality 1)
and of a student trained *without* KD (modality 2) on the same examples and
reports, with bootstrap intervals over the examples:

* NTDH's divergences (Chen et al.; ``ntdh_jax.divergences``) between the
  two: TCJSD, NCJSD, TCKL, NCKL, the full KL, and the ratio NCJSD / TCJSD
  (how much of the disagreement is about the non-target classes);
* the non-target divergence per class (which classes the modalities
  disagree on): the mean NCKL and NCJSD of the examples of each class;
* CCH's gap Δ = I(H₁; H₂) − I(H₂; Y) of the penultimate features, when
  given (``ntdh_jax.info.cch.cch_gap``, KSG by default);
* Algorithm 2's ranking: every example (or pixel) ordered by NCJSD, most
  divergent first, and its keep masks at ``ratios`` (25 % and 50 % by
  default; the library's ``masks.sample_keep_mask``, "true" kind: the most
  divergent are excluded from the KD term), for the user's own training;
* a verdict with its evidence: "KD likely helps / neutral / likely hurts",
  from each signal and from both, and the smallest mask ratio whose kept
  examples look like a teacher that helps.

**The rule** (``Rule``; the only place the thresholds live). A signal votes
on its bootstrap interval, not its point estimate:

* NTDH: "helps" when the whole interval of the mean NCJSD lies below
  ``ncjsd_helps`` (the modalities share their non-target knowledge), "hurts"
  when it lies above ``ncjsd_hurts``, "neutral" otherwise, and "neutral"
  too when the mean KL's interval lies below ``kl_floor`` (the student
  already predicts what the teacher does: nothing to distil);
* CCH: "helps" when the whole interval of Δ lies above ``delta_helps``,
  "hurts" when it lies below ``delta_hurts``, "neutral" otherwise;
* combined: the two votes when they agree, the decided one when the other
  is neutral, "neutral" when they conflict; NTDH's alone without features.
* mask: the smallest r of ``(0, *ratios)`` whose kept examples' mean NCJSD
  lies below ``ncjsd_helps`` (``None`` if none does).

``DEFAULT_RULE``'s thresholds were calibrated on the synthetic γ part of
``sweeps/configs/advisor_calibration.py`` (experiment ``advisor``), whose
report also measures how often the verdict is right on the parts it was not
calibrated on (README, "Will distillation help?"): read that table before
trusting a verdict. The thresholds are absolute: NCJSD is bounded by ln 2
whatever the task, Δ is in nats of the chosen estimator (KSG by default;
compare Δ only within one estimator).

**Bootstrap.** The unit is the example (the leading axis): ``bootstrap``
resamples of the N examples, drawn with replacement from
``numpy.random.default_rng(seed)``; every mean is a ratio of sums over the
resampled examples' valid entries (the pixels of a segmentation example
move together, as they are not independent). Intervals are percentile
intervals at ``level``; the point is the estimate on all examples. The
resample counts are formed a block of resamples at a time, so memory does
not grow with B·N. The CCH
gap keeps ``cch_gap``'s own repeats (subsamples without replacement: a
bootstrap duplicates rows, which inflates k-NN MI estimates) and interval.

**What it is not.** The signals are measured on the outputs of networks
already trained, so they are a forecast of the KD gain, not a measurement:
the calibration table says how often it was right on our sweeps. Pass the
logits of held-out examples for the verdict and those of the training set
for the masks the training will use.

Runs on the host (eagerly; its verdict is a string).
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import divergences
from ntdh_jax import masks
from ntdh_jax import validation
from ntdh_jax.info import cch as cch_lib

HELPS, NEUTRAL, HURTS = "KD likely helps", "neutral", "KD likely hurts"
VERDICTS = (HELPS, NEUTRAL, HURTS)
METRICS = ("tcjsd", "ncjsd", "tckl", "nckl", "kl")
MIN_EXAMPLES = 10  # fewer gives a bootstrap with too few distinct resamples
# A mean divergence this small is float32 rounding of 0 (identical
# predictions): the ratio of two such is undefined, reported as NaN.
ZERO = 1e-6
DEFAULT_RATIOS = (0.25, 0.5)
_WEIGHT_BLOCK = 2**24  # resample counts held at once (128 MB of float64)


class Rule(NamedTuple):
  """The verdict's thresholds (module docstring).

  Attributes:
    ncjsd_helps: NTDH says "helps" when the mean NCJSD's interval lies
      below it (nats, in [0, ln 2]).
    ncjsd_hurts: NTDH says "hurts" when the interval lies above it
      (>= ``ncjsd_helps``).
    delta_helps: CCH says "helps" when Δ's interval lies above it (nats).
    delta_hurts: CCH says "hurts" when Δ's interval lies below it
      (<= ``delta_helps``).
    kl_floor: NTDH says "neutral" whatever the NCJSD when the mean
      KL(p_t || p_s)'s interval lies below it: the student already predicts
      what the teacher does, so there is nothing to distil (a guard for
      self-distillation, not calibrated).
  """
  ncjsd_helps: float
  ncjsd_hurts: float
  delta_helps: float
  delta_hurts: float
  kl_floor: float = 0.01


# Calibrated on the synthetic γ part of sweeps/configs/advisor_calibration.py:
# `ntdh-sweep --config sweeps/configs/advisor_calibration.py --workdir
# runs/advisor` prints these in its report.md, which also says how often the
# rule is right on the digits parts it was not fitted to (README, "Will
# distillation help?"). Rerun it and update them together.
DEFAULT_RULE = Rule(ncjsd_helps=0.173654, ncjsd_hurts=0.319349,
                    delta_helps=0.623795, delta_hurts=-0.379975)


class Interval(NamedTuple):
  """An estimate on all examples and its bootstrap percentile interval."""
  value: float
  low: float
  high: float


class ClassDivergence(NamedTuple):
  """The non-target divergence of the examples of each class.

  Attributes:
    count: ``int[C]``, valid examples (or pixels) of each class.
    nckl, ncjsd: ``f64[C, 3]``, per class (value, low, high); NaN for a
      class with no example.
  """
  count: np.ndarray
  nckl: np.ndarray
  ncjsd: np.ndarray


class Diagnosis(NamedTuple):
  """What ``diagnose`` found.

  Attributes:
    n: N, examples given (the leading axis).
    entries: valid entries ranked (N for classification; valid pixels for
      ``[N, ..., C]`` logits).
    classes: C.
    temperature: the temperature the divergences used.
    divergences: ``{name: Interval}`` of the mean TCJSD, NCJSD, TCKL, NCKL
      and KL (nats) over the valid entries.
    accuracy: ``{"teacher", "student": Interval}``, the fraction of valid
      entries each gets right (argmax = label).
    ratio: NCJSD / TCJSD of the means (inf when TCJSD is ~0 and NCJSD is
      not; NaN when both are ~0, below ``ZERO``: identical predictions).
    per_class: ``ClassDivergence``.
    ncjsd, tcjsd: ``f32[N, ...]``, each entry's NCJSD and TCJSD (0 where
      ignored).
    valid: ``bool[N, ...]``, the entries counted.
    ranking: ``int64[entries]``, flat indices into ``ncjsd`` of the valid
      entries, most divergent first (ties in index order).
    keep: ``{ratio: f32[N, ...]}``, Algorithm 2's keep mask (1 = keep in the
      KD term) excluding the ``floor(ratio · entries)`` most divergent.
    kept_ncjsd: ``{ratio: float}``, the mean NCJSD of the kept entries
      (ratio 0 included).
    cch: the ``CCHResult`` of the features, or ``None`` without them.
    dropped_features: ``(teacher, student)`` constant feature columns
      dropped before the MI estimate (they carry no information).
    rule: the ``Rule`` applied.
    ntdh_verdict, cch_verdict: each signal's vote (``cch_verdict`` is
      ``None`` without features).
    verdict: the combined verdict.
    mask_ratio: the recommended ratio (0.0 = no mask; ``None`` = no ratio
      tried brings the kept NCJSD below ``rule.ncjsd_helps``).
    evidence: the sentences behind the verdict.
    bootstrap, level, seed: how the intervals were drawn.
  """
  n: int
  entries: int
  classes: int
  temperature: float
  divergences: dict
  accuracy: dict
  ratio: Interval
  per_class: ClassDivergence
  ncjsd: np.ndarray
  tcjsd: np.ndarray
  valid: np.ndarray
  ranking: np.ndarray
  keep: dict
  kept_ncjsd: dict
  cch: Optional[cch_lib.CCHResult]
  dropped_features: tuple
  rule: Rule
  ntdh_verdict: str
  cch_verdict: Optional[str]
  verdict: str
  mask_ratio: Optional[float]
  evidence: tuple
  bootstrap: int
  level: float
  seed: int


# -- the rule --------------------------------------------------------------


def check_rule(rule) -> None:
  validation.check_type(rule, Rule, "rule", "an ntdh_jax.advisor.Rule")
  for name, value in rule._asdict().items():
    if not math.isfinite(float(value)):
      raise ValueError(f"rule.{name} must be finite, got {value}.")
  if not 0 <= rule.ncjsd_helps <= rule.ncjsd_hurts <= math.log(2):
    raise ValueError(
        "rule must have 0 <= ncjsd_helps <= ncjsd_hurts <= ln 2 (NCJSD's "
        f"range), got {rule.ncjsd_helps} and {rule.ncjsd_hurts}.")
  if rule.kl_floor < 0:
    raise ValueError(f"rule.kl_floor must be >= 0, got {rule.kl_floor}.")
  if rule.delta_hurts > rule.delta_helps:
    raise ValueError(
        "rule must have delta_hurts <= delta_helps, got "
        f"{rule.delta_hurts} > {rule.delta_helps}.")


def _votes(out):
  """A vote array as ``str`` when 0-d, else an object array."""
  out = np.asarray(out).astype(object)
  return str(out) if out.ndim == 0 else out


def vote(low, high, helps: float, hurts: float, larger_helps: bool):
  """One signal's vote from its interval(s): ``HELPS`` when ``[low, high]``
  lies entirely on the helping side of ``helps``, ``HURTS`` when entirely on
  the hurting side of ``hurts``, ``NEUTRAL`` otherwise. Arrays give an
  object array of votes (the calibration scores many at once)."""
  low, high = np.asarray(low, float), np.asarray(high, float)
  if larger_helps:
    up, down = low > helps, high < hurts
  else:
    up, down = high < helps, low > hurts
  return _votes(np.where(up, HELPS, np.where(down, HURTS, NEUTRAL)))


def ntdh_vote(ncjsd: Interval, kl: Interval, rule: Rule):
  """NTDH's vote (module docstring); the intervals' fields may be arrays."""
  quiet = np.asarray(kl.high, float) < rule.kl_floor
  return _votes(np.where(quiet, NEUTRAL, vote(
      ncjsd.low, ncjsd.high, rule.ncjsd_helps, rule.ncjsd_hurts,
      larger_helps=False)))


def cch_vote(interval: Sequence, rule: Rule):
  """CCH's vote on Δ's ``(low, high)`` (module docstring); arrays allowed."""
  return vote(interval[0], interval[1], rule.delta_helps, rule.delta_hurts,
              larger_helps=True)


def combine(ntdh: str, cch: Optional[str]) -> str:
  """The combined verdict: agreeing votes, or the decided one of a decided
  and a neutral vote; conflicting votes are neutral."""
  if cch is None or cch == ntdh or cch == NEUTRAL:
    return ntdh
  if ntdh == NEUTRAL:
    return cch
  return NEUTRAL


def recommend_mask(kept_ncjsd: Mapping[float, float], rule: Rule
                   ) -> Optional[float]:
  """The smallest ratio whose kept entries' mean NCJSD is below
  ``rule.ncjsd_helps``, or ``None``."""
  for ratio in sorted(kept_ncjsd):
    if kept_ncjsd[ratio] < rule.ncjsd_helps:
      return ratio
  return None


# -- inputs ----------------------------------------------------------------


def _check_finite(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  bad = ~np.isfinite(x)
  if bad.any():
    first = np.unravel_index(int(np.argmax(bad)), x.shape)
    raise ValueError(f"{name} must be finite; it holds {int(bad.sum())} "
                     f"non-finite entries, the first at index {first} "
                     f"({x[first]}).")
  return x


def _check_inputs(teacher_logits, student_logits, labels, ignore_label):
  """The shapes and the ignore label; ``divergences.decompose`` checks the
  logits' values and the labels' range itself."""
  validation.check_logits_pair(teacher_logits, student_logits, min_classes=3)
  shape = jnp.shape(teacher_logits)
  if len(shape) < 2:
    raise ValueError(
        f"teacher_logits must be [N, C] or [N, ..., C] (one row per "
        f"example), got shape {shape}.")
  validation.check_array(labels, "labels")
  y = np.asarray(labels)
  if y.shape != shape[:-1]:
    raise ValueError(
        f"labels must have the logits' leading shape {shape[:-1]} (one "
        f"label per row of teacher_logits {shape}), got {y.shape}.")
  validation.check_integer(y, "labels")
  classes = shape[-1]
  if ignore_label is None:
    valid = np.ones(y.shape, bool)
  else:
    if isinstance(ignore_label, (bool, np.bool_)) or not isinstance(
        ignore_label, (int, np.integer)):
      raise TypeError("ignore_label must be an int (the label of entries to "
                      f"skip, e.g. 255), got {ignore_label!r}.")
    if 0 <= ignore_label < classes:
      raise ValueError(
          f"ignore_label must lie outside [0, C) = [0, {classes}) so it "
          f"cannot be a class, got {ignore_label}.")
    valid = y != ignore_label
  n = y.shape[0]
  if n < MIN_EXAMPLES:
    raise ValueError(
        f"teacher_logits has N = {n} examples; the bootstrap needs at least "
        f"{MIN_EXAMPLES}.")
  if not valid.reshape(n, -1).any(axis=1).all():
    row = int(np.argmin(valid.reshape(n, -1).any(axis=1)))
    raise ValueError(f"labels: example {row} has every entry equal to "
                     f"ignore_label = {ignore_label}; drop it.")
  return y, valid


def _check_options(temperature, bootstrap, level, seed, ratios):
  validation.check_positive(temperature, "temperature")
  if not math.isfinite(float(temperature)):
    raise ValueError(f"temperature must be finite, got {temperature}.")
  validation.check_positive_int(bootstrap, "bootstrap")
  if bootstrap < 100:
    raise ValueError(f"bootstrap must be >= 100 resamples (a percentile "
                     f"interval needs them), got {bootstrap}.")
  validation.check_scalar(level, "level")
  if not 0 < level < 1:
    raise ValueError(f"level must lie in (0, 1), got {level}.")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(
      seed, (int, np.integer)):
    raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
  if not 0 <= seed < 2**63:  # numpy's default_rng and jax's PRNGKey
    raise ValueError(f"seed must lie in [0, 2**63), got {seed}.")
  try:
    ratios = tuple(float(r) for r in ratios)
  except (TypeError, ValueError) as e:
    raise type(e)(f"ratios must be a list of fractions in (0, 1), got "
                  f"{ratios!r}.") from e
  if not ratios or any(not 0 < r < 1 for r in ratios):
    raise ValueError(f"ratios must be a non-empty list of fractions in "
                     f"(0, 1) (the share of entries to exclude), got "
                     f"{list(ratios)}.")
  return ratios


# -- statistics --------------------------------------------------------------


def _row_sums(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """``f64[N]``: each example's sum of ``values`` over its valid entries."""
  n = values.shape[0]
  return np.where(valid, values, 0.0).reshape(n, -1).sum(axis=1,
                                                         dtype=np.float64)


def _resampled(seed: int, bootstrap: int, sums: np.ndarray) -> np.ndarray:
  """``f64[B, M]``: the column sums of ``sums: f64[N, M]`` (per-example
  sums) over each of the B resamples of the N examples, drawn with
  replacement from ``default_rng(seed)``, one ``integers(0, N, N)`` per
  resample: every call with the same seed sees the same resamples. The
  resample counts are formed a block at a time, so memory stays near
  ``_WEIGHT_BLOCK`` values whatever B·N."""
  n = sums.shape[0]
  rng = np.random.default_rng(seed)
  block = max(1, _WEIGHT_BLOCK // n)
  out = []
  for start in range(0, bootstrap, block):
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                        for _ in range(min(block, bootstrap - start))])
    out.append(weights.astype(np.float64) @ sums)
  return np.concatenate(out)


def _interval(point, samples, level) -> Interval:
  tail = 100 * (1 - level) / 2
  with np.errstate(invalid="ignore"):
    q = [tail, 100 - tail]
    low, high = np.percentile(samples, q)
    # Interpolating between two equal infinite samples (the ratio's inf) is
    # inf - inf = NaN; such a percentile is that infinity.
    lower = np.percentile(samples, q, method="lower")
    low, high = np.where(lower == np.percentile(samples, q, method="higher"),
                         lower, (low, high))
  return Interval(float(point), float(low), float(high))


def _ratio(num, den):
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.divide(num, den)


def _divergence_ratio(num, den):
  """NCJSD / TCJSD; NaN where both are ~0, inf where only TCJSD is."""
  num, den = np.asarray(num, float), np.asarray(den, float)
  out = _ratio(num, np.where(den > ZERO, den, 0.0))
  return np.where((num <= ZERO) & (den <= ZERO), np.nan, out)


# -- public ------------------------------------------------------------------


def diagnose(teacher_logits, student_logits, labels, teacher_features=None,
             student_features=None, *, ignore_label: Optional[int] = None,
             temperature: float = 1.0, ratios: Sequence[float] = DEFAULT_RATIOS,
             bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
             rule: Rule = DEFAULT_RULE, mi_estimator: str = "ksg",
             mi_repeats: int = 5, mi_subsample: float = 0.5,
             mi_options: Optional[Mapping] = None) -> Diagnosis:
  """Diagnoses a teacher → student pair (module docstring).

  Args:
    teacher_logits: ``f[N, C]`` or ``f[N, ..., C]`` (e.g. ``[N, H, W, C]``
      for segmentation), the teacher's logits on N examples, C >= 3.
    student_logits: the no-KD student's logits, same shape, same examples.
    labels: ``int[N]`` or ``int[N, ...]``, in ``[0, C)`` or ``ignore_label``.
    teacher_features: optional ``f[N, D1]``, the teacher's penultimate
      features (H₁) on the same examples; needs ``student_features`` and
      ``labels`` of shape ``[N]``.
    student_features: optional ``f[N, D2]``, the student's (H₂).
    ignore_label: entries with this label are skipped (outside [0, C)).
    temperature: the divergences' temperature (> 0; 1 = the predictions).
    ratios: the mask ratios to write and try, in (0, 1).
    bootstrap: resamples of the examples (>= 100).
    level: the intervals' coverage, in (0, 1).
    seed: the seed of the bootstrap, the CCH repeats and the ties.
    rule: the verdict's ``Rule``.
    mi_estimator, mi_repeats, mi_subsample, mi_options: ``cch_gap``'s
      ``estimator``, ``repeats``, ``subsample`` and ``options``.

  Returns:
    ``Diagnosis``.

  Raises:
    ValueError: naming the argument: logits of different shapes, rank < 2
      or C < 3; labels of another leading shape, outside [0, C) or all
      ignored in an example; a non-finite logit or feature; N < 10; features
      of one side only, with another N, or with labels not ``[N]``; too few
      rows for the MI estimate; a bad option or rule.
    TypeError: non-array inputs, non-integer labels, non-floating logits.
  """
  ratios = _check_options(temperature, bootstrap, level, seed, ratios)
  check_rule(rule)
  y, valid = _check_inputs(teacher_logits, student_logits, labels,
                           ignore_label)
  n, classes = y.shape[0], jnp.shape(teacher_logits)[-1]
  features = _check_features(teacher_features, student_features, y, n)

  # Refuses non-finite logits and labels outside [0, C) where valid.
  d = divergences.decompose(
      teacher_logits=teacher_logits, student_logits=student_logits,
      labels=y, temperature=temperature,
      where=None if ignore_label is None else valid)
  per_entry = {name: np.asarray(getattr(d, name)) for name in METRICS}
  for role, z in (("teacher", teacher_logits), ("student", student_logits)):
    per_entry[f"{role}_accuracy"] = (np.argmax(z, axis=-1) == y
                                     ).astype(np.float64)

  names = list(per_entry)
  sums = np.stack([_row_sums(np.ones(y.shape), valid)]
                  + [_row_sums(per_entry[name], valid) for name in names],
                  axis=1)
  class_sums = _class_sums(per_entry, y, valid, classes)
  # One pass over the resamples for the overall and the per-class means.
  resampled = _resampled(seed, bootstrap,
                         np.concatenate([sums, class_sums], axis=1))
  resampled, class_resampled = np.split(resampled, [sums.shape[1]], axis=1)
  stats, samples = {}, {}
  for i, name in enumerate(names, 1):
    samples[name] = resampled[:, i] / resampled[:, 0]
    stats[name] = _interval(sums[:, i].sum() / sums[:, 0].sum(),
                            samples[name], level)
  accuracy = {role: stats.pop(f"{role}_accuracy")
              for role in ("teacher", "student")}
  ratio = _interval(
      _divergence_ratio(stats["ncjsd"].value, stats["tcjsd"].value),
      _divergence_ratio(samples["ncjsd"], samples["tcjsd"]), level)
  per_class = _per_class(class_sums, class_resampled, level)

  flat = per_entry["ncjsd"].reshape(-1)
  flat_valid = valid.reshape(-1)
  order = np.argsort(-flat, kind="stable")
  ranking = order[flat_valid[order]]
  key = jax.random.PRNGKey(seed)
  keep = {r: np.asarray(masks.sample_keep_mask(
      jnp.asarray(per_entry["ncjsd"]), r, "true", key,
      where=jnp.asarray(valid))) for r in ratios}
  kept = {0.0: stats["ncjsd"].value}
  kept.update({r: float(flat[m.reshape(-1) > 0].mean()) for r, m in
               keep.items()})

  cch, dropped = None, ()
  if features is not None:
    (h1, dropped_t), (h2, dropped_s) = features
    dropped = (dropped_t, dropped_s)
    cch = cch_lib.cch_gap(h1, h2, y, estimator=mi_estimator,
                          repeats=mi_repeats, subsample=mi_subsample,
                          seed=seed, options=mi_options)

  ntdh = ntdh_vote(stats["ncjsd"], stats["kl"], rule)
  cch_v = None if cch is None else cch_vote(cch.interval, rule)
  final = combine(ntdh, cch_v)
  mask_ratio = recommend_mask(kept, rule)
  evidence = _evidence(stats, ratio, cch, rule, ntdh, cch_v, kept,
                       mask_ratio, level)
  return Diagnosis(
      n=int(n), entries=int(flat_valid.sum()), classes=int(classes),
      temperature=float(temperature), divergences=stats, accuracy=accuracy,
      ratio=ratio,
      per_class=per_class, ncjsd=per_entry["ncjsd"],
      tcjsd=per_entry["tcjsd"], valid=valid,
      ranking=ranking, keep=keep, kept_ncjsd=kept, cch=cch,
      dropped_features=dropped, rule=rule, ntdh_verdict=ntdh,
      cch_verdict=cch_v, verdict=final, mask_ratio=mask_ratio,
      evidence=evidence, bootstrap=int(bootstrap), level=float(level),
      seed=int(seed))


def _check_features(teacher_features, student_features, y, n):
  """``None``, or ``((H₁, dropped), (H₂, dropped))`` checked."""
  given = {"teacher_features": teacher_features,
           "student_features": student_features}
  if all(v is None for v in given.values()):
    return None
  missing = [name for name, v in given.items() if v is None]
  if missing:
    raise ValueError(
        f"{missing[0]} is missing: CCH's Δ needs the features of both the "
        "teacher and the student (or neither).")
  if y.ndim != 1:
    raise ValueError(
        f"teacher_features and student_features need labels of shape [N] "
        f"(one class per example: CCH's I(H2; Y)), got labels {y.shape}.")
  out = []
  for name, h in given.items():
    validation.check_array(h, name)
    validation.check_floating(h, name)
    h = np.asarray(h)
    if h.ndim not in (1, 2) or h.shape[0] != n:
      raise ValueError(
          f"{name} must have shape [N, D] with N = {n} (one row per example "
          f"of the logits, in the same order), got {h.shape}.")
    _check_finite(h, name)
    out.append(cch_lib.drop_constant_columns(h, name))
  return tuple(out)


_CLASS_METRICS = ("nckl", "ncjsd")


def _class_sums(per_entry, y, valid, classes) -> np.ndarray:
  """``f64[N, (1 + len(_CLASS_METRICS))·C]``: each example's valid entries
  per class — their count, then their sum of each of ``_CLASS_METRICS``, C
  columns each."""
  n = y.shape[0]
  rows = np.broadcast_to(np.arange(n).reshape((n,) + (1,) * (y.ndim - 1)),
                         y.shape)[valid]
  cells = rows * classes + y[valid]

  def sums(values):
    return np.bincount(cells, weights=values, minlength=n * classes
                       ).reshape(n, classes)

  return np.concatenate(
      [sums(np.ones(len(cells)))]
      + [sums(per_entry[name][valid].astype(np.float64))
         for name in _CLASS_METRICS], axis=1)


def _per_class(class_sums, class_resampled, level) -> ClassDivergence:
  """Per class means and their intervals from ``_class_sums`` and its
  resampled column sums ``f64[B, (1 + len(_CLASS_METRICS))·C]``."""
  columns = 1 + len(_CLASS_METRICS)  # the count, then each metric's sum
  count, *parts = np.split(class_sums, columns, axis=1)
  resampled_count, *boots = np.split(class_resampled, columns, axis=1)
  tail = 100 * (1 - level) / 2
  out = {}
  for name, s, boot_sums in zip(_CLASS_METRICS, parts, boots):
    point = _ratio(s.sum(0), count.sum(0))
    boot = _ratio(boot_sums, resampled_count)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
      # A class with no example is NaN in every resample (documented).
      warnings.simplefilter("ignore", RuntimeWarning)
      low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0) \
          if np.isfinite(boot).any() else (point, point)
    out[name] = np.stack([point, low, high], axis=1)
  return ClassDivergence(count.sum(0).astype(np.int64), out["nckl"],
                         out["ncjsd"])


def _evidence(stats, ratio, cch, rule, ntdh, cch_v, kept, mask_ratio,
              level) -> tuple:
  pct = f"{level:.0%}"
  nc = stats["ncjsd"]
  kl = stats["kl"]
  lines = [] if kl.high >= rule.kl_floor else [
      f"KL(teacher || student) {kl.value:.2g} nats is below "
      f"{rule.kl_floor:g}: the student already predicts what the teacher "
      "does, nothing to distil."]
  lines += [
      f"NTDH: mean NCJSD {nc.value:.4f} nats ({pct} interval "
      f"[{nc.low:.4f}, {nc.high:.4f}]; helps below {rule.ncjsd_helps:g}, "
      f"hurts above {rule.ncjsd_hurts:g}).",
      f"TCJSD {stats['tcjsd'].value:.4f}, NCJSD / TCJSD = "
      f"{ratio.value:.3g}: the modalities disagree "
      + ("more on the non-target classes than on the target."
         if ratio.value > 1 else "less on the non-target classes than on the "
         "target." if ratio.value <= 1 else "on nothing (identical "
         "predictions).")]
  if cch is None:
    lines.append("CCH: no features given, so Δ was not estimated.")
  else:
    low, high = cch.interval
    lines.append(
        f"CCH: Δ = I(H1; H2) − I(H2; Y) = {cch.gap.mean:.4f} {cch.unit} "
        f"(interval [{low:.4f}, {high:.4f}]; helps above "
        f"{rule.delta_helps:g}, hurts below {rule.delta_hurts:g}) → {cch_v}.")
  shown = ", ".join(f"{r:.0%}: {v:.4f}" for r, v in sorted(kept.items()))
  if mask_ratio is None:
    lines.append(f"Mask: the kept entries' mean NCJSD ({shown}) stays above "
                 f"{rule.ncjsd_helps:g} at every ratio tried.")
  elif mask_ratio == 0:
    lines.append(f"Mask: none needed; the mean NCJSD ({shown} by the share "
                 f"excluded) is below {rule.ncjsd_helps:g} unmasked.")
  else:
    lines.append(f"Mask the top {mask_ratio:.0%}: the kept entries' mean "
                 f"NCJSD ({shown}) is below {rule.ncjsd_helps:g} from there.")
  lines.append(f"NTDH votes: {ntdh}.")
  return tuple(lines)


__all__ = ["DEFAULT_RATIOS", "DEFAULT_RULE", "ClassDivergence", "Diagnosis",
           "HELPS", "HURTS", "Interval", "METRICS", "MIN_EXAMPLES",
           "NEUTRAL", "Rule", "VERDICTS", "check_rule", "cch_vote", "combine",
           "diagnose", "ntdh_vote", "recommend_mask",
           "vote"]
