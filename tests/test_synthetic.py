"""Tests of ntdh_jax.data.synthetic: layouts, γ, the exact reference mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ntdh_jax.data import synthetic

GAMMAS = (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def base():
  return synthetic.ntdh_base()


@pytest.fixture
def global_numpy_state():
  """Restores NumPy's global stream after a test that seeds it."""
  state = np.random.get_state()
  yield
  np.random.set_state(state)


def _equal_columns(view, source):
  """``bool[D_view, D_source]``: view column i is exactly source column j."""
  view, source = np.asarray(view), np.asarray(source)
  return (view[:, :, None] == source[:, None, :]).all(axis=0)


def _expected(num_view_cols, num_source_cols, cols):
  """Equality pattern when view column c is source column c for c in cols."""
  expected = np.zeros((num_view_cols, num_source_cols), bool)
  for c in cols:
    expected[c, c] = True
  return expected


def _assert_ntdh_layout(views, base, gamma):
  v = round(20 * (1 - gamma))
  layouts = ((views.student_train, base.x_train, range(0, 20)),
             (views.teacher_train, base.x_train, range(20 - v, 40 - v)),
             (views.student_test, base.x_test, range(0, 20)),
             (views.teacher_test, base.x_test, range(20 - v, 40 - v)))
  for view, source, cols in layouts:
    # Informative columns equal their base column and no other; every other
    # column equals no base column at all (it is fresh noise).
    np.testing.assert_array_equal(_equal_columns(view, source),
                                  _expected(50, 50, cols))
  np.testing.assert_array_equal(views.y_train, base.y_train)
  np.testing.assert_array_equal(views.y_test, base.y_test)


def _informative(view, source):
  return set(np.flatnonzero(np.diag(_equal_columns(view, source))))


# --------------------------------------------------------------------- base


def test_base_sizes_dtypes_and_class_balance(base):
  assert base.x_train.shape == (6000, 50) and base.x_test.shape == (4000, 50)
  assert base.y_train.shape == (6000,) and base.y_test.shape == (4000,)
  assert base.x_train.dtype == np.float32 and base.y_train.dtype == np.int32
  for y in (base.y_train, base.y_test):
    fractions = np.bincount(y, minlength=5) / len(y)
    assert fractions[4] == 0
    np.testing.assert_allclose(fractions[:4], 0.25, atol=0.02)


def test_base_is_scaled_on_all_rows_before_the_split(base):
  x = np.concatenate([base.x_train, base.x_test]).astype(np.float64)
  np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-5)
  # Scaling after the split would centre the training rows instead.
  assert np.abs(base.x_train.mean(axis=0)).max() > 1e-3


def test_base_is_deterministic(base):
  again = synthetic.ntdh_base()
  for a, b in zip(base, again):
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------ keyed NTDH


@pytest.mark.parametrize("gamma", GAMMAS)
def test_ntdh_views_column_layout(base, gamma):
  views = synthetic.ntdh_views(base, gamma, jax.random.key(0))
  assert views.teacher_train.dtype == jnp.float32
  assert views.y_train.dtype == jnp.int32
  _assert_ntdh_layout(views, base, gamma)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_gamma_counts_shared_columns_as_in_the_paper(base, gamma):
  views = synthetic.ntdh_views(base, gamma, jax.random.key(1))
  teacher = _informative(views.teacher_train, base.x_train)
  student = _informative(views.student_train, base.x_train)
  assert len(teacher) == len(student) == 20
  assert len(teacher & student) == round(20 * (1 - gamma))
  if gamma == 0.0:
    assert teacher == student
  if gamma == 1.0:
    assert not teacher & student


def test_column_masks_match_the_layout():
  teacher, student = synthetic.ntdh_column_masks(0.25)
  np.testing.assert_array_equal(np.flatnonzero(teacher), np.arange(5, 25))
  np.testing.assert_array_equal(np.flatnonzero(student), np.arange(0, 20))


def test_ntdh_views_are_deterministic_in_the_key(base):
  a = synthetic.ntdh_views(base, 0.5, jax.random.key(3))
  b = synthetic.ntdh_views(base, 0.5, jax.random.key(3))
  c = synthetic.ntdh_views(base, 0.5, jax.random.key(4))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  for name in ("teacher_train", "student_train", "teacher_test",
               "student_test"):
    x, z = np.asarray(getattr(a, name)), np.asarray(getattr(c, name))
    assert not np.any(x[:, 40:] == z[:, 40:]), name  # fresh noise
    np.testing.assert_array_equal(x[:, 10:20], z[:, 10:20])  # same base
  _assert_ntdh_layout(c, base, 0.5)


def test_the_four_noise_blocks_are_independent(base):
  views = synthetic.ntdh_views(base, 1.0, jax.random.key(5))
  noise = [np.asarray(x)[:4000, 45] for x in
           (views.student_train, views.teacher_train, views.student_test,
            views.teacher_test)]
  for i in range(4):
    for j in range(i):
      assert abs(np.corrcoef(noise[i], noise[j])[0, 1]) < 0.1


