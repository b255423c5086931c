"""Tests of ntdh_jax.sorting: the radix argsorts equal a stable argsort."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import sorting


def test_stable_argsort_keeps_the_order_of_equal_keys():
  keys = jnp.asarray([3, 1, 3, 0, 1, 3, 2**32 - 1, 0], jnp.uint32)
  np.testing.assert_array_equal(sorting.stable_argsort_u32(keys),
                                np.argsort(np.asarray(keys), kind="stable"))


@pytest.mark.parametrize("n", [1, 2, 1000, 65537])
def test_argsort_f32_is_numpys_stable_argsort(n):
  """Ties, both zeros, infinities, subnormals and the extremes; 65,537
  entries need three radix passes."""
  rng = np.random.default_rng(n)
  special = np.asarray([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45,
                        np.finfo(np.float32).max, np.finfo(np.float32).min,
                        1.5, 1.5], np.float32)
  values = np.concatenate([rng.standard_normal(n).astype(np.float32),
                           rng.integers(-3, 3, n).astype(np.float32),
                           special])
  got = np.asarray(jax.jit(sorting.argsort_f32)(values))
  np.testing.assert_array_equal(values[got],
                                np.sort(values, kind="stable"))
  # Equal values (including −0.0 beside +0.0, which compare equal) keep
  # their input order, as a stable sort keeps it.
  want = np.argsort(values, kind="stable")
  zeros = values == 0
  np.testing.assert_array_equal(got[~zeros[got]], want[~zeros[want]])
