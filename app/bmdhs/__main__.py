"""`python -m app.bmdhs build ROOT OUT [--split_files split1.csv,split2.csv,split3.csv]`, then
`python -m app.bmdhs run CONFIG_FILE OUT --seeds 42,43,44`."""

import sys

from app.cli import main

from . import build, run

if __name__ == '__main__':
    sys.exit(main('app.bmdhs', {'build': build, 'run': run}))
