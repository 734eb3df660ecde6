"""Linear evaluation of an audio representation on a task (EVAR-compatible command line; `evar linear`).

    python lineareval.py config/byola.yaml esc50 --options='batch_size=64' --seed=42 --hidden='(512,)'

Flags: python lineareval.py --help.
"""

from evar.cli import script

if __name__ == '__main__':
    script('linear')
