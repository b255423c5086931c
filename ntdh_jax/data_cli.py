"""``ntdh-data``: prepare the paper's real datasets and list what is prepared.

  ntdh-data instructions NAME
  ntdh-data prepare NAME --manual_dir DIR [--data_dir DIR] [--config C] \\
      [--skip_checksums] [--overwrite]
  ntdh-data list [--data_dir DIR]

``prepare`` checks every archive first (presence; size and SHA-256 where
published, unless ``--skip_checksums``), builds with tensorflow-datasets
(its progress bars) into a temporary directory and moves the result into
place, so nothing half-built is ever listed or read. A sweep config then
names the dataset (``data.name = NAME``, ``data.data_dir`` if not TFDS's
default).

Exit status: 0 done; 2 a user error (unknown dataset or config, missing or
corrupt archive, already prepared), one line ``ntdh-data: error: ...``.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ntdh_jax.data import prepared
from ntdh_jax.errors import Parser
from ntdh_jax.errors import run_command

PROG = "ntdh-data"


def _parser() -> argparse.ArgumentParser:
  parser = Parser(prog=PROG, description="Prepare the NTDH paper's real "
                   "datasets from archives you downloaded.")
  sub = parser.add_subparsers(dest="command", required=True,
                              parser_class=Parser)
  names = sorted(prepared.BUILDERS)
  p = sub.add_parser("instructions", help="which archives, from where")
  p.add_argument("name", choices=names)
  p.set_defaults(run=lambda f: print(_instructions(f.name)))
  p = sub.add_parser("prepare", help="build a dataset from its archives")
  p.set_defaults(run=_prepare)
  p.add_argument("name", choices=names)
  p.add_argument("--manual_dir", required=True,
                 help="folder holding the downloaded archives")
  p.add_argument("--data_dir", default=None,
                 help="where prepared datasets live (default "
                      "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
  p.add_argument("--config", default=None,
                 help="builder config (default: the dataset's first; "
                      "`ntdh-data instructions NAME` lists them)")
  p.add_argument("--skip_checksums", action="store_true",
                 help="do not compare archive sizes and SHA-256 with the "
                      "published ones (structure is still checked)")
  p.add_argument("--overwrite", action="store_true",
                 help="rebuild a dataset that is already prepared")
  p.add_argument("--traceback", action="store_true",
                 help="show the traceback of user errors too")
  p = sub.add_parser("list", help="prepared datasets in a data_dir")
  p.add_argument("--data_dir", default=None)
  p.set_defaults(run=lambda f: print(_list(f.data_dir)))
  return parser


def _instructions(name: str) -> str:
  builder = prepared.module(name).Builder
  configs = ", ".join(
      f"{c.name}" + (f" ({c.description})" if c.description else "")
      for c in builder.BUILDER_CONFIGS)
  return (f"{name}: {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}\n"
          f"configs (--config): {configs}")


def _list(data_dir: str | None) -> str:
  rows = prepared.list_prepared(data_dir)
  where = data_dir or prepared.default_data_dir()
  if not rows:
    return f"no prepared datasets in {where}"
  lines = [f"{'name':<22} {'config':<16} {'version':<8} {'MB':>9}  splits"]
  for r in rows:
    splits = ", ".join(f"{k} {v:,}" for k, v in sorted(r["splits"].items()))
    lines.append(f"{r['name']:<22} {r['config']:<16} {r['version']:<8} "
                 f"{r['bytes'] / 1e6:>9.1f}  {splits}")
  return "\n".join(lines + [f"in {where}"])


def _prepare(flags) -> None:
  path = prepared.prepare(
      flags.name, flags.manual_dir, data_dir=flags.data_dir,
      config=flags.config, verify=not flags.skip_checksums,
      overwrite=flags.overwrite)
  print(f"{flags.name}: prepared in {path}")


def main(argv: Sequence[str] | None = None) -> None:
  flags = _parser().parse_args(argv)
  run_command(PROG, lambda: flags.run(flags),
              getattr(flags, "traceback", False))


if __name__ == "__main__":
  main()
