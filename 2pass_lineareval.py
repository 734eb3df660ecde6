"""Embed once, then train and test the head with several seeds in the same process (EVAR's 2pass runner).

    python 2pass_lineareval.py config/byola.yaml esc50 --repeat 3

Same flags as lineareval.py (`evar linear`), with --repeat 3 by default.
"""

import sys

from evar.cli import run_function
from evar.modes.linear import linear_command

if __name__ == '__main__':
    sys.exit(run_function(linear_command, prog=sys.argv[0], defaults=(('repeat', 3),)))
