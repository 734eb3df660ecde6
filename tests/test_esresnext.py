"""ESResNeXt-fbsp: the official key layout (ResNeXt-50 32x4d with attention, fbsp front end) loaded strictly with
random weights, the fbsp filters against an independent complex-valued formula, the release's framing, padding
invariance, and the entry points. Most tests use a reduced network (one block per stage, 256-point fbsp at 16 kHz)
through Params overrides; one runs the real size on a real clip."""

import math

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model
from evar.models.esresnext import periodic_window

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared
from helpers.tiny_models import ESRESNEXT_SMALL as SMALL, write_esresnext

CONFIG = ROOT / 'config' / 'esresnext_fbsp.yaml'


def small_options(path, extra=''):
    sizes = ','.join(f'{"+" if k == "blocks" else ""}{k}={v}' for k, v in SMALL.items())  # blocks: not in the YAML
    return f'weight_file={path},' + sizes.replace(' ', '') + extra


@pytest.fixture(scope='module')
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('esresnext') / 'ESResNeXtFBSP_small.pt'
    write_esresnext(path, **SMALL)
    return path


@pytest.fixture(scope='module')
def small_model(small_ckpt):
    return create_model('esresnext_fbsp', weight_file=str(small_ckpt), **SMALL).eval()


def test_window_is_scipys_periodic_blackman_harris():
    w = periodic_window('blackmanharris', 1654)
    # scipy.signal.get_window('blackmanharris', 1654, fftbins=True) values.
    assert float(w[1]) == pytest.approx(6.020413004381199e-05, rel=1e-6)
    assert float(w[400]) == pytest.approx(0.1949721049551671, rel=1e-6)
    assert float(w[827]) == pytest.approx(1.0) and float(w.double().sum()) == pytest.approx(593.3725, rel=1e-7)
    with pytest.raises(EvarError, match='window must be one of'):
        periodic_window('kaiser', 16)


def test_fbsp_filters_match_the_complex_formula(small_model):
    """Bin k's filter is sqrt(fb) * sinc(fb t / m) ** m * exp(-i fc t) / sqrt(n) on t = pi * linspace(-1, 1, n)."""
    fbsp = small_model.body.fbsp
    n = 256
    with torch.no_grad():
        w_re, w_im = fbsp.weights(n, torch.float32, 'cpu')
    t = (math.pi * torch.linspace(-1, 1, n, dtype=torch.float64) + 1e-8)[None]
    m, fb, fc = (p.detach().double()[:, None] for p in (fbsp.m, fbsp.fb, fbsp.fc))
    arg = fb * t / (m + 1e-8)
    taper = torch.sin(arg) / arg
    assert bool((taper < 0).any())  # negative taper values: the power makes them complex
    expected = fb.sqrt() * taper.to(torch.complex128) ** m * torch.exp(-1j * fc * t) / n ** 0.5
    # float32 rounds t and the phase fc t (up to 128 pi): ~2 eps32 |fc t| of phase error on weights up to |w|
    # (1.5e-5 allowed with this factor 4; measured 1.7e-6; a real taper or a conjugated carrier moves them by 0.05).
    atol = 4 * torch.finfo(torch.float32).eps * float((fc * t).abs().max() * expected.abs().max())
    np.testing.assert_allclose(w_re.double().numpy(), expected.real.numpy(), atol=atol)
    np.testing.assert_allclose(w_im.double().numpy(), expected.imag.numpy(), atol=atol)


def test_frames_cover_the_clip_centred_in_zeros(small_model):
    net = small_model.body
    wav = torch.arange(1, 1001, dtype=torch.float32)[None]
    frames = net.frames(wav)
    count = 1 + math.ceil((1000 - 200) / 320)  # 4 frames covering 1160 samples: 80 zeros before, 80 after
    assert frames.shape == (1, count, 256)
    window = net.window
    # Frame 0 holds 80 zeros, then samples 1..120, windowed, inside 28 zeros of n_fft padding on each side.
    inner = frames[0, 0, 28:228]
    np.testing.assert_allclose(inner[80:].numpy(), (torch.arange(1, 121) * window[80:]).numpy(), rtol=1e-6)
    assert float(inner[:80].abs().max()) == 0 and float(frames[0, 0, :28].abs().max()) == 0
    np.testing.assert_allclose(frames[0, 1, 28:228].numpy(), (torch.arange(241, 441) * window).numpy(), rtol=1e-6)
    assert net.frames(torch.ones(1, 50)).shape == (1, 1, 256)  # shorter than a window: one zero-padded frame


def test_batch_equals_single_with_clips_of_equal_length(small_model):
    """Clips run one length at a time: two clips of one length share a pass among others."""
    emb = batch_equals_single(small_model, [32000, 16000, 12345, 300, 16000])
    assert emb.shape == (5, 2048) and torch.isfinite(emb).all()


@pytest.mark.slow
@needs_shared
def test_real_size_network_on_a_real_clip(tmp_path):
    """The real ESResNeXt-fbsp (2048-point fbsp, ResNeXt-50 32x4d, 527 classes) on a real RAVDESS clip."""
    path = tmp_path / 'ESResNeXtFBSP_AudioSet.pt'
    state = write_esresnext(path)
    assert len(state) == 370 and tuple(state['fbsp.bias'].shape) == (0,) and tuple(state['window'].shape) == (1654,)
    assert tuple(state['layer1.0.conv2.weight'].shape) == (128, 4, 3, 3)  # 32 groups of 4 channels
    model = create_model('esresnext_fbsp', weight_file=str(path)).eval()
    logits = create_model('esresnext_fbsp', weight_file=str(path), output_layers=1).eval()
    clip = sorted((SHARED / 'data' / 'RAVDESS' / 'Actor_01').glob('*.flac'))[0]
    wav = torch.from_numpy(load_audio(clip, 44100, max_sec=2.0)[0])[None]
    n = torch.tensor([wav.shape[1]])
    with torch.inference_mode():
        bands = model.body.log_power_bands(model.features(wav, n)[0])
        assert bands.shape == (1, 3, 341, 1 + math.ceil((wav.shape[1] - 1654) / 561))
        emb = model.embed(wav, n)
        assert emb.shape == (1, 2048) and torch.isfinite(emb).all() and float(emb.abs().max()) > 0
        assert logits.embed(wav, n).shape == (1, 527)


def test_wrong_checkpoints_fail_with_the_strict_load_message(tmp_path, small_ckpt):
    state = torch.load(small_ckpt, weights_only=True)
    del state['fbsp.bias']
    torch.save(state, tmp_path / 'no_bias.pt')
    with pytest.raises(EvarError, match=r"does not match the architecture\. Missing: \['fbsp\.bias'\]"):
        create_model('esresnext_fbsp', weight_file=str(tmp_path / 'no_bias.pt'), **SMALL)
    with pytest.raises(EvarError, match=r'fbsp\.fc: file \(129,\) vs model \(1025,\)'):
        create_model('esresnext_fbsp', weight_file=str(small_ckpt), blocks=[1, 1, 1, 1])  # n_fft 2048 expected


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, small_ckpt):
    score = demo_score(tmp_path, work, CONFIG, small_options(small_ckpt, ',batch_size=32'), 'esresnext_fbsp',
                       head=None, epochs=20)
    assert score > 0.3  # 6 classes (chance 0.17)
