"""CMCD on digits → digits-M: SimCLR source, CMD/CMC distillation, few labels.

  ntdh-sweep --config sweeps/configs/cmcd_digits.py --workdir runs/cmcd_digits

The source modality is the digits view (grey), the target the digits-M view
(the digit on a photograph), no modality-strength noise on either. Per
seed: SimCLR on the digits training images (no labels); per target blur σ
(``gaps``, the modality gap: the digits-M view blurred by σ pixels), per
pair fraction m/n and per method (CMD, CMC, L2 and cosine alignment) a
distilled target encoder; each trained on 1 / 5 / 10 % of the target's
labels by a linear probe and by full fine-tuning, beside the target network
from scratch. Networks: a small CNN (conv 16, 32; dense 64) for both, a
64 → 32 projection head. ``:quick`` (2 seeds, fewer epochs) is a smoke run;
``:tiny`` (1 seed, 1 epoch, one gap; CMD with a queue and the L2
baseline) runs every path for the tests.
"""

import ml_collections

from ntdh_jax import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  scale = "tiny" if arg.tiny else "quick" if arg.quick else "full"
  c = ml_collections.ConfigDict()
  c.experiment = "cmcd"
  c.seed = 0
  c.num_seeds = {"tiny": 1, "quick": 2, "full": 5}[scale]
  c.data = ml_collections.ConfigDict({
      "name": "digits_blur", "size": 8, "teacher_noise": 0.0,
      "student_noise": 0.0})
  c.knob = "student_blur"
  c.gaps = [0.0] if scale == "tiny" else [0.0, 1.0, 2.0]
  c.fixed_knobs = ml_collections.ConfigDict({"teacher_blur": 0.0})
  cnn = {"name": "cnn", "channels": [16, 32], "dense": 64}
  c.source_model = ml_collections.ConfigDict(cnn)
  c.model = ml_collections.ConfigDict(cnn)
  c.projection = ml_collections.ConfigDict({"hidden": 64, "dim": 32})
  c.eval_batch_size = 512
  # Epochs per stage (each of n // batch_size steps) and evaluations.
  ssl_epochs, ssl_every = {"tiny": (1, 1), "quick": (10, 5),
                           "full": (30, 10)}[scale]
  kd_epochs, kd_every = {"tiny": (1, 1), "quick": (5, 5),
                         "full": (10, 5)}[scale]
  ft_epochs, ft_every = {"tiny": (1, 1), "quick": (5, 5),
                         "full": (5, 5)}[scale]
  # SimCLR's augmentations, narrowed for 8×8 digits: no flip (a mirrored
  # digit is another symbol), crops of at least half the image, no colour
  # on the one-channel source (saturation, hue and grayscale are no-ops).
  c.ssl = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=1e-3, momentum=0.0, batch_size=128,
      epochs=ssl_epochs, eval_every=ssl_every, temperature=0.5,
      augment=ml_collections.ConfigDict(dict(
          crop_scale=[0.5, 1.0], flip=0.0, blur_sigma=[0.1, 1.0]))))
  c.distill = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=1e-3, momentum=0.0, batch_size=64,
      epochs=kd_epochs, eval_every=kd_every,
      pair_fractions=[1.0] if scale == "tiny" else [0.1, 1.0],
      methods=ml_collections.ConfigDict({
          # SEED's temperatures (τ_A = 0.01, τ_B = 0.2); CMCD's are unknown.
          "cmd": {"loss": "cmd", "queue_size": 0, "cmd_tau_source": 0.01,
                  "cmd_tau_target": 0.2},
          "cmc": {"loss": "cmc", "learn_temperature": False,
                  "cmc_temperature": 0.1},
          "l2": {"loss": "l2"},
          "cosine": {"loss": "cosine"},
      })))
  if scale == "tiny":  # a queue, and one baseline: fewer programs to compile
    c.distill.methods = ml_collections.ConfigDict({
        "cmd": {"loss": "cmd", "queue_size": 128, "cmd_tau_source": 0.01,
                "cmd_tau_target": 0.2},
        "l2": {"loss": "l2"}})
  c.finetune = ml_collections.ConfigDict(dict(
      optimizer="adam", lr=1e-3, momentum=0.0, batch_size=32,
      epochs=ft_epochs, eval_every=ft_every,
      label_fractions=[0.01, 0.05, 0.1],
      modes=["linear_probe", "full"]))
  return c
