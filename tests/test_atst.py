"""ATST-Clip and ATST-Frame written here (evar/models/atst.py): official checkpoint containers, strict loading,
chunking, padding invariance on real clips and a lineareval run (evar.check's checks: tests/test_contract.py).
Random weights (the real ones cannot be downloaded here); parity with the official code is
benchmarks/parity_atst.py."""

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, demo_score, needs_shared
from helpers.tiny_models import ATST_SMALL as SMALL, write_atst_clip, write_atst_frame

SMALL_OPTIONS = '+embed_dim=32,+depth=2,+num_heads=2'


def real_clips(names, seconds=None):
    waves = [torch.from_numpy(load_audio(SHARED / 'data' / n, 16000, max_sec=seconds)[0]) for n in names]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    return batch, lengths


@needs_shared
def test_real_clips_batch_equals_single_and_chunking(tmp_path):
    clip = create_model('atst_clip', weight_file=str(write_atst_clip(tmp_path / 'c.ckpt', **SMALL)), **SMALL).eval()
    frame = create_model('atst_frame', weight_file=str(write_atst_frame(tmp_path / 'f.ckpt', **SMALL)), n_blocks=2,
                         **SMALL).eval()
    names = ['piano/A2v10.flac', 'ESC-50/audio/2-103426-A-3.flac', 'yesno/0_0_0_0_1_1_1_1.flac', 'fsdd/recordings/'
             + sorted(p.name for p in (SHARED / 'data' / 'fsdd' / 'recordings').glob('*'))[0]]
    wav, lengths = real_clips(names)
    assert lengths[0] > 16 * 16000  # longer than the 12 s crop and two ATST-Frame chunks
    with torch.inference_mode():
        for model in (clip, frame):
            batch = model.embed(wav, lengths)
            for i, n in enumerate(lengths.tolist()):
                single = model.embed(wav[i:i + 1, :n], lengths[i:i + 1])
                np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), rtol=1e-4, atol=1e-5)
        # ATST-Clip: 6 s chunks; a later chunk counts only with more than 300 frames left (official selection).
        frames = clip(wav, lengths)
        assert frames.embeddings.shape[-1] == 2 * 32
        assert frames.mask.sum(1).tolist() == [2, 1, 1, 1]  # 16 s cut to 12 s -> 2; 5 s -> 1; 6.35 s -> 1 (34 left)
        # The 12 s central crop: a long clip embeds as its central 12 s.
        n = int(lengths[0])
        start = (n - 12 * 16000) // 2
        centre = wav[:1, start:start + 12 * 16000]
        np.testing.assert_allclose(clip.embed(wav[:1, :n], lengths[:1]).numpy(),
                                   clip.embed(centre, torch.tensor([12 * 16000])).numpy(), rtol=1e-5, atol=1e-6)
        # ATST-Frame: one 40 ms frame per 4 mel frames in each 1001-frame chunk.
        frames = frame(wav, lengths)
        mel_frames = 1 + lengths // 160
        expected = [250 * (int(m) // 1001) + (int(m) % 1001) // 4 for m in mel_frames]
        assert frames.mask.sum(1).tolist() == expected and frames.embeddings.shape[-1] == 2 * 32
    whole = create_model('atst_clip', weight_file=str(tmp_path / 'c.ckpt'), crop_sec=None, **SMALL).eval()
    with torch.inference_mode():
        assert int(whole(wav[:1, :n], lengths[:1]).mask.sum()) == 3  # 16 s whole: chunks of 6.01, 6.01, 4.03 s


@pytest.mark.slow
def test_real_size_checkpoint_loads_and_embeds(tmp_path):
    path = write_atst_clip(tmp_path / 'base.ckpt', noise=0.0)
    model = create_model('atst_clip', weight_file=str(path)).eval()
    assert model.encoder.pos_embed.shape == (1, 251, 768) and model.encoder.patch_embed.patch_embed.in_features == 256
    with torch.inference_mode():
        emb = model.embed(torch.randn(1, 16000 * 3) * 0.1, torch.tensor([16000 * 3]))
    assert emb.shape == (1, 1536) and torch.isfinite(emb).all()


def test_wrong_or_missing_keys_fail_with_the_strict_message(tmp_path):
    path = write_atst_frame(tmp_path / 'f.ckpt', **SMALL)
    ckpt = torch.load(path, weights_only=False)
    del ckpt['state_dict']['model.teacher.encoder.blocks.1.mlp.fc2.bias']
    ckpt['state_dict']['model.teacher.encoder.cls_token'] = torch.zeros(1, 1, 32)  # a clip key in a frame model
    torch.save(ckpt, tmp_path / 'bad.ckpt')
    with pytest.raises(EvarError, match=r'Missing: \[.blocks.1.mlp.fc2.bias.\]; unexpected: \[.cls_token.\]'):
        create_model('atst_frame', weight_file=str(tmp_path / 'bad.ckpt'), n_blocks=2, **SMALL)
    with pytest.raises(EvarError, match='shape mismatches'):  # the small file into the base-size model
        create_model('atst_frame', weight_file=str(path))


@pytest.mark.slow
def test_lineareval_demo_writes_a_score(tmp_path, work):
    path = write_atst_clip(tmp_path / 'c.ckpt', **SMALL)
    demo_score(tmp_path, work, ROOT / 'config' / 'atst_clip.yaml', f'weight_file={path},{SMALL_OPTIONS}', 'atst_clip')


def test_atst_frame_scene_chunks_is_the_official_mean_of_chunk_means(tmp_path):
    """scene_chunks (config/atst_frame.yaml, EVAR's AR_ATST_Frame = the official get_scene_embedding): the clip
    embedding is the mean over 10 s chunks of each chunk's patch mean (sum / (patches + 1e-6)), a chunk with frames
    but no whole patch counting as a zero vector; not the mean over all 40 ms frames."""
    path = str(write_atst_frame(tmp_path / 'f.ckpt', **SMALL))
    patches = create_model('atst_frame', weight_file=path, n_blocks=2, **SMALL).eval()
    chunks = create_model('atst_frame', weight_file=path, n_blocks=2, scene_chunks=True, **SMALL).eval()
    # Mel frames 1 + n // 160: 2051 (20.5 s: chunks of 250, 250 and 12 patches) and 2004 (the last chunk has 2 frames,
    # no whole patch), in one padded batch.
    lengths = torch.tensor([328000, 2003 * 160])
    wav = torch.randn(2, 328000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        frames = patches(wav, lengths)
        got = chunks.embed(wav, lengths).double()
        assert chunks(wav, lengths).mask.tolist() == [[True, True, True], [True, True, True]]
    for i, last_patches in enumerate([12, 0]):
        x = frames.embeddings[i].double()
        assert int(frames.mask[i].sum()) == 500 + last_patches
        means = [x[:250].sum(0) / (250 + 1e-6), x[250:500].sum(0) / (250 + 1e-6),
                 x[500:500 + last_patches].sum(0) / (last_patches + 1e-6)]
        expected = torch.stack(means).mean(0)
        # float32 sums over 250 frames of O(1) values: ~1e-6 relative error.
        np.testing.assert_allclose(got[i].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        assert float((expected - x[:500 + last_patches].mean(0)).abs().max()) > 1e-3  # not the frame mean
