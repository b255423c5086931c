"""The NTDH study on the embedded digits → digits-M pair (no download).

  ntdh-sweep --config sweeps/configs/ntdh_digits.py --workdir runs/ntdh_digits
  ntdh-sweep --config sweeps/configs/ntdh_digits.py:quick --workdir runs/q

Beside the main (synthetic) job, the paper's claims on real modalities
(``ntdh_jax.experiments.ntdh_real``): Fig. 7a (raising the non-target
weight β hurts), Algorithm 1 on the teacher view's 64 pixels with the
heatmap of the three masks (Figs. 9a, 10) and Table II (six KD methods ×
{w/o KD, w/o mask, true / random / false masks at 25/50/75 %}; feature
methods on penultimate features, ``--config.table2.wiring=logits`` for the
authors' code's wiring).

Networks: NTDH's MNIST MLP (``mnist_fc``, D → 1024 → 256 → 10, LeakyReLU,
as ``MNIST/network/LR_3.py``) on both views; Adam lr 1e-3, batch 64,
6 epochs over the 1,347 training digits (at 30 epochs the study's 510 runs
took over an hour on 2 CPU cores; at 6 they aim at 20 minutes);
CE + KL at T = 4 (the digits KD study's setting). The data source's default
noise equalises the two views (``ntdh_jax.data.digits``).

Arguments (``:arg``): a part — ``weights``, ``alg1``, ``table2`` or ``all``
(default) — and/or a scale, e.g. ``:alg1,quick``:

* ``quick`` — 2 seeds, 5 epochs, fewer grid points: a smoke run of every
  part whose numbers already show the paper's trends (about 5 minutes on
  2 CPU cores).
* ``tiny`` — the smallest study that still runs every stage and writes every
  figure, table and verdict of the report: ``quick``'s grid with 1 seed,
  1 epoch, networks of one hidden layer of 16 units, Algorithm 1 with
  1 repeat, Fig. 7 at α = 1 and β ∈ {0, 8}, Table II with FitNet and DKD
  only. It is for smoke tests (``tests/test_ntdh_real.py``) and for running
  ``notebooks/02_ntdh_real_modalities.ipynb`` under the test suite; its
  numbers and verdicts are noise, not conclusions.
"""

from ntdh_jax import config as config_lib
from ntdh_jax import data as data_lib
from ntdh_jax.experiments import ntdh_real


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, part="all", quick=False, tiny=False)
  mlp = {"name": "mnist_fc", "hidden": [1024, 256]}
  c = ntdh_real.study_config(
      # Every option of the source (size, noise levels), so
      # --config.data.KEY can set them.
      data=data_lib.normalise({"name": "digits"}), model=mlp,
      train=dict(optimizer="adam", lr=1e-3, momentum=0.0, batch_size=64,
                 epochs=6),
      parts=["weights", "alg1", "table2"], part=arg.part,
      quick=arg.quick or arg.tiny,  # tiny shrinks quick's study further
      quick_epochs=5, eval_batch_size=512)
  # Algorithm 1 scores the MLP teacher from its first pre-activation.
  c.alg1.first_layer = True
  if arg.tiny:
    c.num_seeds = 1
    c.train.update(epochs=1, eval_every=1)
    c.teacher_model.hidden = [16]
    c.model.hidden = [16]
    c.weights.update(alphas=[1.0], betas=[0.0, 8.0])
    c.alg1.repeats = 1
    c.table2.methods = ["fitnet", "dkd"]
  return c
