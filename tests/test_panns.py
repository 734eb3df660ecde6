"""PANNs CNN14 with random weights in the official checkpoint container ({'model': state dict}, front-end tensors
included): strict loading, evar.check, padding invariance on real clips, a demo lineareval run, and the shipped
YAML's message when the Zenodo checkpoint is absent. Parity with the official code: benchmarks/parity_panns.py."""

import glob

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import slaney_mel_filterbank

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared, pad_clips
from helpers.tiny_models import write_cnn14

CONFIG = ROOT / 'config' / 'cnn14.yaml'


@pytest.fixture(scope='module')
def small_weights(tmp_path_factory):
    return write_cnn14(tmp_path_factory.mktemp('cnn14') / 'small.pth')


def real_clips(seconds):
    from evar.audio import load_audio

    files = sorted(glob.glob(str(SHARED / 'data' / 'ESC-50' / 'audio' / '*.flac')))[:len(seconds)]
    return [torch.from_numpy(load_audio(f, 16000)[0][:int(s * 16000)]) for f, s in zip(files, seconds)]


def test_padding_never_changes_the_clip_embedding(small_weights):
    """The fc1 clip embedding (the default); the conv frames (output_layers 0) are tests/test_contract.py's case."""
    for layer in (-1,):
        model = create_model('cnn14', weight_file=str(small_weights), output_layers=layer).eval()
        emb = batch_equals_single(model, [16000 * 3 + 77, 9001, 3000, 16000])  # 3000 < 4960: silence-extended
        assert emb.shape == (4, 24) and torch.isfinite(emb).all()


@needs_shared
def test_real_clips_batch_equals_single_and_short_clips_are_silence_extended(small_weights):
    model = create_model('cnn14', weight_file=str(small_weights), output_layers=0).eval()
    clips = real_clips([5.0, 2.3, 0.7, 0.2])
    wav, lengths = pad_clips(clips)
    with torch.inference_mode():
        batch = model(wav, lengths)
        assert batch.mask.sum(1).tolist() == [(1 + n // 160) // 32 for n in (80000, 36800, 11200, 4960)]
        for i, c in enumerate(clips):
            single = model(c[None], lengths[i:i + 1])
            n = int(single.mask.sum())
            np.testing.assert_allclose(batch.embeddings[i, :n].numpy(), single.embeddings[0].numpy(), rtol=1e-4,
                                       atol=1e-5)
        silence_extended = model(torch.nn.functional.pad(clips[3], (0, 4960 - 3200))[None], torch.tensor([4960]))
        torch.testing.assert_close(silence_extended.embeddings, model(clips[3][None], lengths[3:]).embeddings)


def test_real_size_checkpoint_and_front_end(tmp_path):
    """The official widths (64 ... 2048, 527 classes) load strictly; the mel matrix is librosa's Slaney one."""
    path = write_cnn14(tmp_path / 'full.pth', channels=(64, 128, 256, 512, 1024, 2048), classes=527)
    state = torch.load(path, weights_only=True)['model']
    assert tuple(state['spectrogram_extractor.stft.conv_real.weight'].shape) == (257, 1, 512)
    assert tuple(state['logmel_extractor.melW'].shape) == (257, 64) and tuple(state['fc1.weight'].shape) == (2048, 2048)
    model = create_model('cnn14', weight_file=str(path)).eval()
    assert model.embedding_dim == 2048
    wav = torch.sin(torch.arange(16000) * 2 * torch.pi * 440 / 16000)[None] * 0.1
    with torch.inference_mode():
        frames = model(wav, torch.tensor([16000]))
        assert frames.embeddings.shape == (1, 1, 2048) and bool(frames.mask.all())  # one clip-level frame
        assert model.clip_logits(wav, torch.tensor([16000])).shape == (1, 527)
        spec, frames = model.features(wav, torch.tensor([16000]))
    assert spec.shape == (1, 64, 101) and int(frames[0]) == 101
    # A 440 Hz tone peaks in one of the Slaney mel bands that cover FFT bin 14 (437.5 Hz), bands 7 and 8
    covering = slaney_mel_filterbank(16000, 512, 64, 50, 8000)[14].nonzero().flatten().tolist()
    assert covering == [7, 8] and int(spec[0, :, 50].argmax()) in covering


def test_wrong_checkpoints_fail_with_clear_messages(tmp_path, small_weights):
    state = torch.load(small_weights, weights_only=True)['model']
    del state['logmel_extractor.melW']
    torch.save({'model': state}, tmp_path / 'no_mel.pth')
    with pytest.raises(EvarError, match=r'Missing: \[.logmel_extractor.melW.\]'):
        create_model('cnn14', weight_file=str(tmp_path / 'no_mel.pth'))
    state = torch.load(small_weights, weights_only=True)['model']
    state['fc1.weight'] = state['fc1.weight'][:, :8]
    torch.save({'model': state}, tmp_path / 'bad_fc1.pth')
    with pytest.raises(EvarError, match='fc1.weight: file'):
        create_model('cnn14', weight_file=str(tmp_path / 'bad_fc1.pth'))
    with pytest.raises(EvarError, match='cannot be combined'):
        create_model('cnn14', weight_file=str(small_weights), output_layers='all')


@pytest.mark.slow
def test_demo_lineareval_runs_and_scores(tmp_path, work, small_weights):
    demo_score(tmp_path, work, CONFIG, f'weight_file={small_weights}', 'cnn14')
