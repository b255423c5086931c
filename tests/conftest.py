"""Test-session setup.

The suite's programs are tiny (a few steps on a few rows), so XLA's
optimising compile, not running them, is most of its time: the session
compiles at -O0 without LLVM's expensive passes (about 2.5× faster on a
one-epoch study). Set before JAX starts its backend; subprocesses inherit
it, and the tests that start them with their own XLA_FLAGS append theirs
(``xla_flags``), so a comparison of bits is always between programs
compiled with the same options. An XLA_FLAGS already in the environment
wins.

The session, its subprocesses and the notebooks' kernels share one
persistent compilation cache (a fresh folder, removed at exit; every
program, as a sweep's pieces compile in well under JAX's default 1 s
threshold at -O0): a notebook's tiny study and the test of the same study
compile its programs once. A loaded
executable is the one compiled, so every comparison of bits holds.

The notebooks (notebooks/*.ipynb, executed by nbmake in kernels that
inherit this environment; ``notebooks/conftest.py`` brings it to a session
given only notebooks) run their studies at the smallest scale that still
runs every cell, NTDH_NOTEBOOK_VARIANT=tiny (Colab and Jupyter run
``quick``), into a fresh folder of workdirs, NTDH_NOTEBOOK_RUNS, removed at
exit: a stale ``notebooks/runs`` (an earlier config, another session's lock)
neither fails the suite nor skips training. Values already in the
environment win.
"""

import atexit
import os
import shutil
import tempfile

FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE_FLAGS)

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="ntdh_jax_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"],
                  ignore_errors=True)
  # At -O0 a sweep's pieces compile in well under JAX's 1 s threshold.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

os.environ.setdefault("NTDH_NOTEBOOK_VARIANT", "tiny")
if "NTDH_NOTEBOOK_RUNS" not in os.environ:
  os.environ["NTDH_NOTEBOOK_RUNS"] = tempfile.mkdtemp(prefix="ntdh_notebooks_")
  atexit.register(shutil.rmtree, os.environ["NTDH_NOTEBOOK_RUNS"],
                  ignore_errors=True)


def xla_flags(*flags: str) -> str:
  """This session's XLA_FLAGS with ``flags`` appended (for subprocesses)."""
  return " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()
