"""Errors shown to users as one line (file, record, problem) instead of a traceback."""


class UserError(Exception):
    """Bad input or configuration. The CLI prints `class-jax CMD: error: <message>` and exits with 2.

    The message must name where the problem is (file and line/record, tensor name, flag) and what it is.
    """
