"""Synthetic teacher/student views with a tunable cross-modal domain gap.

Two families, each in two modes:

* JAX-keyed (``ntdh_views``, ``mfh_views``) for sweeps: the gap (γ or the
  overlap) may be a traced scalar, so ``jit(vmap(...))`` over gaps and keys
  compiles once. The informative columns are chosen by a column-mask
  ``where`` rather than slicing, so no shape depends on the gap.
* Reference (``ntdh_views_reference``, ``mfh_views_reference``): NumPy, the
  exact arrays the authors' scripts train on, to compare with published
  numbers.

NTDH (Chen et al., Non-target Divergence Hypothesis; reference
elonchern/Non-target-Divergence-Hypothesis, ``sklearn/``):
``make_classification`` with 4 classes and 50 informative features, scaled by
a ``StandardScaler`` fitted on all 10 000 rows, then split 6000/4000. The
student view is 50-d N(0, 1) noise whose columns 0:20 are the base features
0:20; the teacher view is 50-d noise whose columns (20−v):(40−v) are the base
features (20−v):(40−v), so teacher and student share v = 20·(1−γ)
informative columns. γ follows the paper: γ = 0 → the same 20 informative
columns, γ = 1 → disjoint ones. (The reference loops over ``vari_dim`` = v and
prints ``vari_dim / 20`` as "gamma", the other way round.)

MFH (Xue et al., The Modality Focusing Hypothesis, ICLR'23; reference
zihuixue/MFH ``gauss/main.py``, mode ``increase_gamma``): decisive features
xs ~ N(0, I) of dim xs1 + xs2, a separating hyperplane a ~ N(0, I) (the δ of
the paper's Eq. 27), labels y = 1[xs·a > 0]. The student (the reference's x2,
50-d) is noise with columns 0:xs2 = xs[:, 0:xs2]; the teacher (x1, 25-d) is
noise with columns (xs2−o):(xs2−o+xs1) = xs[:, same], o = overlap. The
reference's γ is ``mfh_gamma``: o / (xs1 + xs2 − o), the shared decisive
features over all decisive features; it grows with the overlap (γ = 1: both
views hold the same decisive features), opposite in direction to NTDH's γ.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ntdh_jax import hparams as hparams_lib
from ntdh_jax import validation
from ntdh_jax.data import source

NTDH_NUM_FEATURES = 50
NTDH_NUM_CLASSES = 4
NTDH_INFORMATIVE = 20  # informative columns per view (reference: fixed_dim)
_NTDH_NUM_SAMPLES = 10_000
_NTDH_TEST_SIZE = 0.4
_NTDH_SEED = 42  # the reference's np.random.seed and split random_state
_MFH_HYPERPLANE_DRAW = 500  # the reference draws randn(500), uses a prefix


class NTDHBase(NamedTuple):
  """The standardised ``make_classification`` data both NTDH views cut from.

  ``x_train: f32[6000, 50]``, ``x_test: f32[4000, 50]``,
  ``y_train: i32[6000]``, ``y_test: i32[4000]`` (labels in [0, 4)).
  """
  x_train: np.ndarray
  x_test: np.ndarray
  y_train: np.ndarray
  y_test: np.ndarray


Views = source.Views


def _require_concrete(value, name: str, instead: str):
  if not validation.is_concrete(value):
    raise TypeError(
        f"{name} must be a concrete value here (NumPy reference mode); under "
        f"jit/vmap use {instead}.")


def _band_mask(num_columns: int, start, length: int) -> jax.Array:
  """``bool[num_columns]``, True on columns [start, start + length).

  ``start`` may be traced: the mask is computed, never sliced, so its shape
  stays static.
  """
  columns = jnp.arange(num_columns)
  return (columns >= start) & (columns < start + length)


# --------------------------------------------------------------------- NTDH


def ntdh_base(random_state: int = 42) -> NTDHBase:
  """The reference's ``dataset()``: generate, standardise, then split.

  ``random_state`` seeds ``make_classification`` only; the split always uses
  ``random_state=42``, as the reference's ``dataset()`` does (its CMD-distance
  loop varies the generator seed alone). The scaler is fitted on all 10 000
  rows *before* the split (so it sees the test rows): that is the reference's
  order, kept so the arrays match. Deterministic.
  """
  x, y = make_classification(
      n_samples=_NTDH_NUM_SAMPLES, n_classes=NTDH_NUM_CLASSES,
      n_features=NTDH_NUM_FEATURES, n_informative=NTDH_NUM_FEATURES,
      n_redundant=0, n_clusters_per_class=1, random_state=random_state)
  x = StandardScaler().fit_transform(x)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=_NTDH_TEST_SIZE, random_state=_NTDH_SEED)
  return NTDHBase(x_train.astype(np.float32), x_test.astype(np.float32),
                  y_train.astype(np.int32), y_test.astype(np.int32))


def check_gamma(gamma):
  """Checks NTDH's γ: a scalar in [0, 1] with 20·(1−γ) an integer.

  Only a concrete γ is checked; under a trace (jit/vmap) the view
  generators round 20·(1−γ) to the nearest integer and clip it to [0, 20].
  """
  validation.check_scalar(gamma, "gamma")
  if not validation.is_concrete(gamma):
    return
  g = float(gamma)
  shared = NTDH_INFORMATIVE * (1.0 - g)
  if not (0.0 <= g <= 1.0 and abs(shared - round(shared)) <= 1e-6):
    raise ValueError(
        f"gamma must be a multiple of 0.05 in [0, 1] (0, 0.05, ..., 1), so "
        f"that the teacher and student share 20·(1 − gamma) whole columns; "
        f"got gamma = {g}.")


def ntdh_shared_columns(gamma) -> jax.Array:
  """v = 20·(1−γ), the informative columns both views share, ``i32[]``."""
  v = jnp.round(NTDH_INFORMATIVE * (1.0 - jnp.asarray(gamma, jnp.float32)))
  return jnp.clip(v, 0, NTDH_INFORMATIVE).astype(jnp.int32)


def ntdh_column_masks(gamma) -> tuple[jax.Array, jax.Array]:
  """Which columns of each view are base features: ``(teacher, student)``.

  Both ``bool[50]``: the student's are columns 0:20, the teacher's
  (20−v):(40−v) with v = ``ntdh_shared_columns(gamma)``. These are the "true"
  modality-general masks the NTDH feature-mask experiments compare against.
  """
  v = ntdh_shared_columns(gamma)
  teacher = _band_mask(NTDH_NUM_FEATURES, NTDH_INFORMATIVE - v,
                       NTDH_INFORMATIVE)
  student = _band_mask(NTDH_NUM_FEATURES, 0, NTDH_INFORMATIVE)
  return teacher, student


def ntdh_views(base: NTDHBase, gamma, key: jax.Array) -> Views:
  """NTDH views with fresh N(0, 1) noise from ``key``; jit/vmap-able in γ.

  Args:
    base: ``ntdh_base()`` (may be passed through jit as arrays).
    gamma: scalar domain gap, a multiple of 0.05 in [0, 1] (checked when
      concrete; rounded under a trace, see ``check_gamma``).
    key: PRNG key, split into four for the noise of student-train,
      teacher-train, student-test and teacher-test (the reference's order).

  Returns:
    ``Views`` of ``f32[6000, 50]`` / ``f32[4000, 50]`` views and the base's
    ``i32`` labels.
  """
  check_gamma(gamma)
  teacher_mask, student_mask = ntdh_column_masks(gamma)
  k_student_train, k_teacher_train, k_student_test, k_teacher_test = (
      jax.random.split(key, 4))

  def view(x, mask, k):
    x = jnp.asarray(x, jnp.float32)
    return jnp.where(mask, x, jax.random.normal(k, x.shape, jnp.float32))

  return Views(
      teacher_train=view(base.x_train, teacher_mask, k_teacher_train),
      student_train=view(base.x_train, student_mask, k_student_train),
      y_train=jnp.asarray(base.y_train, jnp.int32),
      teacher_test=view(base.x_test, teacher_mask, k_teacher_test),
      student_test=view(base.x_test, student_mask, k_student_test),
      y_test=jnp.asarray(base.y_test, jnp.int32))


def ntdh_views_reference(gamma) -> Views:
  """The exact arrays of the reference's ``run_exp`` (non-CRD losses).

  The reference calls ``np.random.seed(42)``, builds the base (whose sklearn
  calls use their own ``random_state`` and leave the global stream alone),
  then draws ``np.random.randn(n, 50)`` for student-train, teacher-train,
  student-test, teacher-test in that order and overwrites the informative
  columns; torch's ``FloatTensor`` casts to float32. A private
  ``RandomState(42)`` yields the same stream without touching NumPy's global
  state. ``gamma`` must be concrete. Returns NumPy ``Views``.
  """
  _require_concrete(gamma, "gamma", "ntdh_views")
  check_gamma(gamma)
  base = ntdh_base()
  v = round(NTDH_INFORMATIVE * (1.0 - float(gamma)))
  teacher_cols = slice(NTDH_INFORMATIVE - v, 2 * NTDH_INFORMATIVE - v)
  student_cols = slice(0, NTDH_INFORMATIVE)
  rng = np.random.RandomState(_NTDH_SEED)

  def view(x, cols):
    out = rng.randn(*x.shape)
    out[:, cols] = x[:, cols]
    return out.astype(np.float32)

  # Draw order matters: each call consumes the shared stream.
  student_train = view(base.x_train, student_cols)
  teacher_train = view(base.x_train, teacher_cols)
  student_test = view(base.x_test, student_cols)
  teacher_test = view(base.x_test, teacher_cols)
  return Views(teacher_train, student_train, base.y_train,
               teacher_test, student_test, base.y_test)


def distinct_seeds(n: int, base_seed: int = 0) -> np.ndarray:
  """``n`` distinct seeds, ``i32[n]`` in [0, 2³¹ − 1), fixed by ``base_seed``.

  The reference draws each run's seed with ``random.randint(0, 100)``; ten
  such draws repeat a seed with probability ≈ 0.37, and its own
  ``random.seed(42)`` stream does repeat (94 at runs 4 and 9), so two of its
  "10 runs" are the same run. Here seeds are drawn without replacement.
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f"n must be a non-negative integer, got {n!r}.")
  rng = np.random.default_rng(base_seed)
  return rng.choice(2**31 - 1, size=n, replace=False).astype(np.int32)


