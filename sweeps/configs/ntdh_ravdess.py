"""The NTDH study on RAVDESS audio → video (prepared ``ravdess``).

  ntdh-data prepare ravdess --manual_dir ~/archives/ravdess
  ntdh-sweep --config sweeps/configs/ntdh_ravdess.py --workdir runs/ntdh_ravdess
  ntdh-sweep --config sweeps/configs/ntdh_ravdess.py:weights,quick --workdir W

The paper's RAVDESS claims (``ntdh_jax.experiments.ntdh_real``), teacher on
the standardised log-mel f32[40, 256, 1], student on a face frame
u8[64, 64, 3], 8 emotions:

* ``weights`` — Fig. 7 on RAVDESS: DKD students α·TCKL + β·NCKL;
* ``alg1`` — Fig. 9b and Fig. 10: Algorithm 1 on the teacher's log-mel
  input, each of the 40 × 256 time–frequency bins a unit (the authors mask
  the 128 channels of the audio net's 5th layer, ``ravdess/main.py
  --place 5``; we mask its input);
* ``table2`` — Table III: FitNet, CRD, RKD, PKT, SP, DKD × {w/o KD,
  w/o mask, T/R/F at 25/50/75 %}.

Networks and optimiser as ``real_kd.py:ravdess``: ``conv2d`` (32, 64, 128
conv widths as the authors' nets, global average pooling, a 256-wide dense
layer: ~0.13 M parameters, not their ~13 M) on both views, Adam lr 1e-3,
batch 32, 60 epochs; CE + KL at T = 4. Cost: Algorithm 1 scores M × 10,240
permuted passes of the 1,200 training clips (M = 10, 3 with ``quick``),
hours on a CPU, minutes on one accelerator; on a CPU run ``:weights``.

Arguments (``:arg``): a part (``weights``, ``alg1``, ``table2``) or
``all`` (default); ``quick`` (2 seeds, 2 epochs, each part's smoke grid);
``data_dir=DIR``; ``config=NAME`` (``default`` or ``present_actors``).
"""

from ntdh_jax.experiments import ntdh_real


def get_config(arg=None):
  return ntdh_real.prepared_study(
      arg, "ravdess", parts=["weights", "alg1", "table2"],
      model={"name": "conv2d", "channels": [32, 64, 128], "dense": 256},
      train=dict(optimizer="adam", lr=1e-3, momentum=0.0, batch_size=32,
                 epochs=60))
