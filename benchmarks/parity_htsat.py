"""Side-by-side parity check: evar's HTS-AT against the official implementation on the same real clips.

Builds the official `HTSAT_Swin_Transformer` (a checkout of github.com/RetroCirce/HTS-Audio-Transformer, its
config.py, torchlibrosa front end) with seeded random weights (every tensor perturbed, so a swapped name would
show), saves its state dict as the official lightning checkpoint ({'state_dict': {'sed_model.' + key: ...}}), loads
that file strictly into evar's `htsat`, and runs both on real clips of several lengths. The official side is run as
EVAR's wrapper runs it: 10 s chunks of the waveform, `forward(chunk, infer_mode=True)['latent_output']`, averaged.
Needs torchlibrosa and transformers importable (evar itself does not use torchlibrosa):

    PYTHONPATH=/work/ref/htsat/site /work/evar_ref/venv/bin/python benchmarks/parity_htsat.py \\
        --official /work/ref/htsat/HTS-Audio-Transformer --audio_glob '../shared/data/ESC-50/audio/*.flac'

Seen on 2026-11-22 (torch 2.9.1, torchlibrosa 0.1.0, transformers 5.23.0; ESC-50 clips resampled to 32 kHz, cut
to 1.0, 3.3, 5.0 s and joined to 14.5 s, two chunks): max |log-mel diff| 5.6e-04 dB (in bins ~100 dB below the
frame's peak, torchlibrosa's own float32 rounding: it is 5.6e-4 dB off a float64 STFT, evar's front end 0), max
relative embedding diff 2.7e-07.
"""

import argparse
import glob
import sys
import tempfile
import types
from pathlib import Path


def official_model(repo: str):
    import torch

    sys.path.insert(0, repo)
    # The official model imports two helpers from the training utils module (which pulls h5py, museval); only
    # `interpolate` runs at inference (frame-wise output, not compared here). Minimal stand-ins:
    helpers = types.ModuleType('utils')
    helpers.do_mixup = lambda x, lam: x
    helpers.interpolate = lambda x, ratio: x.repeat_interleave(ratio, dim=1)
    sys.modules['utils'] = helpers
    import config
    from model.htsat import HTSAT_Swin_Transformer

    torch.manual_seed(0)
    model = HTSAT_Swin_Transformer(spec_size=config.htsat_spec_size, patch_size=config.htsat_patch_size, in_chans=1,
                                   num_classes=config.classes_num, window_size=config.htsat_window_size,
                                   config=config, depths=config.htsat_depth, embed_dim=config.htsat_dim,
                                   patch_stride=config.htsat_stride, num_heads=config.htsat_num_head)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(('spectrogram_extractor', 'logmel_extractor')):
                p.add_(0.02 * torch.randn_like(p))
        model.bn0.running_mean.normal_(-20.0, 5.0)
        model.bn0.running_var.uniform_(50.0, 200.0)
    return model.eval(), config


def clips(pattern: str, sample_rate: int):
    import librosa
    import numpy as np
    import soundfile as sf
    import torch

    files = sorted(glob.glob(pattern))[:3]
    waves = []
    for f in files:
        x, sr = sf.read(f, dtype='float32')
        waves.append(librosa.resample(x, orig_sr=sr, target_sr=sample_rate).astype(np.float32))
    joined = np.concatenate(waves)
    for seconds, source in ((1.0, waves[0]), (3.3, waves[1]), (5.0, waves[2]), (14.5, joined)):
        yield seconds, torch.from_numpy(np.ascontiguousarray(source[:int(seconds * sample_rate)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='HTS-Audio-Transformer checkout')
    parser.add_argument('--audio_glob', required=True)
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from evar.models import create_model

    official, config = official_model(args.official)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'HTSAT_random.ckpt'
        torch.save({'state_dict': {'sed_model.' + k: v for k, v in official.state_dict().items()}}, path)
        ours = create_model('htsat', weight_file=str(path)).eval()  # strict: raises on any key or shape mismatch
    print('official checkpoint loaded strictly into evar htsat')
    step = config.clip_samples
    worst_spec = worst_emb = 0.0
    with torch.inference_mode():
        for seconds, x in clips(args.audio_glob, config.sample_rate):
            x = x[None]
            latents = []
            for start in range(0, x.shape[1], step):
                latents.append(official(x[:, start:start + step], infer_mode=True)['latent_output'])
            ref = torch.stack(latents).mean(0)
            emb = ours.embed(x, torch.tensor([x.shape[1]]))
            first = x[:, :step]
            ref_spec = official.logmel_extractor(official.spectrogram_extractor(first))[0, 0]  # [T, mels]
            our_spec, n = ours.features(first, torch.tensor([first.shape[1]]))
            spec_diff = (ref_spec - our_spec[0, :, :int(n)].T).abs().max().item()
            emb_diff = ((ref - emb).abs().max() / ref.abs().max()).item()
            worst_spec, worst_emb = max(worst_spec, spec_diff), max(worst_emb, emb_diff)
            print(f'{seconds:5.1f} s ({len(latents)} chunk(s)): |log-mel diff| {spec_diff:.2e} dB, relative '
                  f'embedding diff {emb_diff:.2e}')
    print(f'max |log-mel diff| {worst_spec:.2e} dB, max relative embedding diff {worst_emb:.2e}')


if __name__ == '__main__':
    main()
