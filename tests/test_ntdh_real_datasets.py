"""The NTDH study on the prepared datasets (``ntdh_{mnist,ravdess,nyu,kitti}
.py``): configs and plans, Algorithm 2 per pixel inside the student's step,
Fig. 12's per-pixel NCJSD over valid pixels only, and each study end to end
on fake archives at tiny scale (NYU in the default suite, the other three
``slow``)."""

import csv
import functools
import json
import os

import jax
import numpy as np
import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import divergences
from ntdh_jax import experiments
from ntdh_jax import masks
from ntdh_jax.experiments import ntdh_real
from ntdh_jax.experiments import ntdh_real_report as report
from ntdh_jax.train import sweep
from ntdh_jax.train.stages import common
from tests import prepared_util
from tests import test_mnist_pair
from tests import test_nyu_depth_v2_labeled
from tests import test_ravdess
from tests import test_semantic_kitti

CONFIGS = os.path.join(prepared_util.REPO, "sweeps", "configs")
STUDIES = {"mnist": "mnist_pair", "ravdess": "ravdess",
           "nyu": "nyu_depth_v2_labeled", "kitti": "semantic_kitti"}
SEGMENTATION = ("nyu", "kitti")
# One seed, one epoch, two-image batches, networks of one small layer (XLA's
# compile of each program, not the data, is the cost).
TINY = ["num_seeds=1", "train.epochs=1", "train.eval_every=1",
        "train.batch_size=2", "train.eval_batch_size=2"]
TINY_SEG = TINY + ["model.channels=[4]", "teacher_model.channels=[4]",
                   "weights.alphas=1", "weights.betas=0,8",
                   "alg2.ratios=0.5", "fig12.images=2"]
TINY_CLS = TINY + ["weights.alphas=1", "weights.betas=0,8", "alg1.repeats=1",
                   "alg1.ratios=0.5", "table2.methods=dkd"]


def _config(study, arg="quick,data_dir=/nowhere", overrides=()):
  return config_lib.load_sweep(
      os.path.join(CONFIGS, f"ntdh_{study}.py:{arg}"), list(overrides))


def _run(study, data_dir, workdir, overrides, arg=""):
  base, configs, fingerprint = _config(
      study, f"quick,data_dir={data_dir}{arg}", overrides)
  experiments.run(configs, str(workdir), base=base, progress=False,
                  fingerprint=fingerprint)
  with open(workdir / "results.jsonl") as f:
    rows = [json.loads(line) for line in f]
  return base, rows


# ------------------------------------------------------------------ configs

@pytest.mark.parametrize("study", sorted(STUDIES))
def test_configs_name_their_dataset_and_plan_every_part(study):
  base, configs, _ = _config(study, "quick,data_dir=/d,config=c")
  assert (base.data.name, base.data.data_dir, base.data.config) == (
      STUDIES[study], "/d", "c")
  parts = ["weights", "alg2"] if study in SEGMENTATION else [
      "weights", "alg1", "table2"]
  assert base.parts == parts and ("fig12" in base) == (study in SEGMENTATION)
  specs = ntdh_real.plan(configs)
  assert {s.tags_dict["part"] for s in specs} == {"shared", *parts}
  one, _, _ = _config(study, f"{parts[-1]},data_dir=/d")
  assert one.parts == [parts[-1]] and one.num_seeds == 5


def test_alg2_plans_each_kind_and_ratio_beside_unmasked_kd():
  _, configs, _ = _config("nyu", "alg2,quick,data_dir=/d")
  specs = [s for s in ntdh_real.plan(configs)
           if s.tags_dict["part"] == "alg2"]
  seeds, kinds, ratios = 2, 3, 2
  assert len(specs) == seeds * (1 + kinds * ratios)
  masked = [s for s in specs if s.tags_dict["kind"] != "none"]
  assert {s.static_dict["sample_mask"] for s in masked} == {"ncjsd"}
  assert {(s.tags_dict["kind"], s.tags_dict["ratio"]) for s in masked} == {
      (k, r) for k in ("true", "random", "false") for r in (0.25, 0.75)}
  for s in masked:  # the traced code is the kind the tag names
    assert int(s.hparams_dict["mask_kind"]) == masks.MASK_KINDS.index(
        s.tags_dict["kind"])
    assert s.hparams_dict["mask_ratio"] == s.tags_dict["ratio"]
  plain = [s for s in specs if s.tags_dict["kind"] == "none"]
  assert [s.static_dict["sample_mask"] for s in plain] == ["none"] * seeds
  # Kinds and ratios are traced: one program for all masked students.
  assert len({s.signature for s in masked}) == 1


