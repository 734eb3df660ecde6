"""ATST-Clip and ATST-Frame written here (evar/models/atst.py): official checkpoint containers, strict loading,
chunking, padding invariance on real clips, the model check and a lineareval run. Random weights (the real ones
cannot be downloaded here); parity with the official code is benchmarks/parity_atst.py."""

import argparse

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.check import check_model
from evar.errors import EvarError
from evar.models import create_model
from evar.models.atst import ATSTClipParams, ATSTEncoder, ATSTFrameParams

from conftest import ROOT, SHARED, demo_score, missing_weights_error, needs_shared

SMALL = dict(embed_dim=32, depth=2, num_heads=2)
SMALL_OPTIONS = '+embed_dim=32,+depth=2,+num_heads=2'


class HyperParameters(dict):
    """A stand-in for lightning's AttributeDict: a class torch's weights-only loader refuses."""


def clip_checkpoint(path, noise=0.01, **small):
    """A DINO-style file as the official ATST-Clip loader reads it: {'teacher': ...} with prefixes and a head."""
    torch.manual_seed(0)
    state = ATSTEncoder(ATSTClipParams(**small), use_cls=True).state_dict()
    teacher = {f'module.backbone.{k}': v + noise * torch.randn_like(v) for k, v in state.items()}
    teacher['module.head.mlp.0.weight'] = torch.zeros(3, 3)
    torch.save({'teacher': teacher, 'student': {}, 'args': argparse.Namespace(arch='base', anchor_len=[6.0])}, path)
    return path


def frame_checkpoint(path, **small):
    """A lightning file as the official ATST-Frame loader reads it: the teacher encoder under 'model.teacher.encoder.'."""
    torch.manual_seed(1)
    state = ATSTEncoder(ATSTFrameParams(**small), use_cls=False).state_dict()
    sd = {f'model.teacher.encoder.{k}': v + 0.01 * torch.randn_like(v) for k, v in state.items()}
    sd['model.student.encoder.norm_frame.weight'] = torch.ones(3)
    torch.save({'state_dict': sd, 'hyper_parameters': HyperParameters(arch='base'),
                'pytorch-lightning_version': '1.6.0'}, path)
    return path


def real_clips(names, seconds=None):
    waves = [torch.from_numpy(load_audio(SHARED / 'data' / n, 16000, max_sec=seconds)[0]) for n in names]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    return batch, lengths


@pytest.mark.parametrize('name,make,n_blocks', [('atst_clip', clip_checkpoint, 1), ('atst_frame', frame_checkpoint, 2)])
def test_check_passes_with_official_containers(tmp_path, name, make, n_blocks):
    path = make(tmp_path / 'w.ckpt', **SMALL)
    report = check_model(ROOT / 'config' / f'{name}.yaml', options=f'weight_file={path},{SMALL_OPTIONS},'
                         f'n_blocks={n_blocks}', device='cpu', long_sec=40)
    print(report.table())
    assert report.passed, report.table()
    assert report['frame_rate'].passed and not report['frame_rate'].skipped


@needs_shared
def test_real_clips_batch_equals_single_and_chunking(tmp_path):
    clip = create_model('atst_clip', weight_file=str(clip_checkpoint(tmp_path / 'c.ckpt', **SMALL)), **SMALL).eval()
    frame = create_model('atst_frame', weight_file=str(frame_checkpoint(tmp_path / 'f.ckpt', **SMALL)), n_blocks=2,
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


def test_real_size_checkpoint_loads_and_embeds(tmp_path):
    path = clip_checkpoint(tmp_path / 'base.ckpt', noise=0.0)
    model = create_model('atst_clip', weight_file=str(path)).eval()
    assert model.encoder.pos_embed.shape == (1, 251, 768) and model.encoder.patch_embed.patch_embed.in_features == 256
    with torch.inference_mode():
        emb = model.embed(torch.randn(1, 16000 * 3) * 0.1, torch.tensor([16000 * 3]))
    assert emb.shape == (1, 1536) and torch.isfinite(emb).all()


def test_wrong_or_missing_keys_fail_with_the_strict_message(tmp_path):
    path = frame_checkpoint(tmp_path / 'f.ckpt', **SMALL)
    ckpt = torch.load(path, weights_only=False)
    del ckpt['state_dict']['model.teacher.encoder.blocks.1.mlp.fc2.bias']
    ckpt['state_dict']['model.teacher.encoder.cls_token'] = torch.zeros(1, 1, 32)  # a clip key in a frame model
    torch.save(ckpt, tmp_path / 'bad.ckpt')
    with pytest.raises(EvarError, match=r'Missing: \[.blocks.1.mlp.fc2.bias.\]; unexpected: \[.cls_token.\]'):
        create_model('atst_frame', weight_file=str(tmp_path / 'bad.ckpt'), n_blocks=2, **SMALL)
    with pytest.raises(EvarError, match='shape mismatches'):  # the small file into the base-size model
        create_model('atst_frame', weight_file=str(path))


def test_shipped_configs_without_weights_say_where_to_get_them(tmp_path):
    error = missing_weights_error(tmp_path, ROOT / 'config' / 'atst_clip.yaml')
    assert 'external/atst_base.ckpt' in error and 'checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/base.ckpt' in error
    with pytest.raises(EvarError, match=r'external/atstframe_base.ckpt does not exist.*drive.google.com'):
        check_model(ROOT / 'config' / 'atst_frame.yaml', device='cpu')


def test_lineareval_demo_writes_a_score(tmp_path, work):
    path = clip_checkpoint(tmp_path / 'c.ckpt', **SMALL)
    demo_score(tmp_path, work, ROOT / 'config' / 'atst_clip.yaml', f'weight_file={path},{SMALL_OPTIONS}', 'atst_clip')
