"""Convert a dataset folder to mono audio at one sample rate (same relative paths; see evar/prepare_wav.py).

    python prepare_wav.py SRC DST SAMPLE_RATE [--workers N] [--quality VHQ] [--subtype PCM_16] [--suffixes wav,flac]
"""

from evar.cli import run_cli
from evar.prepare_wav import main

if __name__ == '__main__':
    run_cli(main)
