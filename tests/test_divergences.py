"""ntdh_jax.divergences against a float64 NumPy reference and its identities."""

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import ntdh_jax
from ntdh_jax import divergences
from tests import reference

LN2 = float(np.log(2.0))
METRICS = ("kl", "tckl", "nckl", "tcjsd", "ncjsd")
STANDALONE = {"kl": divergences.kl, "tckl": divergences.tckl,
              "nckl": divergences.nckl, "tcjsd": divergences.tcjsd,
              "ncjsd": divergences.ncjsd}


def _batch(seed, n, c, scale=3.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, c)).astype(np.float32) * scale,
          rng.normal(size=(n, c)).astype(np.float32) * scale,
          rng.integers(0, c, size=n).astype(np.int32))


def _kwargs(t, s, y, temperature=1.0):
  return dict(teacher_logits=t, student_logits=s, labels=y,
              temperature=temperature)


@pytest.mark.parametrize("c", [3, 10, 100])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_decompose_matches_float64_reference(c, temperature):
  t, s, y = _batch(c, 64, c)
  got = divergences.decompose(**_kwargs(t, s, y, temperature))
  want = reference.metrics(t, s, y, temperature)
  for name, value in want.items():
    np.testing.assert_allclose(getattr(got, name), value, rtol=2e-5,
                               atol=2e-6, err_msg=name)


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("c", [3, 10])
def test_standalone_functions_match_reference(name, c):
  t, s, y = _batch(7, 32, c)
  got = STANDALONE[name](**_kwargs(t, s, y, 2.0))
  np.testing.assert_allclose(got, reference.metrics(t, s, y, 2.0)[name],
                             rtol=2e-5, atol=2e-6)


def test_reference_code_form_matches_authors_formula():
  t, s, y = _batch(3, 50, 10)
  got = divergences.decompose(**_kwargs(t, s, y, 2.0), form="reference_code")
  want = reference.metrics(t, s, y, 2.0, form="reference_code")
  for name, value in want.items():
    chex.assert_shape(getattr(got, name), ())
    np.testing.assert_allclose(getattr(got, name), value, rtol=2e-5,
                               err_msg=name)
  # The authors' argument order is not the textbook JSD.
  paper = divergences.decompose(**_kwargs(t, s, y, 2.0))
  assert abs(float(jnp.mean(paper.ncjsd)) * 4 - float(got.ncjsd)) > 1e-3


def test_reference_order_form_is_per_sample_and_averages_to_reference_code():
  t, s, y = _batch(4, 40, 10)
  got = divergences.decompose(**_kwargs(t, s, y), form="reference_order")
  want = reference.metrics(t, s, y, form="reference_order")
  for name, value in want.items():
    chex.assert_shape(getattr(got, name), (40,))
    np.testing.assert_allclose(getattr(got, name), value, rtol=2e-5,
                               atol=2e-6, err_msg=name)
  scalar = divergences.decompose(**_kwargs(t, s, y), form="reference_code")
  np.testing.assert_allclose(jnp.mean(got.ncjsd), scalar.ncjsd, rtol=1e-5)


def test_binary_functions_accept_two_classes():
  t, s, y = _batch(0, 16, 2)
  for name in ("kl", "tckl", "tcjsd"):
    np.testing.assert_allclose(STANDALONE[name](**_kwargs(t, s, y)),
                               reference.metrics(t, s, y)[name] if name != "kl"
                               else reference.kl(reference.softmax(t),
                                                 reference.softmax(s)),
                               rtol=2e-5, atol=2e-6)


_SHAPE = (6, 7)  # fixed so the jitted metrics compile once for all examples
_logits = hnp.arrays(np.float32, _SHAPE, elements=st.floats(-60, 60, width=32))


@jax.jit
def _identity_sides(t, s, y):
  kw = _kwargs(t, s, y)
  parts = divergences.decompose(**kw)
  return (divergences.kl(**kw),
          parts.tckl + parts.teacher_nontarget_mass * parts.nckl, parts)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(t=_logits, s=_logits,
                  y=hnp.arrays(np.int32, _SHAPE[:1],
                               elements=st.integers(0, _SHAPE[1] - 1)))
