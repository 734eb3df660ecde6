"""Summarise results/scores.csv as a models x tasks table of mean ± std (`evar summarize`; see evar/summarize.py).

    python summarize.py [filter] [--results results/scores.csv] [--out results/summary.csv] [--html report.html]
        [--json scores.json]   (an HTML report with plots and a JSON of its numbers; see evar/report.py)
"""

from evar.cli import script

if __name__ == '__main__':
    script('summarize')
