"""The NTDH study on MNIST → MNIST-M (prepared ``mnist_pair``).

  ntdh-data prepare mnist_pair --manual_dir ~/archives/mnist
  ntdh-sweep --config sweeps/configs/ntdh_mnist.py --workdir runs/ntdh_mnist
  ntdh-sweep --config sweeps/configs/ntdh_mnist.py:quick,data_dir=D --workdir W

The paper's MNIST claims (``ntdh_jax.experiments.ntdh_real``), teacher on
MNIST u8[28, 28, 1], student on MNIST-M u8[28, 28, 3]:

* ``weights`` — Fig. 7b: DKD students α·TCKL + β·NCKL, raising β hurts;
* ``alg1`` — Fig. 9b (and Fig. 10's heatmaps): Algorithm 1 on the 784
  pixels of the MNIST view (joint training, permutation importance, the
  teacher retrained on its input masked true / random / false at
  10–90 %, a KD student from each);
* ``table2`` — Table II: FitNet, CRD, RKD, PKT, SP, DKD × {w/o KD,
  w/o mask, T/R/F at 25/50/75 %}, feature methods on penultimate features.

Networks and optimiser as ``real_kd.py:mnist_pair`` and the authors'
``MNIST/main.py``: NTDH's MLP (``mnist_fc``, D → 1024 → 256 → 10) on both
views, SGD lr 0.01 momentum 0.9, batch 128, 50 epochs; CE + KL at T = 4.
The authors' Algorithm 1 masks the first hidden layer (``--place 1``), ours
the input pixels. Cost: Algorithm 1 scores M × 784 permuted passes of the
60,000 training images (M = 10, 3 with ``quick``) — an accelerator job.

Arguments (``:arg``): a part (``weights``, ``alg1``, ``table2``) or
``all`` (default); ``quick`` (2 seeds, 2 epochs, each part's smoke grid);
``data_dir=DIR`` (where ``ntdh-data prepare`` wrote it; default TFDS's);
``config=NAME`` (the builder config).
"""

from ntdh_jax.experiments import ntdh_real


def get_config(arg=None):
  c = ntdh_real.prepared_study(
      arg, "mnist_pair", parts=["weights", "alg1", "table2"],
      model={"name": "mnist_fc", "hidden": [1024, 256]},
      train=dict(optimizer="sgd", lr=1e-2, momentum=0.9, batch_size=128,
                 epochs=50))
  # Algorithm 1 scores the MLP teacher from its first pre-activation.
  c.alg1.first_layer = True
  return c
