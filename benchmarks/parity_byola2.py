"""Side-by-side parity check: evar's BYOL-A v2 (`byola2`) against the official v2 code on the same real clips.

Builds the official `byol_a2.models.AudioNTT2022Encoder` (github.com/nttcslab/byol-a, folder v2) with seeded random
weights (BatchNorm statistics and affine terms randomised too, so folding them into the convolutions is tested),
saves its state dict, loads it strictly into evar's model, and runs both on real clips of different lengths. The
official front end is nnAudio's MelSpectrogram as the v2 README and EVAR's ToLogMelSpec set it up, then
log(x + eps) and (x - mean) / std. Needs an environment with nnAudio (evar itself does not use it):

    D=../shared/data; python benchmarks/parity_byola2.py --byol_a_v2 /path/to/byol-a/v2 --audio \
        $D/fsdd/recordings/0_george_0.flac $(ls $D/RAVDESS/Actor_01/*.flac | head -2) \
        $(ls $D/ESC-50/audio/*.flac | head -2) $D/yesno/0_0_0_0_1_1_1_1.flac $D/piano/A0v10.flac

Seen on 2026-11-22 (reference venv: torch 2.9.1, nnAudio 0.3.4; 7 clips of 0.3 s to 25.8 s): max |log-mel diff|
8.5e-05 (log-mel values up to 15.9 in magnitude), frame embeddings [T, 3072] max relative diff 1.8e-06, pooled
clip embeddings 7.6e-07; all 7 clips as one padded batch against each alone 1.4e-07.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from parity_common import randomise_batchnorm, relative


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--byol_a_v2', required=True, help='the v2 folder of a byol-a checkout (holds byol_a2/)')
    parser.add_argument('--audio', nargs='+', required=True, help='16 kHz clips')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    import nnAudio.features
    import soundfile as sf
    import torch

    sys.path.insert(0, args.byol_a_v2)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from byol_a2.models import AudioNTT2022Encoder, mean_max_pooling

    from evar.models import create_model

    torch.manual_seed(args.seed)
    official = AudioNTT2022Encoder(n_mels=64, d=3072)
    with torch.no_grad():
        randomise_batchnorm(official, torch.Generator().manual_seed(args.seed))
    official.eval()
    to_melspec = nnAudio.features.MelSpectrogram(sr=16000, n_fft=1024, win_length=1024, hop_length=160, n_mels=64,
                                                 fmin=60, fmax=7800, center=True, power=2, verbose=False)
    mean, std = -7.1, 4.3  # any fixed statistics: both sides use the same
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / 'AudioNTT2022-random.pth'
        torch.save(official.state_dict(), weights)
        ours = create_model('byola2', weight_file=str(weights), norm_stats=[mean, std]).eval()

    worst = {'log-mel abs': 0.0, 'frames rel': 0.0, 'pooled rel': 0.0}
    clips, spec_max = [], 0.0
    with torch.inference_mode():
        for f in args.audio:
            x, sr = sf.read(f, dtype='float32', always_2d=True)
            assert sr == 16000, f'{f}: expected 16 kHz audio'
            x = torch.from_numpy(x.mean(1))[None]
            clips.append(x[0])
            n = torch.tensor([x.shape[1]])
            ref_spec = (to_melspec(x) + torch.finfo().eps).log()
            our_spec, _ = ours.features(x, n)
            spec_max = max(spec_max, float(ref_spec.abs().max()))
            worst['log-mel abs'] = max(worst['log-mel abs'], float((ref_spec - our_spec).abs().max()))
            ref_frames = official(((ref_spec - mean) / std).unsqueeze(1))
            our_frames = ours(x, n).embeddings
            assert ref_frames.shape == our_frames.shape, (ref_frames.shape, our_frames.shape)
            worst['frames rel'] = max(worst['frames rel'], relative(our_frames, ref_frames))
            worst['pooled rel'] = max(worst['pooled rel'], relative(ours.embed(x, n), mean_max_pooling(ref_frames)))
            print(f'{Path(f).name}: {x.shape[1] / sr:.2f} s, {ref_frames.shape[1]} frames x {ref_frames.shape[2]}')
        lengths = torch.tensor([len(c) for c in clips])
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
        batched = ours.embed(batch, lengths)
        single = torch.cat([ours.embed(c[None], lengths[i:i + 1]) for i, c in enumerate(clips)])
    print(f'{len(clips)} clips: max |log-mel diff| {worst["log-mel abs"]:.1e} (log-mel max {spec_max:.1f}), '
          f'frame embeddings max relative diff {worst["frames rel"]:.1e}, pooled {worst["pooled rel"]:.1e}, '
          f'padded batch vs alone {relative(batched, single):.1e}')


if __name__ == '__main__':
    main()
