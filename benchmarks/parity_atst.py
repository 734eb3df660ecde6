"""Side-by-side parity check: evar's ATST-Clip and ATST-Frame against the official audiossl code on real clips.

Builds the official encoders with seeded random init (`AST_base` of audiossl/models/atst, `FrameAST_base` of
audiossl/methods/atstframe), writes their tensors in the official checkpoint containers (a DINO-style {'teacher':
...} file for ATST-Clip, a lightning file with 'model.teacher.encoder.' keys for ATST-Frame), loads those into evar's
models (strictly), and compares on the same clips:
  - front end: the official FreezingTransform (12 s central crop) and atstframe's MelSpectrogram -> dB -> MinMax;
  - ATST-Clip: `get_intermediate_layers_chunks` (chunk 601 frames, n_blocks 1 and 2) on the official padded batch
    with per-clip lengths, against evar's pooled embedding of a padded batch; again without the crop;
  - ATST-Frame: `embedding.get_timestamp_embedding` and `get_scene_embedding` clip by clip (the official functions
    take one length for the whole batch), against evar's frames and, for the scene embedding, the mean of evar's
    per-chunk frame means (equal to evar's mean pooling for clips up to 10 s).
Needs torchaudio, torchvision and einops (the reference venv has them); the official `random_mask` imports fairseq
and `embedding.py` imports the lightning module, neither used at inference, so both are stubbed here:

    /work/evar_ref/venv/bin/python benchmarks/parity_atst.py --audiossl /work/ref/atst/audiossl

Seen on this machine (torch 2.9.1, torchaudio 2.9.1, CPU; audiossl ec3a14d; clips of 5.0, 6.35, 13.81, 15.24 and
25.83 s; about 5 minutes on 2 busy cores):
  front end (dB log-mel mapped to [-1, 1]) max abs diff: clip 1.3e-05, frame 1.3e-05
  ATST-Clip crop 12 s, n_blocks 1: max rel diff 7.6e-07; n_blocks 2: 7.4e-07; no crop, n_blocks 1: 7.4e-07
  ATST-Frame timestamp frames max rel diff 2.2e-06 (frame counts equal); scene 5.3e-07
"""

import argparse
import sys
import tempfile
import types
from pathlib import Path

from parity_common import padded, relative

