"""ntdh_jax.config, the CLI's flag parsing and the experiment registry."""

import textwrap

import ml_collections
import pytest

from ntdh_jax import cli
from ntdh_jax import config as config_lib
from ntdh_jax import experiments

CONFIG_FILE = '''
import ml_collections
from ntdh_jax import config as config_lib

def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="small", quick=False, width=8)
  c = ml_collections.ConfigDict()
  c.experiment = "toy"
  c.variant = arg.variant
  c.width = {"small": arg.width, "large": 4 * arg.width}[arg.variant]
  c.quick = arg.quick
  c.lr = 0.1
  c.seeds = 2
  c.name = "x"
  c.hidden = (16, 16)
  c.model = ml_collections.ConfigDict({"depth": 2})
  return c
'''

HYPER = '''
def get_hyper(h):
  return h.product([
      h.sweep("config.lr", [0.1, 0.3]),
      h.zipit([h.sweep("config.seeds", [1, 2]),
               h.sweep("model.depth", [3, 4])]),
  ])
'''


def _write(tmp_path, text, name="sweep.py"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(text))
  return str(path)


def _base():
  c = ml_collections.ConfigDict()
  c.lr = 0.1
  c.seeds = 2
  c.on = False
  c.name = "x"
  c.hidden = (16, 16)
  c.model = ml_collections.ConfigDict({"depth": 2})
  return c


def test_hyper_product_sweep_zipit():
  h = config_lib.Hyper()
  assert h.sweep("a", [1, 2]) == [{"a": 1}, {"a": 2}]
  assert h.product([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])]) == [
      {"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3}, {"a": 2, "b": 4}]
  assert h.product([]) == [{}]
  assert h.zipit([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])]) == [
      {"a": 1, "b": 3}, {"a": 2, "b": 4}]
  with pytest.raises(ValueError, match=r"equal length, got \[2, 1\]"):
    h.zipit([h.sweep("a", [1, 2]), h.sweep("b", [3])])
  with pytest.raises(ValueError, match=r"\['a'\] twice"):
    h.product([h.sweep("a", [1]), h.sweep("a", [2])])


def test_parse_arg_variants_flags_and_values():
  spec = dict(variant="small", quick=False, width=8)
  assert config_lib.parse_arg(None, **spec).to_dict() == spec
  assert config_lib.parse_arg("large,quick", **spec).to_dict() == dict(
      variant="large", quick=True, width=8)
  assert config_lib.parse_arg("width=4,quick=false", **spec).width == 4
  with pytest.raises(ValueError, match="Unknown config argument 'depth=2'"):
    config_lib.parse_arg("depth=2", **spec)
  with pytest.raises(ValueError, match="'width': cannot parse 'wide' as int"):
    config_lib.parse_arg("width=wide", **spec)


def test_load_config_passes_the_arg(tmp_path):
  path = _write(tmp_path, CONFIG_FILE)
  assert config_lib.load_config(path).width == 8
  assert config_lib.load_config(path + ":large").width == 32
  assert config_lib.load_config(path + ":width=2,quick").quick
  with pytest.raises(FileNotFoundError, match="No config file"):
    config_lib.load_config(str(tmp_path / "absent.py") + ":large")


def test_overrides_are_parsed_to_the_field_type():
  c = config_lib.apply_overrides(_base(), [
      "lr=1e-3", "seeds=5", "on=true", "name=y z", "hidden=(8, 4)",
      "config.model.depth=7"])
  assert (c.lr, c.seeds, c.on, c.name, c.hidden, c.model.depth) == (
      1e-3, 5, True, "y z", (8, 4), 7)
  assert _base().lr == 0.1  # the input is not modified
  assert config_lib.apply_overrides(_base(), ["lr=1"]).lr == 1.0


def test_list_overrides_take_bare_words_and_single_values():
  """``a,b`` and a lone ``8`` set list fields, typed like their elements."""
  config = config_lib.apply_overrides(_base(), ["hidden=8"])
  assert config.hidden == (8,)
  config = config_lib.apply_overrides(_base(), ["hidden=4,8"])
  assert config.hidden == (4, 8)