def test_kl_identity_and_jsd_range(t, s, y):
  full, assembled, parts = _identity_sides(t, s, y)
  np.testing.assert_allclose(full, assembled, rtol=1e-5, atol=1e-5)
  for name in ("tcjsd", "ncjsd"):  # up to float32 rounding of ~ln 2
    value = np.asarray(getattr(parts, name))
    assert np.all(value >= -1e-6) and np.all(value <= LN2 + 1e-6), name
  for name in ("kl", "tckl", "nckl"):
    assert np.all(np.asarray(getattr(parts, name)) >= -1e-5), name


def _total(teacher, student, labels):
  return sum(jnp.sum(v) for v in divergences.decompose(
      teacher_logits=teacher, student_logits=student, labels=labels))


_grad_total = jax.jit(jax.grad(_total, argnums=(0, 1)))


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_extreme_logits_give_finite_values_and_gradients(scale):
  t, s, y = _batch(1, 16, 10, scale=scale)
  t[:, 0] = scale  # a confident teacher: p_k rounds to exactly 1 or 0
  values = jax.jit(divergences.decompose)(**_kwargs(t, s, y))
  assert all(np.isfinite(np.asarray(v)).all() for v in values)
  grads = _grad_total(t, s, y)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_exactly_zero_probabilities_match_limits():
  t = jnp.array([[0.0, -1e4, -1e4, 5.0]])  # classes 1, 2 have p = 0 exactly
  s = jnp.array([[0.0, -1e4, 3.0, 1.0]])
  y = jnp.array([0])
  got = divergences.decompose(**_kwargs(t, s, y))
  want = reference.metrics(np.array(t), np.array(s), np.array(y))
  for name, value in want.items():
    np.testing.assert_allclose(getattr(got, name), value, rtol=1e-5,
                               atol=1e-6, err_msg=name)


def test_identical_distributions_give_zero_and_finite_gradient():
  # [16, 10], compiled once with the extreme-logit test above.
  t, _, y = _batch(2, 16, 10)
  values = jax.jit(divergences.decompose)(**_kwargs(t, t, y))
  for v in values[:5]:
    np.testing.assert_allclose(v, 0.0, atol=1e-6)
  grads = _grad_total(t, t, y)
  assert np.isfinite(np.asarray(grads)).all()


@pytest.mark.parametrize("name", METRICS)
def test_gradients_match_finite_differences(name):
  t, s, y = _batch(4, 4, 5, scale=1.0)
  f = jax.jit(lambda a, b: jnp.sum(STANDALONE[name](**_kwargs(a, b, y))))
  check_grads(f, (jnp.asarray(t), jnp.asarray(s)), order=1, modes=("rev",),
              eps=1e-2, atol=5e-3, rtol=5e-3)


def test_bfloat16_inputs_are_computed_in_float32():
  t, s, y = _batch(5, 16, 10)
  got = divergences.decompose(**_kwargs(t.astype(jnp.bfloat16),
                                        s.astype(jnp.bfloat16), y))
  want = divergences.decompose(**_kwargs(
      np.asarray(jnp.asarray(t, jnp.bfloat16), np.float32),
      np.asarray(jnp.asarray(s, jnp.bfloat16), np.float32), y))
  for a, b in zip(got, want):
    chex.assert_type(a, jnp.float32)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_vmap_over_leading_axis_equals_loop():
  batches = [_batch(i, 16, 7) for i in range(4)]
  t, s, y = (np.stack(x) for x in zip(*batches))
  temps = jnp.array([0.5, 1.0, 2.0, 4.0])
  vmapped = jax.vmap(lambda a, b, c, temp: divergences.decompose(
      **_kwargs(a, b, c, temp)))(t, s, y, temps)
  single = jax.jit(lambda *a: divergences.decompose(**_kwargs(*a)))
  for i in range(4):
    looped = single(t[i], s[i], y[i], temps[i])
    for a, b in zip(vmapped, looped):
      np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


def test_no_retrace_on_new_values():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(t, s, y, temperature):
    return divergences.decompose(**_kwargs(t, s, y, temperature))

  for seed in range(3):
    t, s, y = _batch(seed, 16, 7)
    f(t, s, y, jnp.float32(1.0 + seed))