# ---------------------------------------------------------------------- MFH


def mfh_gamma(overlap, teacher_decisive_dim: int = 10,
              student_decisive_dim: int = 10):
  """MFH's γ = o / (xs1 + xs2 − o): shared over all decisive features.

  The reference's ``exp1`` prints ``overlap_dim / (20 - overlap_dim)``; with
  xs1 = xs2 = 10 the overlaps 0, 2, ..., 10 give γ = 0, 0.11, 0.25, 0.43,
  0.67, 1.
  """
  return overlap / (teacher_decisive_dim + student_decisive_dim - overlap)


def check_overlap(overlap, teacher_decisive_dim: int = 10,
                  student_decisive_dim: int = 10):
  """Checks a concrete overlap is an integer in [0, min(xs1, xs2)].

  The teacher's decisive block starts at column xs2 − o, so o may not exceed
  xs2, and it holds xs1 features, so o may not exceed xs1. Under a trace the
  overlap is rounded and clipped to that range instead.
  """
  validation.check_scalar(overlap, "overlap")
  if not validation.is_concrete(overlap):
    return
  o = float(overlap)
  top = min(teacher_decisive_dim, student_decisive_dim)
  if not (0 <= o <= top and o == int(o)):
    raise ValueError(
        f"overlap must be an integer in [0, {top}] (shared decisive "
        f"features, at most min(xs1, xs2)); got overlap = {overlap}.")


