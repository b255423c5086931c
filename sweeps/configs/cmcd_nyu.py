"""CMCD on NYU Depth V2, RGB → depth segmentation (prepared
``nyu_depth_v2_labeled``).

  ntdh-data prepare nyu_depth_v2_labeled --manual_dir ~/archives/nyu
  ntdh-sweep --config sweeps/configs/cmcd_nyu.py --workdir runs/cmcd_nyu
  ntdh-sweep --config sweeps/configs/cmcd_nyu.py:quick,data_dir=D --workdir W

CMCD's depth-map setting: SimCLR on the RGB frames (whole-frame
embeddings: the U-Net's per-pixel features averaged over the pixels), the
depth encoder distilled from it on m = 10 % and 100 % of the RGB–depth
pairs, then per-pixel segmentation (13 classes, void ignored) from 1 / 5 /
10 % of the labelled frames — a 1×1 linear probe on the frozen per-pixel
features or full fine-tuning — scored by mIoU. The paper segments NYU
depth maps but its numbers were not available; ours are our own. Networks:
the small U-Net (``segnet``, widths 16, 32, 64) for both. An accelerator
job.

Arguments (``:arg``): ``quick`` or ``tiny``; ``data_dir=DIR``;
``config=NAME`` (``240x320``, ``120x160``, ``480x640``).
"""

from ntdh_jax.experiments import cmcd


def get_config(arg=None):
  return cmcd.prepared_study(
      arg, "nyu_depth_v2_labeled",
      model={"name": "segnet", "channels": [16, 32, 64]},
      batch_sizes=(16, 16, 8), projection=(64, 32), eval_batch_size=16,
      augment={"crop_scale": [0.3, 1.0]}, metric="miou")
