"""UCMKD on digits → digits-M: distillation without paired rows.

  ntdh-sweep --config sweeps/configs/ucmkd_digits.py --workdir runs/ucmkd_digits

The teacher modality is the digits view (grey), the student's the digits-M
view (the digit on a photograph); no modality-strength noise on either.
Per seed and robustness preset a teacher, then students by every method
of ``experiments.ucmkd.METHODS`` (CE, vanilla KD, FA only, the single-level
sum, the bi-level method as the code runs it and in the paper's form)
under every pairing (paired, class-paired, unpaired). Presets after the
code's ``CHALLENGE_PRESETS`` (its "moderate" levels): ``clean``;
``mismatch`` — disjoint per-class pools, half of each class for the
student; ``shift`` — the digits-M view blurred by σ = 1.5 px (domain
shift); ``imbalance`` — the student's classes thinned to a long tail,
factor 10. Networks: an MLP (``mnist_fc``, 256 → 128, LeakyReLU; its 128
features are FA's and κ's representation) for both views: on CPU a
vmapped conv net becomes a grouped convolution, which XLA:CPU runs slowly
(README, Sweep (CNNs)). Adam lr 1e-3, batch 64, teacher 20 epochs,
students 10. ``:quick`` (2 seeds, fewer epochs) is a smoke run; ``:tiny``
(1 seed, 1 epoch, two presets) runs every path for the tests.
"""

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import ucmkd

_CLEAN = {"teacher_blur": 0.0, "student_blur": 0.0}
PRESETS = {
    "clean": {"student_share": 1.0, "imbalance": 1.0, "knobs": _CLEAN},
    "mismatch": {"student_share": 0.5, "imbalance": 1.0, "knobs": _CLEAN},
    "shift": {"student_share": 1.0, "imbalance": 1.0,
              "knobs": {**_CLEAN, "student_blur": 1.5}},
    "imbalance": {"student_share": 1.0, "imbalance": 10.0, "knobs": _CLEAN},
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  scale = "tiny" if arg.tiny else "quick" if arg.quick else "full"
  presets = (PRESETS if scale != "tiny" else
             {k: PRESETS[k] for k in ("clean", "mismatch")})
  return ucmkd.study_config(
      scale,
      data={"name": "digits_blur", "size": 8, "teacher_noise": 0.0,
            "student_noise": 0.0},
      model={"name": "mnist_fc", "hidden": [256, 128],
             "leaky_logits": False},
      presets=presets)
