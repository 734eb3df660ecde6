"""VGGish with random weights in the PyTorch ports' layout (harritaylor's `embeddings.*`, tcvrick's `fc.*` as EVAR
loads): strict loading, evar.check, patch framing and padding invariance on real clips, the PCA postprocessing, a
demo lineareval run, and the shipped YAML's message when the weights are absent. Parity with the official front end
and the ports' network: benchmarks/parity_vggish.py."""

import glob

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.models.vggish import vggish_mel_matrix

from helpers import ROOT, SHARED, demo_score, needs_shared, pad_clips
from helpers.tiny_models import write_vggish

CONFIG = ROOT / 'config' / 'vggish.yaml'


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    return write_vggish(tmp_path_factory.mktemp('vggish') / 'vggish.pth')


@pytest.fixture(scope='module')
def model(weights):
    return create_model('vggish', weight_file=str(weights)).eval()


@needs_shared
def test_real_clips_patch_counts_and_silence_extension(model):
    from evar.audio import load_audio

    files = sorted(glob.glob(str(SHARED / 'data' / 'ESC-50' / 'audio' / '*.flac')))[:3]
    clips = [torch.from_numpy(load_audio(f, 16000)[0][:int(s * 16000)]) for f, s in zip(files, (5.0, 1.93, 0.5))]
    wav, lengths = pad_clips(clips)
    with torch.inference_mode():
        frames = model(wav, lengths)
        # complete 25 ms frames, then complete 96-frame patches: 5 s -> 498 frames -> 5; 1.93 s -> 191 -> 1
        assert frames.mask.sum(1).tolist() == [5, 1, 1] and frames.embeddings.shape == (3, 5, 128)
        for i, c in enumerate(clips):
            single = model(c[None], lengths[i:i + 1]).embeddings[0]
            np.testing.assert_allclose(frames.embeddings[i, :len(single)].numpy(), single.numpy(), rtol=1e-5,
                                       atol=1e-6)
        extended = model(torch.nn.functional.pad(clips[2], (0, 15600 - 8000))[None], torch.tensor([15600]))
        torch.testing.assert_close(extended.embeddings, model(clips[2][None], lengths[2:]).embeddings)


def test_front_end_follows_the_official_mel_features():
    m = vggish_mel_matrix(16000, 512, 64, 125, 7500)
    hz = torch.linspace(0, 8000, 257)
    assert m.shape == (257, 64) and bool((m[0] == 0).all())  # DC bin zeroed
    assert bool((m[hz <= 125] == 0).all()) and bool((m[hz >= 7500] == 0).all())
    assert float(m.max()) <= 1.0 and bool((m.sum(0) > 0).all())  # unnormalised triangles, none empty
    peak_hz = hz[m.argmax(0)]  # band centres rise evenly on the HTK mel scale
    centres_mel = 1127 * torch.log1p(peak_hz / 700)
    assert bool((peak_hz.diff() >= 0).all()) and float(centres_mel.diff()[10:].std()) < 12


@pytest.mark.slow
def test_tcvrick_names_output_layers_and_postprocessing(tmp_path, weights, model):
    state = torch.load(weights, weights_only=True)
    renamed = {k.replace('embeddings.', 'fc.'): v for k, v in state.items()}  # EVAR's pytorch_vggish.pth names
    torch.save(renamed, tmp_path / 'tcvrick.pth')
    wav, n = torch.randn(1, 32000) * 0.1, torch.tensor([32000])
    with torch.inference_mode():
        torch.testing.assert_close(create_model('vggish', weight_file=str(tmp_path / 'tcvrick.pth')).eval()(wav, n)
                                   .embeddings, model(wav, n).embeddings)
        evar_yaml_nfft = create_model('vggish', weight_file=str(weights), n_fft=400).eval()  # EVAR's YAML value
        torch.testing.assert_close(evar_yaml_nfft(wav, n).embeddings, model(wav, n).embeddings)  # FFT stays 512
        fc1 = create_model('vggish', weight_file=str(weights), output_layers=0).eval()(wav, n).embeddings
        assert fc1.shape == (1, 2, 4096) and bool((fc1 >= 0).all())
        emb = model(wav, n).embeddings[0].double()
        rng = np.random.default_rng(0)  # the released PCA file holds numpy arrays
        vectors = rng.normal(size=(128, 128)) / float(emb.norm(dim=1).mean())  # outputs ~ N(0, 1): some clipped
        means = rng.normal(size=128) * float(emb.std()) * 0.1
        torch.save({'pca_eigen_vectors': vectors, 'pca_means': means}, tmp_path / 'pca.pth')
        post = create_model('vggish', weight_file=str(weights), postprocess=True,
                            pca_file=str(tmp_path / 'pca.pth')).eval()(wav, n).embeddings[0]
    expected = torch.round(((emb - torch.from_numpy(means)) @ torch.from_numpy(vectors).T).clamp(-2, 2).add(2) * 63.75)
    assert post.shape == (2, 128) and len(post.unique()) > 50 and float(post.min()) >= 0 and float(post.max()) <= 255
    assert float((post.double() - expected).abs().max()) <= 1  # a level at most, where float32 rounds across .5
    with pytest.raises(EvarError, match='pca_file'):
        create_model('vggish', weight_file=str(weights), postprocess=True, pca_file=str(tmp_path / 'none.pth'))


def test_wrong_checkpoints_fail_with_clear_messages(tmp_path, weights):
    state = torch.load(weights, weights_only=True)
    del state['features.13.bias']
    torch.save(state, tmp_path / 'missing.pth')
    with pytest.raises(EvarError, match=r"Missing: \['features.13.bias'\]"):
        create_model('vggish', weight_file=str(tmp_path / 'missing.pth'))
    state = torch.load(weights, weights_only=True)
    state['embeddings.4.weight'] = state['embeddings.4.weight'][:64]
    torch.save(state, tmp_path / 'shape.pth')
    with pytest.raises(EvarError, match='embeddings.4.weight: file'):
        create_model('vggish', weight_file=str(tmp_path / 'shape.pth'))


@pytest.mark.slow
def test_demo_lineareval_runs_and_scores(tmp_path, work, weights):
    demo_score(tmp_path, work, CONFIG, f'weight_file={weights}', 'vggish')