@pytest.mark.parametrize("arg, overrides, message", [
    ("alg1,data_dir=/d", (), r"part='alg1'.*parts are \['weights', 'alg2'\]"),
    ("quick", ("parts=alg1",), r"config.parts selects \['alg1'\].*config.alg1"),
    ("quick", ("alg2.kinds=true,best",), r"config.alg2.kinds .*\['best'\]"),
    ("quick", ("alg2.ratios=1.0",), r"alg2.ratios"),
    ("quick", ("alg2.ratios=",), r"config.alg2.ratios must be a non-empty"),
])
def test_bad_configs_name_the_key(tmp_path, arg, overrides, message):
  with pytest.raises(ValueError, match=message):
    base, configs, fingerprint = _config("nyu", arg, overrides)
    experiments.run(configs, str(tmp_path / "w"), base=base, progress=False,
                    fingerprint=fingerprint)
  assert not (tmp_path / "w").exists()


def test_object_edges_skip_ignored_neighbours():
  labels = np.array([[0, 0, 1],
                     [0, 9, 1],
                     [2, 2, 2]])
  valid = labels != 9
  np.testing.assert_array_equal(report.object_edges(labels, valid), [
      [0, 1, 1],
      [1, 0, 1],
      [1, 0, 1]])


# ------------------------------------------------------ NYU, end to end

@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
  """The NYU study's Algorithm 2 part and Fig. 12 on the fake frames at
  120×160 (cheaper than the KITTI fakes' eleven 64×512 scans): teacher,
  no-KD student, KD students with each mask at 50 % beside the unmasked
  one; four compiled programs. Full batch at lr 1e-30
  (the config refuses 0): Adam's first step moves a weight by at most
  ~1e-30, below float32's resolution of the weights, so the variables
  stored after the one step are those the step's recorded KD term was
  computed with, which the in-step test below reads."""
  root = tmp_path_factory.mktemp("ntdh_nyu")
  test_nyu_depth_v2_labeled.write_fakes(root / "manual")
  prepared_util.build("nyu_depth_v2_labeled", root / "manual", root / "data",
                      config="120x160")
  base, rows = _run("nyu", root / "data", root / "w",
                    TINY_SEG + ["parts=alg2", "train.lr=1e-30",
                                "train.batch_size=0"], ",config=120x160")
  return root / "w", base, rows


def test_nyu_study_writes_its_figures_and_verdicts(nyu):
  workdir, _, rows = nyu
  assert len(rows) == 1 + 1 + 1 + 3
  for name in ("fig11_alg2.png", "fig12_ncjsd.png", "summary.csv",
               "report.md"):
    assert (workdir / name).exists(), name
  text = (workdir / "report.md").read_text()
  verdicts = [line for line in text.splitlines() if "reproduced** —" in line]
  # Fig. 11 (kinds, and vs plain KD), Fig. 12; each beside the paper's
  # claimed shape.
  assert [v.split("— ")[1][:7] for v in verdicts] == [
      "Fig. 11", "Fig. 11", "Fig. 12"]
  assert all("Paper (shape; its numbers are not available to us): " in v
             for v in verdicts)
  assert "mIoU (%)" in text and "semantic scene completion" in text
  table = text[text.index("### Algorithm 2"):text.index("### Fig. 12")]
  assert "| KD, no mask | 0.0 |" in table and "–" not in table.split(
      "| true")[1]
  with open(workdir / "summary.csv") as f:
    conditions = {tuple(r[k] for k in ("sample_mask", "kind", "ratio"))
                  for r in csv.DictReader(f) if r["stage"] == "student"}
  assert conditions == {("none", "", ""), ("none", "none", "0.0"),
                        *(("ncjsd", k, "0.5") for k in ("true", "random",
                                                        "false"))}