BAD_INPUTS = [
    (dict(teacher_logits=np.float32(0.0)), ValueError,
     "teacher_logits must have rank >= 1"),
    (dict(student_logits=np.zeros((4, 5, 1), np.float32)), ValueError,
     "same shape"),
    (dict(student_logits=np.zeros((4, 6), np.float32)), ValueError,
     "same shape"),
    (dict(teacher_logits=np.zeros((0, 5), np.float32),
          student_logits=np.zeros((0, 5), np.float32),
          labels=np.zeros((0,), np.int32)), ValueError, "empty batch"),
    (dict(labels=np.array([0, 1, 2, 5], np.int32)), ValueError,
     r"labels must lie in \[0, 5\)"),
    (dict(labels=np.array([0, 1, -1, 2], np.int32)), ValueError,
     r"labels must lie in \[0, 5\)"),
    (dict(labels=np.zeros((4,), np.float32)), TypeError,
     "labels must be an integer"),
    (dict(labels=np.zeros((3,), np.int32)), ValueError, "labels must have shape"),
    (dict(temperature=0.0), ValueError, "temperature must be > 0"),
    (dict(temperature=-1.0), ValueError, "temperature must be > 0"),
    (dict(teacher_logits=np.zeros((4, 5), np.int32)), TypeError,
     "teacher_logits must be a floating"),
    (dict(where=np.ones((4,), np.float32)), TypeError,
     "where must be a boolean"),
    (dict(where=np.ones((4, 1), bool)), ValueError, "where must have"),
    # With where, labels are checked only where valid...
    (dict(labels=np.array([0, 1, 2, 5], np.int32),
          where=np.array([True, True, True, True])), ValueError,
     r"labels must lie in \[0, 5\)"),
    # T = inf would give all zeros (kd: NaN), a str would be parsed.
    (dict(temperature=np.inf), ValueError,
     "temperature must be > 0 and finite, got inf"),
    (dict(temperature=np.nan), ValueError,
     "temperature must be > 0 and finite, got nan"),
    (dict(temperature="2.0"), TypeError,
     r"temperature must be a number \(int, float or a scalar array\), got "
     "str"),
    (dict(temperature=True), TypeError, "temperature must be a number"),
    (dict(temperature=np.array("2.0")), TypeError,
     "temperature must be a number"),
    (dict(temperature=np.array(2.0 + 0j)), TypeError,
     "temperature must be a number"),
    # Lists are not arrays (jax.numpy refuses them too): named errors.
    (dict(labels=[0, 1, 2, 3]), TypeError,
     r"labels must be an array \(jax.Array or numpy.ndarray\), got list"),
    (dict(teacher_logits=[[0.0] * 5] * 4), TypeError,
     "teacher_logits must be an array"),
    (dict(where=[True] * 4), TypeError, "where must be an array"),
]


@pytest.mark.parametrize("override,error,match", BAD_INPUTS)
@pytest.mark.parametrize("name", ["decompose", "ncjsd", "tckl"])
def test_bad_input_raises_naming_the_argument(override, error, match, name):
  t, s, y = _batch(0, 4, 5)
  kw = {**_kwargs(t, s, y), **override}
  fn = getattr(divergences, name)
  with pytest.raises(error, match=match):
    fn(**kw)


def test_kl_refuses_infinite_temperature_and_list_labels():
  t, s, y = _batch(0, 4, 5)
  with pytest.raises(ValueError, match="temperature must be > 0 and finite"):
    divergences.kl(**_kwargs(t, s, y, np.inf))
  with pytest.raises(TypeError, match="labels must be an array"):
    divergences.kl(**_kwargs(t, s, y.tolist()))


def test_labels_of_ignored_entries_are_not_checked():
  """...so an ignore label (255 >= C, or -1) where where=False is fine."""
  t, s, y = _batch(0, 4, 5)
  y = np.array([0, 255, 2, -1], np.int32)
  where = np.array([True, False, True, False])
  for name in ("decompose", "kl"):
    getattr(divergences, name)(**_kwargs(t, s, y), where=where)


def test_non_target_parts_need_three_classes():
  t, s, y = _batch(0, 4, 2)
  for fn in (divergences.decompose, divergences.nckl, divergences.ncjsd):
    with pytest.raises(ValueError, match="C >= 3.*undefined"):
      fn(**_kwargs(t, s, y))


def test_unknown_form_is_rejected():
  t, s, y = _batch(0, 4, 5)
  with pytest.raises(ValueError, match="form must be one of"):
    divergences.decompose(**_kwargs(t, s, y), form="torch")