CLIPS = ('ESC-50/audio/2-103426-A-3.flac', 'yesno/0_0_0_0_1_1_1_1.flac', 'piano/A4v10.flac', 'piano/A3v10.flac',
         'piano/A0v10.flac')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--audiossl', required=True, help='checkout of github.com/Audio-WestlakeU/audiossl')
    parser.add_argument('--data', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    args = parser.parse_args()

    import soundfile as sf
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, args.audiossl)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # Stubs for modules the inference path imports but never calls.
    fairseq_utils = types.ModuleType('fairseq.data.data_utils')
    fairseq_utils.compute_mask_indices = None
    sys.modules.update({'fairseq': types.ModuleType('fairseq'), 'fairseq.data': types.ModuleType('fairseq.data'),
                        'fairseq.data.data_utils': fairseq_utils})
    lightning_model = types.ModuleType('audiossl.methods.atstframe.model')
    lightning_model.FrameATSTLightningModule = None
    sys.modules['audiossl.methods.atstframe.model'] = lightning_model

    from audiossl.methods.atst.downstream.transform import FreezingTransform
    from audiossl.methods.atstframe import embedding as frame_embedding
    from audiossl.methods.atstframe.audio_transformer import FrameAST_base
    from audiossl.models.atst.audio_transformer import AST_base
    from torchvision import transforms

    from evar.models.atst import ATSTClip, ATSTClipParams, ATSTFrame, ATSTFrameParams

    torch.manual_seed(0)
    official_clip = AST_base().eval()
    official_frame = FrameAST_base().eval()
    tmp = Path(tempfile.mkdtemp())
    clip_file, frame_file = tmp / 'atst_clip.ckpt', tmp / 'atst_frame.ckpt'
    teacher = {f'module.backbone.{k}': v for k, v in official_clip.state_dict().items()}
    teacher['module.head.mlp.0.weight'] = torch.zeros(4, 768)  # a projection head, which the official loader skips
    torch.save({'teacher': teacher, 'student': {}, 'epoch': 1}, clip_file)
    torch.save({'state_dict': {f'model.teacher.encoder.{k}': v for k, v in official_frame.state_dict().items()},
                'pytorch-lightning_version': '1.6.0'}, frame_file)

    waves = []
    for name in CLIPS:
        x, sr = sf.read(str(Path(args.data) / name), dtype='float32')
        assert sr == 16000, name
        waves.append(torch.from_numpy(x))
    batch, lengths = padded(waves)
    print('clips (s):', [round(len(w) / 16000, 2) for w in waves])

    with torch.inference_mode():
        # Front ends.
        freezing = FreezingTransform(max_len=12)
        frame_tf = transforms.Compose([frame_embedding.melspec_t, frame_embedding.to_db, frame_embedding.normalize])
        ours_clip = ATSTClip(ATSTClipParams(weight_file=str(clip_file))).eval()
        ours_frame = ATSTFrame(ATSTFrameParams(weight_file=str(frame_file))).eval()
        clip_feats, clip_frames = ours_clip.features(batch, lengths)
        frame_feats, frame_frames = ours_frame.features(batch, lengths)
        worst_fc = worst_ff = 0.0
        ref_mels, ref_lens = [], []
        for i, w in enumerate(waves):
            mel, n = freezing(w[None])
            ref_mels.append(mel)
            ref_lens.append(n)
            assert n == int(clip_frames[i]), (n, int(clip_frames[i]))
            worst_fc = max(worst_fc, float((mel[0] - clip_feats[i, :, :n]).abs().max()))
            mel = frame_tf(w[None, None])[0, 0]
            assert mel.shape[-1] == int(frame_frames[i])
            worst_ff = max(worst_ff, float((mel - frame_feats[i, :, :mel.shape[-1]]).abs().max()))
        print(f'front end (dB log-mel mapped to [-1, 1]) max abs diff: clip {worst_fc:.1e}, frame {worst_ff:.1e}')

        # ATST-Clip: the official padded batch with per-clip lengths, as train_freeze's collate_fn builds it.
        def official_clip_batch(mels, lens, n_blocks):
            longest = max(lens)
            x = torch.stack([F.pad(m, (0, longest - m.shape[-1])) for m in mels])
            return official_clip.get_intermediate_layers_chunks(x, torch.tensor(lens), n_blocks, 601, avgpool=True)

        for n_blocks in (1, 2):
            ours = ATSTClip(ATSTClipParams(weight_file=str(clip_file), n_blocks=n_blocks)).eval()
            ref = official_clip_batch(ref_mels, ref_lens, n_blocks)
            emb = ours.embed(batch, lengths)
            print(f'ATST-Clip crop 12 s, n_blocks {n_blocks}: max rel diff '
                  f'{max(relative(emb[i], ref[i]) for i in range(len(waves))):.1e}')
        full = [frame_tf(w[None, None])[0] for w in waves]  # the same front end without the crop
        ref = official_clip_batch(full, [m.shape[-1] for m in full], 1)
        ours = ATSTClip(ATSTClipParams(weight_file=str(clip_file), crop_sec=None)).eval()
        emb = ours.embed(batch, lengths)
        print(f'ATST-Clip no crop, n_blocks 1: max rel diff {max(relative(emb[i], ref[i]) for i in range(len(waves))):.1e}')

        # ATST-Frame, clip by clip through the official embedding functions (12 blocks, as EVAR).
        official_frame.transform = frame_tf
        frames = ours_frame(batch, lengths)
        worst_t = worst_s = 0.0
        for i, w in enumerate(waves):
            ref_t, _ = frame_embedding.get_timestamp_embedding(w[None, None], official_frame)
            n = int(frames.mask[i].sum())
            assert ref_t.shape[1] == n, (ref_t.shape, n)
            worst_t = max(worst_t, relative(frames.embeddings[i, :n], ref_t[0]))
            ref_s = frame_embedding.get_scene_embedding(w[None, None], official_frame)
            chunk_means = [c.mean(0) for c in frames.embeddings[i, :n].split(250) if len(c)]
            worst_s = max(worst_s, relative(torch.stack(chunk_means).mean(0), ref_s[0]))
        print(f'ATST-Frame timestamp frames max rel diff {worst_t:.1e} (frame counts equal); scene {worst_s:.1e}')


if __name__ == '__main__':
    main()
