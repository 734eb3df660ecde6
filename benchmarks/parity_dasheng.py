"""Side-by-side parity check: evar's Dasheng against the official implementation on the same real clips.

Builds the official `Dasheng` encoder of the `dasheng` package (0.0.9, the code github.com/XiaoMi/dasheng publishes;
dasheng_base sizes: 768-d, 12 blocks, 12 heads) with seeded random weights (init BN statistics and LayerNorm
affines perturbed so they matter), saves it as the Zenodo checkpoints are saved ({'model': ..., 'config': ...},
torchaudio front-end buffers included), loads it strictly into evar's `dasheng`, and compares on real clips the mel
dB front end and the frame embeddings (the official forward of one clip, which runs long audio in 252-column
windows). evar runs all clips as ONE padded batch, so this also shows padding does not leak. Needs torchaudio and
einops, and the package installed without its dependencies (evar itself uses none of them):

    /work/evar_ref/venv/bin/pip install --no-deps --target /work/ref/dasheng/site dasheng==0.0.9
    PYTHONPATH=/work/ref/dasheng/site /work/evar_ref/venv/bin/python benchmarks/parity_dasheng.py

Seen on 2026-11-23 (dasheng 0.0.9, torch 2.9.1 + torchaudio 2.9.1, CPU; 6 clips of 0.5, 3.3, 5.0, 16.0, 23.4,
25.8 s): max |mel dB diff| 1.53e-05, max relative frame diff 7.29e-07.
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
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    import soundfile as sf
    import tempfile
    import torch

    sys.path.insert(0, str(ROOT))
    from dasheng.pretrained.pretrained import Dasheng as OfficialDasheng

    from evar.models import create_model

    config = dict(embed_dim=768, depth=12, num_heads=12, patch_size=[64, 4], patch_stride=[64, 4],
                  target_length=1008)
    torch.manual_seed(args.seed)
    official = OfficialDasheng(**config).eval()
    with torch.no_grad():  # make the init BN and the LayerNorms non-trivial
        perturb_init_bn_and_layernorms(official)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'dasheng_base.pt'
        torch.save({'model': official.state_dict(), 'config': config}, path)
        ours = create_model('dasheng', weight_file=str(path)).eval()  # strict: every encoder tensor must match

    waves = [sf.read(Path(args.data) / c, dtype='float32')[0] for c in CLIPS]
    waves.insert(0, waves[0][:8000])  # a 0.5 s clip
    batch, lengths = padded(waves)

    worst_spec = worst_frames = 0.0
    with torch.inference_mode():
        feats, frames = ours.features(batch, lengths)
        out = ours.encode(feats, frames)
        for i, n in enumerate(lengths.tolist()):
            x = batch[i:i + 1, :n]
            spec = official.front_end(x)  # [1, 64, T]
            worst_spec = max(worst_spec, (spec - feats[i:i + 1, :, :spec.shape[-1]]).abs().max().item())
            ref = official(x)[0]  # [T', D]
            mine = out.embeddings[i][out.mask[i]]
            assert mine.shape == ref.shape, (CLIPS, i, mine.shape, ref.shape)
            worst_frames = max(worst_frames, ((mine - ref).abs().max() / ref.abs().max()).item())
    print(f'{len(waves)} clips ({", ".join(f"{n / 16000:.1f}" for n in lengths.tolist())} s): '
          f'max |mel dB diff| {worst_spec:.2e}, max relative frame diff {worst_frames:.2e}')


if __name__ == '__main__':
    main()
