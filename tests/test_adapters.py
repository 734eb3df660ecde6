"""Bring-your-own-model adapters: tiny HEAR and X-ARES modules written into tmp_path, run through the registry and
a full linear evaluation of the demo task."""

import sys

import pytest
import torch

from evar.errors import EvarError
from evar.modes.linear import HeadOptions, lineareval
from evar.models import create_model

from helpers import ROOT, batch_equals_single
from helpers.tiny_models import ADAPTER_MODULES, write_adapter_modules


@pytest.fixture
def modules(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_adapter_modules(tmp_path)))
    yield tmp_path
    for name in ADAPTER_MODULES:
        sys.modules.pop(name, None)


def write_config(path, text):
    path.write_text(text + 'batch_size: 256\nlr_lineareval: 0.0003\n')
    return path


def test_hear_timestamp_frames_and_padding(modules):
    model = create_model('hear', module='tiny_hear', use='timestamp').eval()
    wav = torch.randn(2, 16000) * 0.1
    frames = model(wav, torch.tensor([16000, 8000]))
    assert frames.embeddings.shape == (2, 101, 64)
    assert frames.mask.sum(1).tolist() == [101, 51]  # timestamps 0..1000 ms and 0..500 ms
    assert batch_equals_single(model, [16000, 9000, 800]).shape == (3, 64)
    assert isinstance(model.model, torch.nn.Module) and 'model.scale' in dict(model.named_parameters())


def test_hear_scene_runs_each_clip_unpadded(modules):
    model = create_model('hear', module='tiny_hear', use='scene').eval()
    calls = sys.modules['tiny_hear'].CALLS
    calls.clear()
    frames = model(torch.randn(3, 16000) * 0.1, torch.tensor([16000, 8000, 16000]))
    assert frames.embeddings.shape == (3, 1, 128) and frames.mask.all()
    assert sorted(calls) == [(1, 8000), (2, 16000)]  # grouped by length, never padded
    assert batch_equals_single(model, [16000, 9000, 800]).shape == (3, 128)


@pytest.mark.parametrize('cls,mask', [('Encoder', True), ('NoMask', False)])
def test_xares_frames_mask_and_padding(modules, cls, mask):
    model = create_model('xares', target=f'tiny_xares:{cls}', init_args={'n_mels': 32}).eval()
    assert model.takes_mask is mask and model.frame_hop_sec == pytest.approx(0.01)
    frames = model(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8005]))
    assert frames.embeddings.shape == (2, 101, 32)
    assert frames.mask.sum(1).tolist() == [100, 51]  # ceil(n / 160), clipped to T
    assert (model.encoder.masks[-1] is not None) is mask
    # The encoder subtracts a global mean, so only running lengths apart keeps padding out.
    assert batch_equals_single(model, [16000, 9000, 800]).shape == (2 + 1, 32)


def test_adapter_errors(modules):
    with pytest.raises(EvarError, match="cannot import module 'no_such_module'"):
        create_model('hear', module='no_such_module')
    with pytest.raises(EvarError, match='sample_rate is 16000, the config says 44100'):
        create_model('hear', module='tiny_hear', sample_rate=44100)
    with pytest.raises(EvarError, match='use must be timestamp or scene'):
        create_model('hear', module='tiny_hear', use='both')
    with pytest.raises(EvarError, match='set target'):
        create_model('xares')
    with pytest.raises(EvarError, match="has no class 'Nope'"):
        create_model('xares', module='tiny_xares', class_name='Nope')
    with pytest.raises(EvarError, match='init_args'):
        create_model('xares', target='tiny_xares:Encoder', init_args={'bad': 1})


@pytest.mark.parametrize('name,text', [
    ('hear_ts', 'audio_repr: hear\nmodule: tiny_hear\nsample_rate: 16000\nuse: timestamp\n'),
    ('hear_scene', 'audio_repr: hear\nmodule: tiny_hear\nsample_rate: 16000\nuse: scene\n'),
    ('xares', 'audio_repr: xares\ntarget: tiny_xares:Encoder\ninit_args: {n_mels: 48}\nsample_rate: 16000\n'
              'temporal_pooling_type: mean_max\n'),
])


def test_lineareval_on_demo_via_yaml(tmp_path, work, modules, name, text):
    config = write_config(tmp_path / f'{name}.yaml', text)
    result = lineareval(config, 'demo', work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
                        head=HeadOptions(head='logreg'), progress=False)[0]
    assert result.score > 0.5, result.score
    source = modules / ('tiny_xares.py' if name == 'xares' else 'tiny_hear.py')
    meta = next((work / 'cache').glob('embs-*.json')).read_text()
    assert len(list((work / 'cache').glob('embs-*.npy'))) == 1 and source.is_file() and meta


def test_example_configs_document_the_keys():
    from evar.config import load_config
    from evar.params import read_yaml_mapping

    for name, keys in (('hear_example', {'module', 'model_file', 'sample_rate', 'use'}),
                       ('xares_example', {'target', 'init_args', 'sample_rate'})):
        path = ROOT / 'config' / f'{name}.yaml'
        assert keys <= set(read_yaml_mapping(path, 'config'))
        load_config(path)  # keys are valid; building needs the user's module
        with pytest.raises(EvarError, match='cannot import module'):
            cfg = load_config(path)
            create_model(cfg.audio_repr, cfg.params)
