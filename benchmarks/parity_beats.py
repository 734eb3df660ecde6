"""Side-by-side parity check: evar's BEATs against the official implementation on the same real clips.

Builds the official `BEATs` (microsoft/unilm beats/BEATs.py + backbone.py + modules.py; run in a venv with
torchaudio, which its front end uses) from a BEATs_iter3-sized cfg with seeded random weights (every tensor
perturbed, so a swapped name would show), saves it as the official container {'cfg': ..., 'model': ...}, loads
that file strictly into evar's `beats`, and compares on real 16 kHz clips:

  fbank      our plain-torch Kaldi fbank against torchaudio.compliance.kaldi.fbank (as BEATs.preprocess calls it)
  tokens     the official `extract_features` output (final layer, every token) against ours, per clip alone
  embedding  the mean over all tokens (EVAR's embedding) against our mean-pooled frames
  chunks     a clip longer than `chunk_sec` against the official model run on the same pieces of the wave
  batch      a padded batch: ours against each clip alone; the official with its padding mask against each clip
             alone (its mask, derived from samples, keeps the last patch row even when it is partly padding, so it
             is not exact for padded clips), and again with a mask that drops that row, as ours does

    /work/evar_ref/venv/bin/python benchmarks/parity_beats.py --official /work/ref/beats/beats \\
        --audio_glob '../shared/data/ESC-50/audio/*.flac'

Seen on 2026-11-22 (torch 2.9.1, torchaudio 2.9.1, CPU; ESC-50 clips cut to 0.5, 1.0, 3.3, 5.0 s and joined to
12 s, plus a 41 s joined clip for chunking at chunk_sec 30):
  fbank max |diff| 0.0 (bit-identical to torchaudio; values up to |27.4|), normalised 0.0
  tokens max relative diff 9.9e-07, embeddings 1.0e-06, chunked 41 s clip 8.6e-07
  batch (0.5, 3.3, 5.0, 6.25, 8.02 s): ours vs alone <= 4.4e-07; official vs alone with its sample mask 5.8e-02 to
  1.0e-01 for every padded clip (1.2e-07 for the unpadded longest), with a row mask <= 5.1e-07.
"""

import argparse
import glob
import sys
import tempfile
from pathlib import Path

from parity_common import relative

# A BEATs_iter3-sized architecture (12 x 768-d post-LN deep-norm layers, 16x16 patches, 512-d patch embedding, gated
# relative position bias). The real file's cfg could not be read here (no weights offline); the model reads it.
ITER3_CFG = dict(input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
                 encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn='gelu', layer_norm_first=False,
                 deep_norm=True, conv_pos=128, conv_pos_groups=16, relative_position_embedding=True, num_buckets=320,
                 max_distance=800, gru_rel_pos=True, finetuned_model=False, dropout=0.0, attention_dropout=0.0,
                 activation_dropout=0.0, encoder_layerdrop=0.0, dropout_input=0.0)


def official_model(folder: str):
    import torch

    sys.path.insert(0, folder)
    from BEATs import BEATs, BEATsConfig

    torch.manual_seed(0)
    model = BEATs(BEATsConfig(ITER3_CFG))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * p.std().nan_to_num(0.02).clamp(min=0.02) * torch.randn_like(p))
    return model.eval()


