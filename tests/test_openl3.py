"""OpenL3 with random weights in torchopenl3's state-dict layout (front-end tensors included): strict loading, the
official window framing, evar.check, padding invariance on real clips, the real widths of every input
representation, a demo lineareval run, and the shipped YAMLs' message when the weights are absent. No pretrained
OpenL3 weights can be installed from PyPI (the openl3 package downloads them from GitHub while it builds), so there
is no real-weights score here. Parity with torchopenl3: benchmarks/parity_openl3.py."""

import glob
import math

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.models.openl3 import openl3_mel_basis

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared, pad_clips
from helpers.tiny_models import OPENL3_FRONT as FRONT, write_openl3

CONFIG = ROOT / 'config' / 'openl3_env.yaml'
FULL = (64, 64, 128, 128, 256, 256, 512, 512)


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp('openl3')
    return {r: write_openl3(root / f'{r}.pth.tar', r) for r in ('linear', 'mel256')}


def official_window_count(n, hop, center=True):
    """openl3's `_get_num_windows` (the same in torchopenl3)."""
    n += 24000 if center else 0
    return 1 if n <= 48000 else 1 + int(np.ceil((n - 48000) / float(hop)))


def test_windows_follow_the_official_framing(small):
    model = create_model('openl3', weight_file=str(small['linear']), openl3_input_repr='linear', hop_sec=0.1).eval()
    lengths = [1, 23999, 24000, 24001, 28800, 28801, 48000, 100000, 480000]
    got = model.window_counts(torch.tensor(lengths)).tolist()
    assert got == [official_window_count(n, 4800) for n in lengths]
    assert got[-1] == 96  # 10 s: windows centred at 0, 0.1, ..., 9.5 s
    off = create_model('openl3', weight_file=str(small['linear']), openl3_input_repr='linear', center=False).eval()
    assert off.window_counts(torch.tensor([48000, 48001])).tolist() == [1, 2]


def test_padding_never_changes_a_clip_with_mel_input_and_window_batches(small):
    model = create_model('openl3', weight_file=str(small['mel256']), hop_sec=0.25, window_batch=5).eval()
    emb = batch_equals_single(model, [48000 * 2 + 7, 30000, 500, 48000])
    assert emb.shape == (4, 192) and torch.isfinite(emb).all()


@needs_shared
def test_real_clips_batch_equals_single(small):
    from evar.audio import load_audio

    model = create_model('openl3', weight_file=str(small['mel256']), hop_sec=0.3).eval()
    files = sorted(glob.glob(str(SHARED / 'data' / 'ESC-50' / 'audio' / '*.flac')))[:3]
    clips = [torch.from_numpy(load_audio(f, 48000)[0][:int(s * 48000)]) for f, s in zip(files, (3.0, 1.4, 0.4))]
    wav, lengths = pad_clips(clips)
    with torch.inference_mode():
        frames = model(wav, lengths)
        assert frames.mask.sum(1).tolist() == [official_window_count(int(n), 14400) for n in lengths] == [10, 4, 1]
        for i, c in enumerate(clips):
            single = model(c[None], lengths[i:i + 1]).embeddings[0]
            np.testing.assert_allclose(frames.embeddings[i, :len(single)].numpy(), single.numpy(), rtol=1e-5,
                                       atol=1e-6)
            assert float(single.std()) > 0  # real sound gives a non-trivial embedding


@pytest.mark.parametrize('input_repr,size', [('mel256', 6144), ('mel128', 512), ('linear', 6144)])
def test_real_widths_of_each_input_representation(tmp_path, input_repr, size):
    path = write_openl3(tmp_path / 'w.pth.tar', input_repr, size, FULL)
    state = torch.load(path, weights_only=True)
    n_dft, n_mels = FRONT[input_repr]
    assert tuple(state['speclayer.dft_real_kernels'].shape) == (n_dft // 2 + 1, 1, n_dft)
    assert tuple(state['audio_embedding_layer.weight'].shape) == (512, 512, 3, 3)
    model = create_model('openl3', weight_file=str(path), openl3_input_repr=input_repr, feature_d=size).eval()
    with torch.inference_mode():
        spec = model.body.speclayer(torch.randn(1, 48000))
        frames = model(torch.randn(1, 9000) * 0.1, torch.tensor([9000]))
    assert spec.shape == (1, 1, n_mels or 257, 199 if n_mels else 197)  # 199 / 197 STFT frames per 1 s window
    assert float(spec.max()) == 0.0 and float(spec.min()) >= -80.0
    assert frames.embeddings.shape == (1, 1, size) and model.embedding_dim == size


def test_mel_basis_rows_are_unit_sum_htk_triangles():
    basis = openl3_mel_basis(128)
    assert basis.shape == (128, 1025)
    torch.testing.assert_close(basis.sum(1), torch.ones(128))
    peaks_hz = basis.argmax(1) * 24000 / 1024
    mel = 2595 * torch.log10(1 + peaks_hz / 700)
    assert float(mel.diff()[20:].std()) < 0.2 * float(mel.diff()[20:].mean())  # even spacing on the HTK scale
    assert math.isclose(float(mel[-1]), 2595 * math.log10(1 + 24000 / 700) * 128 / 129, rel_tol=0.01)


def test_wrong_checkpoints_and_settings_fail_clearly(tmp_path, small):
    state = torch.load(small['mel256'], weights_only=True)
    del state['batch_normalization_5.running_var']
    torch.save(state, tmp_path / 'missing.pth.tar')
    with pytest.raises(EvarError, match="Missing: \\['batch_normalization_5.running_var'\\]"):
        create_model('openl3', weight_file=str(tmp_path / 'missing.pth.tar'))
    with pytest.raises(EvarError, match='6144 or 512'):
        create_model('openl3', weight_file=str(small['mel256']), feature_d=128)
    with pytest.raises(EvarError, match='48000 Hz'):
        create_model('openl3', weight_file=str(small['mel256']), sample_rate=16000)
    with pytest.warns(UserWarning, match="checkpoint's linear"):
        create_model('openl3', weight_file=str(small['linear']), openl3_input_repr='mel256')


@pytest.mark.slow
def test_demo_lineareval_runs_and_scores(tmp_path, work, small):
    demo_score(tmp_path, work, CONFIG, f'weight_file={small["linear"]},openl3_input_repr=linear,hop_sec=0.5',
               'openl3_env')
