"""Audio-to-text and text-to-audio retrieval with an audio-text model (EVAR-compatible command line;
`evar retrieval`).

    python retr_a2t_t2a.py config/clap_htsat_unfused.yaml clotho

Flags: python retr_a2t_t2a.py --help.
"""

from evar.cli import script

if __name__ == '__main__':
    script('retrieval')
