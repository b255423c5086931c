"""``ntdh-diagnose``: will distillation help? The advisor on saved outputs.

  ntdh-diagnose --teacher T.npy --student S.npy --labels Y.npy \\
      [--teacher-features TF.npy --student-features SF.npy] \\
      [--ignore-label 255] [--temperature 1.0] [--bootstrap 1000] \\
      [--seed 0] [--ratios 0.25,0.5] [--mi-repeats 5] [--mi-subsample 0.5] \\
      --out DIR [--traceback]

T.npy holds the teacher's logits ``[N, C]`` (or ``[N, ..., C]``, e.g.
``[N, H, W, C]`` for segmentation), S.npy the logits of a student trained
without KD on the same examples in the same order, Y.npy the integer labels
``[N]`` (or ``[N, ...]``, where ``--ignore-label`` marks pixels to skip);
optionally the two networks' penultimate features ``[N, D]`` for CCH's gap.
Each input is a ``.npy`` file (``numpy.save``) or an ``.npz`` file
(``numpy.savez``) holding one array, or ``FILE.npz:NAME`` for its array
NAME. Everything is ``ntdh_jax.advisor.diagnose``; the report
(``ntdh_jax.advisor_report``: ``report.md``, ``diagnosis.json``, the
ranking, the keep masks and the figures) is written into ``--out`` and
``report.md`` is printed.

Exit status: 0 done; 2 a user error (a missing or unreadable file, not a
``.npy``/``.npz`` array, mismatched shapes or N, bad values or flags), one
line ``ntdh-diagnose: error: ...`` naming the flag and the file
(``--traceback`` shows the trace).
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from ntdh_jax import advisor
from ntdh_jax import advisor_report
from ntdh_jax.arrays_io import load_array
from ntdh_jax.errors import Parser
from ntdh_jax.errors import UserError
from ntdh_jax.errors import naming_flags
from ntdh_jax.errors import run_command

PROG = "ntdh-diagnose"
# flag's attribute -> diagnose's argument
_INPUTS = {"teacher": "teacher_logits", "student": "student_logits",
           "labels": "labels", "teacher_features": "teacher_features",
           "student_features": "student_features"}
# diagnose's (and cch_gap's) option names -> the flag that sets them
_OPTIONS = {"ignore_label": "--ignore-label", "temperature": "--temperature",
            "bootstrap": "--bootstrap", "seed": "--seed", "ratios": "--ratios",
            "repeats": "--mi-repeats", "subsample": "--mi-subsample"}


def _flag(attr: str) -> str:
  return "--" + attr.replace("_", "-")


def _ratios(text: str) -> tuple:
  """``--ratios 0.25,0.5``: the numbers; their range is diagnose's to
  check."""
  try:
    return tuple(float(r) for r in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated fractions such as 0.25,0.5, got {text!r}"
    ) from None


def _parser() -> argparse.ArgumentParser:
  parser = Parser(prog=PROG, description="Will KD from this teacher help "
                  "this student? Reads the teacher's and a no-KD student's "
                  "logits (and optionally features) on the same examples and "
                  "writes NTDH's divergences, CCH's gap, Algorithm 2's keep "
                  "masks and a verdict.")
  files = "; .npy, .npz with one array, or FILE.npz:NAME"
  parser.add_argument("--teacher", required=True,
                      help="teacher logits [N, C] or [N, ..., C]" + files)
  parser.add_argument("--student", required=True,
                      help="no-KD student logits, same shape" + files)
  parser.add_argument("--labels", required=True,
                      help="integer labels [N] or [N, ...]" + files)
  parser.add_argument("--teacher-features", default=None,
                      help="teacher penultimate features [N, D1], for CCH's "
                           "gap (needs --student-features)" + files)
  parser.add_argument("--student-features", default=None,
                      help="student penultimate features [N, D2]" + files)
  parser.add_argument("--ignore-label", type=int, default=None,
                      help="label of entries to skip, outside [0, C) "
                           "(e.g. 255)")
  parser.add_argument("--temperature", type=float, default=1.0,
                      help="the divergences' temperature (default "
                           "%(default)s)")
  parser.add_argument("--bootstrap", type=int, default=1000,
                      help="bootstrap resamples of the examples, >= 100 "
                           "(default %(default)s)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--ratios", type=_ratios, default=(0.25, 0.5),
                      help="mask ratios to write and try, comma-separated "
                           "fractions in (0, 1) (default 0.25,0.5)")
  parser.add_argument("--mi-repeats", type=int, default=5,
                      help="CCH estimates, each on its own subsample "
                           "(default %(default)s)")
  parser.add_argument("--mi-subsample", type=float, default=0.5,
                      help="fraction of rows per CCH repeat, in (0, 1] "
                           "(default %(default)s)")
  parser.add_argument("--out", required=True,
                      help="folder for report.md, diagnosis.json, the masks "
                           "and the figures (created if missing)")
  parser.add_argument("--traceback", action="store_true",
                      help="show the traceback of user errors too")
  return parser


def _run(flags) -> None:
  if os.path.exists(flags.out) and not os.path.isdir(flags.out):
    raise UserError(f"--out {flags.out} is an existing file, not a folder.")
  given = {attr: getattr(flags, attr) for attr in _INPUTS
           if getattr(flags, attr) is not None}
  pair = [a for a in ("teacher_features", "student_features") if a in given]
  if len(pair) == 1:
    other = "student_features" if pair[0] == "teacher_features" else (
        "teacher_features")
    raise UserError(f"{_flag(pair[0])} {given[pair[0]]} needs "
                    f"{_flag(other)} too: CCH's gap needs the features of "
                    "both networks (or neither).")
  arrays = {attr: load_array(spec, _flag(attr)[2:], npz=True)
            for attr, spec in given.items()}
  try:
    diagnosis = advisor.diagnose(
        **{_INPUTS[attr]: a for attr, a in arrays.items()},
        ignore_label=flags.ignore_label, temperature=flags.temperature,
        ratios=flags.ratios, bootstrap=flags.bootstrap, seed=flags.seed,
        mi_repeats=flags.mi_repeats, mi_subsample=flags.mi_subsample)
  except (ValueError, TypeError) as e:
    # diagnose names its arguments; say which flag and file each came from.
    # An option is named only by the message it starts ("temperature must
    # be > 0"): "the bootstrap needs 10 examples" is about N, not --bootstrap.
    named = {_INPUTS[attr]: f"{_flag(attr)} {spec}"
             for attr, spec in given.items()}
    named.update({name: flag for name, flag in _OPTIONS.items()
                  if str(e).startswith(name)})
    raise naming_flags(e, named) from e
  sources = {_INPUTS[attr]: spec for attr, spec in given.items()}
  try:
    paths = advisor_report.write(diagnosis, flags.out, sources)
  except OSError as e:
    raise UserError(f"--out {flags.out}: cannot write the report there "
                    f"({e.strerror}: {e.filename}).") from e
  with open(paths[0], encoding="utf-8") as f:
    print(f.read(), end="")


def main(argv: Sequence[str] | None = None) -> None:
  flags = _parser().parse_args(argv)
  run_command(PROG, lambda: _run(flags), flags.traceback)


if __name__ == "__main__":
  main()
