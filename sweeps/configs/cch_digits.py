"""CCH on digits → digits-M with Gaussian blur (CCH's MNIST/MNIST-M study).

  ntdh-sweep --config sweeps/configs/cch_digits.py --workdir runs/cch_digits
  ntdh-sweep --config sweeps/configs/cch_digits.py:teachers --workdir runs/cch_teachers

``student`` (default): the digits-M student view blurred with σ = 0 … 3
pixels (CCH blurs the student's MNIST-M images to move Δ); the report
compares Δ = I(H₁;H₂) − I(H₂;Y) with the KD gain. ``teachers``: one
student (digits-M, unblurred) and candidate teachers — the digits view
blurred with σ = 0 … 3 — ranked by Δ and by NTDH's NCJSD against the
measured gains. Networks, training and noise as ``digits_kd.py`` (the
small CNN, Adam 1e-3; Hinton KD at T = 4) but 20 epochs instead of 30, so
each variant's 60 runs take about 20 minutes on 2 CPU cores. ``:quick`` (3
levels, 2 seeds, 5 epochs) is a smoke run; ``:tiny`` (2 levels, 2 seeds,
1 epoch) runs every path for the tests.
"""

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import kd

_BLURS = {"full": [0.0, 1.0, 2.0, 3.0], "quick": [0.0, 1.0, 3.0],
          "tiny": [0.0, 3.0]}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, vary="student", quick=False, tiny=False)
  if arg.vary not in ("student", "teachers"):
    raise ValueError(f"the variant must be 'student' or 'teachers', got "
                     f"{arg.vary!r}.")
  scale = "tiny" if arg.tiny else "quick" if arg.quick else "full"
  c = ml_collections.ConfigDict()
  c.experiment = "cch"
  c.seed = 0
  c.num_seeds = 2 if scale != "full" else 5
  c.data = ml_collections.ConfigDict({"name": "digits_blur", "size": 8})
  cnn = {"name": "cnn", "channels": [32, 64], "dense": 128}
  c.teacher_model = ml_collections.ConfigDict(cnn)
  c.model = ml_collections.ConfigDict(cnn)
  c.train = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=1e-3, momentum=0.0, batch_size=64,
      epochs={"tiny": 1, "quick": 5, "full": 20}[scale],
      eval_every=1 if scale == "tiny" else 5, eval_batch_size=512))
  view = "student" if arg.vary == "student" else "teacher"
  other = "teacher" if view == "student" else "student"
  c.knob = f"{view}_blur"
  c.conditions = list(_BLURS[scale])
  c.fixed_knobs = ml_collections.ConfigDict({f"{other}_blur": 0.0})
  c.candidates = "student" if arg.vary == "student" else "teacher"
  c.kd = ml_collections.ConfigDict(kd.METHODS["kd"])
  c.mi = ml_collections.ConfigDict(dict(
      estimators=["ksg"], repeats=2 if scale == "tiny" else 5,
      subsample=0.5, seed=0, options=ml_collections.ConfigDict()))
  return c
