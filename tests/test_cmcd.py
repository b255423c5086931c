"""CMCD's stages (``ssl``, ``cmcd``, ``finetune``) and experiment: subsets,
configs refused, the tiny three-stage study through the engine, its report,
and a killed study resumed to the same bits."""

import csv
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax import hparams as hparams_lib
from ntdh_jax.errors import UserError
from ntdh_jax.experiments import cmcd
from ntdh_jax.train import checkpoint
from ntdh_jax.train import stages
from ntdh_jax.train.stages import encoders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "sweeps", "configs", "cmcd_digits.py")
N_TRAIN = 1347  # digits' training split


def _sweep(arg=":tiny", overrides=()):
  return config_lib.load_sweep(CONFIG + arg, list(overrides))


# --------------------------------------------------------------- subsets


def test_labelled_order_prefixes_are_class_balanced():
  labels = jnp.asarray(np.random.default_rng(0).integers(0, 10, 500))
  order = np.asarray(encoders.labelled_order(jax.random.PRNGKey(3), labels,
                                             10))
  assert sorted(order) == list(range(500))
  counts = np.bincount(np.asarray(labels), minlength=10)
  for k in (1, 7, 10, 13, 40, 200):
    got = np.bincount(np.asarray(labels)[order[:k]], minlength=10)
    # Round-robin: no class has two more than another while both have rows.
    want_min = min(k // 10, counts.min())
    assert got.min() >= want_min and got.max() <= -(-k // 10), (k, got)
  other = encoders.labelled_order(jax.random.PRNGKey(4), labels, 10)
  assert not np.array_equal(order, np.asarray(other))


def test_draws_stay_inside_the_first_k_rows():
  order = jax.random.permutation(jax.random.PRNGKey(0), 100)
  for k in (8, 30, 100):
    rows = np.asarray(encoders.draw_distinct(jax.random.PRNGKey(k), order,
                                             k, 8))
    assert len(set(rows)) == 8 and set(rows) <= set(np.asarray(order[:k]))
  rows = np.asarray(encoders.draw_with_replacement(
      jax.random.PRNGKey(1), order, 3, 32))
  assert set(rows) <= set(np.asarray(order[:3])) and len(set(rows)) == 3
  assert [int(encoders.subset_size(f, 1347)) for f in (0.01, 0.05, 0.1,
                                                       1e-6, 1.0)] == [
                                                           13, 67, 135, 1,
                                                           1347]


def test_centroid_accuracy_equals_a_numpy_nearest_class_mean():
  rng = np.random.default_rng(0)
  train, test = rng.normal(size=(60, 5)), rng.normal(size=(40, 5))
  y_train, y_test = rng.integers(0, 3, 60), rng.integers(0, 3, 40)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  means = np.stack([unit(train)[y_train == c].mean(0) for c in range(3)])
  want = np.mean(np.argmax(unit(test) @ unit(means).T, -1) == y_test)
  got = encoders.centroid_accuracy(jnp.asarray(train), jnp.asarray(y_train),
                                   jnp.asarray(test), jnp.asarray(y_test), 3)
  np.testing.assert_allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------- config


def _static(stage, **extra):
  base = {"data": {"name": "digits_blur"}, "model": {"name": "cnn",
                                                     "channels": [4],
                                                     "dense": 8},
          "epochs": 1, "eval_every": 1, "batch_size": 32}
  return stages.normalise(stage, {**base, **extra})


@pytest.mark.parametrize("stage, extra, match", [
    ("cmcd", {"loss": "l2", "queue_size": 64}, "queue_size"),
    ("cmcd", {"loss": "cmd", "learn_temperature": True}, "learn_temperature"),
    ("cmcd", {"loss": "infonce"}, "loss"),
    ("finetune", {"mode": "head"}, "mode"),
    ("finetune", {"init": "imagenet"}, "init"),
    ("ssl", {"augment": {"flip": 2.0}}, "flip"),
    ("ssl", {"augment": {"rotate": 0.5}}, "rotate"),
    ("ssl", {"view": "depth"}, "view"),
])
def test_bad_stage_options_are_refused_naming_them(stage, extra, match):
  with pytest.raises(ValueError, match=match):
    _static(stage, **extra)


@pytest.mark.parametrize("stage, extra, match", [
    ("cmcd", {"batch_size": 0}, "batch_size"),
    ("cmcd", {"loss": "cmd", "queue_size": 16}, "queue_size"),
    ("ssl", {"batch_size": 1}, "batch_size"),
    ("ssl", {"data": {"name": "ntdh"}}, "uint8"),
    ("finetune", {"batch_size": 0}, "batch_size"),
])
def test_programs_refuse_what_they_cannot_train(stage, extra, match):
  with pytest.raises(ValueError, match=match):
    stages.build_program(stage, _static(stage, **extra))


def test_pair_fraction_must_leave_one_batch_of_distinct_pairs():
  static = _static("cmcd", loss="l2")
  hp = {"lr": 1e-3, "momentum": 0.0, "teacher_blur": 0.0,
        "student_blur": 0.0}
  stages.run_spec("cmcd", static, {**hp, "pair_fraction": 32 / N_TRAIN}, 0)
  with pytest.raises(UserError, match="pair_fraction"):
    stages.run_spec("cmcd", static, {**hp, "pair_fraction": 31 / N_TRAIN}, 0)
  assert hparams_lib.RANGES["label_fraction"].contains(0.01)
  assert not hparams_lib.RANGES["label_fraction"].contains(0.0)


def test_plan_feeds_each_stage_from_the_same_seed():
  base, configs, _ = _sweep(":quick")
  specs = cmcd.plan(configs)
  by_id = {s.run_id: s for s in specs}
  assert len(by_id) == len(specs)
  seeds, gaps = base.num_seeds, len(base.gaps)
  methods, pairs = len(base.distill.methods), len(base.distill.pair_fractions)
  per_encoder = len(base.finetune.label_fractions) * len(base.finetune.modes)
  count = lambda stage: sum(s.stage == stage for s in specs)
  assert count("ssl") == seeds
  assert count("cmcd") == seeds * gaps * pairs * methods
  assert count("finetune") == per_encoder * (count("cmcd") + seeds * gaps)
  for s in specs:
    for role, upstream in s.needs_dict.items():
      assert by_id[upstream].seed == s.seed
      if s.stage == "finetune":
        assert (role, by_id[upstream].stage) == ("encoder", "cmcd")
        up = by_id[upstream].tags_dict
        assert all(up[k] == s.tags_dict[k]
                   for k in ("method", "gap", "pair_fraction"))
    if s.stage == "ssl":  # pre-trained once, at the first gap
      assert s.hparams_dict["student_blur"] == base.gaps[0]
    elif s.stage == "finetune" and s.tags_dict["method"] == cmcd.SCRATCH:
      assert not s.needs_dict and s.static_dict["init"] == "scratch"


@pytest.mark.parametrize("override, key", [
    ("distill.pair_fractions=0.001", "distill.pair_fractions"),
    ("finetune.label_fractions=0.0", "finetune.label_fractions"),
    ("ssl.temperature=0.0", "ssl.temperature"),
    ("knob=gamma", "config.knob"),
    ("num_seeds=0", "config.num_seeds"),
    ("gaps=[]", "gaps"),
])
def test_bad_config_is_refused_naming_the_key(override, key):
  _, configs, _ = _sweep(":tiny", [override])
  with pytest.raises((UserError, ValueError), match=key.replace(".", r"\.")):
    cmcd.plan(configs)


def test_a_method_needs_a_known_loss_and_its_own_name():
  for methods, key in (({"cmd": {"loss": "seed"}}, "methods.cmd.loss"),
                       ({"scratch": {"loss": "l2"}}, "scratch")):
    _, configs, _ = _sweep(":tiny")
    with configs[0].unlocked():
      configs[0].distill.methods = methods
    with pytest.raises(UserError, match=key):
      cmcd.plan(configs)


# ------------------------------------------------------ the tiny study


def _study(workdir):
  base, configs, fingerprint = _sweep(":tiny")
  experiments.run(configs, str(workdir), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(os.path.join(workdir, "results.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  by_id = {r["run_id"]: r for r in rows}
  assert len(by_id) == len(rows), "duplicate rows"
  return base, by_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cmcd_tiny")
  base, rows = _study(workdir)
  return workdir, base, rows


def test_tiny_study_runs_every_stage_and_writes_its_report(tiny):
  workdir, base, rows = tiny
  assert len(rows) == len(cmcd.plan([base]))
  for name in ("report.md", "summary.csv", "cmcd_accuracy_vs_pairs.png",
               "cmcd_latent_distance.png"):
    assert (workdir / name).exists(), name
  text = (workdir / "report.md").read_text()
  assert "72.61" in text and "73.24" in text and "71.33" in text
  assert "We do not have Sketchy" in text.replace("\n", " ")
  with open(workdir / "summary.csv") as f:
    lines = list(csv.DictReader(f))
  # (cmd, l2) × m + scratch, each at 3 label fractions × 2 protocols.
  assert len(lines) == (2 * len(base.distill.pair_fractions) + 1) * 6
  assert all(line["seeds"] == "1" for line in lines)
  for r in rows.values():
    if r["stage"] == "cmcd":
      assert -1.0 <= r["final.latent_tv"] <= 1.0
      assert np.isfinite(r["final.latent_mmd2"])
      assert np.isfinite(r["history.train_loss"]).all()
    elif r["stage"] == "finetune":
      assert r["final.labelled_examples"] == round(
          r["hp.label_fraction"] * N_TRAIN)
      assert 0.0 <= r["history.test_acc"][-1] <= 1.0
    else:
      assert r["stage"] == "ssl"
      # SimCLR's features separate the digits far above chance (10 %),
      # even after one epoch.
      assert r["history.test_centroid_acc"][-1] > 0.4


def test_killed_study_resumes_to_the_same_bits(tiny, tmp_path, monkeypatch):
  """Killed mid-study, relaunched: the rows of the uninterrupted study. (The
  session's compilation cache, tests/conftest.py, loads the programs the
  reference compiled.)"""
  _, _, reference = tiny
  save = checkpoint.save

  def save_then_die(directory, step, tree, **kwargs):
    save(directory, step, tree, **kwargs)
    # Killed once the first chunk's outputs are stored, before its rows:
    # the relaunch finds outputs without rows, trains the chunk again and
    # hands the outputs on downstream.
    if "outputs" in str(directory):
      raise KeyboardInterrupt
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
      _study(tmp_path)
  _, resumed = _study(tmp_path)
  assert resumed == reference


def test_cmcd_stage_vmapped_equals_looped_and_learns_its_temperature():
  static = _static("cmcd", loss="cmc", learn_temperature=True,
                   proj_hidden=8, proj_dim=4)
  program = stages.build_program("cmcd", static)
  data = program.load()
  spec = program.input_spec
  inputs = jax.tree.map(lambda s: jnp.full(s.shape, 0.05, s.dtype), spec)
  hp = {"lr": jnp.asarray([1e-2, 1e-3]), "momentum": jnp.zeros(2),
        "teacher_blur": jnp.zeros(2), "student_blur": jnp.asarray([0., 1.]),
        "pair_fraction": jnp.asarray([0.1, 1.0]),
        "cmc_temperature": jnp.asarray([0.1, 0.2])}
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), inputs)

  @chex.assert_max_traces(n=1)
  def train(h, k, d, i):
    return program.train(h, k, d, i)

  vmapped = jax.jit(jax.vmap(train, in_axes=(0, 0, None, 0)))(
      hp, keys, data, stacked)
  looped = jax.jit(program.train)
  for i in range(2):
    one = looped(jax.tree.map(lambda x: x[i], hp), keys[i], data, inputs)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], vmapped), one,
                                rtol=1e-5, atol=1e-6)
    final, history, _ = one
    learnt = float(history["cmc_temperature"][-1])
    assert learnt != pytest.approx(float(hp["cmc_temperature"][i]))
    assert np.isfinite(float(final["latent_tv"]))


