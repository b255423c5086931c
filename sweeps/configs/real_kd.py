"""Cross-modal KD on one of the paper's real datasets, once prepared.

  ntdh-data prepare mnist_pair --manual_dir ~/archives/mnist
  ntdh-sweep --config sweeps/configs/real_kd.py:mnist_pair --workdir runs/mnist_pair_kd

The same study as ``digits_kd.py`` (a teacher on the teacher view, students
on the student view without KD, with Hinton KD and with DKD; ``report.md``
with accuracies and teacher–student divergences) on a prepared dataset:

* ``mnist_pair`` — MNIST → MNIST-M, NTDH's 3-layer MLPs (``mnist_fc``),
  SGD lr 0.01 momentum 0.9, batch 128, 50 epochs (NTDH ``MNIST/main.py``);
* ``ravdess`` — log-mel audio → face frame, ``conv2d`` nets, Adam;
* ``nyu_depth_v2_labeled`` — RGB → depth, per-pixel 13-class segmentation
  (``segnet``), Adam;
* ``semantic_kitti`` — range-image channel groups, per-pixel 19-class
  segmentation (``segnet``), Adam.

Arguments: the dataset (first), ``quick`` (2 seeds, 2 epochs),
``data_dir=DIR`` (where ``ntdh-data prepare`` wrote it; default TFDS's),
``config=NAME`` (the builder config). The networks are small stand-ins for
the paper's (see ``ntdh_jax.models``); widen them with
``--config.model.channels`` etc.
"""

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import kd
from ntdh_jax import data as data_lib

_ADAM = dict(optimizer="adam", lr=1e-3, momentum=0.0)
DATASETS = {
    "mnist_pair": dict(
        model={"name": "mnist_fc"},
        train=dict(optimizer="sgd", lr=1e-2, momentum=0.9, batch_size=128,
                   epochs=50)),
    "ravdess": dict(
        model={"name": "conv2d", "channels": [32, 64, 128], "dense": 256},
        train=dict(**_ADAM, batch_size=32, epochs=60)),
    "nyu_depth_v2_labeled": dict(
        model={"name": "segnet", "channels": [16, 32, 64]},
        train=dict(**_ADAM, batch_size=8, epochs=60)),
    "semantic_kitti": dict(
        model={"name": "segnet", "channels": [16, 32, 64]},
        train=dict(**_ADAM, batch_size=8, epochs=30)),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, dataset="mnist_pair", quick=False,
                             data_dir="", config="")
  if arg.dataset not in DATASETS:
    raise ValueError(f"real_kd.py: unknown dataset {arg.dataset!r}; "
                     f"datasets: {sorted(DATASETS)}.")
  d = DATASETS[arg.dataset]
  c = ml_collections.ConfigDict()
  c.experiment = "kd"
  c.seed = 0
  c.num_seeds = 2 if arg.quick else 5
  # Every option of the source, defaults filled, so --config.data.KEY=...
  # can set any of them (noise_level, frame, classes, mask, ...).
  c.data = ml_collections.ConfigDict(data_lib.normalise({
      "name": arg.dataset, "data_dir": arg.data_dir or None,
      "config": arg.config or None}))
  c.teacher_model = ml_collections.ConfigDict(d["model"])
  c.model = ml_collections.ConfigDict(d["model"])
  train = dict(d["train"])
  if arg.quick:
    train["epochs"] = 2
  c.train = ml_collections.ConfigDict(dict(
      **train, eval_every=train["epochs"], eval_batch_size=256))
  c.methods = ml_collections.ConfigDict(kd.METHODS)
  return c