def clips(pattern: str):
    import numpy as np
    import soundfile as sf
    import torch

    files = sorted(glob.glob(pattern))
    waves = [sf.read(f, dtype='float32')[0] for f in files[:10]]
    sr = sf.info(files[0]).samplerate
    assert sr == 16000, f'{files[0]} is {sr} Hz; BEATs takes 16 kHz'
    joined = np.concatenate(waves)
    short = [(0.5, waves[0]), (1.0, waves[1]), (3.3, waves[2]), (5.0, waves[3]), (12.0, joined)]
    return ([(s, torch.from_numpy(np.ascontiguousarray(w[:int(s * sr)]))) for s, w in short],
            (41.0, torch.from_numpy(np.ascontiguousarray(joined[:41 * sr]))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', required=True, help='the exported beats/ folder of microsoft/unilm')
    parser.add_argument('--audio_glob', required=True, help='16 kHz clips')
    args = parser.parse_args()

    import torch
    import torchaudio.compliance.kaldi as ta_kaldi

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from evar.models import create_model
    from evar.models.beats import WAVE_SCALE

    official = official_model(args.official)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'BEATs_random.pt'
        torch.save({'cfg': ITER3_CFG, 'model': official.state_dict()}, path)
        ours = create_model('beats', weight_file=str(path), chunk_sec=30.0).eval()  # strict load
    print('official checkpoint loaded strictly into evar beats')

    def official_tokens(wave):  # [N] -> [rows, freq tokens, D]
        x, _ = official.extract_features(wave[None], padding_mask=torch.zeros(1, wave.shape[0], dtype=torch.bool))
        return x[0].view(-1, 128 // 16, x.shape[-1])

    short, (long_sec, long_wave) = clips(args.audio_glob)
    worst = dict(fbank=0.0, fbank_norm=0.0, tokens=0.0, emb=0.0)
    with torch.inference_mode():
        for seconds, wave in short:
            n = torch.tensor([wave.shape[0]])
            ref_fbank = ta_kaldi.fbank(wave[None] * WAVE_SCALE, num_mel_bins=128, sample_frequency=16000,
                                       frame_length=25, frame_shift=10)
            our_fbank = ours.fbank(wave[None] * WAVE_SCALE, n)[0][0].T
            fb = float((ref_fbank - our_fbank).abs().max())
            feats, frames = ours.features(wave[None], n)
            fbn = float((official.preprocess(wave[None])[0] - feats[0, :, :int(frames)].T).abs().max())
            ref = official_tokens(wave)
            out = ours(wave[None], n)
            tok = relative(out.embeddings[0], ref.mean(1))
            emb = relative(ours.embed(wave[None], n)[0], ref.reshape(-1, ref.shape[-1]).mean(0))
            for k, v in zip(worst, (fb, fbn, tok, emb)):
                worst[k] = max(worst[k], v)
            print(f'{seconds:5.1f} s: fbank |diff| {fb:.1e} (max |value| {float(ref_fbank.abs().max()):.1f}), '
                  f'normalised {fbn:.1e}; relative diff of tokens {tok:.1e}, embedding {emb:.1e}')

        # Chunking: ours cuts rows into 30 s pieces (187 rows = 2992 frames); the official runs each piece's wave.
        rows_per_piece = ours.chunk_rows
        piece_samples = rows_per_piece * 16 * 160
        pieces = [long_wave[s:s + piece_samples + 400 - 160] for s in range(0, long_wave.shape[0], piece_samples)]
        pieces = [p for p in pieces if p.shape[0] >= 400 + 15 * 160]
        ref = torch.cat([official_tokens(p) for p in pieces]).mean(1)
        out = ours(long_wave[None], torch.tensor([long_wave.shape[0]]))
        chunked = relative(out.embeddings[0], ref)
        print(f'{long_sec:.0f} s in {len(pieces)} pieces of {rows_per_piece} rows: relative diff of frames '
              f'{chunked:.1e}')

        # Padded batch: ours and the official against each clip alone. The official mask from samples keeps a patch
        # row that is partly padding (frame j counts as real when any of samples [160 j, 160 j + 160) is); run a
        # second time with the samples past each clip's whole rows marked as padding, which drops that row.
        lengths = [int(0.5 * 16000), 52800, 80000, 100000, 16 * 160 * 50 + 240]
        wav = torch.zeros(len(lengths), max(lengths))
        source = torch.cat([w for _, w in short])
        for i, n in enumerate(lengths):
            wav[i, :n] = source[i * 7000:i * 7000 + n]
        lens = torch.tensor(lengths)
        rows = ((lens - 400) // 160 + 1) // 16  # whole patch rows per clip
        ours_batch = ours.embed(wav, lens)
        samples = torch.arange(wav.shape[1])[None]
        official_runs = {}
        for name, pad in (('sample mask', samples >= lens[:, None]), ('row mask', samples >= rows[:, None] * 2560)):
            x, x_pad = official.extract_features(wav.clone(), padding_mask=pad)
            official_runs[name] = [x[i][~x_pad[i]].mean(0) for i in range(len(lengths))]
        worst_ours = 0.0
        for i, n in enumerate(lengths):
            alone = ours.embed(wav[i:i + 1, :n], lens[i:i + 1])[0]
            ours_err = relative(ours_batch[i], alone)
            worst_ours = max(worst_ours, ours_err)
            ref_alone = official_tokens(wav[i, :n]).reshape(-1, alone.shape[-1]).mean(0)
            print(f'batch, clip of {n / 16000:.2f} s: ours vs alone {ours_err:.1e}; official vs alone: sample mask '
                  f'{relative(official_runs["sample mask"][i], ref_alone):.1e}, row mask '
                  f'{relative(official_runs["row mask"][i], ref_alone):.1e}')

    print(f'max fbank |diff| {worst["fbank"]:.1e}, normalised {worst["fbank_norm"]:.1e}; max relative diff: tokens '
          f'{worst["tokens"]:.1e}, embeddings {worst["emb"]:.1e}, chunked {chunked:.1e}, ours batch vs alone '
          f'{worst_ours:.1e}')


if __name__ == '__main__':
    main()
