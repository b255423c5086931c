"""Error types shared by the library and the command line."""


class UserError(ValueError):
  """An error the user must act on, not a bug.

  Bad input, a busy or foreign workdir, a full disk: the message says what
  is wrong and what to do, in one line. The CLI prints that line and exits
  with status 2 instead of showing a traceback; any other exception is a bug
  and keeps its traceback.

  It is a ``ValueError``, so code that catches ``ValueError`` (and tests that
  expect one) still does.
  """
