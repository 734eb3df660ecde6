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


def _reporting(fn: Callable) -> Callable:
    """`fn` with its return value dropped (the command's exit status comes from errors alone), after logging the task
    files it wrote when it returns `BuiltTask`s (a build), so a successful build does not end in silence."""
    from .layout import BuiltTask

    @functools.wraps(fn)
    def call(*args, **kwargs):
        result = fn(*args, **kwargs)
        built = [result] if isinstance(result, BuiltTask) else list(result) if isinstance(result, list) else []
        for task in (t for t in built if isinstance(t, BuiltTask)):
            with open(task.metadata) as f:
                clips = sum(1 for _ in f) - 1
            logging.getLogger('evar').info('wrote task %s: %s (%d clips; metadata %s, groups %s)', task.name,
                                           task.yaml, clips, task.metadata.name, task.groups.name)
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
    return run_function(_reporting(commands[argv[0]]), argv[1:], f'python -m {prog} {argv[0]}')
