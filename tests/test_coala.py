"""COALA: the official AudioEncoder layout loaded strictly (random weights), the release's scaler pickle read without
scikit-learn, the 10 s noise padding and 96-frame chunking of the front end, padding invariance, and the entry
points. The model is small (1.3M parameters), so every test runs it at its real size."""

import pickle

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared
from helpers.tiny_models import tiny_coala

CONFIG = ROOT / 'config' / 'coala.yaml'
SR = 22000


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Random weights as the release saves them (a plain state dict) and a scaler whose columns differ."""
    folder = tmp_path_factory.mktemp('coala')
    tiny_coala(folder)
    return folder


def options(files, extra=''):
    return f'weight_file={files / "audio_encoder_epoch_200.pt"},scaler_file={files / "scaler_top_1000.pkl"}' + extra


@pytest.fixture(scope='module')
def model(files):
    return create_model('coala', weight_file=str(files / 'audio_encoder_epoch_200.pt'),
                        scaler_file=str(files / 'scaler_top_1000.pkl')).eval()


def test_front_end_pads_to_10_s_with_fixed_noise_and_scales_by_chunk_column(model):
    fb = model.mel_fb
    # librosa.filters.mel(sr=22000, n_fft=1024, n_mels=96) values (Slaney scale, area-normalised).
    assert fb.shape == (513, 96) and float(fb[1, 0]) == pytest.approx(0.0182826035, rel=1e-5)
    assert float(fb.sum()) == pytest.approx(4.4661388, rel=1e-5) and int(fb[:, 95].argmax()) == 494
    # Noise: numpy RandomState(0).rand * 5e-4 over the whole 10 s, as the release's pad() with the global seed 0.
    np.random.seed(0)
    release_noise = 5e-4 * np.random.rand(10 * SR).astype('float32')
    np.testing.assert_array_equal(model.padded(torch.zeros(100)).numpy(), release_noise)
    long = torch.randn(12 * SR) * 0.1
    assert torch.equal(model.padded(long), long)  # longer than 10 s: used as it is
    wav = torch.randn(2, 12 * SR) * 0.1
    feats, frames = model.features(wav, torch.tensor([12 * SR, SR]))
    assert frames.tolist() == [5 * 96, 4 * 96]  # 1 + 264000 // 512 = 516 frames -> 5 chunks; 10 s -> 430 -> 4
    log_mel = model.log_mel(model.padded(wav[1, :SR]))
    for t in (0, 95, 96, 200):  # column t of a chunk is scaled by the scaler's column t % 96
        expected = log_mel[:, t] * model.scale[t % 96] + model.offset[t % 96]
        np.testing.assert_allclose(feats[1, :, t].numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert float(feats[1, :, 4 * 96:].abs().max()) == 0.0


def test_layers_and_chunk_orientation(files, model):
    torch.manual_seed(2)
    wav = torch.randn(1, 3 * SR) * 0.1
    n = torch.tensor([3 * SR])
    with torch.inference_mode():
        frames = model(wav, n)
        assert frames.embeddings.shape == (1, 4, 1152) and bool(frames.mask.all())
        feats, _ = model.features(wav, n)
        # Chunk 0 goes in as a [1, 1, 96 mel, 96 time] image, as the release feeds it.
        z = model.body.audio_encoder(feats[:, None, :, :96])
        np.testing.assert_allclose(frames.embeddings[0, 0].numpy(), z[0].numpy(), rtol=1e-5, atol=1e-6)
        proj = create_model('coala', **{k: str(files / f) for k, f in (('weight_file', 'audio_encoder_epoch_200.pt'),
                                                                          ('scaler_file', 'scaler_top_1000.pkl'))},
                            output_layers=1).eval()
        np.testing.assert_allclose(proj(wav, n).embeddings[0].numpy(),
                                   model.body.fc_audio(frames.embeddings[0]).numpy(), rtol=1e-5, atol=1e-6)
    assert model.frame_hop_sec == pytest.approx(96 * 512 / SR)


def test_batch_equals_single_for_unequal_lengths(model):
    emb = batch_equals_single(model, [12 * SR, 3 * SR, SR // 2, 300])  # one past 10 s: not padded, 5 chunks
    assert emb.shape == (4, 1152) and torch.isfinite(emb).all()


@needs_shared
def test_real_clips_batch_equals_single(model):
    paths = [SHARED / 'data' / 'fsdd' / 'recordings' / '0_george_0.flac',
             *sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[:1], SHARED / 'data' / 'piano' / 'C4v10.flac']
    clips = [torch.from_numpy(load_audio(p, SR)[0]) for p in paths]
    lengths = torch.tensor([len(c) for c in clips])
    with torch.inference_mode():
        together = model(torch.nn.utils.rnn.pad_sequence(clips, batch_first=True), lengths)
        assert together.mask.sum(1).tolist()[:2] == [4, 4] and together.mask.sum(1).tolist()[2] > 4
        pooled = model.embed(torch.nn.utils.rnn.pad_sequence(clips, batch_first=True), lengths)
        alone = torch.cat([model.embed(c[None], lengths[i:i + 1]) for i, c in enumerate(clips)])
    np.testing.assert_allclose(pooled.numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
    assert float((alone[0] - alone[1]).abs().max()) > 1e-3


def test_wrong_files_fail_with_clear_messages(tmp_path, files):
    state = torch.load(files / 'audio_encoder_epoch_200.pt', weights_only=True)
    state['fc_audio.0.bias'] = torch.zeros(1152)
    torch.save(state, tmp_path / 'extra.pt')
    with pytest.raises(EvarError, match=r"does not match the architecture.*unexpected: \['fc_audio\.0\.bias'\]"):
        create_model('coala', weight_file=str(tmp_path / 'extra.pt'), scaler_file=str(files / 'scaler_top_1000.pkl'))
    weights = str(files / 'audio_encoder_epoch_200.pt')
    with pytest.raises(EvarError, match='scaler file .*none.pkl does not exist.*external/coala/.*xavierfav/coala'):
        create_model('coala', weight_file=weights, scaler_file=str(tmp_path / 'none.pkl'))

    class Evil:
        def __reduce__(self):
            return (print, ('pickled code ran',))

    with open(tmp_path / 'evil.pkl', 'wb') as f:
        pickle.dump(Evil(), f)
    with pytest.raises(EvarError, match='builtins.print is not allowed'):
        create_model('coala', weight_file=weights, scaler_file=str(tmp_path / 'evil.pkl'))
    with pytest.raises(EvarError, match='stft_pad_mode'):
        create_model('coala', weight_file=weights, scaler_file=str(files / 'scaler_top_1000.pkl'), stft_pad_mode='x')


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, files):
    # Padding to 2.3 s (one chunk) instead of 10 s (four) keeps this at a quarter of the encoder's time.
    score = demo_score(tmp_path, work, CONFIG, options(files, ',pad_sec=2.3'), 'coala', head=None, epochs=20)
    assert score > 0.3  # 6 classes (chance 0.17); random weights still separate some
