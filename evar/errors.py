"""The one exception type for bad input: the CLIs print its message and exit non-zero, without a traceback."""


class EvarError(Exception):
    """Bad input from the user (file, key, task, option) with a message saying what was expected."""
