"""BYOL-A v2 (`byola2`): the AudioNTT2022 encoder at its real size with random weights in the official checkpoint
layout, the nnAudio-style Slaney log-mel front end, padding invariance, and the entry points."""

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import slaney_mel_filterbank

from helpers import ROOT, SHARED, demo_score, needs_shared
from helpers.tiny_models import byola2_encoder

CONFIG = ROOT / 'config' / 'byola2.yaml'
STATS = dict(norm_stats=[-7.0, 4.5])


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    """The official v2 layout: a plain AudioNTT2022 state dict (train_v2.py saves model.state_dict())."""
    path = tmp_path_factory.mktemp('byola2') / 'AudioNTT2022-BYOLA-64x96d2048.pth'
    torch.save(byola2_encoder().state_dict(), path)
    return path


@pytest.fixture(scope='module')
def model(ckpt):
    return create_model('byola2', weight_file=str(ckpt), **STATS).eval()


def test_mel_filters_are_nnaudios_slaney_filters():
    fb = slaney_mel_filterbank(16000, 1024, 64, 60, 7800)
    assert fb.shape == (513, 64)
    # Values of librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=60, fmax=7800) (librosa 0.11), the same
    # filters as nnAudio's MelSpectrogram defaults; an HTK scale or peak-1 triangles would differ.
    assert float(fb[4, 0]) == pytest.approx(0.0012288258, rel=1e-5)
    assert float(fb[7, 0]) == pytest.approx(0.0200716555, rel=1e-5)
    assert float(fb.sum()) == pytest.approx(4.0957389, rel=1e-5)
    assert int(fb[:, 63].argmax()) == 477 and float(fb[:, 63].max()) == pytest.approx(0.0028241663, rel=1e-5)


def test_shapes_layers_and_checkpoint_containers(tmp_path, ckpt, model):
    assert model.embedding_dim == 3072 and model.frame_hop_sec == pytest.approx(0.04)
    wav = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 7000])
    with torch.inference_mode():
        frames = model(wav, lengths)
        stacked = frames.embeddings
        assert stacked.shape == (2, 101 // 4, 3072) and frames.mask.sum(1).tolist() == [25, 11]
        for layer, d in ((0, 1024), (1, 2048)):
            m = create_model('byola2', weight_file=str(ckpt), output_layers=layer, **STATS).eval()
            part = m(wav, lengths).embeddings
            assert part.shape[-1] == d
            # The official output stacks the conv frames (first 1024) and the MLP output (last 2048).
            np.testing.assert_array_equal(part.numpy(), (stacked[..., :1024] if layer == 0 else stacked[..., 1024:]).numpy())
    state = torch.load(ckpt, weights_only=True)
    for name, container in (('lightning', {'state_dict': {'body.' + k: v for k, v in state.items()}}),
                            ('model', {'model': {'model.' + k: v for k, v in state.items()}, 'epoch': 3})):
        torch.save(container, tmp_path / f'{name}.pth')
        other = create_model('byola2', weight_file=str(tmp_path / f'{name}.pth'), **STATS).eval()
        with torch.inference_mode():
            np.testing.assert_array_equal(other(wav, lengths).embeddings.numpy(), stacked.numpy())
    with pytest.warns(UserWarning, match='feature_d 2048 .* using 3072'):
        create_model('byola2', weight_file=str(ckpt), feature_d=2048)


def test_encoder_size_follows_the_checkpoint(tmp_path):
    """Three conv blocks and a narrower MLP: shapes read from the checkpoint, the frame hop follows the poolings."""
    path = tmp_path / 'small.pth'
    torch.save(byola2_encoder(d=256 + 256, base_d=32, mlp_hidden_d=128, conv_layers=3).state_dict(), path)
    m = create_model('byola2', weight_file=str(path), **STATS).eval()
    assert m.embedding_dim == 32 * 8 + 256 and m.frame_hop_sec == pytest.approx(0.08) and m.min_frames == 8
    assert m.embed(torch.randn(1, 8000) * 0.1, torch.tensor([8000])).shape == (1, 512)


def test_wrong_checkpoints_fail_with_the_strict_load_message(tmp_path, ckpt):
    state = torch.load(ckpt, weights_only=True)
    del state['features.5.running_var']
    torch.save(state, tmp_path / 'missing.pth')
    with pytest.raises(EvarError, match=r'does not match the architecture\. Missing: \[.features\.5\.running_var'):
        create_model('byola2', weight_file=str(tmp_path / 'missing.pth'))
    state = torch.load(ckpt, weights_only=True)
    state['fc.0.weight'] = state['fc.0.weight'][:, :512]  # as if the checkpoint took 32 mels
    torch.save(state, tmp_path / 'mels.pth')
    with pytest.raises(EvarError, match=r'shape mismatches: \[.fc\.0\.weight: file \(2048, 512\) vs model \(2048, 1024\)'):
        create_model('byola2', weight_file=str(tmp_path / 'mels.pth'))
    torch.save({'encoder.weight': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(EvarError, match='expected an AudioNTT2022 checkpoint'):
        create_model('byola2', weight_file=str(tmp_path / 'other.pth'))


@needs_shared
def test_real_clips_batch_equals_single(model):
    files = [SHARED / 'data' / 'fsdd' / 'recordings' / '0_george_0.flac',
             *sorted((SHARED / 'data' / 'RAVDESS' / 'Actor_01').glob('*.flac'))[:1],
             *sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[:1]]
    clips = [torch.from_numpy(load_audio(f, 16000)[0]) for f in files]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    with torch.inference_mode():
        together = model.embed(batch, lengths)
        alone = torch.cat([model.embed(c[None], lengths[i:i + 1]) for i, c in enumerate(clips)])
    np.testing.assert_allclose(together.numpy(), alone.numpy(), rtol=1e-4, atol=1e-4)
    assert float((alone[0] - alone[1]).abs().max()) > 1e-2  # different sounds, different embeddings


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, ckpt):
    # The default linear head for a few epochs (logreg on 3072-d takes ~50 s on two busy cores).
    score = demo_score(tmp_path, work, CONFIG, f'weight_file={ckpt}', 'byola2', head=None, epochs=20,
                       stderr_has=['normalisation statistics from 180 training clips'])
    assert score > 0.5  # 6 classes; random weights still separate the demo sounds
