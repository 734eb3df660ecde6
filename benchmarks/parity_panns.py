"""Side-by-side parity check: evar's PANNs CNN14 against the official `Cnn14_16k` on the same real clips.

Builds the official model (pytorch/models.py of github.com/qiuqiangkong/audioset_tagging_cnn, with torchlibrosa)
with a seeded random init whose BatchNorm statistics and affine terms are randomised too, saves its state dict in
the official container ({'model': ...}), loads that strictly into evar's `cnn14`, and compares on real clips of
several lengths (each run alone through the official model; through ours both alone and as one padded batch):
the log-mel front end, the conv block 6 frames and the 2048-d `embedding`. It also compares the front-end tensors
evar builds itself (DFT kernels, Slaney mel matrix) with torchlibrosa's. Needs torchlibrosa (and librosa):

    PYTHONPATH=/path/to/site python benchmarks/parity_panns.py --panns_repo /path/to/audioset_tagging_cnn \\
        --audio_glob '../shared/data/ESC-50/audio/*.flac'

Seen on 2026-11-22 (reference venv: torch 2.9.1, torchlibrosa 0.1.0, librosa 0.11; 6 clips of 0.4, 1.2, 3.3, 5,
5 and 12 s from ESC-50 and RAVDESS): front-end tensors built here vs torchlibrosa's: DFT kernels 1.5e-08, mel
matrix 1.9e-09 (abs; 3.5e-08 before evar/frontend.py's shared Slaney filterbank); with the checkpoint's tensors,
log-mel, conv block 6 frames and embedding all identical (max diff 0.0: the same float32 operations);
our padded batch vs our single clips 5.5e-07 relative.
"""

import argparse
import glob
import sys
import tempfile
from pathlib import Path

from parity_common import load_clip, padded, randomise_batchnorm_uniform


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--panns_repo', required=True, help='checkout of qiuqiangkong/audioset_tagging_cnn')
    parser.add_argument('--audio_glob', default=str(Path(__file__).resolve().parents[2] / 'shared/data/ESC-50/audio/*.flac'))
    parser.add_argument('--ravdess_glob',
                        default=str(Path(__file__).resolve().parents[2] / 'shared/data/RAVDESS/Actor_01/*'))
    args = parser.parse_args()

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(args.panns_repo) / 'pytorch'))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from models import Cnn14_16k

    from evar.models import create_model
    from evar.frontend import slaney_mel_filterbank
    from evar.models.panns import dft_kernels

    torch.manual_seed(0)
    official = Cnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                         classes_num=527)
    with torch.no_grad():  # random BN statistics and affine terms, so every BN takes part in the comparison
        randomise_batchnorm_uniform(official)
    official.eval()
    state = official.state_dict()
    real, imag = dft_kernels(512, 512)
    mel = slaney_mel_filterbank(16000, 512, 64, 50, 8000)
    print('front-end tensors built here vs torchlibrosa: DFT real '
          f'{(real - state["spectrogram_extractor.stft.conv_real.weight"]).abs().max():.1e}, imag '
          f'{(imag - state["spectrogram_extractor.stft.conv_imag.weight"]).abs().max():.1e}, mel '
          f'{(mel - state["logmel_extractor.melW"]).abs().max():.1e}')

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'cnn14_random.pth'
        torch.save({'model': state, 'iteration': 0}, path)
        ours = create_model('cnn14', weight_file=str(path)).eval()
        ours_frames = create_model('cnn14', weight_file=str(path), output_layers=0).eval()

    esc = sorted(glob.glob(args.audio_glob))
    rav = sorted(glob.glob(args.ravdess_glob))
    clips = [load_clip(esc[0], 0.4), load_clip(esc[1], 1.2), load_clip(rav[0]), load_clip(esc[2]), load_clip(esc[3]),
             np.concatenate([load_clip(f) for f in esc[4:7]])[:12 * 16000]]
    worst = dict(spec=0.0, frames=0.0, emb=0.0, batch=0.0)
    singles = []
    with torch.inference_mode():
        for x in clips:
            wav = torch.from_numpy(x)[None]
            n = torch.tensor([wav.shape[1]])
            ref_spec = official.logmel_extractor(official.spectrogram_extractor(wav))[:, 0].transpose(1, 2)
            our_spec, _ = ours.features(wav, n)
            worst['spec'] = max(worst['spec'], float((ref_spec - our_spec).abs().max()))
            ref = official(wav)['embedding']
            emb = ours.embed(wav, n)
            singles.append(emb[0])
            worst['emb'] = max(worst['emb'], float((ref - emb).abs().max() / ref.abs().max()))
            # conv block 6 frames: the official forward up to its time pooling, re-run here with the same modules
            h = official.bn0(ref_spec.transpose(1, 2)[:, None].transpose(1, 3)).transpose(1, 3)
            for i in range(1, 7):
                h = getattr(official, f'conv_block{i}')(h, pool_size=(2, 2) if i < 6 else (1, 1), pool_type='avg')
            ref_frames = h.mean(3).transpose(1, 2)
            our_frames = ours_frames(wav, n).embeddings
            worst['frames'] = max(worst['frames'], float((ref_frames - our_frames).abs().max()
                                                         / ref_frames.abs().max()))
        batch, lengths = padded(clips)
        embs = ours.embed(batch, lengths)
        for i, single in enumerate(singles):
            worst['batch'] = max(worst['batch'], float((embs[i] - single).abs().max() / single.abs().max()))
    print(f'{len(clips)} clips of {[round(len(x) / 16000, 2) for x in clips]} s: max |log-mel diff| '
          f'{worst["spec"]:.1e} dB, conv frames max relative diff {worst["frames"]:.1e}, embedding max relative '
          f'diff {worst["emb"]:.1e}; our padded batch vs single clips {worst["batch"]:.1e}')


if __name__ == '__main__':
    main()