@pytest.mark.parametrize("override, message", [
    ("lrr=0.1", r"Unknown config key 'lrr'\. Did you mean \['lr'\]\? Valid "
                r"keys: \['hidden', 'lr', 'model.depth', 'name', 'on', "
                r"'seeds'\]"),
    ("model.width=3", r"Unknown config key 'model.width'"),
    ("model=3", r"Unknown config key 'model'"),
    ("seeds=1.5", r"'seeds': cannot parse '1.5' as int"),
    ("on=yes", r"'on': cannot parse 'yes' as bool"),
    ("hidden=8,x", r"'hidden': cannot parse '8,x' as tuple"),
    ("lr", r"not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, message):
  with pytest.raises(ValueError, match=message):
    config_lib.apply_overrides(_base(), [override])


def test_a_model_config_takes_fields_it_leaves_at_their_default():
  """``model.conv_grad`` on a config whose model does not spell it out: set
  in a copy (parsed as the field's type); other absent keys, and the same
  key outside a model config, stay refused."""
  base = _base()
  base.model = ml_collections.ConfigDict({"name": "cnn", "dense": 128})
  base.data = ml_collections.ConfigDict({"name": "digits"})
  c = config_lib.apply_overrides(base, ["model.conv_grad=canonical",
                                        "model.channels=8,16"])
  assert c.model.to_dict() == {"name": "cnn", "dense": 128,
                               "conv_grad": "canonical", "channels": [8, 16]}
  assert "conv_grad" not in base.model
  for bad in ("model.convgrad=canonical", "data.conv_grad=canonical"):
    with pytest.raises(ValueError, match="Unknown config key"):
      config_lib.apply_overrides(base, [bad])


def test_expand_applies_get_hyper(tmp_path):
  path = _write(tmp_path, CONFIG_FILE + HYPER)
  base, configs, fingerprint = config_lib.load_sweep(path, ["lr=0.5"])
  assert base.lr == 0.5
  assert [(c.lr, c.seeds, c.model.depth) for c in configs] == [
      (0.1, 1, 3), (0.1, 2, 4), (0.3, 1, 3), (0.3, 2, 4)]
  assert fingerprint["config"]["lr"] == 0.5
  assert fingerprint["hyper"]["3"] == {"config.lr": 0.3, "config.seeds": 2,
                                       "model.depth": 4}
  # Without get_hyper the sweep is the base config alone.
  assert len(config_lib.load_sweep(_write(tmp_path, CONFIG_FILE, "b.py"))[1]
             ) == 1


@pytest.mark.parametrize("hyper, message", [
    ('h.sweep("config.lrate", [0.1])', r"Unknown config key 'config.lrate'"),
    ('h.sweep("config.seeds", [0.5])', r"'config.seeds' expects int .* got "
                                       r"float 0.5"),
    ('h.sweep("config.quick", [1])', r"'config.quick' expects bool"),
])
def test_bad_get_hyper_keys_and_values_are_named(tmp_path, hyper, message):
  path = _write(tmp_path, CONFIG_FILE + f"\ndef get_hyper(h):\n  return "
                f"{hyper}\n")
  with pytest.raises(ValueError, match=message):
    config_lib.load_sweep(path)


def test_cli_flags_collect_config_overrides():
  flags, overrides = cli._parse_flags([
      "--config", "s.py:quick", "--workdir", "w", "--config.lr=0.2",
      "--config.model.depth", "3", "--chunk_size", "8", "--no-progress"])
  assert (flags.config, flags.workdir, flags.chunk_size, flags.progress,
          flags.multihost) == ("s.py:quick", "w", 8, False, False)
  assert overrides == ["config.lr=0.2", "config.model.depth=3"]
  with pytest.raises(SystemExit):
    cli._parse_flags(["--config", "s.py", "--workdir", "w", "--bogus"])


def test_experiments_are_discovered_or_listed(tmp_path, monkeypatch):
  # A stand-in package directory, so discovery imports only this module.
  (tmp_path / "found_here.py").write_text(textwrap.dedent("""
      from ntdh_jax import experiments
      experiments.register("found", experiments.ExperimentDef(
          plan=list, build_program=None, report=None))
  """))
  monkeypatch.setattr(experiments, "__path__", [str(tmp_path)])
  monkeypatch.setattr(experiments, "EXPERIMENTS", {})
  assert experiments.get("found").plan is list
  with pytest.raises(ValueError, match=r"Unknown experiment 'nope'.*'found'"):
    experiments.get("nope")
