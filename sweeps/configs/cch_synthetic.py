"""CCH on the NTDH synthetic γ data: Δ vs the KD gain, and the γ family as
candidate teachers.

  ntdh-sweep --config sweeps/configs/cch_synthetic.py --workdir runs/cch_synthetic

For each γ (0 = the views share their 20 informative columns, 1 = disjoint
ones) and seed: an MLP teacher on the teacher view, an MLP student on the
student view without KD and one with KD (CE + KL at T = 1, NTDH's setting),
trained as the main job's tuned preset. The report estimates Δ = I(H₁;H₂) −
I(H₂;Y) from the teacher's and the no-KD student's penultimate features on
the test split (KSG and MINE; ``:quick`` and ``:tiny`` KSG only) and
compares it, and NTDH's NCJSD, with the measured KD gain; the γ values are
the candidate teachers of the choice table (the student's view is the same
at every γ: γ moves the teacher's informative columns).
``:quick`` (3 γ, 3 seeds, 8 epochs) is a smoke run; ``:tiny`` (2 γ, 2
seeds, 1 epoch) runs every path for the tests and notebook 03.
"""

import ml_collections

from ntdh_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  quick = arg.quick or arg.tiny
  c = ml_collections.ConfigDict()
  c.experiment = "cch"
  c.seed = 0
  c.num_seeds = 2 if arg.tiny else 3 if quick else 10
  c.data = ml_collections.ConfigDict({"name": "ntdh", "random_state": 42})
  mlp = {"name": "mlp", "hidden": [16, 16], "init_scheme": "torch"}
  c.teacher_model = ml_collections.ConfigDict(mlp)
  c.model = ml_collections.ConfigDict(mlp)
  c.train = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=0.01, momentum=0.0, batch_size=500,
      epochs=1 if arg.tiny else 8 if quick else 40,
      eval_every=1 if arg.tiny else 2 if quick else 4, eval_batch_size=2000))
  c.knob = "gamma"
  c.conditions = ([0.0, 1.0] if arg.tiny else [0.0, 0.5, 1.0] if quick
                  else [0.0, 0.25, 0.5, 0.75, 1.0])
  c.fixed_knobs = ml_collections.ConfigDict()
  c.candidates = "teacher"
  c.kd = ml_collections.ConfigDict(
      {"distill": "kl", "kd_form": "additive", "temperature": 1.0,
       "kd_weight": 1.0})
  # KSG (with Ross's estimator for the labels) and MINE; LMI and InfoNCE
  # run with --config.mi.estimators=ksg,mine,latent,infonce but cost
  # minutes per (γ, seed) on a CPU (README, "CCH").
  c.mi = ml_collections.ConfigDict(dict(
      estimators=["ksg"] if quick else ["ksg", "mine"],
      repeats=2 if arg.tiny else 5, subsample=0.5, seed=0,
      options=ml_collections.ConfigDict()))
  return c
