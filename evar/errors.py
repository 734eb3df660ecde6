"""The one exception type for bad input: the CLIs print its message and exit non-zero, without a traceback."""

import difflib


class EvarError(Exception):
    """Bad input from the user (file, key, task, option) with a message saying what was expected."""


def did_you_mean(word: str, choices, prefix: str = '') -> str:
    """' Did you mean <prefix><closest>?' for the choice closest to a mistyped `word` (difflib's ratio of at least
    0.6), or '' when none is close; for error messages."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' Did you mean {prefix}{close[0]}?' if close else ''
