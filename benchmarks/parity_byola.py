"""Side-by-side parity check: evar's BYOL-A with the official front end (`mel_scale: htk`, config/byola_official.yaml)
against the official implementation on the same real clips.

Reference: the official `byol_a.models.AudioNTT2020` (from a checkout of github.com/nttcslab/byol-a) with
torchaudio's MelSpectrogram (HTK mel filters, unnormalised), not EVAR's wrapper, whose nnAudio log-mel (Slaney
filters) evar's default `mel_scale: slaney` follows: benchmarks/parity_evar_byola.py checks that one. Runs it and
evar's `byola` model with mel_scale 'htk', with the same weights and normalisation statistics, and prints the
largest log-mel and embedding differences. Needs an environment with torchaudio (evar itself does not use it):

    python benchmarks/parity_byola.py --byol_a_parent /path/holding/byol_a --weights AudioNTT2020-BYOLA-64x96d512.pth \\
        --audio_glob '../shared/data/RAVDESS/Actor_01/*.flac'

Seen on 2026-11-22 (torch 2.9.1, torchaudio 2.9, 8 RAVDESS clips of 2.5 s): max |log-mel diff| 1.2e-04, max
relative embedding diff 1.6e-06.
"""

import argparse
import glob
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--byol_a_parent', required=True, help='folder containing the byol_a checkout')
    parser.add_argument('--weights', required=True)
    parser.add_argument('--audio_glob', required=True)
    parser.add_argument('--clips', type=int, default=8)
    parser.add_argument('--seconds', type=float, default=2.5)
    args = parser.parse_args()

    import soundfile as sf
    import torch
    import torchaudio

    sys.path.insert(0, args.byol_a_parent)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from byol_a.byol_a.models import AudioNTT2020

    from evar.models import create_model

    mean, std = -5.4919195, 5.0389895  # the statistics published with the pretrained weights
    official = AudioNTT2020(n_mels=64, d=512)
    official.load_weight(args.weights, 'cpu')
    official.eval()
    melspec = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=160,
                                                   n_mels=64, f_min=60, f_max=7800, power=2)
    ours = create_model('byola', weight_file=args.weights, norm_stats=[mean, std], mel_scale='htk').eval()
    files = sorted(glob.glob(args.audio_glob))[:args.clips]
    worst_spec = worst_emb = 0.0
    with torch.inference_mode():
        for f in files:
            x, sr = sf.read(f, dtype='float32')
            assert sr == 16000, f'{f}: expected 16 kHz audio'
            x = torch.from_numpy(x[:int(args.seconds * sr)])[None]
            ref_spec = (melspec(x) + torch.finfo().eps).log()
            our_spec, _ = ours.features(x, torch.tensor([x.shape[1]]))
            worst_spec = max(worst_spec, (ref_spec - our_spec).abs().max().item())
            ref = official(((ref_spec - mean) / std).unsqueeze(1))
            emb = ours.embed(x, torch.tensor([x.shape[1]]))
            worst_emb = max(worst_emb, ((ref - emb).abs().max() / ref.abs().max()).item())
    print(f'{len(files)} clips: max |log-mel diff| {worst_spec:.2e}, max relative embedding diff {worst_emb:.2e}')


if __name__ == '__main__':
    main()
