"""The applications' command line, on evar's own parser (`evar.cli.run_function`: flags checked against the
function's signature, EvarError printed as one `Error:` line with exit status 1):

    python -m app.<name> build ROOT OUT [--flags]
    python -m app.<name> run CONFIG_FILE OUT [--flags]
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, Optional


def _quiet(fn: Callable) -> Callable:
    """`fn` with its return value dropped (the command's exit status comes from errors alone)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        fn(*args, **kwargs)
    return call


def main(prog: str, commands: dict, argv: Optional[list] = None) -> int:
    """Runs `commands[argv[0]]` (name -> function) on the remaining words; returns the exit status."""
    from evar.cli import run_function

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in commands:
        print(f'usage: python -m {prog} {{{",".join(commands)}}} ARGS [--flags]   (COMMAND --help for its flags)',
              file=sys.stderr)
        return 0 if argv and argv[0] in ('-h', '--help') else 1
    log = logging.getLogger('evar')
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return run_function(_quiet(commands[argv[0]]), argv[1:], f'python -m {prog} {argv[0]}')