def test_report_selects_alg2_students_by_what_they_are(nyu):
  _, _, rows = nyu
  plain = report.distilled(rows, "kl")
  assert [r["tag.kind"] for r in plain] == ["none"]
  for kind in ("true", "random", "false"):
    (run,) = report.distilled(rows, "kl", sample_mask=(kind, 0.5))
    assert (run["tag.kind"], run["static.sample_mask"]) == (kind, "ncjsd")
  assert report.distilled(rows, "kl", sample_mask=("true", 0.25)) == []


def _outputs(workdir, rows, stage, **tags):
  (row,) = [r for r in rows if r["stage"] == stage and all(
      r.get(f"tag.{k}") == v for k, v in tags.items())]
  return sweep.run_outputs(str(workdir), rows, [row])[0]


def _softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_alg2_in_the_step_excludes_exactly_the_ranked_valid_pixels(nyu):
  """The (frozen) students' one full-batch step: its recorded KD term is the
  mean KL·T² over the valid pixels kept, where "true" drops the
  floor(r·n_valid) valid pixels of largest teacher–student NCJSD and
  "false" the smallest. No ignored pixel is kept: the fakes' void pixels,
  counted in the mean, would move it by more than 10× the tolerance (the
  mask's ranking of garbage-scored ignored pixels is ``test_masks``')."""
  workdir, base, rows = nyu
  teacher = _outputs(workdir, rows, "teacher", role="teacher")
  data = common.Data(base.data.to_dict())
  arrays = data.load()
  t_net = common.network(base.teacher_model.to_dict(), data.spec)
  net = common.network(base.model.to_dict(), data.spec)
  t_logits, _ = jax.jit(functools.partial(common.apply_eval, t_net))(
      teacher["variables"], data.input(arrays["teacher_train"], "teacher", {},
                                       None) * teacher["feature_mask"])
  # The step's student: training mode, the batch's BatchNorm statistics.
  student_logits = jax.jit(lambda v, x: net.apply(v, x, train=True)[0])
  x_s = data.input(arrays["student_train"], "student", {}, None)
  y = arrays["y_train"]
  valid = y != 255
  assert 0 < (~valid).sum() < valid.sum()  # the fakes have void pixels
  t = base.temperature
  for kind in ("true", "false"):
    (row,) = report.distilled(rows, "kl", sample_mask=(kind, 0.5))
    s_logits = student_logits(
        sweep.run_outputs(str(workdir), rows, [row])[0]["variables"], x_s)
    ncjsd = np.asarray(divergences.decompose(
        teacher_logits=t_logits, student_logits=s_logits, labels=y,
        where=valid).ncjsd)[valid]
    p_t = _softmax64(np.asarray(t_logits)[valid] / t)
    p_s = _softmax64(np.asarray(s_logits)[valid] / t)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(-1) * t**2
    removed = int(np.floor(0.5 * valid.sum()))
    order = np.argsort(ncjsd)  # ascending
    gone = order[len(order) - removed:] if kind == "true" else order[:removed]
    keep = np.ones(len(ncjsd), bool)
    keep[gone] = False
    np.testing.assert_allclose(row["history.train_kd"][-1], kl[keep].mean(),
                               rtol=1e-4, err_msg=kind)
    assert (~valid).sum() / keep.sum() > 10 * 1e-4


