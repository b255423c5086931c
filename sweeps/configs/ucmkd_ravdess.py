"""UCMKD on RAVDESS audio → video (prepared ``ravdess``).

  ntdh-data prepare ravdess --manual_dir ~/archives/ravdess
  ntdh-sweep --config sweeps/configs/ucmkd_ravdess.py --workdir runs/ucmkd_ravdess
  ntdh-sweep --config sweeps/configs/ucmkd_ravdess.py:quick,data_dir=D --workdir W

The paper's real setting (Duckduck-05/UCMKD ``ravdess/``): the teacher
modality is the standardised log-mel f32[40, 256, 1] (the source's teacher
view), the student's a face frame u8[64, 64, 3], 8 emotions; the student is
trained from rows drawn without their partners. Per seed and robustness
preset a teacher, then students by every method of
``experiments.ucmkd.METHODS`` (CE, vanilla KD, FA only, the single-level
sum, the bi-level method as the code runs it and in the paper's form)
under every pairing (paired, class-paired, unpaired). Presets after the
code's ``CHALLENGE_PRESETS`` (its "moderate" levels): ``clean``;
``mismatch`` — disjoint per-class pools, half of each class for the
student; ``imbalance`` — the student's classes thinned to a long tail,
factor 10. The source has no traced knob, so there is no domain-shift
preset (the code's audio noise / image jitter, blur, erasing): every
preset's ``knobs`` is empty.

Networks: the paper's RAVDESS backbones are ViT-L/16 on the image and
ViT-S/16 on the audio (``run.sh``); ours are small conv nets — a
simplification. ``conv2d`` (32, 64, 128 conv widths, global average
pooling, a 256-wide dense layer, as ``ntdh_ravdess.py``) on both views:
its 256-wide dense activation is the representation FA and κ read, so
teacher and student have one feature width (the code's κ needs equal
widths, else its LA falls back to CE). Adam lr 1e-3 (the code: AdamW lr
1e-4 with a cosine schedule, tuned for pre-trained ViTs, not small nets
from scratch), batch 64 as the code, teacher 20 epochs as the code,
students 20 (the code: 100). On a CPU a vmapped conv net becomes a grouped
convolution, which XLA:CPU runs slowly (README, Sweep (CNNs)): the full
study is an accelerator job.

Arguments (``:arg``): ``quick`` (2 seeds, fewer epochs, a smoke run) or
``tiny`` (1 seed, 1 epoch, every path, for the tests); ``data_dir=DIR``
(where ``ntdh-data prepare`` wrote it); ``config=NAME`` (the builder
config, ``default`` or ``present_actors``).
"""

from ntdh_jax.experiments import ucmkd

PRESETS = {
    "clean": {"student_share": 1.0, "imbalance": 1.0, "knobs": {}},
    "mismatch": {"student_share": 0.5, "imbalance": 1.0, "knobs": {}},
    "imbalance": {"student_share": 1.0, "imbalance": 10.0, "knobs": {}},
}
MODEL = {"name": "conv2d", "channels": [32, 64, 128], "dense": 256}


def get_config(arg=None):
  return ucmkd.prepared_study(arg, "ravdess", model=MODEL,
                              teacher_model=MODEL, presets=PRESETS,
                              batch_size=64, lr=1e-3)
