"""``ntdh-data``: instructions, prepare, list; one-line errors; a build
killed at any point leaves nothing prepared, and the next build cleans up."""

import os
import subprocess
import sys
import textwrap

import pytest

from ntdh_jax import data as data_lib
from ntdh_jax import data_cli
from ntdh_jax.data import prepared
from ntdh_jax.errors import UserError
from tests import test_mnist_pair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(capsys, *argv):
  try:
    data_cli.main(list(argv))
    code = 0
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_instructions_name_every_archive(capsys):
  code, out, _ = _main(capsys, "instructions", "mnist_pair")
  assert code == 0
  for archive in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                  "BSR_bsds500.tgz"):
    assert archive in out
  assert "configs (--config): default" in out


@pytest.mark.parametrize("argv, message", [
    (["prepare", "mnist", "--manual_dir", "."],
     r"invalid choice: 'mnist'"),
    (["prepare", "mnist_pair", "--manual_dir", "/no/such/dir"],
     r"--manual_dir /no/such/dir is not a directory"),
    (["prepare", "mnist_pair", "--manual_dir", "{empty}"],
     r"missing train-images-idx3-ubyte.gz in --manual_dir"),
    (["prepare", "mnist_pair", "--manual_dir", "{empty}", "--config", "x"],
     r"mnist_pair: unknown config 'x'; configs: \['default'\]"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path, argv, message):
  (tmp_path / "empty").mkdir()
  argv = [a.format(empty=tmp_path / "empty") for a in argv]
  code, _, err = _main(capsys, *argv, "--data_dir", str(tmp_path / "d"))
  assert code == 2
  assert err.startswith("ntdh-data: error: ") and err.count("\n") == 1
  assert __import__("re").search(message, err), err
  assert prepared.list_prepared(str(tmp_path / "d")) == []


def test_prepare_then_list_then_overwrite(capsys, tmp_path):
  test_mnist_pair.write_fakes(tmp_path / "manual")
  argv = ["prepare", "mnist_pair", "--manual_dir", str(tmp_path / "manual"),
          "--data_dir", str(tmp_path / "d"), "--skip_checksums"]
  code, out, _ = _main(capsys, *argv)
  assert code == 0 and "mnist_pair: prepared in" in out
  code, out, _ = _main(capsys, "list", "--data_dir", str(tmp_path / "d"))
  assert code == 0
  assert "mnist_pair" in out and "test 6, train 12" in out
  code, _, err = _main(capsys, *argv)
  assert code == 2 and "already prepared" in err
  code, out, _ = _main(capsys, *argv, "--overwrite")
  assert code == 0
  assert [r["name"] for r in prepared.list_prepared(str(tmp_path / "d"))] == [
      "mnist_pair"]
  assert sorted(os.listdir(tmp_path / "d")) == [".lock", "mnist_pair"]


# A build that SIGKILLs itself after `after` examples of the train split.
_KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from ntdh_jax import data_cli
    from ntdh_jax.data.builders import mnist_pair
    generate = mnist_pair.Builder._generate_examples
    def dying(self, *args):
      for i, example in enumerate(generate(self, *args)):
        if i == int(sys.argv[1]):
          os.kill(os.getpid(), signal.SIGKILL)
        yield example
    mnist_pair.Builder._generate_examples = dying
    data_cli.main(sys.argv[2:])
""")


@pytest.mark.parametrize("after", [0, 7])
def test_a_killed_build_leaves_nothing_prepared(tmp_path, after):
  manual, data_dir = tmp_path / "manual", tmp_path / "d"
  test_mnist_pair.write_fakes(manual)
  argv = ["prepare", "mnist_pair", "--manual_dir", str(manual),
          "--data_dir", str(data_dir), "--skip_checksums"]
  proc = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(after),
                         *argv], cwd=REPO, capture_output=True, text=True,
                        check=False)
  assert proc.returncode == -9, proc.stderr
  leftovers = [p for p in os.listdir(data_dir) if p.startswith(".incomplete")]
  assert leftovers  # the killed build's temporary directory
  assert prepared.list_prepared(str(data_dir)) == []
  with pytest.raises(UserError, match="not prepared"):
    data_lib.spec({"name": "mnist_pair", "data_dir": str(data_dir)})
  data_cli.main(argv)  # the relaunch builds and removes the leftovers
  assert sorted(os.listdir(data_dir)) == [".lock", "mnist_pair"]
  assert data_lib.spec({"name": "mnist_pair",
                        "data_dir": str(data_dir)}).splits == {"train": 12,
                                                               "test": 6}
