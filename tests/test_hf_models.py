"""The Hugging Face AR (audio_repr: hf) on tiny random models saved locally: no download, a few seconds each."""

import pytest
import torch

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, batch_equals_single
from helpers.tiny_models import HF_CONV, HF_KINDS, HF_TINY, write_hf_folder

transformers = pytest.importorskip('transformers')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """kind -> folder holding a tiny random model and its feature extractor (save_pretrained)."""
    root = tmp_path_factory.mktemp('hf')
    return {kind: write_hf_folder(root / kind, kind) for kind in HF_KINDS}


def test_clap_one_embedding_per_10s_piece_and_outputs(tiny):
    """25 s at 48 kHz -> 10 + 10 + 5 s pieces; a piece shorter than 10 s is filled by repeating it (CLAP's
    'repeatpad'), so a clip and the same clip repeated to 10 s give the same embedding."""
    folder = str(tiny['clap'])
    model = create_model('hf', model_id=folder, sample_rate=48000, output='audio_embeds').eval()
    n = 48000 * 25
    wav = torch.randn(1, n) * 0.1
    with torch.inference_mode():
        frames = model(wav, torch.tensor([n]))
        assert frames.embeddings.shape == (1, 3, 16) and model.frame_hop_sec == 10.0
        short = wav[:, :48000 * 2]
        repeated = short.repeat(1, 5)
        torch.testing.assert_close(model.embed(short, torch.tensor([96000])),
                                   model.embed(repeated, torch.tensor([480000])), atol=1e-4, rtol=1e-4)
        tower = create_model('hf', model_id=folder, sample_rate=48000).eval()
        assert tower.embed(short, torch.tensor([96000])).shape == (1, 32)  # audio tower's pooled output
    with pytest.raises(EvarError, match='expects 48000 Hz'):
        create_model('hf', model_id=folder)
    with pytest.raises(EvarError, match="'audio_embeds' is only for CLAP"):
        create_model('hf', model_id=str(tiny['hubert']), output='audio_embeds')


TINY_MERT_CONFIG = '''from transformers import HubertConfig


class TinyMertConfig(HubertConfig):
    model_type = 'tiny_mert'
'''
TINY_MERT_MODEL = '''from transformers import HubertModel

from .configuration_tiny_mert import TinyMertConfig


class TinyMertModel(HubertModel):
    config_class = TinyMertConfig
'''


def test_remote_code_model_like_mert_loads_with_trust_remote_code(tmp_path, tiny):
    """A model whose code ships in its folder (as MERT's does on the hub) loads through AutoModel only with
    trust_remote_code, and runs as a waveform encoder."""
    import json
    import shutil

    folder = tmp_path / 'tiny_mert'
    shutil.copytree(tiny['hubert'], folder)
    (folder / 'configuration_tiny_mert.py').write_text(TINY_MERT_CONFIG)
    (folder / 'modeling_tiny_mert.py').write_text(TINY_MERT_MODEL)
    config = json.loads((folder / 'config.json').read_text())
    config.update(model_type='tiny_mert', architectures=['TinyMertModel'],
                  auto_map={'AutoConfig': 'configuration_tiny_mert.TinyMertConfig',
                            'AutoModel': 'modeling_tiny_mert.TinyMertModel'})
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(EvarError, match='cannot load'):
        create_model('hf', model_id=str(folder))
    model = create_model('hf', model_id=str(folder), trust_remote_code=True).eval()
    assert type(model.backbone).__name__ == 'TinyMertModel'
    reference = create_model('hf', model_id=str(tiny['hubert'])).eval()
    with torch.inference_mode():
        wav, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
        torch.testing.assert_close(model.embed(wav, lengths), reference.embed(wav, lengths))


@pytest.mark.parametrize('kind', ['wav2vec2', 'whisper', 'ast'])
def test_layer_selection_shapes(tiny, kind):
    wav, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 5000])
    shapes = {}
    for name, kw in {'list': dict(output_layers=[0, -1]), 'all': dict(output_layers='all'),
                     'avg': dict(output_layers='all', layer_average=True)}.items():
        model = create_model('hf', model_id=str(tiny[kind]), **kw).eval()
        with torch.inference_mode():
            shapes[name] = tuple(model.embed(wav, lengths).shape)
    assert shapes == {'list': (2, 64), 'all': (2, 96), 'avg': (2, 32)}  # 2 layers + input embeddings = 3 states
    with pytest.raises(EvarError, match='out of range'):
        create_model('hf', model_id=str(tiny[kind]), output_layers=7).embed(wav, lengths)