def test_traced_gamma_under_jit_and_vmap_matches_concrete(base):
  key = jax.random.key(7)
  gammas = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
  batched = jax.jit(jax.vmap(synthetic.ntdh_views, in_axes=(None, 0, None)))(
      base, gammas, key)
  jitted = jax.jit(synthetic.ntdh_views)(base, jnp.float32(0.25), key)
  for i, gamma in enumerate(gammas.tolist()):
    concrete = synthetic.ntdh_views(base, gamma, key)
    for x, y in zip(concrete, batched):
      np.testing.assert_array_equal(x, y[i])
    if gamma == 0.25:
      for x, y in zip(concrete, jitted):
        np.testing.assert_array_equal(x, y)


def test_traced_gamma_is_rounded_to_a_multiple_of_005(base):
  key = jax.random.key(8)
  rounded = jax.jit(synthetic.ntdh_views)(base, jnp.float32(0.26), key)
  exact = synthetic.ntdh_views(base, 0.25, key)
  np.testing.assert_array_equal(rounded.teacher_train, exact.teacher_train)


@pytest.mark.parametrize("gamma", (-0.1, 1.2, 0.33, float("nan")))
def test_bad_gamma_raises_naming_gamma(base, gamma):
  with pytest.raises(ValueError, match=r"gamma.*multiple of 0\.05"):
    synthetic.ntdh_views(base, gamma, jax.random.key(0))
  with pytest.raises(ValueError, match=r"gamma.*multiple of 0\.05"):
    synthetic.ntdh_views_reference(gamma)


def test_non_scalar_gamma_raises(base):
  with pytest.raises(ValueError, match="gamma must be a scalar"):
    synthetic.ntdh_views(base, jnp.array([0.0, 1.0]), jax.random.key(0))


# -------------------------------------------------------- reference NTDH


def _ntdh_reference_by_hand(vari_dim):
  """The reference run_exp's statements, in its order, on the global stream."""
  np.random.seed(42)
  x, y = make_classification(
      n_samples=10000, n_classes=4, n_features=50, n_informative=50,
      n_redundant=0, n_clusters_per_class=1, random_state=42)
  x = StandardScaler().fit_transform(x)
  x_train, x_t, y_train, y_t = train_test_split(x, y, test_size=.4,
                                                random_state=42)
  fixed = 20
  teacher_cols = slice(fixed - vari_dim, 2 * fixed - vari_dim)
  x2_train = np.random.randn(6000, 50)
  x2_train[:, 0:fixed] = x_train[:, 0:fixed]
  x1_train = np.random.randn(6000, 50)
  x1_train[:, teacher_cols] = x_train[:, teacher_cols]
  x2_test = np.random.randn(4000, 50)
  x2_test[:, 0:fixed] = x_t[:, 0:fixed]
  x1_test = np.random.randn(4000, 50)
  x1_test[:, teacher_cols] = x_t[:, teacher_cols]
  return synthetic.Views(
      *(a.astype(np.float32) for a in (x1_train, x2_train)), y_train,
      *(a.astype(np.float32) for a in (x1_test, x2_test)), y_t)


@pytest.mark.parametrize("gamma, vari_dim", [(0.25, 15), (1.0, 0)])
def test_ntdh_reference_matches_the_reference_statements(
    global_numpy_state, gamma, vari_dim):
  np.random.seed(0)  # the reference mode must not depend on global state
  ours = synthetic.ntdh_views_reference(gamma)
  assert np.random.randint(2**31) == np.random.RandomState(0).randint(2**31)
  theirs = _ntdh_reference_by_hand(vari_dim)
  for name, x, y in zip(synthetic.Views._fields, ours, theirs):
    assert x.dtype == (np.int32 if name.startswith("y") else np.float32)
    np.testing.assert_array_equal(x, y, err_msg=name)


def test_ntdh_reference_layout(base):
  _assert_ntdh_layout(synthetic.ntdh_views_reference(0.75), base, 0.75)


def test_reference_mode_refuses_a_traced_gamma():
  with pytest.raises(TypeError, match="gamma must be a concrete value"):
    jax.jit(synthetic.ntdh_views_reference)(0.5)


# ---------------------------------------------------------------------- MFH


def _mfh_decisive_by_hand(key, n_train, n_test, d=20):
  """(a, xs_train, xs_test) from the documented key layout of mfh_views."""
  k_a, k_train, k_test = jax.random.split(key, 3)
  a = jax.random.normal(k_a, (d,))
  xs = [jax.random.normal(jax.random.split(k, 3)[0], (n, d))
        for k, n in ((k_train, n_train), (k_test, n_test))]
  return np.asarray(a, np.float64), *(np.asarray(x) for x in xs)


