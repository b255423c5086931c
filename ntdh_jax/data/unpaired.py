"""Unpaired cross-modal batches and UCMKD's robustness presets, jit/vmap-safe.

UCMKD (Tran et al., "Cross-Modal Knowledge Distillation without Paired
Data", ICML 2026) distils a frozen teacher of one modality into a student of
another without instance pairs. A training step draws B student rows and,
for each, a teacher row that the losses see beside it; how the two meet is
the ``pairing`` (``PAIRINGS``):

* ``"paired"``: the same row (the paired dataset, for comparison).
* ``"class_paired"``: a uniformly random teacher row of the same class. This
  is the released code's unpaired loader (Duckduck-05/UCMKD,
  ``ravdess/utils/RavvdessDataset.py`` ``RavvdessDataset.__getitem__``, and
  ``ave/utils/AVEDataset.py``, ``vggsound/utils/VGGSoundDataset.py``): the
  student's row comes from the loader's index, its audio clip from
  ``random.choice`` over the audio rows of that row's label, redrawn every
  time the row is visited. (The CREMA-D loader,
  ``cremad/utils/CremadDataset.py``, returns the audio and frames of the same
  datum: paired.)
* ``"unpaired"``: a uniformly random teacher row, independent of the label:
  the paper's "random permutation of a paired dataset's positions", which
  keeps both marginals and breaks every pairing.

Robustness presets (the paper's Table 14; the code's ``CHALLENGE_PRESETS``)
are row pools of the training set (``pools``): the student draws its rows
from one pool, the teacher partners from the other.

* Marginal mismatch, ``student_share`` in (0, 1]. 1: no mismatch, both pools
  are every row. Below 1, each class's n_c rows are ranked in a random order
  (drawn from the key) and the first k_c = clip(round(student_share · n_c),
  1, n_c − 1) go to the student's pool, the other n_c − k_c to the
  teacher's: disjoint, each non-empty in every class (a class-paired draw
  always finds a partner). ``round`` is half up, floor(x + 1/2).
* Label imbalance, ``imbalance`` >= 1 (1: none). The student's pool keeps,
  of class c (label order c = 0..C − 1), the first m_c = max(1, round(k_c ·
  imbalance^(−c/(C − 1)))) of its k_c rows by the same rank: an exponential
  long tail from k_0 rows of class 0 down to about k_{C−1} / imbalance rows of
  the last class. The teacher's pool is unaffected.

The counts depend only on the labels and the two hyperparameters, never on
the key; ``pool_counts`` computes them on the host (NumPy, in the float32
arithmetic of the traced code, so the numbers agree: tested on CPU, where
XLA's float32 ``pow`` matches NumPy's bit for bit; a backend whose ``pow``
differed by an ulp could move a student count by one row, only where k_c ·
imbalance^(−c/(C − 1)) lies within float32 rounding of a half-integer) for
plan-time checks.
Student rows are then drawn uniformly from the student pool, so the student's
label marginal is its pool's, m_c / Σ m: under imbalance, a long tail.

The released code, for comparison (``RavvdessDataset.__init__``; presets
``clean`` / ``mild`` / ``moderate`` / ``hard`` = ratio 0.7 / 0.5 / 0.3,
shift level 0.3 / 0.5 / 0.8, imbalance factor 5 / 10 / 50, all off for
``clean``; ``helper.gen_data_challenging`` builds the loader; only RAVDESS has
them):

* ``marginal_ratio`` r is the *audio* pool's share: per class (shuffled with
  a fixed ``random.Random(seed)``, seed 42 unless given), the first
  max(1, floor(r · n_c)) rows hold the audio clips, the rest the images (a
  class of one row gives both modalities that row). With the default student
  (``run.sh`` ``STU_TYPE=0``: image student, audio teacher) r is the
  teacher's share, so presets 0.7 / 0.5 / 0.3 are ``student_share`` 0.3 /
  0.5 / 0.7 here; with ``STU_TYPE=1`` (audio student) r is the student's
  share. We round half up where the code floors.
* Label imbalance ranks the classes in a random order (``random.Random(seed +
  1)``), keeps max(1, floor(len · factor^(−rank/(C − 1)))) rows of one
  modality's pool (a random sample), and applies it to ``imbalance_modality``
  (default ``"audio"``, the teacher's under the default student). The loader
  still visits every training row once per epoch and reads the label from
  that row, so the code's "imbalance" never changes the label frequencies of
  a batch: it only leaves fewer distinct partner clips for tail classes. Here
  the long tail is over the student's pool, in label order (key-free counts),
  so the student's label marginal is long-tailed: the usual meaning.
* Under mismatch the code draws the student's image from the image pool of
  the visited row's class, so each class is seen n_c times per epoch whatever
  its pool size; here a class is drawn with probability k_c / Σ k, which
  is n_c / N up to rounding.

Domain shift (the presets' third knob) is not a row pool and is not here: it
is a corruption hyperparameter of the data source (the code adds audio noise
of std 0.05 + 0.2 · level and image colour jitter, grayscale, blur and
erasing with level-scaled probabilities).

Shapes: N training rows, C classes (both static), B rows per batch (static).
``student_share`` and ``imbalance`` may be traced float scalars (one per
vmapped run), so one compiled program serves a sweep. Their ranges, and the
labels', are checked when concrete (``ValueError`` naming the argument);
traced values cannot raise here (a ``checkify`` debug check, on under
``ntdh_jax.checked``), so the stage's hyperparameter ranges check them at
plan time, with ``pool_counts``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntdh_jax import validation

PAIRINGS = ("paired", "class_paired", "unpaired")


class Pools(NamedTuple):
  """Row pools of the training set: ``student bool[N]``, ``teacher
  bool[N]``."""
  student: jax.Array
  teacher: jax.Array


class PoolIndex(NamedTuple):
  """A pool laid out for drawing (``pool_index``).

  ``order i32[N]``: the rows sorted by class, the pool's rows first within
  each class; ``start i32[C]``: each class's first position in ``order``;
  ``count i32[C]``: the pool's rows of each class (``order[start[c] :
  start[c] + count[c]]``); ``size i32[]``: the pool's rows in all.
  """
  order: jax.Array
  start: jax.Array
  count: jax.Array
  size: jax.Array


# ---------------------------------------------------------------- checks


def _check_labels(labels, num_classes: int, name: str = "labels"):
  validation.check_positive_int(num_classes, "num_classes")
  validation.check_array(labels, name)
  if jnp.ndim(labels) != 1 or jnp.shape(labels)[0] == 0:
    raise ValueError(
        f"{name} must be the non-empty int[N] labels of the training set, "
        f"got shape {jnp.shape(labels)}.")
  validation.check_labels(labels, jnp.shape(labels), num_classes, name=name)


def _scalar32(value):
  """(array module, ``value`` as float32): NumPy when concrete, so a constant
  is checked at once even inside a trace."""
  xp = np if validation.is_concrete(value) else jnp
  return xp, xp.asarray(value, np.float32)


def _check_hyperparameters(student_share, imbalance):
  validation.check_scalar(student_share, "student_share")
  validation.check_scalar(imbalance, "imbalance")
  _, share = _scalar32(student_share)
  xp, imb = _scalar32(imbalance)
  validation.require((share > 0) & (share <= 1),
                     "student_share must lie in (0, 1], got {:.8g}.", share)
  validation.require((imb >= 1) & xp.isfinite(imb),
                     "imbalance must be >= 1 (1: none) and finite, got "
                     "{:.8g}.", imb)


def _check_splittable(xp, sizes, share):
  """Under mismatch every present class needs two rows (one per pool)."""
  small = (sizes == 1) & (share < 1)
  validation.require(
      ~xp.any(small),
      "labels: class {} has one row, so student_share {:.8g} < 1 cannot give "
      "it disjoint non-empty student and teacher pools (every class needs at "
      "least 2 rows under marginal mismatch).", xp.argmax(small), share)


# ---------------------------------------------------------------- pools


def _counts(xp, sizes, share, imbalance, num_classes: int):
  """(k, student, teacher) counts ``int32[C]`` from the class sizes, in
  float32 arithmetic in ``xp`` (NumPy or jax.numpy: the same numbers)."""
  f32 = np.float32
  sizes = sizes.astype(np.int32)
  share = share.astype(f32)
  imbalance = imbalance.astype(f32)
  mismatch = share < 1
  split = xp.floor(share * sizes.astype(f32) + f32(0.5)).astype(np.int32)
  split = xp.minimum(xp.maximum(split, 1), xp.maximum(sizes - 1, 1))
  k = xp.minimum(xp.where(mismatch, split, sizes), sizes)
  # A one-row class under mismatch (rejected when concrete) keeps its row in
  # both pools, as the code's fallback does.
  teacher = xp.where(mismatch & (sizes >= 2), sizes - k, sizes)
  # c / (C − 1) is static: only the base is traced.
  exponent = np.arange(num_classes, dtype=f32) / f32(max(num_classes - 1, 1))
  factor = xp.power(imbalance, -exponent)
  tail = xp.floor(k.astype(f32) * factor + f32(0.5)).astype(np.int32)
  student = xp.where(k > 0, xp.minimum(xp.maximum(tail, 1), k), 0)
  return k, student.astype(np.int32), teacher.astype(np.int32)


def pool_counts(labels: np.ndarray, student_share: float, imbalance: float,
                num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """The pools' rows per class, on the host: ``(student_counts,
  teacher_counts)``, ``int32[C]`` each; what ``pools`` gives, for any key.

  Args:
    labels: ``int[N]`` in [0, ``num_classes``).
    student_share: in (0, 1] (see the module docstring).
    imbalance: >= 1.
    num_classes: C.

  Raises ``ValueError`` naming the argument on a bad value, and naming
  ``labels`` when ``student_share`` < 1 meets a class of one row.
  """
  labels = np.asarray(labels)
  _check_labels(labels, num_classes)
  _check_hyperparameters(student_share, imbalance)
  sizes = np.bincount(labels, minlength=num_classes).astype(np.int32)
  share = np.asarray(student_share, np.float32)
  _check_splittable(np, sizes, share)
  _, student, teacher = _counts(np, sizes, share,
                                np.asarray(imbalance, np.float32), num_classes)
  return student, teacher


def pools(labels, key, *, student_share, imbalance, num_classes: int
          ) -> Pools:
  """The student's and teacher's row pools of the training set.

  Marginal mismatch splits each class by a random rank (drawn from ``key``)
  into disjoint student / teacher pools, the first k_c rows the student's;
  label imbalance keeps the first m_c of those (the module docstring has the
  formulas and the released code's versions). Counts per class are
  ``pool_counts``'s, whatever the key.

  Args:
    labels: ``int[N]`` in [0, ``num_classes``).
    key: a PRNG key (the within-class ranks).
    student_share: in (0, 1], may be traced; 1 = no mismatch (both pools are
      every row, before imbalance).
    imbalance: >= 1, may be traced; 1 = none.
    num_classes: C, static.

  Returns:
    ``Pools(student bool[N], teacher bool[N])``.
  """
  _check_labels(labels, num_classes)
  _check_hyperparameters(student_share, imbalance)
  if validation.is_concrete(labels) and validation.is_concrete(student_share):
    _check_splittable(np, np.bincount(np.asarray(labels), minlength=(
        num_classes)), np.asarray(student_share, np.float32))
  labels = jnp.asarray(labels, jnp.int32)
  n = labels.shape[0]
  share = jnp.asarray(student_share, jnp.float32)
  sizes = jnp.bincount(labels, length=num_classes).astype(jnp.int32)
  if not (validation.is_concrete(labels)
          and validation.is_concrete(student_share)):
    _check_splittable(jnp, sizes, share)
  k, student_count, _ = _counts(jnp, sizes, share,
                                jnp.asarray(imbalance, jnp.float32),
                                num_classes)
  # A uniformly random order within each class: a random permutation, then
  # a stable sort by label.
  shuffled = jax.random.permutation(key, n)
  by_class = shuffled[jnp.argsort(labels[shuffled], stable=True)]
  start = jnp.cumsum(sizes) - sizes
  rank = jnp.zeros(n, jnp.int32).at[by_class].set(
      jnp.arange(n, dtype=jnp.int32) - start[labels[by_class]])
  student = rank < student_count[labels]
  split = (share < 1) & (sizes >= 2)
  teacher = jnp.where(split[labels], rank >= k[labels], True)
  return Pools(student=student, teacher=teacher)


# ---------------------------------------------------------------- drawing


def pool_index(labels, pool, num_classes: int) -> PoolIndex:
  """``pool`` laid out for drawing by class (computed once per run).

  Args:
    labels: ``int[N]`` in [0, ``num_classes``).
    pool: ``bool[N]``, the pool's rows.
    num_classes: C, static.
  """
  _check_labels(labels, num_classes)
  validation.check_array(pool, "pool")
  validation.check_shape(pool, "pool", jnp.shape(labels))
  if jnp.result_type(pool) != jnp.bool_:
    raise TypeError(f"pool must be a bool array, got dtype "
                    f"{jnp.result_type(pool)}.")
  labels = jnp.asarray(labels, jnp.int32)
  pool = jnp.asarray(pool)
  order = jnp.lexsort((~pool, labels)).astype(jnp.int32)
  sizes = jnp.bincount(labels, length=num_classes).astype(jnp.int32)
  count = jnp.bincount(labels, weights=pool.astype(jnp.int32),
                       length=num_classes).astype(jnp.int32)
  return PoolIndex(order=order, start=(jnp.cumsum(sizes) - sizes).astype(
      jnp.int32), count=count, size=jnp.sum(count).astype(jnp.int32))


def _check_index(index):
  validation.check_type(index, PoolIndex, "index",
                        "a PoolIndex (from pool_index)")


def draw_rows(key, index: PoolIndex, batch_size: int):
  """``batch_size`` rows drawn uniformly, with replacement, from the pool:
  every pool row equally likely (classes in proportion to their pool rows).

  With replacement, so any pool of at least one row gives a static batch
  shape (a pool under heavy imbalance may be smaller than a batch). An empty
  pool (``index.size`` = 0) gives meaningless rows; ``pools`` never makes
  one.

  Returns ``i32[B]`` row numbers into the training set.
  """
  _check_index(index)
  validation.check_positive_int(batch_size, "batch_size")
  j = jax.random.randint(key, (batch_size,), 0, index.size)
  ends = jnp.cumsum(index.count)
  c = jnp.searchsorted(ends, j, side="right")
  offset = j - (ends[c] - index.count[c])
  return index.order[index.start[c] + offset]


def partners(key, student_rows, labels, pairing: str,
             teacher_index: PoolIndex):
  """Each student row's teacher row, by ``pairing`` (static, ``PAIRINGS``).

  * ``"paired"``: ``student_rows`` themselves (``key`` unused).
  * ``"class_paired"``: for each row, a uniformly random row of the teacher
    pool with the row's label, drawn independently (with replacement). A
    class absent from the teacher pool gives meaningless rows; ``pools``
    keeps every class of the student's pool in the teacher's.
  * ``"unpaired"``: B rows drawn uniformly, with replacement, from the
    teacher pool (``draw_rows``), independent of the labels.

  Args:
    key: a PRNG key.
    student_rows: ``int[B]`` row numbers into the training set.
    labels: ``int[N]``, the training set's labels.
    pairing: one of ``PAIRINGS``.
    teacher_index: ``pool_index`` of the teacher's pool.

  Returns ``i32[B]`` row numbers into the training set.
  """
  validation.check_choice(pairing, "pairing", PAIRINGS)
  validation.check_array(student_rows, "student_rows")
  if jnp.ndim(student_rows) != 1:
    raise ValueError(f"student_rows must be int[B], got shape "
                     f"{jnp.shape(student_rows)}.")
  validation.check_integer(student_rows, "student_rows")
  _check_index(teacher_index)
  student_rows = jnp.asarray(student_rows, jnp.int32)
  if pairing == "paired":
    return student_rows
  if pairing == "unpaired":
    return draw_rows(key, teacher_index, student_rows.shape[0])
  validation.check_array(labels, "labels")
  validation.check_integer(labels, "labels")
  c = jnp.asarray(labels, jnp.int32)[student_rows]
  count = teacher_index.count[c]
  j = jax.random.randint(key, student_rows.shape, 0, count)
  return teacher_index.order[teacher_index.start[c] + j]
