"""How often is the advisor (``ntdh_jax.diagnose``) right? Issue 14's table.

  ntdh-sweep --config sweeps/configs/advisor_calibration.py --workdir runs/advisor

Three studies whose KD gain is measured, each (condition, seed) a teacher, a
student without KD, a KD student and KD students with Algorithm 2's sample
mask at 25 % and 50 %:

* ``synthetic`` — the NTDH γ data (γ = 0 … 1, the teacher's informative
  columns move away from the student's), the main job's MLPs, CE + KL at
  T = 1 (as ``cch_synthetic.py``). **The rule is calibrated here.**
* ``digits_student_blur`` — digits → digits-M, the digits-M student's
  images blurred with σ = 0 … 3 pixels (CCH's MNIST-M study), NTDH's
  fully connected MNIST net, Hinton KD at T = 4.
* ``digits_teacher_blur`` — the same with the digits teacher's images
  blurred instead: weaker teachers for one student.

MFH's Gaussian family is not a part: it has 2 classes, where the non-target
distribution NTDH's signal reads is a single point. ``:quick`` (3
conditions, 3 seeds, a quarter of the epochs) is a smoke run; ``:tiny``
(the two digits parts only, calibrated on the first: 2 conditions, 2 seeds,
1 epoch) runs every path for the tests.
"""

import ml_collections

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import kd


def _part(scale, *, data, model, train, knob, conditions, fixed_knobs,
          kd_method, seeds):
  tiny = scale == "tiny"
  return ml_collections.ConfigDict(dict(
      seed=0, num_seeds={"tiny": 2, "quick": 3, "full": seeds}[scale],
      data=data, teacher_model=model, model=model,
      train={**train, "epochs": 1 if tiny else train["epochs"]
             if scale == "full" else max(1, train["epochs"] // 4),
             "eval_every": 1 if tiny else train["eval_every"]},
      knob=knob,
      conditions={"tiny": conditions[::len(conditions) - 1],
                  "quick": conditions[::2] if len(conditions) > 3
                  else conditions, "full": conditions}[scale],
      fixed_knobs=fixed_knobs, kd=kd_method))


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  scale = "tiny" if arg.tiny else "quick" if arg.quick else "full"
  mlp = {"name": "mlp", "hidden": [16, 16], "init_scheme": "torch"}
  fc = {"name": "mnist_fc", "hidden": [256, 128], "leaky_logits": False}
  digits = dict(data={"name": "digits_blur", "size": 8}, model=fc,
                train=dict(optimizer="adam", lr=1e-3, momentum=0.0,
                           batch_size=64, epochs=20, eval_every=5,
                           eval_batch_size=512),
                kd_method=dict(kd.METHODS["kd"]), seeds=5)
  blurs = [0.0, 1.0, 2.0, 3.0]
  c = ml_collections.ConfigDict()
  c.experiment = "advisor"
  c.parts = ml_collections.ConfigDict({
      "synthetic": _part(
          scale, data={"name": "ntdh", "random_state": 42}, model=mlp,
          train=dict(optimizer="adam", lr=0.01, momentum=0.0, batch_size=500,
                     epochs=40, eval_every=4, eval_batch_size=2000),
          knob="gamma", conditions=[0.0, 0.25, 0.5, 0.75, 1.0],
          fixed_knobs={},
          kd_method={"distill": "kl", "kd_form": "additive",
                     "temperature": 1.0, "kd_weight": 1.0}, seeds=5),
      "digits_student_blur": _part(
          scale, knob="student_blur", conditions=blurs,
          fixed_knobs={"teacher_blur": 0.0}, **digits),
      "digits_teacher_blur": _part(
          scale, knob="teacher_blur", conditions=blurs,
          fixed_knobs={"student_blur": 0.0}, **digits),
  })
  c.calibrate_on = ["synthetic"]
  if scale == "tiny":  # the digits parts share their programs: 4 compiles
    del c.parts["synthetic"]
    c.calibrate_on = ["digits_student_blur"]
  c.mask_ratios = [0.25, 0.5]
  # ntdh_jax.diagnose's options for every (condition, seed) pair.
  c.diagnose = ml_collections.ConfigDict(dict(
      bootstrap=200 if scale == "tiny" else 1000, level=0.95, seed=0,
      mi_repeats=2 if scale == "tiny" else 5, mi_subsample=0.5))
  return c
