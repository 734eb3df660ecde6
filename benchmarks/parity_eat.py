"""Side-by-side parity check: evar's EAT against the official Hugging Face remote code on the same real clips.

Builds the official `EAT` module (eat_model.py + model_core.py of huggingface.co/worstchan/EAT-base_epoch30_pretrain,
copied into a package folder `eat_hf/` under --official; they need timm) at the base size with seeded random
init, saves its state dict as the Hugging Face folder holds it (`model.` prefix, pytorch_model.bin + config.json),
loads that folder strictly into evar's `eat`, and compares on real clips (one longer than the 10.24 s window, built
by joining clips):
  - front end: torchaudio.compliance.kaldi.fbank with the official options against evar.frontend.KaldiFbank;
  - embeddings: the official extract_features of each 1024-frame window (zero-padded before normalisation, as the
    official script and EVAR do) against evar's frames='all' output for the whole batch of clips at once, and the
    patch tokens of frames='patches' against the official tokens of the columns that hold audio.
Needs torch + torchaudio + timm (evar itself uses neither torchaudio nor timm):

    PYTHONPATH=/work/ref/eat/site /work/evar_ref/venv/bin/python benchmarks/parity_eat.py \\
        --official /work/ref/eat/hf --audio_glob '../shared/data/ESC-50/audio/*.flac'

Seen on 2026-11-23 (torch 2.9.1, torchaudio 2.9.1, timm 1.0.15, CPU; ESC-50 clips of 5 s at 44.1 kHz resampled to
16 kHz and cut to 1.0, 2.5, 3.3, 5.0, 5.0 s, plus one 25 s clip of 5 joined clips = 3 windows, about 2.5 minutes):
fbank max |diff| 0.0 (evar.frontend.KaldiFbank takes |X| squared as torchaudio does); max relative diff
frames=all 7.01e-07 (every window, the padded tail windows included), frames=patches 6.78e-07, EVAR clip embedding
(mean of a window's 513 tokens) 1.57e-07.
"""

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from parity_common import padded


def official_config():
    """configuration_eat.py's defaults (the base model)."""
    return SimpleNamespace(embed_dim=768, depth=12, num_heads=12, patch_size=16, stride=16, in_chans=1, mel_bins=128,
                           max_length=768, num_classes=527, model_variant='pretrain', mlp_ratio=4.0, qkv_bias=True,
                           drop_rate=0.0, attn_drop_rate=0.0, activation_dropout=0.0, post_mlp_drop=0.0,
                           start_drop_path_rate=0.0, end_drop_path_rate=0.0, layer_norm_first=False, norm_eps=1e-6,
                           norm_affine=True, fixed_positions=True, img_size=(1024, 128))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='folder holding the eat_hf package (official HF code)')
    parser.add_argument('--audio_glob', required=True)
    parser.add_argument('--seconds', default='1.0,2.5,3.3,5.0,5.0', help='lengths the short clips are cut to')
    parser.add_argument('--long_clips', type=int, default=5, help='clips joined into one clip longer than a window')
    args = parser.parse_args()

    import soundfile as sf
    import torch
    import torchaudio

    sys.path.insert(0, args.official)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from eat_hf.eat_model import EAT as OfficialEAT

    from evar.models import create_model

    torch.manual_seed(0)
    official = OfficialEAT(official_config()).eval()
    folder = Path(tempfile.mkdtemp()) / 'EAT-base'
    folder.mkdir()
    torch.save({'model.' + k: v for k, v in official.state_dict().items()}, folder / 'pytorch_model.bin')
    (folder / 'config.json').write_text(json.dumps({'num_heads': 12, 'norm_eps': 1e-6}))
    ours_all = create_model('eat', weight_file=str(folder), frames='all').eval()
    ours_patches = create_model('eat', weight_file=str(folder)).eval()

    def load(path):
        x, sr = sf.read(path, dtype='float32', always_2d=True)
        x = torch.from_numpy(x.mean(1))
        return torchaudio.functional.resample(x, sr, 16000) if sr != 16000 else x

    files = sorted(glob.glob(args.audio_glob))
    seconds = [float(s) for s in args.seconds.split(',')]
    clips = [load(f)[:int(s * 16000)] for f, s in zip(files, seconds)]
    clips.append(torch.cat([load(f) for f in files[len(seconds):len(seconds) + args.long_clips]]))

    mean, std, width = -4.268, 4.569, 1024

    def official_fbank(x):
        x = x - x.mean()
        return torchaudio.compliance.kaldi.fbank(x[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                                                 window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)

    wav, lengths = padded(clips)
    worst = dict(fbank=0.0, all=0.0, patches=0.0, evar=0.0)
    with torch.inference_mode():
        feats, feat_lengths = ours_all.features(wav, lengths)
        frames_all = ours_all.encode(feats, feat_lengths)
        frames_patches = ours_patches.encode(feats, feat_lengths)
        for i, clip in enumerate(clips):
            ref = official_fbank(clip)  # [T, 128]
            n = ref.shape[0]
            assert int(feat_lengths[i]) == n, (int(feat_lengths[i]), n)
            worst['fbank'] = max(worst['fbank'], float((feats[i, :, :n].T - ref).abs().max()))
            tokens, patch_tokens, evar_embeddings = [], [], []
            for start in range(0, n, width):
                chunk = ref[start:start + width]
                audio = chunk.shape[0]
                chunk = torch.nn.functional.pad(chunk, (0, 0, 0, width - audio))  # zero fbank, then normalise
                out = official.extract_features(((chunk - mean) / (2 * std))[None, None])[0]  # [513, 768]
                tokens.append(out)
                columns = (audio + 15) // 16
                patch_tokens.append(out[1:1 + columns * 8])
                evar_embeddings.append(out.mean(0))
            tokens, patch_tokens = torch.cat(tokens), torch.cat(patch_tokens)
            ours = frames_all.embeddings[i][frames_all.mask[i]]
            scale = float(tokens.abs().max())
            worst['all'] = max(worst['all'], float((ours - tokens).abs().max()) / scale)
            ours_p = frames_patches.embeddings[i][frames_patches.mask[i]]
            worst['patches'] = max(worst['patches'], float((ours_p - patch_tokens).abs().max()) / scale)
            if n <= width:  # EVAR's embedding of a clip of one window: the mean of its 513 tokens
                evar = evar_embeddings[0]
                pooled = ours.mean(0)
                worst['evar'] = max(worst['evar'], float((pooled - evar).abs().max() / evar.abs().max()))
            print(f'clip {i}: {len(clip) / 16000:.2f} s, {n} fbank frames, {len(tokens) // 513} window(s)')
    print(f'{len(clips)} clips: fbank max |diff| {worst["fbank"]:.2e}; max relative diff frames=all '
          f'{worst["all"]:.2e}, frames=patches {worst["patches"]:.2e}, EVAR clip embedding {worst["evar"]:.2e}')


if __name__ == '__main__':
    main()
