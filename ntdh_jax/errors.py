"""Error types shared by the library and the command line, and how the
command line reports them."""

import argparse
import re
import sys
from typing import Callable, Mapping, NoReturn


class UserError(ValueError):
  """An error the user must act on, not a bug.

  Bad input, a busy or foreign workdir, a full disk: the message says what
  is wrong and what to do, in one line. The CLI prints that line and exits
  with status 2 instead of showing a traceback; any other exception is a bug
  and keeps its traceback.

  It is a ``ValueError``, so code that catches ``ValueError`` (and tests that
  expect one) still does.
  """


def fail(prog: str, message: str) -> NoReturn:
  """Prints ``PROG: error: MESSAGE`` on stderr and exits with status 2."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  sys.exit(2)


def run_command(prog: str, command: Callable[[], None],
                traceback: bool = False) -> None:
  """Runs a CLI's ``command``; a ``UserError`` becomes ``fail``'s one line
  (with ``traceback``, it is raised instead, for debugging)."""
  try:
    command()
  except UserError as e:
    if traceback:
      raise
    fail(prog, str(e))


class Parser(argparse.ArgumentParser):
  """argparse whose usage errors are one line too (argparse's default prints
  the whole usage first), named for the root command."""

  def error(self, message: str) -> NoReturn:
    fail(self.prog.split()[0], f"{message} (see {self.prog} --help)")


def naming_flags(error: Exception, flags: Mapping[str, str]) -> UserError:
  """``error`` (a library's ValueError or TypeError, which names the
  function's arguments) as a ``UserError`` saying where each argument it
  names came from on the command line: ``flags`` maps an argument to e.g.
  ``"--teacher T.npy"``, and the message gains ``(teacher_logits is
  --teacher T.npy; ...)``."""
  text = str(error)
  named = [f"{arg} is {flag}" for arg, flag in flags.items()
           if re.search(rf"\b{re.escape(arg)}\b", text)]
  return UserError(text + (f" ({'; '.join(named)})" if named else ""))
