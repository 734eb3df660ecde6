"""Fine-tuning hooks of the model contract (evar.models.base.AudioRepr): `augment_input` sees the normalised
[B, F, T] input in training only, `patch_embedding` can be frozen, M2D's `set_training_mask` acts in training only.
Every registered family with `augment_point == 'spectrogram'`, built from its tiny random checkpoint."""

import importlib
import sys

import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model, model_class

from helpers.tiny_models import ADAPTER_MODULES, TINY


def _build(name, folder, monkeypatch):
    case = TINY[name]
    monkeypatch.syspath_prepend(str(folder))
    values = case.write(folder)
    importlib.invalidate_caches()
    return create_model(case.audio_repr, **values)


@pytest.fixture
def tiny_model(request, tmp_path, monkeypatch):
    """(name, the case's model in eval mode, with norm stats set where it needs them)."""
    model = _build(request.param, tmp_path, monkeypatch).eval()
    if model.needs_norm_stats:
        model.set_norm_stats(-5.0, 4.0)
    yield request.param, model
    for name in ADAPTER_MODULES:
        sys.modules.pop(name, None)


class Recorder:
    """An input augmentation that records the shapes it was called with and returns its input scaled."""

    def __init__(self):
        self.shapes = []

    def __call__(self, x):
        self.shapes.append(tuple(x.shape))
        return x * 0.5


def _spectrogram_cases() -> list:
    """TINY cases whose model class declares augment_point 'spectrogram', plus hf-whisper (the hf family declares it
    per instance: only Whisper's input is a log-mel)."""
    declared = [n for n, c in TINY.items() if model_class(c.audio_repr).augment_point == 'spectrogram']
    return sorted(declared + ['hf-whisper'])


SPECTROGRAM = _spectrogram_cases()


def test_spectrogram_families_are_declared():
    assert set(SPECTROGRAM) == {'byola', 'byola2', 'm2d', 'msm_mae', 'atst_clip', 'atst_frame', 'beats', 'eat', 'ced',
                                'dasheng', 'htsat', 'cnn14', 'coala', 'opera_ct', 'hf-whisper',
                                # the CLAP families' audio towers (HTS-AT, CNN14, M2D) take SpecAugment as theirs do
                                'laionclap', 'msclap', 'wavcaps', 'm2d_clap'}


@pytest.mark.parametrize('tiny_model', SPECTROGRAM, indirect=True)
def test_augment_called_in_training_only_and_eval_unchanged(tiny_model):
    name, model = tiny_model
    sr = model.sample_rate
    torch.manual_seed(0)
    wav, lengths = torch.randn(2, 2 * sr) * 0.1, torch.tensor([2 * sr, sr])
    before = model(wav, lengths)
    recorder = Recorder()
    model.input_augment = recorder
    after = model(wav, lengths)
    assert recorder.shapes == [], f'{name}: augmentation called in eval mode'
    assert torch.equal(before.embeddings, after.embeddings) and torch.equal(before.mask, after.mask)
    model.train()
    trained = model(wav, lengths)
    assert recorder.shapes, f'{name}: augmentation not called in training mode'
    assert all(len(s) == 3 and s[0] == 2 for s in recorder.shapes), recorder.shapes  # [B, F, T]
    assert not torch.allclose(trained.embeddings, before.embeddings)  # the augmented input reached the network


@pytest.mark.parametrize('tiny_model', sorted(TINY), indirect=True)
def test_freeze_patch_embedding(tiny_model):
    name, model = tiny_model
    embed = model.patch_embedding()
    if embed is None:
        return
    own = {id(p) for p in model.parameters()}  # a submodule, or a container of submodules (Whisper's two convs)
    mine = {id(p) for p in embed.parameters()}
    assert mine and mine <= own, f'{name}: not the model\'s own'
    embed.requires_grad_(False)
    model.train()
    sr = model.sample_rate
    emb = model.embed(torch.randn(2, sr) * 0.1, torch.tensor([sr, sr]))
    emb.sum().backward()
    assert all(p.grad is None for p in embed.parameters())
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('tiny_model', ['m2d', 'msm_mae'], indirect=True)
def test_training_mask_changes_training_output_only(tiny_model):
    name, model = tiny_model
    sr = model.sample_rate
    wav, lengths = torch.randn(2, 3 * sr) * 0.1, torch.tensor([3 * sr, sr])
    before = model(wav, lengths)
    model.set_training_mask(0.5)
    after = model(wav, lengths)
    assert torch.equal(before.embeddings, after.embeddings) and torch.equal(before.mask, after.mask)
    model.train()
    plain_mask = before.mask
    torch.manual_seed(1)
    masked = model(wav, lengths)
    assert masked.embeddings.shape == before.embeddings.shape
    assert not torch.allclose(masked.embeddings, before.embeddings)
    assert not (masked.mask & ~plain_mask).any()  # no padding frame becomes valid
    assert masked.mask.any(1).all()
    # Dropped frames (every token of the column dropped) are zero.
    assert (masked.embeddings[~masked.mask] == 0).all()
    model.set_training_mask(0.0)
    assert torch.allclose(model(wav, lengths).embeddings, before.embeddings, atol=1e-5)  # dropout-free train mode
    with pytest.raises(EvarError, match='training_mask'):
        model.set_training_mask(1.0)


@pytest.mark.parametrize('tiny_model', ['byola'], indirect=True)
def test_training_mask_refused_elsewhere(tiny_model):
    _, model = tiny_model
    with pytest.raises(EvarError, match='M2D and MSM-MAE'):
        model.set_training_mask(0.3)
