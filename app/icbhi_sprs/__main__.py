"""`python -m app.icbhi_sprs build_icbhi ROOT OUT` / `build_sprs ROOT OUT`, then
`python -m app.icbhi_sprs run CONFIG_FILE OUT --dataset icbhi|sprs --seeds 42,43,44,45,46`."""

import sys

from app.cli import main

from . import build_icbhi, build_sprs, run

if __name__ == '__main__':
    sys.exit(main('app.icbhi_sprs', {'build_icbhi': build_icbhi, 'build_sprs': build_sprs, 'run': run}))
