"""Side-by-side parity check: evar's COALA against the official code (github.com/xavierfav/coala) on real clips.

Builds the official `models_t1000.AudioEncoder` with seeded random weights (BatchNorm statistics and affine terms
randomised too), saves its state dict, loads it strictly into evar's model, and embeds the same clips with both:
the official side through `encode.extract_audio_embedding_chunks` (which runs `utils.compute_spectrogram`, the
96-frame chunking and the release's scaler), evar's through `coala`. Clips are resampled to 22 kHz by evar's loader
and written as float WAV files, which librosa reads back unchanged. The official padding noise comes from numpy's
global generator: it is seeded with 0 before each clip, the seed evar uses. The official code runs librosa 0.11
here, whose STFT zero-pads the edges, so evar runs with stft_pad_mode=constant for the embedding comparison; evar's
default (reflect, librosa 0.7.2 as the release pinned) is compared with librosa's melspectrogram(pad_mode='reflect').
Needs an environment with librosa and scikit-learn (evar itself uses neither):

    D=../shared/data; python benchmarks/parity_coala.py --coala /path/to/coala --audio \\
        $D/fsdd/recordings/0_george_0.flac $(ls $D/RAVDESS/Actor_01/*.flac | head -1) \\
        $(ls $D/ESC-50/audio/*.flac | head -2) $D/yesno/0_0_0_0_1_1_1_1.flac $D/piano/A0v10.flac

Seen on 2026-11-22 (reference venv: torch 2.9.1, librosa 0.11.0, scikit-learn 1.9.1; 6 clips of 0.3 s to 25.8 s):
log-mel max |diff| 6.9e-02 with either edge padding, all of it in near-silent bins of the 25.8 s piano clip (no
padding noise past 10 s) whose mel magnitude is ~1e-8, at float32 FFT rounding, where log(x + 1.2e-7) magnifies it;
3.6e-04 over bins with mel magnitude > 1e-4. Chunk embeddings against extract_audio_embedding_chunks: max relative
diff 1.6e-05 (conv output, EVAR's embedding) and 9.9e-06 (aligned projection); all 6 clips as one padded batch
against each alone: identical (0.0).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from parity_common import randomise_batchnorm, relative


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--coala', required=True, help='a checkout of xavierfav/coala (holds encode.py)')
    parser.add_argument('--audio', nargs='+', required=True)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    import librosa
    import numpy as np
    import soundfile as sf
    import torch

    coala = str(Path(args.coala).resolve())
    sys.path.insert(0, coala)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    cwd = os.getcwd()
    os.chdir(coala)  # encode.py reads its scaler and tag list from the working directory at import
    try:
        import encode
        from models_t1000 import AudioEncoder
        from utils import pad as release_pad
    finally:
        os.chdir(cwd)
    if not hasattr(encode.scaler, 'clip'):  # pickled by scikit-learn 0.22, before MinMaxScaler had `clip`
        encode.scaler.clip = False

    from evar.audio import load_audio
    from evar.models import create_model

    torch.manual_seed(args.seed)
    official = AudioEncoder()
    with torch.no_grad():
        randomise_batchnorm(official, torch.Generator().manual_seed(args.seed))
    official.eval()
    worst = {'log-mel reflect abs': 0.0, 'log-mel constant abs': 0.0, 'same where mel > 1e-4': 0.0, 'conv rel': 0.0,
             'projection rel': 0.0}
    clips = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        weights = Path(tmp) / 'audio_encoder_random.pt'
        torch.save(official.state_dict(), weights)
        common = dict(weight_file=str(weights), scaler_file=str(Path(coala) / 'scaler_top_1000.pkl'))
        ours = {mode: create_model('coala', stft_pad_mode=mode, **common).eval() for mode in ('reflect', 'constant')}
        projection = create_model('coala', stft_pad_mode='constant', output_layers=1, **common).eval()
        for i, f in enumerate(args.audio):
            wav = load_audio(f, 22000)[0].astype(np.float32)
            clips.append(torch.from_numpy(wav))
            path = Path(tmp) / f'clip{i}.wav'
            sf.write(path, wav, 22000, subtype='FLOAT')
            x, n = torch.from_numpy(wav)[None], torch.tensor([len(wav)])
            # Front end: the release's log-mel (padding noise included) against ours, both edge paddings.
            for mode, model in ours.items():
                np.random.seed(0)
                try:
                    padded = release_pad(wav, 22000)
                except ValueError:  # longer than 10 s: the release uses the clip as it is
                    padded = wav
                mel = librosa.feature.melspectrogram(y=padded, sr=22000, hop_length=512, n_fft=1024, n_mels=96,
                                                     power=1., pad_mode=mode)
                diff = (model.log_mel(model.padded(x[0])) - torch.from_numpy(np.log(mel + np.finfo(np.float32).eps)))
                diff = diff.abs()
                worst[f'log-mel {mode} abs'] = max(worst[f'log-mel {mode} abs'], float(diff.max()))
                worst['same where mel > 1e-4'] = max(worst['same where mel > 1e-4'],
                                                     float(diff[torch.from_numpy(mel > 1e-4)].max()))
            np.random.seed(0)
            ref_z, ref_zd = encode.extract_audio_embedding_chunks(official, str(path))
            got = ours['constant'](x, n).embeddings[0]
            assert got.shape == ref_z.shape, (got.shape, ref_z.shape)
            worst['conv rel'] = max(worst['conv rel'], relative(got, ref_z))
            worst['projection rel'] = max(worst['projection rel'], relative(projection(x, n).embeddings[0], ref_zd))
            print(f'{Path(f).name}: {len(wav) / 22000:.2f} s, {ref_z.shape[0]} chunks x {ref_z.shape[1]}')
        lengths = torch.tensor([len(c) for c in clips])
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
        batched = ours['reflect'].embed(batch, lengths)
        single = torch.cat([ours['reflect'].embed(c[None], lengths[i:i + 1]) for i, c in enumerate(clips)])
    print(f'{len(clips)} clips: ' + ', '.join(f'{k} {v:.1e}' for k, v in worst.items())
          + f', padded batch vs alone {relative(batched, single):.1e}')


if __name__ == '__main__':
    main()
