"""Summarise results/scores.csv as a models x tasks table of mean ± std (see evar/summarize.py).

    python summarize.py [filter] [--results results/scores.csv] [--out results/summary.csv]
"""

import sys

import fire

from evar.errors import EvarError
from evar.summarize import main

if __name__ == '__main__':
    try:
        fire.Fire(main)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        sys.exit(1)
