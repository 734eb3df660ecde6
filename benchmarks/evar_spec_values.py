"""Prints the clip embeddings that EVAR's spectrogram baselines (`ar_spec.AR_MelSpec` / `AR_LinSpec` of
nttcslab/eval-audio-repr) give for real clips, as reference values for tests/test_spec_evar.py.

Runs in a reference venv with EVAR's dependencies (torch, nnAudio, easydict, pyyaml, soundfile; see
benchmarks/parity_evar.py) and imports EVAR's `evar` from --evar_ref, never evar's. EVAR's YAML is read as its
lineareval reads it, and instead of `precompute` (statistics of a task's training split) the fixed --norm_stats are
set, so that the values test the front end only. Each clip is embedded on its own ([1, samples], as EVAR's
lineareval embeds a clip). Printed per clip: the L2 norm of the embedding and its components at --index, as Python.

    /tmp/venv_evarref/bin/python benchmarks/evar_spec_values.py --evar_ref /tmp/evar_ref --config melspec \\
        --norm_stats -7.5 6.5 --index 0,5,17,30,41,50,58,63 --files speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac
"""

import argparse
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--evar_ref', required=True, help='EVAR exported at 88ba772')
    parser.add_argument('--config', required=True, choices=['melspec', 'linspec'], help="EVAR's config stem")
    parser.add_argument('--norm_stats', nargs=2, type=float, required=True, metavar=('MEAN', 'STD'))
    parser.add_argument('--index', required=True, help='comma-separated components to print')
    parser.add_argument('--files', nargs='+', required=True, help='16 kHz clips, relative to --data')
    parser.add_argument('--data', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    args = parser.parse_args()

    sys.path.insert(0, args.evar_ref)
    import soundfile as sf
    import torch
    from evar.common import complete_cfg
    from evar.utils import load_yaml_config

    cfg = complete_cfg(load_yaml_config(Path(args.evar_ref) / 'config' / f'{args.config}.yaml'), '', no_id=True)
    module_name, class_name = cfg.audio_repr.split('.')
    ar = getattr(__import__(f'evar.{module_name}', fromlist=[class_name]), class_name)(cfg).eval()
    ar.norm_stats = torch.tensor(args.norm_stats)
    index = [int(i) for i in args.index.split(',')]
    for name in args.files:
        wave, rate = sf.read(Path(args.data) / name, dtype='float32')
        assert rate == cfg.sample_rate, f'{name}: {rate} Hz, expected {cfg.sample_rate}'
        with torch.inference_mode():
            emb = ar(torch.from_numpy(wave)[None])[0].double()
        print(f"    '{name}': ({float(emb.norm())!r}, {[float(emb[i]) for i in index]!r}),")


if __name__ == '__main__':
    main()