# ------------------------------------------- the prepared datasets' configs


def _prepared(name, root):
  """Fake archives of ``name`` built into ``root / "data"``; the config
  argument that reads them (MNIST at its default config, NYU at 120×160)."""
  from tests import prepared_util, test_mnist_pair, test_nyu_depth_v2_labeled
  if name == "mnist":
    test_mnist_pair.write_fakes(root / "manual")
    prepared_util.build("mnist_pair", root / "manual", root / "data")
    return f"data_dir={root / 'data'}"
  test_nyu_depth_v2_labeled.write_fakes(root / "manual")
  # Four test frames: the latent-distance classifier splits them in halves.
  test_nyu_depth_v2_labeled.write_splits(
      root / "manual" / test_nyu_depth_v2_labeled.nyu.SPLITS,
      train=[1, 3, 5], test=[2, 4, 6, 7])
  prepared_util.build("nyu_depth_v2_labeled", root / "manual", root / "data",
                      config="120x160")
  return f"data_dir={root / 'data'},config=120x160"


def test_mnist_config_plans_one_gap_on_its_prepared_pair(tmp_path):
  arg = _prepared("mnist", tmp_path)
  # The fake has 12 training rows: a batch of 4 pairs needs m/n >= 1/3.
  base, configs, _ = config_lib.load_sweep(
      os.path.join(REPO, "sweeps", "configs", f"cmcd_mnist.py:quick,{arg}"),
      ["distill.batch_size=4", "distill.pair_fractions=[0.5,1.0]"])
  specs = cmcd.plan(configs)
  assert base.knob == "" and cmcd.gap_levels(base) == [None]
  assert sum(s.stage == "cmcd" for s in specs) == (
      base.num_seeds * len(base.distill.pair_fractions)
      * len(base.distill.methods))
  assert all(s.hparams_dict.keys() >= {"lr", "momentum"} for s in specs)
  assert all(s.static_dict["data"]["name"] == "mnist_pair" for s in specs)


