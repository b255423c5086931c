"""The NTDH study on NYU Depth V2, RGB → depth per-pixel segmentation
(prepared ``nyu_depth_v2_labeled``).

  ntdh-data prepare nyu_depth_v2_labeled --manual_dir ~/archives/nyu
  ntdh-sweep --config sweeps/configs/ntdh_nyu.py --workdir runs/ntdh_nyu
  ntdh-sweep --config sweeps/configs/ntdh_nyu.py:quick,data_dir=D --workdir W

The paper's NYU Depth V2 claims (``ntdh_jax.experiments.ntdh_real``),
teacher on RGB u8[240, 320, 3], student on depth f32[240, 320, 1], 13
classes per pixel (void ignored), mIoU:

* ``weights`` — Fig. 7c: per-pixel DKD students α·TCKL + β·NCKL;
* ``alg2`` — Fig. 11: Algorithm 2 per pixel inside the jitted step: the
  KD term leaves out the ``ratio`` fraction of each batch's valid pixels
  with the largest (true), smallest (false) or random teacher–student
  NCJSD, at 10–90 %, beside the unmasked KD student;
* Fig. 12 (report): the per-pixel NCJSD between the teacher and the no-KD
  and KD students on the first 4 test images, and its mean on object edges
  vs inside objects over the test set.

The paper runs NYU as 3-D semantic scene completion (AIC-Net); the
labelled ``.mat`` gives 2-D segmentation, so our numbers are not the
paper's. Networks and optimiser as ``real_kd.py:nyu_depth_v2_labeled``: a
small U-Net (``segnet``, widths 16, 32, 64) on both views, Adam lr 1e-3,
batch 8, 60 epochs; CE + KL at T = 4 (the authors' code gives no setting
for Algorithm 2). Evaluation in batches of 16 frames (per-pixel
activations).

Arguments (``:arg``): a part (``weights``, ``alg2``) or ``all`` (default);
``quick`` (2 seeds, 2 epochs, each part's smoke grid); ``data_dir=DIR``;
``config=NAME`` (``240x320``, ``120x160``, ``480x640``).
"""

from ntdh_jax.experiments import ntdh_real


def get_config(arg=None):
  return ntdh_real.prepared_study(
      arg, "nyu_depth_v2_labeled", parts=["weights", "alg2"],
      model={"name": "segnet", "channels": [16, 32, 64]},
      train=dict(optimizer="adam", lr=1e-3, momentum=0.0, batch_size=8,
                 epochs=60),
      eval_batch_size=16, fig12_images=4)