def _check_mfh_dims(teacher_dim, student_dim, teacher_decisive_dim,
                    student_decisive_dim):
  # Every overlap must fit: the teacher's block ends at column xs1 + xs2 − o.
  if student_decisive_dim > student_dim:
    raise ValueError(
        f"student_decisive_dim ({student_decisive_dim}) must be <= "
        f"student_dim ({student_dim}).")
  if teacher_decisive_dim + student_decisive_dim > teacher_dim:
    raise ValueError(
        f"teacher_dim ({teacher_dim}) must be >= teacher_decisive_dim + "
        f"student_decisive_dim ({teacher_decisive_dim + student_decisive_dim})"
        " so that the teacher's decisive block fits at every overlap.")
  if teacher_decisive_dim + student_decisive_dim > _MFH_HYPERPLANE_DRAW:
    raise ValueError(
        "teacher_decisive_dim + student_decisive_dim must be <= "
        f"{_MFH_HYPERPLANE_DRAW}, the hyperplane length the reference draws.")


def _pad_columns(xs, width: int):
  """``xs[:, :width]`` zero-padded to ``width`` columns (masked out later)."""
  xs = xs[:, :width]
  return jnp.pad(xs, ((0, 0), (0, width - xs.shape[1])))


def _mfh_split(key, a, n, overlap, dims):
  teacher_dim, student_dim, xs1, xs2 = dims
  k_xs, k_student, k_teacher = jax.random.split(key, 3)
  xs = jax.random.normal(k_xs, (n, xs1 + xs2), jnp.float32)
  # An elementwise sum, not a matmul: accelerators may run f32 matmuls at
  # reduced precision, which would flip labels of points near the hyperplane.
  y = (jnp.sum(xs * a, axis=-1) > 0).astype(jnp.int32)
  o = jnp.clip(jnp.round(jnp.asarray(overlap, jnp.float32)), 0, min(xs1, xs2))
  teacher_mask = _band_mask(teacher_dim, xs2 - o, xs1)
  student_mask = _band_mask(student_dim, 0, xs2)
  teacher = jnp.where(
      teacher_mask, _pad_columns(xs, teacher_dim),
      jax.random.normal(k_teacher, (n, teacher_dim), jnp.float32))
  student = jnp.where(
      student_mask, _pad_columns(xs, student_dim),
      jax.random.normal(k_student, (n, student_dim), jnp.float32))
  return teacher, student, y