@pytest.mark.slow
@pytest.mark.parametrize("name, metric", [("mnist", "test_acc"),
                                          ("nyu", "test_miou")])
def test_prepared_study_end_to_end_on_fakes(tmp_path, name, metric):
  arg = _prepared(name, tmp_path)
  small = (["model.channels=[4]", "source_model.channels=[4]",
            "model.dense=8", "source_model.dense=8", "ssl.batch_size=4",
            "distill.batch_size=4", "finetune.batch_size=4"]
           if name == "mnist" else
           ["model.channels=[4,8]", "source_model.channels=[4,8]",
            "ssl.batch_size=3", "distill.batch_size=2",
            "finetune.batch_size=2"])
  base, configs, fingerprint = config_lib.load_sweep(
      os.path.join(REPO, "sweeps", "configs", f"cmcd_{name}.py:tiny,{arg}"),
      small)
  experiments.run(configs, str(tmp_path / "w"), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(tmp_path / "w" / "results.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == len(cmcd.plan(configs))
  finetunes = [r for r in rows if r["stage"] == "finetune"]
  assert finetunes and all(0.0 <= r[f"history.{metric}"][-1] <= 1.0
                           for r in finetunes)
  assert "one gap" in (tmp_path / "w" / "report.md").read_text()


def test_gains_over_scratch_pair_each_line_with_its_own_scratch():
  line = lambda method, gap, f, acc, pair=1.0: {
      "method": method, "gap": gap, "label_fraction": f, "mode": "full",
      "pair_fraction": "" if method == cmcd.SCRATCH else pair,
      "acc_mean": acc}
  lines = [line(cmcd.SCRATCH, 0.0, 0.1, 50.0),
           line(cmcd.SCRATCH, 2.0, 0.1, 20.0), line("cmd", 0.0, 0.1, 55.0), line("cmd", 2.0, 0.1, 19.0),
           line("cmd", 2.0, 0.1, 40.0, pair=0.1)]
  assert cmcd.gains_over_scratch(lines, "full", 1.0) == (-1.0, 5.0)
  assert cmcd.gains_over_scratch(lines, "full") == (-1.0, 20.0)
