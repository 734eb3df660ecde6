"""Convert a dataset folder to mono audio at one sample rate (`evar prepare`; see evar/prepare_wav.py).

    python prepare_wav.py SRC DST SAMPLE_RATE [--workers N] [--quality VHQ] [--subtype PCM_16] [--suffixes wav,flac]
"""

from evar.cli import script

if __name__ == '__main__':
    script('prepare')
