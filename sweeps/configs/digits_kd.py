"""Cross-modal KD on the embedded digits → digits-M pair (no download).

  ntdh-sweep --config sweeps/configs/digits_kd.py --workdir runs/digits_kd

The teacher is a small CNN on scikit-learn's 8×8 grey digits; the students
are the same CNN on digits-M (the digits blended over colour photographs,
the MNIST-M recipe), trained without KD, with Hinton KD (CE + KL at T = 4)
and with DKD (α = 1, β = 8, T = 4, its paper's defaults). Both views carry
the noise that equalises their strength (``ntdh_jax.data.digits``), so the
teacher and the no-KD student also measure it. ``:quick`` is a smoke run
(2 seeds, 5 epochs); ``:size=28`` runs MNIST-shaped 28×28 images.
"""

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import kd


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, size=8)
  c = ml_collections.ConfigDict()
  c.experiment = "kd"
  c.seed = 0
  c.num_seeds = 2 if arg.quick else 5
  c.data = ml_collections.ConfigDict({"name": "digits", "size": arg.size})
  cnn = {"name": "cnn", "channels": [32, 64], "dense": 128}
  c.teacher_model = ml_collections.ConfigDict(cnn)
  c.model = ml_collections.ConfigDict(cnn)
  c.train = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=1e-3, momentum=0.0, batch_size=64,
      epochs=5 if arg.quick else 30, eval_every=5, eval_batch_size=512))
  c.methods = ml_collections.ConfigDict(kd.METHODS)
  return c