def test_long_audio_is_chunked_and_frames_stay_valid(tiny):
    """Whisper: 65 s -> 30 + 30 + 5 s chunks, 50 Hz frames from real audio only; AST: 2 s chunks of patch tokens."""
    n = 16000 * 65
    model = create_model('hf', model_id=str(tiny['whisper'])).eval()
    with torch.inference_mode():
        frames = model(torch.randn(1, n) * 0.1, torch.tensor([n]))
    assert frames.embeddings.shape[1] == 1500 + 1500 + 250 and bool(frames.mask.all())
    ast = create_model('hf', model_id=str(tiny['ast'])).eval()
    with torch.inference_mode():
        one, two = (ast(torch.randn(1, k) * 0.1, torch.tensor([k])) for k in (16000, 40000))
    assert two.embeddings.shape[1] > one.embeddings.shape[1] > 0


def test_wav2vec2_conv_features(tiny):
    model = create_model('hf', model_id=str(tiny['wav2vec2']), output='conv_features').eval()
    assert batch_equals_single(model, [8000, 3000]).shape == (2, 16)


def test_missing_or_bad_model_folder_says_what_is_expected(tmp_path):
    with pytest.raises(EvarError, match='does not exist.*save_pretrained'):
        create_model('hf', model_id=str(tmp_path / 'nope'))
    with pytest.raises(EvarError, match='no config.json'):
        create_model('hf', model_id=str(tmp_path))
    with pytest.raises(EvarError, match='model_id is not set'):
        create_model('hf')


def test_lineareval_demo_with_tiny_model(tmp_path, work, tiny):
    from test_lineareval import run
    from evar.modes.linear import HeadOptions
    from evar.results import read_scores

    cfg = tmp_path / 'tiny_w2v2.yaml'
    cfg.write_text(f'audio_repr: hf\nmodel_id: {tiny["wav2vec2"]}\noutput_layers: all\nbatch_size: 64\n')
    result = run(tmp_path, work, config=cfg, head=HeadOptions(head='logreg'))[0]
    assert 0.0 <= result.score <= 1.0
    rows = read_scores(tmp_path / 'results' / 'scores.csv')
    assert rows[0]['representation'] == 'tiny_w2v2' and rows[0]['task'] == 'demo'
    assert len(list((work / 'cache').glob('embs-*.npy'))) == 1


SHIPPED = ['wav2vec2feature', 'wav2vec2context', 'wav2vec2logit', 'hubert', 'wavlm', 'data2vec', 'whisper', 'ast',
           'clap_htsat_unfused', 'mert_v1_95m']


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / 'config' / f'{name}.yaml')
    assert cfg.audio_repr == 'hf' and '/' in cfg.model_params['model_id']


def test_ctc_logits_and_separate_feature_extractor(tmp_path, tiny):
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**HF_TINY, **HF_CONV, feat_extract_norm='group', vocab_size=12)
    transformers.Wav2Vec2ForCTC(config).save_pretrained(tmp_path / 'ctc')  # no preprocessor_config.json here
    model = create_model('hf', model_id=str(tmp_path / 'ctc'), output='ctc_logits',
                         feature_extractor_id=str(tiny['wav2vec2'])).eval()
    assert batch_equals_single(model, [8000, 5000, 1000]).shape == (3, 12)
    with pytest.raises(EvarError, match='only for waveform models'):
        create_model('hf', model_id=str(tiny['whisper']), output='conv_features')


def test_changed_model_folder_gets_a_new_cache_key(tmp_path, work, tiny):
    """The cache key hashes the folder's files: new weights saved to the same folder never reuse embeddings."""
    import shutil

    from test_lineareval import run

    folder = tmp_path / 'model'
    shutil.copytree(tiny['wav2vec2'], folder)
    cfg = tmp_path / 'tiny.yaml'
    cfg.write_text(f'audio_repr: hf\nmodel_id: {folder}\n')
    run(tmp_path, work, config=cfg)
    model = transformers.AutoModel.from_pretrained(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    model.save_pretrained(folder)
    run(tmp_path, work, config=cfg)
    assert len(list((work / 'cache').glob('embs-*.npy'))) == 2
