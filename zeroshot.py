"""Zero-shot classification with an audio-text model (EVAR-compatible command line; `evar zeroshot`).

    python zeroshot.py config/clap_htsat_unfused.yaml esc50 --templates "['the sound of {}', '{} can be heard']"

Flags: python zeroshot.py --help.
"""

from evar.cli import script

if __name__ == '__main__':
    script('zeroshot')
