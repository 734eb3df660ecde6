"""Convert a dataset folder to mono audio at one sample rate (same relative paths; see evar/prepare_wav.py).

    python prepare_wav.py SRC DST SAMPLE_RATE [--workers N] [--quality VHQ] [--subtype PCM_16] [--suffixes wav,flac]
"""

import sys

import fire

from evar.errors import EvarError
from evar.prepare_wav import main

if __name__ == '__main__':
    try:
        fire.Fire(main)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        sys.exit(1)
