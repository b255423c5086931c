"""TFDS builders of the NTDH paper's real cross-modal datasets.

One module per dataset (``ntdh_jax.data.prepared.BUILDERS`` lists them):
each defines ``Builder`` (a ``tfds.core.GeneratorBasedBuilder`` reading the
archives from ``manual_dir``, writing ``array_record``), ``ARCHIVES``,
``check_archives(manual_dir, verify)`` and registers its data source. They
import tensorflow-datasets (the ``data`` extra) and are imported on first
use, by ``ntdh-data`` or by a sweep naming the dataset.
"""
