"""CMCD on digits → digits-M: SimCLR source, CMD/CMC distillation, few labels.

  ntdh-sweep --config sweeps/configs/cmcd_digits.py --workdir runs/cmcd_digits

The source modality is the digits view (grey), the target the digits-M view
(the digit on a photograph), no modality-strength noise on either. Per
seed: SimCLR on the digits training images (no labels); per target blur σ
(``gaps``, the modality gap: the digits-M view blurred by σ pixels), per
pair fraction m/n (0.1, 1) and per method (CMD, CMC, L2 and cosine
alignment) a distilled target encoder; each trained on 1 / 5 / 10 % of the
target's labels by a linear probe and by full fine-tuning, beside the target
network from scratch. Networks: an MLP (``mnist_fc``, 256 → 128, LeakyReLU;
its 128 features are the representation) for both, a 64 → 32 projection
head; Adam lr 1e-3; SimCLR 50 epochs, distillation 20, fine-tuning 10. ``:quick`` (2 seeds, fewer epochs) is a smoke run;
``:tiny`` (1 seed, 1 epoch, one gap; CMD with a queue and the L2 baseline)
runs every path for the tests.
"""

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import cmcd


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  return cmcd.study_config(
      "tiny" if arg.tiny else "quick" if arg.quick else "full",
      data={"name": "digits_blur", "size": 8, "teacher_noise": 0.0,
            "student_noise": 0.0},
      # An MLP: on CPU a vmapped conv net becomes a grouped convolution,
      # which XLA:CPU runs slowly (README, Sweep (CNNs)); dense layers
      # batch well.
      model={"name": "mnist_fc", "hidden": [256, 128],
             "leaky_logits": False},
      batch_sizes=(128, 64, 32),
      # SimCLR's augmentations, narrowed for 8×8 digits: no flip (a mirrored
      # digit is another symbol), crops of at least half the image, a blur
      # of at most 1 px; colour ops are no-ops on the one-channel source.
      augment={"crop_scale": [0.5, 1.0], "flip": 0.0,
               "blur_sigma": [0.1, 1.0]},
      knob="student_blur",
      gaps={"tiny": [0.0], "quick": [0.0, 1.0, 2.0],
            "full": [0.0, 1.0, 2.0]},
      fixed_knobs={"teacher_blur": 0.0})
