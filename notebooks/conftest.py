"""A session given only notebooks runs them in the test suite's environment
(``tests/conftest.py``: XLA_FLAGS, the notebooks' tiny variant, a fresh
folder of workdirs). pytest loads a conftest.py only from the collected
paths' folders and their parents, so ``pytest notebooks/X.ipynb`` alone would
not read the one in tests/; setup.cfg puts the repository root on sys.path
(``pythonpath = .``) for this import."""

from tests import conftest  # noqa: F401  (sets the environment on import)
