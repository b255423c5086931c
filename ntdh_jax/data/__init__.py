"""Paired cross-modal data sources, looked up by name.

``get(name)`` returns a ``DataSource`` (see ``source.py`` for the contract):

* ``ntdh`` — the NTDH synthetic γ data (``synthetic.py``);
* ``mfh`` — MFH's Gaussian family (``synthetic.py``);
* ``digits`` — scikit-learn's digits (teacher) → digits-M (student), the
  embedded real default (``digits.py``); ``digits_blur``, the same with a
  Gaussian blur of traced width on each view (CCH's knob);
* ``mnist_pair``, ``ravdess``, ``nyu_depth_v2_labeled``, ``semantic_kitti``
  — the NTDH paper's real datasets, once ``ntdh-data prepare`` has built
  them (``prepared.py``, ``builders/``; imported on first use).

``load_arrays(data_config)`` reads a source's host arrays once per process;
``normalise(data_config)`` fills its defaults (what run ids hash).
"""

from ntdh_jax.data import digits  # noqa: F401  (registers its source)
from ntdh_jax.data import prepared
from ntdh_jax.data import synthetic  # noqa: F401  (registers its sources)
from ntdh_jax.data import source
from ntdh_jax.data.source import DataSource
from ntdh_jax.data.source import DataSpec
from ntdh_jax.data.source import Modality
from ntdh_jax.data.source import SOURCES
from ntdh_jax.data.source import Views
from ntdh_jax.data.source import get
from ntdh_jax.data.source import load_arrays
from ntdh_jax.data.source import normalise
from ntdh_jax.data.source import parse
from ntdh_jax.data.source import names
from ntdh_jax.data.source import register
from ntdh_jax.data.source import spec

for _name, _module in prepared.BUILDERS.items():
  source.register_lazy(_name, _module)

__all__ = ["DataSource", "DataSpec", "Modality", "SOURCES", "Views", "get",
           "load_arrays", "names", "normalise", "parse", "register", "spec"]
