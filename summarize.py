"""Summarise results/scores.csv as a models x tasks table of mean ± std (see evar/summarize.py).

    python summarize.py [filter] [--results results/scores.csv] [--out results/summary.csv]
"""

from evar.cli import run_cli
from evar.summarize import main

if __name__ == '__main__':
    run_cli(main)
