import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.frontend import Spectrogram, mel_filterbank
from evar.models import create_model
from evar.models.base import Frames, pool

from helpers import BYOLA_D512, batch_equals_single, needs_byola


def numpy_log_mel(x, sr=16000, n_fft=1024, hop=160, n_mels=64, fmin=60, fmax=7800):
    """Reference: centred frames with reflect padding, periodic Hann, power spectrum, HTK mel, log(x + eps)."""
    pad = np.pad(x, n_fft // 2, mode='reflect')
    n_frames = 1 + len(x) // hop
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([pad[i * hop:i * hop + n_fft] * win for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel_lo, mel_hi = (2595 * np.log10(1 + f / 700) for f in (fmin, fmax))
    edges = 700 * (10 ** (np.linspace(mel_lo, mel_hi, n_mels + 2) / 2595) - 1)
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((len(bins), n_mels))
    for m in range(n_mels):
        lo, c, hi = edges[m:m + 3]
        fb[:, m] = np.maximum(0, np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)))
    return np.log(power @ fb + np.finfo(np.float32).eps).T


def test_log_mel_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    spec = Spectrogram(16000, 1024, 1024, 160, n_mels=64, f_min=60, f_max=7800)
    ours, frames = spec(torch.from_numpy(x)[None], torch.tensor([8000]))
    ref = numpy_log_mel(x.astype(np.float64))
    assert ours.shape == (1, 64, 51) and int(frames[0]) == 51
    # float32 against float64: white noise keeps every band near its frame's peak, so the log error stays near
    # eps32 (measured 6e-7); 2e-3 holds on any CPU, and a symmetric window (1e-2 off) or zero padding still fail.
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=2e-3)


def test_mel_filters_peak_at_one_and_cover_the_band():
    fb = mel_filterbank(16000, 1024, 64, 60, 7800)
    assert fb.shape == (513, 64) and float(fb.max()) <= 1.0 and bool((fb.sum(0) > 0).all())


def test_pooling_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    frames = Frames(x, mask)
    assert pool(frames, 'mean').item() == 2.0 and pool(frames, 'max').item() == 3.0
    assert pool(frames, 'mean_max').item() == 5.0 and pool(frames, 'mean+max').item() == 5.0
    with pytest.raises(EvarError, match='temporal_pooling_type'):
        pool(frames, 'median')


@needs_byola
def test_byola_real_weights_load_strictly_and_ignore_padding():
    model = create_model('byola', weight_file=str(BYOLA_D512), norm_stats=[-5.4919195, 5.0389895]).eval()
    assert model.embedding_dim == 512
    emb = batch_equals_single(model, [52800, 16000, 12345, 800, 100])  # odd frame counts at every pooling
    assert emb.shape == (5, 512) and torch.isfinite(emb).all()
    conv = create_model('byola', weight_file=str(BYOLA_D512), norm_stats=[0, 1], output_layers=0).eval()
    assert conv.embed(torch.zeros(1, 16000), torch.tensor([16000])).shape == (1, 512)


@needs_byola
def test_byola_feature_d_is_read_from_checkpoint():
    with pytest.warns(UserWarning, match='feature_d 2048'):
        model = create_model('byola', weight_file=str(BYOLA_D512), feature_d=2048)
    assert model.embedding_dim == 512


def test_byola_weight_errors(tmp_path):
    with pytest.raises(EvarError, match='does not exist.*nttcslab/byol-a'):
        create_model('byola', weight_file=str(tmp_path / 'missing.pth'))
    bad = tmp_path / 'bad.pth'
    state = {'features.0.weight': torch.zeros(64, 1, 5, 5), 'fc.3.weight': torch.zeros(512, 512)}
    torch.save(state, bad)
    with pytest.raises(EvarError, match='does not match the architecture.*features.0.weight'):
        create_model('byola', weight_file=str(bad))
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(EvarError, match='cannot read weight file'):
        create_model('byola', weight_file=str(tmp_path / 'junk.pth'))


def test_byola_embedding_size_follows_the_checkpoint(tmp_path):
    """d1024 / d2048 checkpoints: the same architecture with a wider projection (checked on random weights)."""
    from evar.models.byola import AudioNTT2020

    for d in (1024, 2048):
        path = tmp_path / f'd{d}.pth'
        torch.save(AudioNTT2020(d=d).state_dict(), path)
        model = create_model('byola', weight_file=str(path), norm_stats=[0.0, 1.0]).eval()
        assert model.embedding_dim == d
        assert model.embed(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 9000])).shape == (2, d)


def test_missing_weight_messages_explain_evars_hub_ids_and_random_marker(tmp_path, monkeypatch):
    from evar.errors import EvarError
    from evar.models.base import require_file

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EvarError, match=r'mispeech/ced-base looks like a Hugging Face hub id.*zenodo'):
        require_file('mispeech/ced-base', 'CED', 'https://zenodo.org/record/8275347')
    with pytest.raises(EvarError, match="'random' is EVAR's marker for random initialisation"):
        require_file('m2d_vit_base-80x208p16x16p16k-random/random', 'M2D', 'https://github.com/nttcslab/m2d')
    with pytest.raises(EvarError, match=r'external/x.pth does not exist\. Put it there'):
        require_file('external/x.pth', 'M', 'https://example.org')
