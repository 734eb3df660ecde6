"""Summarise results/scores.csv as a models x tasks table of mean ± std (`evar summarize`; see evar/summarize.py).

    python summarize.py [filter] [--results results/scores.csv] [--out results/summary.csv] [--html report.html]
        [--json scores.json]   (an HTML report with plots and a JSON of its numbers; see evar/report.py)
    python summarize.py --compare MODEL_A MODEL_B [--task fsdd,ravdess] [--out compare.csv]   (= evar compare ...)
"""

import sys

from evar.cli import run_command, script

if __name__ == '__main__':
    if '--compare' in sys.argv[1:]:
        args = sys.argv[1:]
        args.remove('--compare')
        sys.exit(run_command('compare', args, prog=f'{sys.argv[0]} --compare'))
    script('summarize')