def mfh_views(key: jax.Array, overlap, n_train: int = 200, n_test: int = 1000,
              *, teacher_dim: int = 25, student_dim: int = 50,
              teacher_decisive_dim: int = 10,
              student_decisive_dim: int = 10) -> Views:
  """MFH Gaussian views from ``key``; jit/vmap-able in ``overlap``.

  Defaults are the reference's ``increase_gamma`` setting (x1 = teacher 25-d,
  x2 = student 50-d, xs1 = xs2 = 10, 200 train / 1000 test samples).

  Key layout (documented so runs can be re-derived): ``key`` splits into
  (hyperplane, train, test); the hyperplane a ~ N(0, I_{xs1+xs2}) is shared
  by both splits, and each split key splits into (xs, student noise, teacher
  noise).

  Args:
    key: PRNG key.
    overlap: scalar o, decisive features the views share (checked when
      concrete, see ``check_overlap``); γ = ``mfh_gamma(o)``.
    n_train, n_test: split sizes (static).
    teacher_dim, student_dim: view widths (static).
    teacher_decisive_dim, student_decisive_dim: xs1, xs2 (static).

  Returns:
    ``Views``: ``f32[n, teacher_dim]``, ``f32[n, student_dim]``, ``i32[n]``
    labels in {0, 1}.
  """
  dims = (teacher_dim, student_dim, teacher_decisive_dim, student_decisive_dim)
  _check_mfh_dims(*dims)
  check_overlap(overlap, teacher_decisive_dim, student_decisive_dim)
  k_a, k_train, k_test = jax.random.split(key, 3)
  a = jax.random.normal(k_a, (teacher_decisive_dim + student_decisive_dim,),
                        jnp.float32)
  train = _mfh_split(k_train, a, n_train, overlap, dims)
  test = _mfh_split(k_test, a, n_test, overlap, dims)
  return Views(*train, *test)


def _mfh_split_reference(rng, a, n, overlap, dims):
  teacher_dim, student_dim, xs1, xs2 = dims
  xs = rng.randn(n, xs1 + xs2)
  y = np.dot(xs, a) > 0
  student = rng.randn(n, student_dim)  # x2 is drawn before x1
  student[:, :xs2] = xs[:, :xs2]
  teacher = rng.randn(n, teacher_dim)
  cols = slice(xs2 - overlap, xs2 - overlap + xs1)
  teacher[:, cols] = xs[:, cols]
  return (teacher.astype(np.float32), student.astype(np.float32),
          y.astype(np.int32))


