"""Dasheng: official checkpoint container ({'model', 'config'}) loaded strictly, 40 ms frames, 252-column windows
of long audio with the last window shorter (masked here), padding invariance on real clips, and the entry points.
The front end, init BN and blocks are CED's (tests/test_ced.py covers the mel filters). Most tests use a narrow
encoder (64-d, 2 blocks) through Params overrides; one loads and runs a real-size dasheng_base."""

import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared, pad_clips
from helpers.tiny_models import AUDIO_VIT_SMALL as SMALL, write_audio_vit

CONFIG = ROOT / 'config' / 'dasheng.yaml'


@pytest.fixture(scope='module')
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('dasheng') / 'dasheng_small.pt'
    write_audio_vit(path, family='dasheng', **SMALL)
    return path


@pytest.fixture(scope='module')
def small_model(small_ckpt):
    return create_model('dasheng', weight_file=str(small_ckpt), **SMALL).eval()


@needs_shared
def test_real_size_checkpoint_loads_strictly_and_embeds_a_real_clip(tmp_path):
    path = tmp_path / 'dasheng_base.pt'
    write_audio_vit(path, family='dasheng')
    model = create_model('dasheng', weight_file=str(path)).eval()  # dasheng_base sizes are the defaults
    wav = torch.from_numpy(load_audio(SHARED / 'data' / 'RAVDESS/Actor_01/03-01-01-01-01-01-01.flac', 16000)[0])
    with torch.inference_mode():
        frames = model(wav[None], torch.tensor([len(wav)]))
    assert frames.embeddings.shape == (1, (len(wav) // 160 + 1) // 4, 768) and bool(frames.mask.all())
    assert bool(torch.isfinite(frames.embeddings).all()) and float(frames.embeddings.std()) > 0.1


def test_long_audio_runs_in_252_column_windows(small_model):
    """Each window runs on its own: the frames of a 1008 + 100 frame input are the first 1008 frames' and the last
    100 frames' (25 columns) run alone, and nothing else."""
    torch.manual_seed(1)
    feats = torch.randn(1, 64, 1108) * 20 - 40
    with torch.inference_mode():
        long = small_model.encode(feats, torch.tensor([1108]))
        head = small_model.encode(feats[..., :1008], torch.tensor([1008]))
        tail = small_model.encode(feats[..., 1008:], torch.tensor([100]))
    assert long.embeddings.shape[1] == 252 + 25 and bool(long.mask.all())
    torch.testing.assert_close(long.embeddings[0], torch.cat([head.embeddings[0], tail.embeddings[0]]),
                               atol=1e-5, rtol=1e-5)


@needs_shared
def test_batch_equals_single_on_real_clips(small_model):
    files = [SHARED / 'data' / p for p in ('piano/A1v10.flac', 'yesno/0_0_0_0_1_1_1_1.flac',
                                           'RAVDESS/Actor_01/03-01-01-01-01-02-01.flac')]
    waves = [torch.from_numpy(load_audio(f, 16000)[0]) for f in files] + [torch.randn(400) * 0.1]  # < 1 patch
    wav, lengths = pad_clips(waves)
    with torch.inference_mode():
        frames = small_model(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            single = small_model(wav[i:i + 1, :n], lengths[i:i + 1])
            assert int(frames.mask[i].sum()) == single.embeddings.shape[1] == max(1, (n // 160 + 1) // 4)
            torch.testing.assert_close(frames.embeddings[i][frames.mask[i]], single.embeddings[0],
                                       atol=1e-4, rtol=1e-4)
    batch_equals_single(small_model, [16000 * 21, 5000, 16000 * 10])


@pytest.mark.slow
def test_lineareval_on_demo(tmp_path, work, small_ckpt):
    demo_score(tmp_path, work, CONFIG, f'weight_file={small_ckpt},embed_dim=64,depth=2,num_heads=4,feature_d=64',
               'dasheng')


def test_wrong_checkpoints_fail_with_one_clear_message(tmp_path, small_ckpt):
    with pytest.raises(EvarError, match=r"blocks.0.attn.proj.weight: file \(64, 64\) vs model \(32, 32\)"):
        create_model('dasheng', weight_file=str(small_ckpt), embed_dim=32, depth=2, num_heads=4)
    with pytest.raises(EvarError, match=r"unexpected: \['blocks.1."):
        create_model('dasheng', weight_file=str(small_ckpt), embed_dim=64, depth=1, num_heads=4)
    path = tmp_path / 'ced.pt'
    write_audio_vit(path, family='ced', **SMALL)  # CED's 16x16 patches are not Dasheng's 64x4
    with pytest.raises(EvarError, match='patch_embed.proj.weight: file'):
        create_model('dasheng', weight_file=str(path), **SMALL)
