"""Side-by-side parity check: evar's CED against the official implementation on the same real clips.

Builds the official `ced_base` (github.com/RicherMans/CED, models/audiotransformer.py) with seeded random weights
(init BN statistics and LayerNorm affines perturbed so they matter), saves its state dict as the Zenodo checkpoints
are saved ({'model': ...}, torchaudio front-end buffers and AudioSet head included), loads it strictly into evar's
`ced`, and compares on real clips: the mel dB front end, the frame embeddings of every window (the official windows
of long clips: 1012 frames, last one zero-padded after the init BN; its tokens averaged over the 4 frequency rows),
and, for clips of one window, the official forward's AudioSet output against the official head applied to evar's
mean-pooled embedding. evar runs all clips as ONE padded batch, so this also shows padding does not leak. Needs
torchaudio, einops and loguru (evar itself uses none of them):

    /work/evar_ref/venv/bin/pip install --target /work/ref/ced/site loguru
    PYTHONPATH=/work/ref/ced/site /work/evar_ref/venv/bin/python benchmarks/parity_ced.py \\
        --ced_repo /work/ref/ced/CED

Seen on 2026-11-23 (RicherMans/CED 60a0f54, torch 2.9.1 + torchaudio 2.9.1, CPU; 6 clips of 0.5, 3.3, 5.0, 16.0,
23.4, 25.8 s): max |mel dB diff| 1.53e-05, max relative frame diff 3.94e-07 (long clips' windows included), max
|head output diff| 1.79e-07.
"""

import argparse
import sys
from pathlib import Path

from parity_common import padded, perturb_init_bn_and_layernorms

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ('RAVDESS/Actor_01/03-01-01-01-01-01-01.flac', 'ESC-50/audio/2-103426-A-3.flac', 'piano/A2v10.flac',
         'piano/A1v10.flac', 'piano/A0v10.flac')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ced_repo', required=True, help='checkout of github.com/RicherMans/CED')
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    import soundfile as sf
    import tempfile
    import torch

    sys.path.insert(0, args.ced_repo)
    sys.path.insert(0, str(ROOT))
    from models.audiotransformer import ced_base

    from evar.models import create_model

    torch.manual_seed(args.seed)
    official = ced_base(pretrained=False).eval()
    with torch.no_grad():  # make the init BN and the LayerNorms non-trivial
        perturb_init_bn_and_layernorms(official)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'ced_base.pt'
        torch.save({'model': official.state_dict()}, path)
        ours = create_model('ced', weight_file=str(path)).eval()  # strict: every encoder tensor must match

    waves = [sf.read(Path(args.data) / c, dtype='float32')[0] for c in CLIPS]
    waves.insert(0, waves[0][:8000])  # a 0.5 s clip
    batch, lengths = padded(waves)

    width = official.target_length
    worst_spec = worst_frames = worst_head = 0.0
    with torch.inference_mode():
        feats, frames = ours.features(batch, lengths)
        out = ours.encode(feats, frames)
        pooled = ours.embed(batch, lengths)
        for i, n in enumerate(lengths.tolist()):
            x = batch[i:i + 1, :n]
            spec = official.front_end(x)  # [1, 64, T]
            worst_spec = max(worst_spec, (spec - feats[i:i + 1, :, :spec.shape[-1]]).abs().max().item())
            s = official.init_bn(spec.unsqueeze(1))  # [1, 1, 64, T]
            if s.shape[-1] > width:  # the official windows: 1012 frames, last zero-padded
                parts = list(s.split(width, -1))
                last = parts[-1].shape[-1]
                if last < width:
                    parts[-1] = torch.nn.functional.pad(parts[-1], (0, width - last))
                s = torch.cat(parts)
            tokens = official.forward_features(s)  # [W, 4 * T', D]
            ref = tokens.reshape(tokens.shape[0], 4, -1, tokens.shape[-1]).mean(1).reshape(-1, tokens.shape[-1])
            if spec.shape[-1] > width and last < width:  # keep the last window's columns that hold audio
                keep = ref.shape[0] - width // 16 + min(width // 16, -(-last // 16))
                ref = ref[:keep]
            mine = out.embeddings[i][out.mask[i]]
            assert mine.shape == ref.shape, (CLIPS, i, mine.shape, ref.shape)
            worst_frames = max(worst_frames, ((mine - ref).abs().max() / ref.abs().max()).item())
            if spec.shape[-1] <= width:
                head = official(x)
                mine_head = official.outputlayer(pooled[i:i + 1]).sigmoid()
                worst_head = max(worst_head, (head - mine_head).abs().max().item())
    print(f'{len(waves)} clips ({", ".join(f"{n / 16000:.1f}" for n in lengths.tolist())} s): '
          f'max |mel dB diff| {worst_spec:.2e}, max relative frame diff {worst_frames:.2e}, '
          f'max |head output diff| {worst_head:.2e}')


if __name__ == '__main__':
    main()