def mfh_views_reference(seed: int, overlap: int, n_train: int = 200,
                        n_test: int = 1000, *, teacher_dim: int = 25,
                        student_dim: int = 50, teacher_decisive_dim: int = 10,
                        student_decisive_dim: int = 10) -> Views:
  """The exact arrays of the reference's ``run_mm`` in ``increase_gamma`` mode.

  Draw order: seed(seed); a = randn(500), of which the first xs1 + xs2
  entries are the hyperplane; train: xs = randn(n, xs1 + xs2),
  x2 (student) = randn(n, student_dim), x1 (teacher) = randn(n, teacher_dim);
  then seed(seed + 1) and the test split in the same order with the same a.
  Private ``RandomState``s give the streams of the global seeds without
  touching NumPy's global state. Returns NumPy ``Views`` (float32, int32).
  """
  _require_concrete(overlap, "overlap", "mfh_views")
  dims = (teacher_dim, student_dim, teacher_decisive_dim, student_decisive_dim)
  _check_mfh_dims(*dims)
  check_overlap(overlap, teacher_decisive_dim, student_decisive_dim)
  o = int(overlap)
  rng = np.random.RandomState(seed)
  a = rng.randn(_MFH_HYPERPLANE_DRAW)[:teacher_decisive_dim
                                      + student_decisive_dim]
  train = _mfh_split_reference(rng, a, n_train, o, dims)
  test = _mfh_split_reference(np.random.RandomState(seed + 1), a, n_test, o,
                              dims)
  return Views(*train, *test)


# ------------------------------------------------------------- the sources


@dataclasses.dataclass(frozen=True)
class NTDHConfig:
  """``random_state`` seeds ``make_classification`` (the reference: 42)."""
  random_state: int = 42


class NTDHSource(source.DataSource):
  """NTDH's γ data: ``arrays`` hold the standardised base (``x_*: f32[n, 50]``,
  ``y_*: i32[n]``); ``views`` draws the run's noise columns from its key."""
  name = "ntdh"
  Config = NTDHConfig
  # γ sets 20·(1 − γ) shared columns, so it must make that a whole number.
  hparams = {"gamma": hparams_lib.Range(0.0, 1.0, step=0.05)}

  def spec(self, config):
    del config
    view = (NTDH_NUM_FEATURES,)
    return source.DataSpec(
        teacher=source.Modality("ntdh_teacher", view, "float32"),
        student=source.Modality("ntdh_student", view, "float32"),
        num_classes=NTDH_NUM_CLASSES,
        splits={"train": round(_NTDH_NUM_SAMPLES * (1 - _NTDH_TEST_SIZE)),
                "test": round(_NTDH_NUM_SAMPLES * _NTDH_TEST_SIZE)},
        gap="gamma",
        gap_direction="0 = the views share the same 20 informative columns, "
                      "1 = disjoint ones")

  def load(self, config):
    return ntdh_base(config.random_state)._asdict()

  def views(self, config, arrays, hparams, key):
    del config
    return ntdh_views(NTDHBase(**arrays), hparams["gamma"], key)


@dataclasses.dataclass(frozen=True)
class MFHConfig:
  """Split sizes (the reference's ``increase_gamma``: 200 / 1000)."""
  n_train: int = 200
  n_test: int = 1000


class MFHSource(source.DataSource):
  """MFH's Gaussian family: everything is drawn from the run's key, so
  ``arrays`` is empty."""
  name = "mfh"
  Config = MFHConfig
  hparams = {"overlap": hparams_lib.Range(0, 10, integer=True)}

  def spec(self, config):
    return source.DataSpec(
        teacher=source.Modality("mfh_teacher", (25,), "float32"),
        student=source.Modality("mfh_student", (50,), "float32"),
        num_classes=2, splits={"train": config.n_train,
                               "test": config.n_test},
        gap="overlap",
        gap_direction="shared decisive features o; larger = smaller gap "
                      "(MFH's γ = o / (20 − o) grows with it)")

  def load(self, config):
    del config
    return {}

  def views(self, config, arrays, hparams, key):
    del arrays
    return mfh_views(key, hparams["overlap"], config.n_train, config.n_test)


source.register(NTDHSource())
source.register(MFHSource())