# -- shapes beyond [N, C] and where --------------------------------------------

# nckl and ncjsd are fields of decompose, so they add nothing here but
# compile time.
ALL_FUNCTIONS = {"kl": divergences.kl, "tckl": divergences.tckl,
                 "tcjsd": divergences.tcjsd,
                 "decompose": lambda **kw: divergences.decompose(**kw)}
_SEG = (2, 3, 4)  # a [B, H, W] segmentation batch, C = 6


def _segmentation(seed, c=6, ignore=255):
  """[B, H, W, C] logits, [B, H, W] labels with ``ignore`` where invalid."""
  rng = np.random.default_rng(seed)
  t = rng.normal(size=(*_SEG, c)).astype(np.float32) * 3
  s = rng.normal(size=(*_SEG, c)).astype(np.float32) * 3
  where = rng.random(_SEG) < 0.7
  where[0, 0, 0], where[0, 0, 1] = True, False
  y = np.where(where, rng.integers(0, c, size=_SEG), ignore).astype(np.int32)
  return t, s, y, where


@jax.jit
def _all_seg(t, s, y, where, temperature):
  kw = dict(teacher_logits=t, student_logits=s, labels=y,
            temperature=temperature, where=where)
  return {name: fn(**kw) for name, fn in ALL_FUNCTIONS.items()}


@jax.jit
def _all_flat(t, s, y, where, temperature):
  c = t.shape[-1]
  kw = dict(teacher_logits=t.reshape(-1, c), student_logits=s.reshape(-1, c),
            labels=y.reshape(-1), temperature=temperature,
            where=None if where is None else where.reshape(-1))
  return {name: fn(**kw) for name, fn in ALL_FUNCTIONS.items()}


def _as_list(value):
  return list(value) if isinstance(value, tuple) else [value]


@pytest.mark.parametrize("masked", [False, True])
def test_leading_shape_equals_flattened_exactly(masked):
  """[B, H, W, C] results are the flattened [N, C] results, bit for bit."""
  t, s, y, where = _segmentation(0)
  if not masked:
    y, where = np.where(where, y, 1).astype(np.int32), None
  got = _all_seg(t, s, y, where, 2.0)
  flat = _all_flat(t, s, y, where, 2.0)
  for name in ALL_FUNCTIONS:
    for a, b in zip(_as_list(got[name]), _as_list(flat[name])):
      chex.assert_shape(a, _SEG)
      np.testing.assert_array_equal(a, np.reshape(b, _SEG), err_msg=name)


def test_segmentation_batch_matches_reference_and_ignores_masked_pixels():
  """Valid pixels match the float64 reference, ignored ones are exactly 0."""
  t, s, y, where = _segmentation(1)
  got = _all_seg(t, s, y, where, 2.0)
  want = reference.metrics_where(t, s, y, where, 2.0)
  for name, value in want.items():
    for fn in ("decompose", name):
      if fn in got:
        result = got[fn] if fn == name else getattr(got[fn], name)
        np.testing.assert_allclose(result, value, rtol=2e-5, atol=2e-6,
                                   err_msg=f"{fn}: {name}")
        assert np.all(np.asarray(result)[~where] == 0.0), name


def test_all_true_where_equals_no_where_exactly():
  """Eagerly, where=all-True takes the same arithmetic as no where."""
  t, s, y = _batch(3, 8, 5)
  kw = _kwargs(t, s, y, 2.0)
  for name, fn in ALL_FUNCTIONS.items():
    for a, b in zip(_as_list(fn(**kw)),
                    _as_list(fn(**kw, where=np.ones(8, bool)))):
      np.testing.assert_array_equal(a, b, err_msg=name)


def test_reference_code_form_averages_over_valid_entries():
  t, s, y, where = _segmentation(2)
  reduced = jax.jit(lambda *a: divergences.decompose(
      **_kwargs(*a[:3], 2.0), where=a[3], form="reference_code"))
  got = reduced(t, s, y, where)
  want = reference.metrics_where(t, s, y, where, 2.0, form="reference_code")
  for name, value in want.items():
    chex.assert_shape(getattr(got, name), ())
    np.testing.assert_allclose(getattr(got, name), value, rtol=2e-5,
                               err_msg=name)
  nothing = reduced(t, s, y, np.zeros(_SEG, bool))
  for name in nothing._fields:  # no valid entry: 0, not 0/0
    assert float(getattr(nothing, name)) == 0.0, name


