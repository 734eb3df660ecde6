"""`python -m app.circor build ROOT OUT` (CirCor v1.0.3 folder -> application folder), then
`python -m app.circor run CONFIG_FILE OUT --seeds 42,43,44`."""

import sys

from app.cli import main

from . import build, run

if __name__ == '__main__':
    sys.exit(main('app.circor', {'build': build, 'run': run}))
