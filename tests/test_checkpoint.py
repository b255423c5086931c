"""ntdh_jax.train.checkpoint: orbax round trips and the errors a user sees."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntdh_jax.train import checkpoint


def _teacher_state():
  params = {"w": jnp.arange(6, dtype=jnp.float32).reshape(3, 2),
            "b": jnp.array([0.5, -1.0], jnp.float32)}
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
  return {"params": params, "opt": tx.init(params),
          "key": jax.random.key(3), "step": jnp.int32(7)}


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _same(a, b):
  a = jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x, a)
  b = jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x, b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_keeps_structure_values_and_keys(tmp_path):
  state = _teacher_state()
  checkpoint.save(tmp_path / "t", 5, state)
  restored = checkpoint.restore(tmp_path / "t", _abstract(state))
  _same(restored, state)
  assert isinstance(restored["opt"], type(state["opt"]))  # NamedTuples kept
  assert checkpoint.latest_step(tmp_path / "t") == 5


def test_latest_step_and_keep(tmp_path):
  assert checkpoint.latest_step(tmp_path / "none") is None
  for step in (1, 2, 3):
    checkpoint.save(tmp_path / "c", step, {"x": jnp.full(2, step)}, keep=2)
  assert checkpoint.latest_step(tmp_path / "c") == 3
  abstract = {"x": jax.ShapeDtypeStruct((2,), jnp.int32)}
  np.testing.assert_array_equal(
      checkpoint.restore(tmp_path / "c", abstract, step=2)["x"], [2, 2])
  with pytest.raises(FileNotFoundError, match=r"No step 1 .*\[2, 3\]"):
    checkpoint.restore(tmp_path / "c", abstract, step=1)


def test_numpy_leaves_restore_as_numpy(tmp_path):
  tree = {"h": np.arange(4, dtype=np.float32)}
  checkpoint.save(tmp_path / "n", 0, tree)
  out = checkpoint.restore(tmp_path / "n", {"h": np.zeros(4, np.float32)})
  assert isinstance(out["h"], np.ndarray)
  np.testing.assert_array_equal(out["h"], tree["h"])


def test_shape_mismatch_names_leaf_and_both_shapes(tmp_path):
  state = _teacher_state()
  checkpoint.save(tmp_path / "t", 0, state)
  wrong = _abstract(state)
  wrong["params"]["w"] = jax.ShapeDtypeStruct((4, 2), jnp.float32)
  with pytest.raises(ValueError, match=r"'params/w': checkpoint has "
                     r"float32\[3, 2\], expected float32\[4, 2\]"):
    checkpoint.restore(tmp_path / "t", wrong)


def test_dtype_and_structure_mismatches_are_named(tmp_path):
  checkpoint.save(tmp_path / "t", 0, {"a": jnp.zeros(3), "b": jnp.zeros(2)})
  with pytest.raises(ValueError, match=r"'a': checkpoint has float32\[3\], "
                     r"expected int32\[3\]"):
    checkpoint.restore(tmp_path / "t",
                       {"a": jax.ShapeDtypeStruct((3,), jnp.int32),
                        "b": jax.ShapeDtypeStruct((2,), jnp.float32)})
  with pytest.raises(ValueError, match=r"'c' is expected but not in the "
                     r"checkpoint.*'b' is in the checkpoint but not expected"):
    checkpoint.restore(tmp_path / "t",
                       {"a": jax.ShapeDtypeStruct((3,), jnp.float32),
                        "c": jax.ShapeDtypeStruct((2,), jnp.float32)})


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="No checkpoint directory"):
    checkpoint.restore(tmp_path / "absent", {})
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="No complete checkpoint"):
    checkpoint.restore(tmp_path / "empty", {})


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
  tree = {"w": jnp.arange(8.0)}
  checkpoint.save(tmp_path / "t", 0, tree)
  for root, _, files in os.walk(tmp_path / "t" / "0"):
    for name in files:
      if name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"\x00garbage")
  with pytest.raises(ValueError, match="corrupted or unreadable"):
    checkpoint.restore(tmp_path / "t", _abstract(tree))