def test_fig12_maps_cover_valid_pixels_only(nyu):
  """NaN exactly on the ignored pixels, the float64 NCJSD elsewhere; the
  edge and interior means count every valid test pixel once."""
  workdir, base, rows = nyu
  maps = report.ncjsd_maps(rows, base, str(workdir), images=2)
  assert set(maps["ncjsd"]) == {"no KD", "KD"}
  teacher = _outputs(workdir, rows, "teacher", role="teacher")
  data = common.Data(base.data.to_dict())
  arrays = data.load()
  y = arrays["y_test"]
  valid = y != 255
  np.testing.assert_array_equal(maps["valid"], valid[:2])
  np.testing.assert_array_equal(maps["labels"], y[:2])
  t_net = common.network(base.teacher_model.to_dict(), data.spec)
  s_net = common.network(base.model.to_dict(), data.spec)
  t_logits, _ = jax.jit(functools.partial(common.apply_eval, t_net))(
      teacher["variables"], data.input(arrays["teacher_test"][:2], "teacher",
                                       {}, None) * teacher["feature_mask"])
  student = _outputs(workdir, rows, "student", role="no_kd")
  s_logits, _ = jax.jit(functools.partial(common.apply_eval, s_net))(
      student["variables"], data.input(arrays["student_test"][:2], "student",
                                       {}, None))
  got = maps["ncjsd"]["no KD"]
  np.testing.assert_array_equal(np.isnan(got), ~valid[:2])
  want = _ncjsd64(t_logits, s_logits, y[:2])
  np.testing.assert_allclose(got[valid[:2]], want[valid[:2]], rtol=1e-3,
                             atol=1e-6)
  for name in maps["ncjsd"]:
    assert maps["edge"][name][1] + maps["interior"][name][1] == valid.sum()
    assert maps["edge"][name][1] == report.object_edges(y, valid).sum()


def _ncjsd64(teacher_logits, student_logits, labels):
  """float64 JSD of the non-target distributions, per pixel."""
  def nontarget(z):
    p = _softmax64(z)
    k = np.take_along_axis(p, np.where(labels < p.shape[-1], labels, 0)[
        ..., None], -1)
    p = np.where(np.arange(p.shape[-1]) == labels[..., None], 0.0, p)
    return p / (1 - k)
  p, q = nontarget(teacher_logits), nontarget(student_logits)
  m = (p + q) / 2
  kl = lambda a: np.sum(np.where(a > 0, a * np.log(
      np.where(a > 0, a, 1) / np.where(a > 0, m, 1)), 0.0), -1)
  return (kl(p) + kl(q)) / 2


# ---------------------------------------- the other studies, end to end

def _mnist(root):
  test_mnist_pair.write_fakes(root / "manual")
  prepared_util.build("mnist_pair", root / "manual", root / "data")
  return "", TINY_CLS + ["model.hidden=[16]", "teacher_model.hidden=[16]"]


def _ravdess(root):
  test_ravdess.write_fakes(root / "manual")
  prepared_util.build("ravdess", root / "manual", root / "data",
                      test_ravdess.CONFIG)
  return f",config={test_ravdess.CONFIG}", TINY_CLS + [
      "model.channels=[4]", "teacher_model.channels=[4]", "model.dense=8",
      "teacher_model.dense=8"]


def _kitti(root):
  test_semantic_kitti.write_fakes(root / "manual")
  prepared_util.build("semantic_kitti", root / "manual", root / "data")
  return "", TINY_SEG


@pytest.mark.slow
@pytest.mark.parametrize("study, fakes, figures, verdicts", [
    ("mnist", _mnist, ("fig7_weights.png", "fig9_alg1.png",
                       "fig10_masks.png"), 4),
    ("ravdess", _ravdess, ("fig7_weights.png", "fig9_alg1.png",
                           "fig10_masks.png"), 4),
    ("kitti", _kitti, ("fig7_weights.png", "fig11_alg2.png",
                       "fig12_ncjsd.png"), 4),
])
def test_study_end_to_end_on_fakes(tmp_path, study, fakes, figures,
                                   verdicts):
  arg, overrides = fakes(tmp_path)
  base, rows = _run(study, tmp_path / "data", tmp_path / "w", overrides, arg)
  text = (tmp_path / "w" / "report.md").read_text()
  for name in figures + ("summary.csv",):
    assert (tmp_path / "w" / name).exists(), name
  assert text.count("reproduced** —") == verdicts
  if study == "ravdess":
    assert "### Table III" in text
  if study == "kitti":  # ~99 % of the fake scans' pixels hold no point
    maps = report.ncjsd_maps(rows, base, str(tmp_path / "w"), images=1)
    assert maps["valid"].mean() < 0.05
    np.testing.assert_array_equal(np.isnan(maps["ncjsd"]["KD"]),
                                  ~maps["valid"])
