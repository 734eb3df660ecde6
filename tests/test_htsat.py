"""HTS-AT: official checkpoint names loaded strictly onto transformers' CLAP audio tower, the plain-torch front end,
10 s chunking with EVAR's tiling of short chunks, padding invariance, and the entry points.

Most tests use a reduced HTS-AT (128 x 128 image, 2.5 s chunks, 16-d patches) built through Params overrides, so
the file runs in seconds; one test runs the real size on one real clip."""

import re

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import slaney_mel_filterbank
from evar.models.htsat import HTSAT_IGNORED

from helpers import ROOT, SHARED, demo_score, needs_shared
from helpers.tiny_models import HTSAT_SMALL as SMALL, write_htsat

CONFIG = ROOT / 'config' / 'htsat.yaml'


def small_options(path) -> str:
    sizes = ','.join(f'+{k}={v}' for k, v in SMALL.items()).replace(' ', '')
    return f'weight_file={path},{sizes}'


@pytest.fixture(scope='module')
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('htsat') / 'HTSAT_small.ckpt'
    write_htsat(path, **{k: v for k, v in SMALL.items() if k != 'clip_sec'})
    return path


@pytest.fixture(scope='module')
def small_model(small_ckpt):
    return create_model('htsat', weight_file=str(small_ckpt), **SMALL).eval()


def test_mel_filters_match_librosa_slaney_values():
    fb = slaney_mel_filterbank(32000, 1024, 64, 50, 14000)
    assert fb.shape == (513, 64)
    # Values of librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000) (librosa 0.11).
    assert float(fb[2, 0]) == pytest.approx(0.0042890897, rel=1e-5)
    assert float(fb.sum()) == pytest.approx(2.0481262, rel=1e-5)
    assert int(fb[:, -1].argmax()) == 424 and bool((fb >= 0).all())


def test_short_and_long_clips_follow_evar_chunking(small_model):
    """A clip of 2.5 chunks gives 3 chunks of tokens; the short tail is tiled like the official infer_mode."""
    m = small_model
    torch.manual_seed(1)
    x = torch.randn(1, int(6.25 * 32000)) * 0.1
    with torch.inference_mode():
        frames = m(x, torch.tensor([x.shape[1]]))
        assert frames.embeddings.shape == (1, 3 * 8, 16 * 8) and bool(frames.mask.all())
        # The third chunk (1.25 s) alone is the same as the clip's third chunk.
        tail = x[:, int(5 * 32000):]
        alone = m(tail, torch.tensor([tail.shape[1]])).embeddings[0]
        np.testing.assert_allclose(frames.embeddings[0, 16:].numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
        # Tiling: 126 frames tiled twice (252 frames), stretched to 256 by the encoder.
        feats, n = m.features(tail, torch.tensor([tail.shape[1]]))
        assert int(n) == tail.shape[1] // 320 + 1 == 126
        tiled = feats[0].T.repeat(2, 1)
        direct = m.swin(input_features=tiled[None, None]).last_hidden_state.mean(2).transpose(1, 2)[0]
        np.testing.assert_allclose(alone.numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
        # A clip shorter than n_fft / 2 samples still runs (tiled in time).
        assert m(torch.randn(1, 300), torch.tensor([300])).embeddings.shape[1] == 8


@pytest.mark.slow
@needs_shared
def test_real_size_model_on_a_real_clip(tmp_path):
    """The real HTS-AT (28M parameters) on a real ESC-50 clip: 32 tokens of 768-d per 10 s chunk."""
    from evar.audio import load_audio

    write_htsat(tmp_path / 'full.ckpt')
    m = create_model('htsat', weight_file=str(tmp_path / 'full.ckpt')).eval()
    wav = torch.from_numpy(load_audio(sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[0], 32000)[0])
    with torch.inference_mode():
        frames = m(wav[None], torch.tensor([wav.shape[0]]))
    assert frames.embeddings.shape == (1, 32, 768) and torch.isfinite(frames.embeddings).all()
    assert m.frame_hop_sec == pytest.approx(10 / 32)


def test_wrong_or_missing_keys_fail_with_the_strict_message(tmp_path, small_ckpt):
    state = torch.load(small_ckpt, weights_only=True)['state_dict']
    missing = {k: v for k, v in state.items() if k != 'sed_model.layers.1.blocks.0.attn.qkv.weight'}
    torch.save({'state_dict': missing}, tmp_path / 'missing.ckpt')
    with pytest.raises(EvarError, match=re.escape("Missing: ['layers.1.blocks.0.attn.qkv.weight']")):
        create_model('htsat', weight_file=str(tmp_path / 'missing.ckpt'), **SMALL)
    extra = dict(state, **{'sed_model.layers.0.blocks.0.attn.qkv_extra': torch.zeros(1)})
    torch.save({'state_dict': extra}, tmp_path / 'extra.ckpt')
    with pytest.raises(EvarError, match=re.escape("unexpected: ['layers.0.blocks.0.attn.qkv_extra']")):
        create_model('htsat', weight_file=str(tmp_path / 'extra.ckpt'), **SMALL)
    with pytest.raises(EvarError, match=re.escape('attn.qkv.weight: file (48, 16) vs model (96, 32)')):
        create_model('htsat', weight_file=str(small_ckpt), **dict(SMALL, embed_dim=32))
    bad_mel = dict(state, **{'sed_model.logmel_extractor.melW': slaney_mel_filterbank(16000, 1024, 64, 50, 8000)})
    torch.save({'state_dict': bad_mel}, tmp_path / 'mel.ckpt')
    with pytest.raises(EvarError, match='mel filters'):
        create_model('htsat', weight_file=str(tmp_path / 'mel.ckpt'), **SMALL)
    assert HTSAT_IGNORED == ('spectrogram_extractor.', 'logmel_extractor.', 'tscam_conv.', 'head.')


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, small_ckpt):
    demo_score(tmp_path, work, CONFIG, small_options(small_ckpt) + ',batch_size=64', 'htsat')
