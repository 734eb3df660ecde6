"""Side-by-side parity check: evar's OpenL3 against torchopenl3 (the port EVAR runs) on the same real clips.

For each of mel256/6144, mel128/512 and linear/6144, builds torchopenl3's `PytorchOpenl3` with a seeded random
init (BatchNorm statistics and affine terms randomised too), saves its state dict, loads it strictly into evar's
`openl3`, and compares `torchopenl3.get_audio_embedding` (its own framing: 0.5 s centring, 1 s windows, end
padding) with ours on real clips resampled to 48 kHz, one by one and as one padded batch. It also compares the
front-end tensors evar builds itself with the ones torchopenl3 builds (librosa). No Keras weights or TensorFlow are
available here, so the Keras model itself is not compared. torchopenl3 needs julius and six (and imports resampy,
stubbed here: never called at 48 kHz):

    PYTHONPATH=/path/to/site python benchmarks/parity_openl3.py

Seen on 2026-11-22 (reference venv: torch 2.9.1, librosa 0.11, torchopenl3 1.0.1; clips of 0.3, 1.2 and 3.3 s from
ESC-50 and RAVDESS, 1, 8 and 30 windows at the 0.1 s hop), for each of mel256/6144, mel128/512, linear/6144:
front-end tensors built here vs torchopenl3's within 2.1e-07 (DFT kernels, abs) and 6.0e-08 (mel basis, relative);
decibel spectrogram max |diff| 1.5e-05 dB; embeddings max relative diff 4.6e-07 / 3.0e-07 / 4.6e-07; our padded
batch vs single clips 0.0.
"""

import argparse
import glob
import sys
import tempfile
import types
from pathlib import Path

from parity_common import padded, randomise_batchnorm_uniform

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'


def load_clip_48k(path, seconds=None):
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(path, dtype='float64', always_2d=True)
    x = x.mean(1)[:int(seconds * sr)] if seconds else x.mean(1)
    return np.ascontiguousarray(resample_poly(x, 48000, sr)).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hop', type=float, default=0.1)
    args = parser.parse_args()

    import torch

    sys.modules.setdefault('resampy', types.ModuleType('resampy'))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torchopenl3
    from torchopenl3.models import PytorchOpenl3

    from evar.models import create_model
    from evar.models.openl3 import openl3_dft_kernels, openl3_mel_basis

    esc = sorted(glob.glob(str(SHARED / 'ESC-50' / 'audio' / '*.flac')))
    rav = sorted(glob.glob(str(SHARED / 'RAVDESS' / 'Actor_01' / '*')))
    clips = [load_clip_48k(esc[0], 0.3), load_clip_48k(esc[1], 1.2), load_clip_48k(rav[0])]
    for repr_, size in (('mel256', 6144), ('mel128', 512), ('linear', 6144)):
        torch.manual_seed(0)
        ref = PytorchOpenl3(content_type='env', input_repr=repr_, embedding_size=size)
        with torch.no_grad():
            randomise_batchnorm_uniform(ref)
            ref.batch_normalization_1.running_mean.fill_(-40.0)  # decibel inputs sit around -40
            ref.batch_normalization_1.running_var.fill_(300.0)
        ref.eval()
        state = ref.state_dict()
        real, _ = openl3_dft_kernels(state['speclayer.dft_real_kernels'].shape[-1])
        built = f'DFT kernels {(real - state["speclayer.dft_real_kernels"]).abs().max():.1e}'
        if 'speclayer.mel_basis' in state:
            basis = state['speclayer.mel_basis']
            built += f', mel basis {((openl3_mel_basis(basis.shape[0]) - basis).abs().max() / basis.abs().max()):.1e} rel'
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / 'openl3.pth.tar'
            torch.save(state, path)
            ours = create_model('openl3', weight_file=str(path), openl3_input_repr=repr_, feature_d=size,
                                hop_sec=args.hop).eval()
        worst_spec = worst = worst_batch = 0.0
        singles = []
        with torch.inference_mode():
            for x in clips:
                wav = torch.from_numpy(x)[None]
                emb_ref, _ = torchopenl3.get_audio_embedding(wav, 48000, model=ref, center=True, hop_size=args.hop,
                                                             verbose=False)
                frames = ours(wav, torch.tensor([wav.shape[1]]))
                assert frames.embeddings.shape == emb_ref.shape, (frames.embeddings.shape, emb_ref.shape)
                singles.append(frames.embeddings[0])
                worst = max(worst, float((emb_ref - frames.embeddings).abs().max() / emb_ref.abs().max()))
                window = torch.nn.functional.pad(wav, (24000, 24000))[:, :48000]  # the first window
                worst_spec = max(worst_spec, float((ref.speclayer(window[:, None]).squeeze(-1)
                                                    - ours.body.speclayer(window)[:, 0]).abs().max()))
            batch, lengths = padded(clips)
            frames = ours(batch, lengths)
            for i, single in enumerate(singles):
                got = frames.embeddings[i, :int(frames.mask[i].sum())]
                worst_batch = max(worst_batch, float((got - single).abs().max() / single.abs().max()))
        print(f'{repr_}/{size}: front-end tensors built here vs torchopenl3: {built}; decibel spectrogram max |diff| '
              f'{worst_spec:.1e} dB; embeddings ({[s.shape[0] for s in singles]} windows) max relative diff '
              f'{worst:.1e}; our padded batch vs single {worst_batch:.1e}')


if __name__ == '__main__':
    main()
