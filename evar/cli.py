"""Shared plumbing of the entry scripts: bad input ends with one message and a non-zero exit, no traceback."""

from __future__ import annotations

import sys


def run_cli(fn) -> None:
    import fire

    from .errors import EvarError

    try:
        fire.Fire(fn)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('Interrupted: results and caches are unchanged (writes are atomic).', file=sys.stderr)
        sys.exit(130)
