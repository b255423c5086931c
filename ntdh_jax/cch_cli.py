"""``ntdh-cch``: the CCH gap of saved features, with its spread and verdict.

  ntdh-cch --teacher T.npy --student S.npy --labels Y.npy \\
      [--estimator ksg|latent|mine|infonce] [--repeats 5] [--subsample 0.5] \\
      [--seed 0] [--bits] [--out report.md] [--traceback]

T.npy holds the teacher's features ``[N, D1]`` (or ``[N]``), S.npy the
student's ``[N, D2]`` for the same N examples in the same order, Y.npy
their integer class labels ``[N]``: arrays saved with ``numpy.save``. The
report (both MI terms and Δ = I(H₁; H₂) − I(H₂; Y) with mean ± std, the
interval, the verdict) is printed, and written to ``--out`` too when given.
Everything is ``ntdh_jax.info.cch.cch_gap`` and ``report``; estimator
options beyond these flags are available from Python.

Exit status: 0 done; 2 a user error (a missing or unreadable file, not a
``.npy`` array, a wrong shape, mismatched N, bad values or flags), one line
``ntdh-cch: error: ...`` naming the file (``--traceback`` shows the trace).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from ntdh_jax.arrays_io import load_array
from ntdh_jax.errors import Parser
from ntdh_jax.errors import UserError
from ntdh_jax.errors import naming_flags
from ntdh_jax.errors import run_command
from ntdh_jax.info.cch import ESTIMATORS
from ntdh_jax.info.cch import cch_gap
from ntdh_jax.info.cch import report

PROG = "ntdh-cch"
# flag -> (cch_gap's argument, accepted ranks, what they mean)
_INPUTS = {"teacher": ("teacher_features", (1, 2), "[N, D1] (or [N])"),
           "student": ("student_features", (1, 2), "[N, D2] (or [N])"),
           "labels": ("labels", (1,), "[N]")}


def _parser() -> argparse.ArgumentParser:
  parser = Parser(prog=PROG, description="Estimate the CCH gap Δ = I(H1; H2) "
                  "− I(H2; Y) of saved teacher and student features and say "
                  "whether KD from that teacher is expected to help.")
  parser.add_argument("--teacher", required=True,
                      help="teacher features H1, .npy of shape [N, D1]")
  parser.add_argument("--student", required=True,
                      help="student features H2, .npy of shape [N, D2]")
  parser.add_argument("--labels", required=True,
                      help="integer class labels Y, .npy of shape [N]")
  parser.add_argument("--estimator", default="ksg", choices=list(ESTIMATORS),
                      help="MI estimator (default %(default)s: KSG and "
                           "Ross's estimator for the labels)")
  parser.add_argument("--repeats", type=int, default=5,
                      help="estimates, each on its own subsample and seed "
                           "(default %(default)s)")
  parser.add_argument("--subsample", type=float, default=0.5,
                      help="fraction of rows per repeat, drawn without "
                           "replacement, in (0, 1] (default %(default)s)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--bits", action="store_true",
                      help="report bits instead of nats")
  parser.add_argument("--out", default=None,
                      help="also write the report (Markdown) to this file")
  parser.add_argument("--traceback", action="store_true",
                      help="show the traceback of user errors too")
  return parser


def load(flag: str, path: str) -> np.ndarray:
  """The array saved at ``path`` for ``--flag``, shape-checked; a
  ``UserError`` naming the file otherwise."""
  _, ranks, layout = _INPUTS[flag]
  array = load_array(path, flag)
  if array.ndim not in ranks:
    raise UserError(f"--{flag} {path} holds an array of shape {array.shape}; "
                    f"expected {layout}.")
  return array


def _run(flags) -> None:
  arrays = {flag: load(flag, getattr(flags, flag)) for flag in _INPUTS}
  try:
    result = cch_gap(arrays["teacher"], arrays["student"], arrays["labels"],
                     estimator=flags.estimator, repeats=flags.repeats,
                     subsample=flags.subsample, seed=flags.seed,
                     base=2 if flags.bits else None)
  except (ValueError, TypeError) as e:
    # cch_gap names its arguments; say which file each one came from.
    raise naming_flags(e, {arg: f"--{flag} {getattr(flags, flag)}" for flag,
                           (arg, _, _) in _INPUTS.items()}) from e
  sources = {flag: getattr(flags, flag) for flag in _INPUTS}
  text = report(result, sources)
  print(text, end="")
  if flags.out:
    try:
      with open(flags.out, "w") as f:
        f.write(text)
    except OSError as e:
      raise UserError(f"--out {flags.out}: cannot write it ({e.strerror})."
                      ) from e


def main(argv: Sequence[str] | None = None) -> None:
  flags = _parser().parse_args(argv)
  run_command(PROG, lambda: _run(flags), flags.traceback)


if __name__ == "__main__":
  main()
