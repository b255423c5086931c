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
  t, _, y = _batch(2, 8, 5)
  values = divergences.decompose(**_kwargs(t, t, y))
  for v in values[:5]:
    np.testing.assert_allclose(v, 0.0, atol=1e-6)
  grads = _grad_total(t, t, y)
  assert np.isfinite(np.asarray(grads)).all()


@pytest.mark.parametrize("name", METRICS)
def test_gradients_match_finite_differences(name):
  t, s, y = _batch(4, 4, 5, scale=1.0)
  f = lambda a, b: jnp.sum(STANDALONE[name](**_kwargs(a, b, y)))
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
  for i in range(4):
    looped = divergences.decompose(**_kwargs(t[i], s[i], y[i], temps[i]))
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
    (dict(teacher_logits=np.zeros((4,), np.float32)), ValueError,
     "teacher_logits must have rank 2"),
    (dict(student_logits=np.zeros((4, 5, 1), np.float32)), ValueError,
     "student_logits must have rank 2"),
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
]


@pytest.mark.parametrize("override,error,match", BAD_INPUTS)
@pytest.mark.parametrize("name", ["decompose", "ncjsd", "tckl"])
def test_bad_input_raises_naming_the_argument(override, error, match, name):
  t, s, y = _batch(0, 4, 5)
  kw = {**_kwargs(t, s, y), **override}
  fn = getattr(divergences, name)
  with pytest.raises(error, match=match):
    fn(**kw)


def test_non_target_parts_need_three_classes():
  t, s, y = _batch(0, 4, 2)
  for fn in (divergences.decompose, divergences.nckl, divergences.ncjsd):
    with pytest.raises(ValueError, match="C >= 3.*undefined"):
      fn(**_kwargs(t, s, y))


def test_unknown_form_is_rejected():
  t, s, y = _batch(0, 4, 5)
  with pytest.raises(ValueError, match="form must be one of"):
    divergences.decompose(**_kwargs(t, s, y), form="torch")