def _assert_mfh_layout(views, xs_train, xs_test, overlap):
  for teacher, student, xs in ((views.teacher_train, views.student_train,
                                xs_train),
                               (views.teacher_test, views.student_test,
                                xs_test)):
    assert teacher.shape == (len(xs), 25) and student.shape == (len(xs), 50)
    np.testing.assert_array_equal(_equal_columns(student, xs),
                                  _expected(50, 20, range(0, 10)))
    np.testing.assert_array_equal(
        _equal_columns(teacher, xs),
        _expected(25, 20, range(10 - overlap, 20 - overlap)))


@pytest.mark.parametrize("overlap", (0, 4, 10))
def test_mfh_views_layout_and_labels(overlap):
  key = jax.random.key(11)
  views = synthetic.mfh_views(key, overlap)
  a, xs_train, xs_test = _mfh_decisive_by_hand(key, 200, 1000)
  _assert_mfh_layout(views, xs_train, xs_test, overlap)
  # Train and test share one hyperplane; labels are the side of it.
  np.testing.assert_array_equal(views.y_train, (xs_train @ a > 0))
  np.testing.assert_array_equal(views.y_test, (xs_test @ a > 0))
  assert views.y_train.dtype == jnp.int32
  assert 0.3 < float(views.y_test.mean()) < 0.7


def test_mfh_traced_overlap_matches_concrete():
  key = jax.random.key(12)
  overlaps = jnp.arange(0, 11, 2)
  batched = jax.jit(jax.vmap(synthetic.mfh_views, in_axes=(None, 0)))(
      key, overlaps)
  for i, o in enumerate(overlaps.tolist()):
    for x, y in zip(synthetic.mfh_views(key, o), batched):
      np.testing.assert_array_equal(x, y[i])


def _mfh_reference_by_hand(seed, overlap, n_train=200, n_test=1000):
  """The reference run_mm('increase_gamma') statements on the global stream."""
  def gen(a, n):
    xs = np.random.randn(n, 20)
    y = (np.dot(xs, a[0:20]) > 0).ravel()
    x2 = np.random.randn(n, 50)
    x2[:, 0:10] = xs[:, 0:10]
    x1 = np.random.randn(n, 25)
    x1[:, 10 - overlap:20 - overlap] = xs[:, 10 - overlap:20 - overlap]
    return x1.astype(np.float32), x2.astype(np.float32), y.astype(np.int32), xs

  np.random.seed(seed)
  a = np.random.randn(500)
  *train, xs_train = gen(a, n_train)
  np.random.seed(seed + 1)
  *test, xs_test = gen(a, n_test)
  return synthetic.Views(*train, *test), xs_train, xs_test


@pytest.mark.parametrize("seed, overlap", [(0, 0), (3, 6), (9, 10)])
def test_mfh_reference_matches_the_reference_statements(
    global_numpy_state, seed, overlap):
  ours = synthetic.mfh_views_reference(seed, overlap)
  theirs, xs_train, xs_test = _mfh_reference_by_hand(seed, overlap)
  for name, x, y in zip(synthetic.Views._fields, ours, theirs):
    np.testing.assert_array_equal(x, y, err_msg=name)
  _assert_mfh_layout(ours, xs_train.astype(np.float32),
                     xs_test.astype(np.float32), overlap)


@pytest.mark.parametrize("overlap", (-1, 11, 2.5))
def test_bad_overlap_raises_naming_overlap(overlap):
  message = r"overlap must be an integer in \[0, 10\]"
  with pytest.raises(ValueError, match=message):
    synthetic.mfh_views(jax.random.key(0), overlap)
  with pytest.raises(ValueError, match=message):
    synthetic.mfh_views_reference(0, overlap)


def test_mfh_dims_that_cannot_fit_raise():
  with pytest.raises(ValueError, match="teacher_dim"):
    synthetic.mfh_views(jax.random.key(0), 2, teacher_dim=15)


def test_mfh_gamma_is_the_reference_definition():
  np.testing.assert_allclose(
      [synthetic.mfh_gamma(o) for o in (0, 2, 4, 6, 8, 10)],
      [o / (20 - o) for o in (0, 2, 4, 6, 8, 10)])
  assert synthetic.mfh_gamma(0) == 0.0 and synthetic.mfh_gamma(10) == 1.0


# ------------------------------------------------------------------- seeds


def test_distinct_seeds():
  seeds = synthetic.distinct_seeds(1000, base_seed=3)
  assert seeds.shape == (1000,) and seeds.dtype == np.int32
  assert len(np.unique(seeds)) == 1000 and seeds.min() >= 0
  np.testing.assert_array_equal(seeds,
                                synthetic.distinct_seeds(1000, base_seed=3))
  assert not np.array_equal(seeds[:10],
                            synthetic.distinct_seeds(10, base_seed=4))
  assert synthetic.distinct_seeds(0).shape == (0,)
  with pytest.raises(ValueError, match="n must be a non-negative integer"):
    synthetic.distinct_seeds(-1)
