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
  with pytest.raises(checkpoint.CheckpointCorrupted,
                     match=r"'.*/t' step 0: cannot read its files or digest"):
    checkpoint.restore(tmp_path / "t", _abstract(tree))


def _data_files(step_dir):
  """The files holding array bytes (orbax's ocdbt data blocks)."""
  return sorted(os.path.join(root, name)
                for root, _, names in os.walk(step_dir) for name in names
                if os.sep + "d" + os.sep in os.path.join(root, name) + os.sep
                and "ocdbt.process" in root)


def test_one_flipped_byte_is_caught_and_named(tmp_path):
  tree = {"w": np.arange(64, dtype=np.float32)}
  checkpoint.save(tmp_path / "t", 0, tree)
  victim = _data_files(tmp_path / "t" / "0")[-1]
  with open(victim, "r+b") as f:  # one byte in the middle of the file
    f.seek(os.path.getsize(victim) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 1]))
  rel = os.path.relpath(victim, tmp_path / "t" / "0")
  for read in (lambda: checkpoint.restore(tmp_path / "t", tree),
               lambda: checkpoint.saved_spec(tmp_path / "t"),
               lambda: checkpoint.verify(tmp_path / "t")):
    with pytest.raises(checkpoint.CheckpointCorrupted,
                       match=rf"{rel} differs from its digest"):
      read()


def test_deleted_and_added_files_are_named(tmp_path):
  checkpoint.save(tmp_path / "t", 0, {"w": np.zeros(4, np.float32)})
  os.remove(_data_files(tmp_path / "t" / "0")[0])
  (tmp_path / "t" / "0" / "stray").write_text("x")
  with pytest.raises(checkpoint.CheckpointCorrupted,
                     match=r"is missing; stray was added"):
    checkpoint.verify(tmp_path / "t")


def test_an_unsealed_step_is_skipped_then_replaced(tmp_path):
  """A save killed after orbax finalised step 2 but before the seal: the
  sealed step 1 stays the latest, and saving step 2 again replaces it."""
  directory = tmp_path / "c"
  for step in (1, 2):
    checkpoint.save(directory, step, {"x": np.full(2, step, np.int32)})
  os.remove(directory / "2" / checkpoint.DIGEST)
  assert checkpoint.latest_step(directory) == 1
  with pytest.raises(FileNotFoundError, match=r"step\(s\) \[2\] have no"):
    checkpoint.restore(directory, {"x": np.zeros(2, np.int32)}, step=2)
  checkpoint.save(directory, 2, {"x": np.full(2, 7, np.int32)}, keep=1)
  assert sorted(os.listdir(directory)) == ["2"]
  np.testing.assert_array_equal(
      checkpoint.restore(directory, {"x": np.zeros(2, np.int32)})["x"], [7, 7])


def test_keep_deletes_old_steps_only_after_sealing_the_new_one(tmp_path,
                                                               monkeypatch):
  directory = tmp_path / "c"
  checkpoint.save(directory, 1, {"x": np.ones(2, np.float32)}, keep=1)

  def killed(step_dir):
    raise KeyboardInterrupt("killed before the seal")
  monkeypatch.setattr(checkpoint, "_seal", killed)
  with pytest.raises(KeyboardInterrupt):
    checkpoint.save(directory, 2, {"x": np.ones(2, np.float32)}, keep=1)
  assert checkpoint.latest_step(directory) == 1  # still restorable
  checkpoint.verify(directory, 1)


def test_reading_never_deletes_leftovers_of_a_killed_save(tmp_path):
  """Only ``save`` cleans up temporary directories, and it waits for the
  cleanup: a reader's cleanup ran in the background and raced the next save
  (which then failed on a missing ``_CHECKPOINT_METADATA``)."""
  tree = {"x": np.arange(100, dtype=np.float32)}
  for attempt in range(10):
    directory = tmp_path / f"c{attempt}"
    checkpoint.save(directory, 1, tree, keep=1)
    leftover = directory / "2.orbax-checkpoint-tmp-1234"
    leftover.mkdir()
    for i in range(100):
      (leftover / f"f{i}").write_bytes(b"x" * 100)
    checkpoint.restore(directory, tree)
    checkpoint.saved_spec(directory)
    assert leftover.exists()
    checkpoint.save(directory, 2, tree, keep=1)
    assert not leftover.exists()
    assert sorted(os.listdir(directory)) == ["2"]
    checkpoint.restore(directory, tree)