def _masked_total(t, s, y, where):
  kw = dict(teacher_logits=t, student_logits=s, labels=y, where=where)
  return sum(jnp.sum(v) for v in (*divergences.decompose(**kw),
                                  divergences.tcjsd(**kw)))


_grad_masked = jax.jit(jax.grad(_masked_total, argnums=(0, 1)))


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_masked_entries_get_zero_gradients_and_valid_ones_finite(scale):
  """Gradients are finite everywhere, exactly 0 at ignored pixels (whose
  labels are out of range), and the valid pixels' gradients do not depend on
  what the ignored pixels hold."""
  t, s, y, where = _segmentation(3)
  t, s = t * scale, s * scale
  g_t, g_s = _grad_masked(t, s, y, where)
  for g in (g_t, g_s):
    g = np.asarray(g)
    assert np.isfinite(g).all()
    np.testing.assert_array_equal(g[~where], 0.0)
  garbage = np.where(where[..., None], 0.0, 1e3).astype(np.float32)
  other_t, other_s = _grad_masked(t + garbage, s - garbage,
                                  np.where(where, y, -7), where)
  np.testing.assert_array_equal(other_t, g_t)
  np.testing.assert_array_equal(other_s, g_s)


def test_where_under_jit_does_not_retrace():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(t, s, y, where):
    return divergences.decompose(**_kwargs(t, s, y), where=where)

  for seed in range(3):
    t, s, y, where = _segmentation(seed)
    f(t, s, y, where)


@pytest.mark.parametrize("row", [[2.7e38, 1.0, 0.0, -1.0],
                                 [-2.7e38, 0.0, 1.0, 2.0],
                                 [1.6e38, -1.6e38, 0.0, 5.0]])
def test_logits_near_float32_max_give_the_float64_values(row):
  """Finite logits whose rows span less than float32's maximum: exact
  values, finite gradients (the shift by the row max cannot overflow)."""
  teacher = np.array([row], np.float32)
  student = np.array([[0.5, 0.1, -0.2, 0.3]], np.float32)
  labels = np.array([1])
  got = divergences.decompose(teacher_logits=teacher, student_logits=student,
                              labels=labels)
  want = reference.metrics(teacher.astype(np.float64),
                           student.astype(np.float64), labels)
  for name in ("kl", "tckl", "nckl", "tcjsd", "ncjsd"):
    np.testing.assert_allclose(getattr(got, name), want[name], rtol=1e-5,
                               atol=1e-6, err_msg=name)
  for wrt in (0, 1):
    grads = jax.grad(lambda t, s: divergences.decompose(
        teacher_logits=t, student_logits=s, labels=labels).ncjsd.sum(),
                     argnums=wrt)(teacher, student)
    assert np.isfinite(grads).all()


def test_a_row_spanning_past_float32_max_is_refused():
  """+3e38 and −3e38 in one row: log-probabilities of −6e38 do not fit in
  float32 (the values were NaN); refused, eagerly and in checked mode."""
  teacher = np.array([[3e38, -3e38, 0.0], [1.0, 0.0, 0.0]], np.float32)
  student = np.zeros((2, 3), np.float32)
  labels = np.array([0, 1])
  message = (r"teacher_logits / temperature must be finite with each row's "
             r"span \(max - min\) below float32's maximum 3.4e38.* got a "
             r"span of inf")
  for fn in (divergences.decompose, divergences.kl, divergences.ncjsd):
    with pytest.raises(ValueError, match=message):
      fn(teacher_logits=teacher, student_logits=student, labels=labels)
  with pytest.raises(ValueError, match="student_logits / temperature"):
    divergences.kl(teacher_logits=student, student_logits=teacher)
  with pytest.raises(ValueError, match=r"span of inf"):  # 2e38 / 0.5 = inf
    divergences.kl(teacher_logits=np.full((1, 3), 2e38, np.float32),
                   student_logits=student[:1], temperature=0.5)
  jitted = jax.jit(lambda t, s: divergences.kl(teacher_logits=t,
                                               student_logits=s))
  with pytest.raises(ValueError, match=message):
    ntdh_jax.checked(jitted)(teacher, student)
