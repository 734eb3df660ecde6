"""CED (and the audio ViT shared with Dasheng): torchaudio-equal mel filters, official checkpoint container loaded
strictly, 1012-frame windowing of long audio, padding invariance on real clips, and the entry points.

Most tests use a narrow CED (64-d, 2 blocks) through Params overrides; one loads and runs a real-size ced_base.
"""

import re

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import mel_filterbank

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared, pad_clips
from helpers.tiny_models import AUDIO_VIT_SMALL as SMALL, write_audio_vit

CONFIG = ROOT / 'config' / 'ced.yaml'


@pytest.fixture(scope='module')
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('ced') / 'ced_small.pt'
    write_audio_vit(path, **SMALL)
    return path


@pytest.fixture(scope='module')
def small_model(small_ckpt):
    return create_model('ced', weight_file=str(small_ckpt), **SMALL).eval()


def test_mel_filters_equal_torchaudio_htk_values():
    fb = mel_filterbank(16000, 512, 64, 0.0, 8000.0, dtype=torch.float32)
    # torchaudio.functional.melscale_fbanks(257, 0, 8000, 64, 16000, norm=None, mel_scale='htk') (torchaudio 2.9.1).
    # Every step in float32 (as torchaudio): a weight carries a few ulps of its band edges' error over the band's
    # width, up to 5.2e-6 (float32 against float64 here), and another CPU's float32 pow may round otherwise: 5e-5.
    # The sum, accumulated in float64, gathers ~500 such errors of either sign (measured 2.9e-5): 2e-3.
    assert fb.shape == (257, 64) and float(fb.double().sum()) == pytest.approx(250.19512097004917, abs=2e-3)
    assert float(fb[87, 40]) == pytest.approx(0.9058394432067871, abs=5e-5)
    assert float(fb[2, 1]) == pytest.approx(0.7972270846366882, abs=5e-5)
    assert float(fb[250, 63]) == pytest.approx(0.5667406916618347, abs=5e-5)
    assert (fb[:, 40] > 0).nonzero().flatten().tolist() == list(range(84, 92)) and int(fb[:, -1].argmax()) == 245


@needs_shared
def test_real_size_checkpoint_loads_strictly_and_embeds_a_real_clip(tmp_path):
    path = tmp_path / 'audiotransformer_base.pt'
    write_audio_vit(path)
    model = create_model('ced', weight_file=str(path)).eval()  # ced_base sizes are the defaults
    wav = torch.from_numpy(load_audio(SHARED / 'data' / 'ESC-50/audio/2-103426-A-3.flac', 16000)[0])[None]
    with torch.inference_mode():
        frames = model(wav, torch.tensor([wav.shape[1]]))
    assert frames.embeddings.shape == (1, 31, 768) and bool(frames.mask.all())  # 501 frames: 31 columns
    assert bool(torch.isfinite(frames.embeddings).all()) and float(frames.embeddings.std()) > 0.1


def test_long_audio_runs_in_official_windows(small_model):
    """A clip of one window runs unpadded; a longer one in 1012-frame windows, the last zero-padded and attended
    to whole: the first window's frames equal the clip cut to 1012 frames, the last window's equal a direct run."""
    model, body = small_model, small_model.body
    torch.manual_seed(1)
    feats = torch.randn(1, 64, 1012 + 100) * 20 - 40
    with torch.inference_mode():
        long = model.encode(feats, torch.tensor([1112]))
        one = model.encode(feats[..., :1012], torch.tensor([1012]))
        tail = torch.nn.functional.pad(body.normalize(feats[..., 1012:]), (0, 912))
        direct = body(tail, None)[-1].reshape(1, 4, 63, -1).mean(1)
    assert long.mask.sum().item() == 63 + 7 and one.mask.sum().item() == 63  # ceil(100 / 16) columns of audio
    torch.testing.assert_close(long.embeddings[0, :63], one.embeddings[0, :63], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(long.embeddings[0, 63:70], direct[0, :7], atol=1e-5, rtol=1e-5)
    assert long.embeddings.shape[1] == 70  # columns past the last audio are not returned
    with torch.inference_mode():  # a clip shorter than one patch (0.1 s = 11 frames) still gives one frame
        short = model(torch.randn(1, 1600) * 0.1, torch.tensor([1600]))
    assert short.mask.sum().item() == 1


@needs_shared
def test_batch_equals_single_on_real_clips(small_model):
    files = [SHARED / 'data' / p for p in ('piano/A0v10.flac', 'ESC-50/audio/2-103426-A-3.flac',
                                           'RAVDESS/Actor_01/03-01-01-01-01-01-01.flac')]
    waves = [torch.from_numpy(load_audio(f, 16000)[0]) for f in files] + [torch.zeros(2000)]
    waves[-1][:1000] = waves[1][:1000]  # 0.125 s, half digital silence: its own top-dB floor must apply
    wav, lengths = pad_clips(waves)
    with torch.inference_mode():
        feats, frames = small_model.features(wav, lengths)
        batch = small_model.embed(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, _ = small_model.features(wav[i:i + 1, :n], lengths[i:i + 1])
            torch.testing.assert_close(feats[i:i + 1, :, :alone.shape[-1]], alone)
            single = small_model.embed(wav[i:i + 1, :n], lengths[i:i + 1])
            np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), rtol=1e-4, atol=1e-4)
    assert float(feats[3, :, :frames[3]].min()) == pytest.approx(float(feats[3, :, :frames[3]].max()) - 120, abs=1e-3)
    batch_equals_single(small_model, [16000 * 23, 3000, 16000 * 11])


@pytest.mark.slow
def test_lineareval_on_demo(tmp_path, work, small_ckpt):
    demo_score(tmp_path, work, CONFIG, f'weight_file={small_ckpt},embed_dim=64,depth=2,num_heads=4,feature_d=64',
               'ced')


def test_wrong_checkpoints_fail_with_one_clear_message(tmp_path):
    path = tmp_path / 'x.pt'
    state = write_audio_vit(path, **SMALL)
    state.pop('blocks.1.mlp.fc2.bias')
    state['blocks.0.attn.qkv.weight'] = state['blocks.0.attn.qkv.weight'][:64]
    torch.save({'model': state}, path)
    with pytest.raises(EvarError, match=re.escape("Missing: ['blocks.1.mlp.fc2.bias']")) as e:
        create_model('ced', weight_file=str(path), **SMALL)
    assert 'blocks.0.attn.qkv.weight: file (64, 64) vs model (192, 64)' in str(e.value)
    write_audio_vit(path, n_mels=32, **SMALL)  # a 32-mel front end: caught by its saved filters
    with pytest.raises(EvarError, match='front end'):
        create_model('ced', weight_file=str(path), **SMALL)


def test_output_layers_pick_blocks(small_ckpt):
    wav, lengths = torch.randn(2, 16000 * 12) * 0.1, torch.tensor([16000 * 12, 16000 * 4])
    out = {}
    for layers in (-1, 0, 'all'):
        model = create_model('ced', weight_file=str(small_ckpt), output_layers=layers, **SMALL).eval()
        with torch.inference_mode():
            out[layers] = model(wav, lengths).embeddings
    assert out['all'].shape[-1] == 128 and not torch.equal(out[0], out[-1])
    torch.testing.assert_close(out['all'], torch.cat([out[0], out[-1]], dim=-1))
