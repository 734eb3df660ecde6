"""Side-by-side parity check: evar's OPERA-CT against the official implementation on the same real clips.

Builds the official `HTSATWrapper` (a checkout of github.com/evelyn0414/OPERA, src/model/htsat) with seeded random
weights (every tensor perturbed), saves it as the OPERA lightning checkpoint ({'state_dict': {'encoder.encoder.htsat.'
+ key, plus the projection head g / layer_norm / linear}}), loads that file strictly into evar's `opera_ct`, and
runs both on real clips. The official side is `extract_opera_feature`'s path for one recording: each clip is written
to a 16 kHz wav, read by `src.util.get_entire_signal_librosa(..., spectrogram=True, input_sec=8, pad=True)` (load,
trim, repeat-pad, log-mel, min-max), and fed to the encoder as `Cola.extract_feature(x, 768)` does. Needs
torchlibrosa, librosa and transformers importable:

    PYTHONPATH=/work/ref/htsat/site /work/evar_ref/venv/bin/python benchmarks/parity_opera.py \\
        --official /work/ref/opera/OPERA --audio_glob '../shared/data/ESC-50/audio/*.flac'

Seen on 2026-11-22 (torch 2.9.1, librosa 0.11.0, transformers 5.23.0; ESC-50 clips cut to 1.3 and 5.0 s, 9.7 s
between 0.7 s and 1.1 s of digital silence (trimmed to 305 frames), and joined to 60 s, 1876 frames, two crops):
max |mel diff| 1.9e-07 on the 0-1 scale, max relative embedding diff 1.7e-07.
"""

import argparse
import glob
import sys
import tempfile
import types
from pathlib import Path


def official_parts(repo: str):
    import torch

    sys.path.insert(0, repo)
    for name in ('matplotlib', 'matplotlib.pyplot', 'seaborn'):  # plotting-only imports of src/util.py
        sys.modules.setdefault(name, types.ModuleType(name))
    from src.model.htsat.htsat import HTSATWrapper
    from src.util import get_entire_signal_librosa

    torch.manual_seed(0)
    model = HTSATWrapper()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'extractor' not in name:
                p.add_(0.02 * torch.randn_like(p))
        model.htsat.bn0.running_mean.uniform_(-0.2, 0.2)
        model.htsat.bn0.running_var.uniform_(0.05, 0.2)
    return model.eval(), get_entire_signal_librosa


def clips(pattern: str):
    import numpy as np
    import soundfile as sf

    files = sorted(glob.glob(pattern))[:12]
    waves = []
    for f in files:
        x, sr = sf.read(f, dtype='float32')
        assert sr == 16000, f'{f}: expected 16 kHz audio'
        waves.append(x)
    joined = np.concatenate(waves)
    # 0.7 s of digital silence before and 1.1 s after 9.7 s of sound: trimming has something to remove
    quiet_ends = np.concatenate([np.zeros(11200, np.float32), np.concatenate(waves[2:4])[:155200],
                                 np.zeros(17600, np.float32)])
    for seconds, source in ((1.3, waves[0]), (5.0, waves[1]), (11.5, quiet_ends), (60.0, joined)):
        yield seconds, np.ascontiguousarray(source[:int(seconds * 16000)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='OPERA checkout')
    parser.add_argument('--audio_glob', required=True)
    args = parser.parse_args()

    import soundfile as sf
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from evar.models import create_model

    official, get_entire_signal = official_parts(args.official)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'encoder-operaCT.ckpt'
        state = {'encoder.encoder.htsat.' + k: v for k, v in official.htsat.state_dict().items()}
        state.update({'g.weight': torch.randn(512, 768), 'g.bias': torch.zeros(512), 'layer_norm.weight':
                      torch.ones(512), 'layer_norm.bias': torch.zeros(512), 'linear.weight': torch.randn(512, 512)})
        torch.save({'state_dict': state}, path)
        ours = create_model('opera_ct', weight_file=str(path)).eval()  # strict: raises on any key or shape mismatch
        print('official checkpoint loaded strictly into evar opera_ct')
        worst_spec = worst_emb = 0.0
        with torch.inference_mode():
            for seconds, x in clips(args.audio_glob):
                sf.write(Path(tmp) / 'clip.wav', x, 16000, subtype='FLOAT')
                ref_spec = torch.tensor(get_entire_signal(tmp, 'clip', spectrogram=True, input_sec=8, pad=True),
                                        dtype=torch.float)
                ref = official(ref_spec[None].unsqueeze(1))
                wav = torch.from_numpy(x)[None]
                our_spec, n = ours.features(wav, torch.tensor([wav.shape[1]]))
                emb = ours.embed(wav, torch.tensor([wav.shape[1]]))
                if int(n) != ref_spec.shape[0]:
                    print(f'{seconds:5.1f} s: frame counts differ: official {ref_spec.shape[0]}, ours {int(n)}')
                    worst_spec = float('inf')
                    continue
                spec_diff = (ref_spec - our_spec[0, :, :int(n)].T).abs().max().item()
                emb_diff = ((ref - emb).abs().max() / ref.abs().max()).item()
                worst_spec, worst_emb = max(worst_spec, spec_diff), max(worst_emb, emb_diff)
                print(f'{seconds:5.1f} s ({int(n)} frames after trim/pad): |mel diff| {spec_diff:.2e} (0-1 scale), '
                      f'relative embedding diff {emb_diff:.2e}')
    print(f'max |mel diff| {worst_spec:.2e}, max relative embedding diff {worst_emb:.2e}')


if __name__ == '__main__':
    main()
