"""CMCD on MNIST → MNIST-M (prepared ``mnist_pair``).

  ntdh-data prepare mnist_pair --manual_dir ~/archives/mnist
  ntdh-sweep --config sweeps/configs/cmcd_mnist.py --workdir runs/cmcd_mnist
  ntdh-sweep --config sweeps/configs/cmcd_mnist.py:quick,data_dir=D --workdir W

``cmcd_digits.py``'s study at MNIST's size: SimCLR on the 60,000 MNIST
training images, CMD / CMC / L2 / cosine distillation into an MNIST-M
encoder on m = 10 % and 100 % of the pairs, then 1 / 5 / 10 % of the
MNIST-M labels (linear probe and full fine-tuning) beside the network from
scratch. The source has no traced gap knob: one modality gap. Networks: the
small CNN (conv 32, 64; dense 128) for both, a 128 → 64 projection head.
SimCLR over 60,000 images × 30 epochs is an accelerator job.

Arguments (``:arg``): ``quick`` (2 seeds, fewer epochs) or ``tiny`` (the
tests' scale); ``data_dir=DIR`` (where ``ntdh-data prepare`` wrote it);
``config=NAME`` (the builder config).
"""

from ntdh_jax.experiments import cmcd


def get_config(arg=None):
  return cmcd.prepared_study(
      arg, "mnist_pair",
      model={"name": "cnn", "channels": [32, 64], "dense": 128},
      batch_sizes=(256, 128, 64), projection=(128, 64),
      augment={"crop_scale": [0.3, 1.0], "flip": 0.0})
