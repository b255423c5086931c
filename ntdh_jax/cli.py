"""``ntdh-sweep``: run a sweep config into a workdir (resuming if relaunched).

  ntdh-sweep --config sweeps/configs/NAME.py[:arg] --workdir DIR \\
      [--config.key=value ...] [--chunk_size N] [--segments_per_call K] \\
      [--vmap_size V|auto] [--compilation_cache DIR|none] [--no-progress] \\
      [--wait] [--verbose] [--traceback] [--multihost]

Everything else is importable: ``ntdh_jax.config`` loads the config and
``ntdh_jax.experiments.run`` plans, sweeps and reports.

Exit status: 0 done; 2 a user error (a bad flag, config key or value, a
workdir that is a file, busy or made by another config, a full disk),
reported as one line ``ntdh-sweep: error: ...`` (``--traceback`` shows the
trace too); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import jax

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from ntdh_jax.errors import Parser
from ntdh_jax.errors import UserError
from ntdh_jax.errors import run_command
from ntdh_jax.train import sharding
from ntdh_jax.train import sweep

PROG = "ntdh-sweep"

DEFAULT_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
    "ntdh_jax", "xla")


def _vmap_size(text: str):
  if text == "auto":
    return None
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
        f"must be an integer >= 1 or 'auto', got {text!r}")
  return value


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
  return value


def _parse_flags(argv: Sequence[str] | None):
  parser = Parser(
      prog=PROG,
      description="Run a sweep config into a workdir (resuming if relaunched).",
      epilog="--config.KEY=VALUE overrides a field of the config (before the "
             "config's get_hyper sweep is applied).")
  parser.add_argument("--config", required=True,
                      help="sweep config: path/to/NAME.py[:arg]")
  parser.add_argument("--workdir", required=True,
                      help="results, checkpoints and outputs; reuse to resume")
  parser.add_argument("--chunk_size", type=_positive_int, default=256,
                      help="runs trained together at most")
  parser.add_argument("--segments_per_call", type=_positive_int, default=1,
                      help="segments per compiled call = checkpoint interval")
  parser.add_argument("--vmap_size", type=_vmap_size,
                      default=sweep.DEFAULT_VMAP_SIZE,
                      help="runs vectorised together per device (default "
                           "%(default)s: the same bits on any device count); "
                           "'auto' = each device's whole share of a chunk, "
                           "sometimes faster, bits then depend on the device "
                           "count")
  parser.add_argument("--compilation_cache", default=DEFAULT_CACHE,
                      help="JAX's persistent compilation cache: relaunches "
                           "and later studies reuse compiled programs "
                           "(default %(default)s; 'none' disables it)")
  parser.add_argument("--no-progress", dest="progress", action="store_false",
                      help="hide the progress bar")
  parser.add_argument("--wait", action="store_true",
                      help="if another launch is using the workdir, wait "
                           "for it to finish instead of refusing")
  parser.add_argument("--verbose", action="store_true",
                      help="log a line at every checkpoint, stored output "
                           "and batch of results rows")
  parser.add_argument("--traceback", action="store_true",
                      help="show the traceback of user errors too")
  parser.add_argument("--cpu_devices", type=_positive_int,
                      default=os.cpu_count(),
                      help="XLA CPU devices to split this host into (default: "
                           "one per core), so CPU sweeps use every core")
  parser.add_argument("--multihost", action="store_true",
                      help="call jax.distributed.initialize() first (run the "
                           "same command on every host)")
  flags, unknown = parser.parse_known_args(argv)
  # --config.KEY=VALUE and --config.KEY VALUE become "KEY=VALUE" overrides.
  overrides, rest = [], []
  while unknown:
    token = unknown.pop(0)
    if token.startswith("--config.") and "=" in token:
      overrides.append(token[2:])
    elif token.startswith("--config.") and unknown:
      overrides.append(f"{token[2:]}={unknown.pop(0)}")
    else:
      rest.append(token)
  if rest:
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  return flags, overrides


def _log_to_stderr(level: int) -> None:
  """The library's log lines on stderr: warnings (a chunk trained again, a
  wait for the lock) always, progress markers with ``--verbose``. Its own
  handler, since absl (imported by orbax) takes over the root logger."""
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: "
                                         "%(message)s"))
  log = logging.getLogger("ntdh_jax")
  log.addHandler(handler)
  log.setLevel(level)
  log.propagate = False


def _run(flags, overrides) -> None:
  if os.path.exists(flags.workdir) and not os.path.isdir(flags.workdir):
    raise UserError(f"--workdir {flags.workdir} is a file, not a directory.")
  try:
    base, configs, fingerprint = config_lib.load_sweep(flags.config,
                                                       overrides)
  except (ValueError, TypeError, KeyError, OSError) as e:
    raise UserError(f"--config {flags.config}: {e}") from e
  experiments.run(configs, flags.workdir, base=base,
                  chunk_size=flags.chunk_size,
                  segments_per_call=flags.segments_per_call,
                  vmap_size=flags.vmap_size, progress=flags.progress,
                  fingerprint=fingerprint, wait=flags.wait)


def main(argv: Sequence[str] | None = None) -> None:
  flags, overrides = _parse_flags(argv)
  sharding.split_host_cpu(flags.cpu_devices)
  _log_to_stderr(logging.INFO if flags.verbose else logging.WARNING)
  if flags.compilation_cache != "none":
    sweep.enable_compilation_cache(flags.compilation_cache)
  if flags.multihost:
    jax.distributed.initialize()
  run_command(PROG, lambda: _run(flags, overrides), flags.traceback)


if __name__ == "__main__":
  main()
