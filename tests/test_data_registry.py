"""The data registry: every source round-trips, bad names, options and
arrays are refused with the culprit named."""

import jax
import pytest

from ntdh_jax import data as data_lib
from ntdh_jax.data import source as source_lib

BUILTIN = ("ntdh", "mfh", "digits")


@pytest.mark.parametrize("name", BUILTIN)
def test_every_source_round_trips(name):
  """normalise fills defaults idempotently; the loaded arrays fit the spec;
  the views have the spec's shapes and label dtype."""
  config = data_lib.normalise({"name": name})
  assert data_lib.normalise(config) == config
  assert data_lib.get(name).name == name
  spec = data_lib.spec(config)
  arrays = data_lib.load_arrays({"name": name})
  assert arrays is data_lib.load_arrays(config)  # once per process
  source, parsed = data_lib.parse(config)
  hp = {k: 0.0 for k in source.hparams}
  views = jax.eval_shape(lambda a: source.views(parsed, a, hp,
                                                jax.random.PRNGKey(0)), arrays)
  for split in ("train", "test"):
    n = spec.splits[split]
    for role in ("teacher", "student"):
      got = getattr(views, f"{role}_{split}").shape
      assert got == (n,) + tuple(spec.modality(role).shape), (role, split)
    assert getattr(views, f"y_{split}").shape == (n,) + spec.label_shape
  assert spec.num_classes >= 2


def test_unknown_name_lists_the_registered_sources():
  with pytest.raises(ValueError, match="cifar.*registered datasets: .*digits"):
    data_lib.get("cifar")
  with pytest.raises(ValueError, match="needs a 'name'"):
    data_lib.normalise({"size": 8})


def test_unknown_option_is_named_with_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown keys \['sise'\].*'size'"):
    data_lib.normalise({"name": "digits", "sise": 28})


def test_arrays_that_disagree_with_the_spec_name_the_modality():
  source, config = data_lib.parse({"name": "digits"})
  arrays = dict(data_lib.load_arrays({"name": "digits"}))
  arrays["student_test"] = arrays["student_test"][..., :1]
  with pytest.raises(ValueError, match=(
      r"student modality \(digits_m\) test array 'student_test' has shape "
      r"\(450, 8, 8, 1\).*spec says \(450, 8, 8, 3\) uint8")):
    source_lib.check_arrays(source, config, arrays)
  arrays = dict(data_lib.load_arrays({"name": "digits"}))
  arrays["y_train"] = arrays["y_train"][:10]
  with pytest.raises(ValueError, match="labels 'y_train'"):
    source_lib.check_arrays(source, config, arrays)


def test_loaded_arrays_are_read_only():
  """Every program of a process shares them: nobody may write into them."""
  arrays = data_lib.load_arrays({"name": "ntdh"})
  with pytest.raises(ValueError):
    arrays["x_train"][0, 0] = 1.0
