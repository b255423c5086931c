"""The NTDH study on SemanticKITTI range images, geometry → remission
per-pixel segmentation (prepared ``semantic_kitti``).

  ntdh-data prepare semantic_kitti --manual_dir ~/archives/kitti
  ntdh-sweep --config sweeps/configs/ntdh_kitti.py --workdir runs/ntdh_kitti
  ntdh-sweep --config sweeps/configs/ntdh_kitti.py:quick,data_dir=D --workdir W

The paper's SemanticKITTI claims (``ntdh_jax.experiments.ntdh_real``),
teacher on the range image's geometry f32[64, 512, 4] (range, x, y, z),
student on its remission + validity mask f32[64, 512, 2], 19 classes per
pixel (pixels without a point, and unlabelled points, ignored), mIoU:

* ``weights`` — Fig. 7d: per-pixel DKD students α·TCKL + β·NCKL;
* ``alg2`` — Fig. 11: Algorithm 2 per pixel inside the jitted step: the
  KD term leaves out the ``ratio`` fraction of each batch's valid pixels
  with the largest (true), smallest (false) or random teacher–student
  NCJSD, at 10–90 %, beside the unmasked KD student;
* Fig. 12 (report): the per-pixel NCJSD between the teacher and the no-KD
  and KD students on the first 4 test scans, and its mean on object edges
  vs inside objects over the test set.

The paper pairs LiDAR with the camera image (PMF); we pair two LiDAR
channel groups, so our numbers are not the paper's. Networks and
optimiser as ``real_kd.py:semantic_kitti``: a small U-Net (``segnet``,
widths 16, 32, 64) on both views, Adam lr 1e-3, batch 8, 30 epochs; CE +
KL at T = 4 (the authors' released student trainer multiplies its
cross-modal term by 0, so it gives no setting). Evaluation in batches of
16 scans (per-pixel activations).

Arguments (``:arg``): a part (``weights``, ``alg2``) or ``all`` (default);
``quick`` (2 seeds, 2 epochs, each part's smoke grid); ``data_dir=DIR``;
``config=NAME`` (``range_64x512``, ``range_64x2048``).
"""

from ntdh_jax.experiments import ntdh_real


def get_config(arg=None):
  return ntdh_real.prepared_study(
      arg, "semantic_kitti", parts=["weights", "alg2"],
      model={"name": "segnet", "channels": [16, 32, 64]},
      train=dict(optimizer="adam", lr=1e-3, momentum=0.0, batch_size=8,
                 epochs=30),
      eval_batch_size=16, fig12_images=4)
