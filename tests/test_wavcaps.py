"""WavCaps HTSAT-BERT (evar.models.wavcaps): strict loading of a tiny random checkpoint in the publisher's layout,
10 s chunks zero-padded and averaged as EVAR's wrapper does (here 2.5 s chunks of the tiny model), encode_text's
truncation and normalisation, and the tiny model through zeroshot.py (shared ESC-50 subset) and retr_a2t_t2a.py."""

import json
import shutil

import pytest
import torch

from helpers import needs_shared
from helpers.clap_scripts import check_retrieval, check_zeroshot_esc50
from helpers.tiny_wavcaps import tiny_wavcaps

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

SR = 32000


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return tiny_wavcaps(tmp_path_factory.mktemp('wavcaps'))


@pytest.fixture(scope='module')
def tiny_fast(tmp_path_factory):
    """One 5 s chunk per ESC-50 clip and a 640-sample hop: the script tests' cost halves."""
    return tiny_wavcaps(tmp_path_factory.mktemp('wavcaps_fast'), fast=True)


def _model(values, **extra):
    return create_model('wavcaps', **{**values, **extra}).eval()


def _resave(tmp_path, values, edit) -> str:
    """The tiny checkpoint with `edit(checkpoint)` applied, saved under tmp_path; its path."""
    checkpoint = torch.load(values['weight_file'], weights_only=True)
    edit(checkpoint)
    path = tmp_path / 'edited.pt'
    torch.save(checkpoint, path)
    return str(path)


def test_strict_loading_errors(tiny, tmp_path):
    with pytest.raises(EvarError, match=r'does not exist.*drive\.google\.com'):
        _model(tiny, weight_file=str(tmp_path / 'HTSAT-BERT-PT.pt'))
    renamed = 'audio_encoder.audio_enc.layers.0.blocks.0.norm1.weight'

    def rename(cp):
        cp['model'][renamed.replace('norm1', 'norm9')] = cp['model'].pop(renamed)
    with pytest.raises(EvarError, match=r'layers\.0\.blocks\.0\.norm1\.weight'):
        _model(tiny, weight_file=_resave(tmp_path, tiny, rename))
    with pytest.raises(EvarError, match=r"outside the WavCaps model: \['queue'\]"):
        _model(tiny, weight_file=_resave(tmp_path, tiny, lambda cp: cp['model'].update(queue=torch.zeros(3))))
    with pytest.raises(EvarError, match=r"\(audio_proj\.\*\) does not match the architecture\. Missing: \['2\.bias'\]"):
        _model(tiny, weight_file=_resave(tmp_path, tiny, lambda cp: cp['model'].pop('audio_proj.2.bias')))
    with pytest.raises(EvarError, match=r'f_max is 14000.0 .*audio_args\.f_max = 8000'):
        _model(tiny, weight_file=_resave(tmp_path, tiny, lambda cp: cp['config']['audio_args'].update(f_max=8000)))
    with pytest.raises(EvarError, match=r'CNN14-BERT-PT\.pt is a cnn14 release, but the file holds a htsat'):
        _model(tiny, weight_file=str(shutil.copy(tiny['weight_file'], tmp_path / 'CNN14-BERT-PT.pt')))
    with pytest.raises(EvarError, match='a dict with a "model" state dict'):
        _model(tiny, weight_file=_resave(tmp_path, tiny, lambda cp: cp.pop('model')))
    # The text tower is checked strictly when it is first built.
    model = _model(tiny, weight_file=_resave(tmp_path, tiny, lambda cp: cp['model'].pop(
        'text_encoder.text_encoder.encoder.layer.0.output.dense.weight')))
    with pytest.raises(EvarError, match=r'Missing: \[.encoder\.layer\.0\.output\.dense\.weight'):
        model.encode_text(['rain'])
    with pytest.raises(EvarError, match="cannot load the config and tokenizer of text_model"):
        _model(tiny, text_model=str(tmp_path / 'no_such_folder')).encode_text(['rain'])


def test_chunks_are_zero_padded_and_averaged(tiny):
    model = _model(tiny)  # 2.5 s chunks (80000 samples)
    torch.manual_seed(0)
    wav = torch.randn(2, 6 * SR) * 0.1
    with torch.inference_mode():
        both = model.embed(wav, torch.tensor([6 * SR, SR]))
        chunks = torch.zeros(3, 80000)
        chunks[0], chunks[1], chunks[2, :SR] = wav[0, :80000], wav[0, 80000:160000], wav[0, 160000:]
        each = model.embed(chunks, torch.full((3,), 80000))
        short_padded = model.embed(torch.nn.functional.pad(wav[1:, :SR], (0, 80000 - SR)), torch.tensor([80000]))
    assert model.frame_hop_sec == 2.5 and model.embedding_dim == 32
    torch.testing.assert_close(each.norm(dim=1), torch.ones(3))  # each chunk is a unit joint-space vector
    torch.testing.assert_close(both[0], each.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], short_padded[0], atol=1e-5, rtol=1e-5)


def test_cnn14_release_matches_a_plain_torch_reference(tiny, tmp_path):
    """CNN14-BERT: bn0, six conv blocks each followed by 2x2 average pooling, mean over frequency, max + mean over
    time, audio_proj, L2 norm; recomputed here with torch.nn.functional from the file's tensors."""
    import torch.nn.functional as F

    from helpers.tiny_wavcaps import write_wavcaps

    path = tmp_path / 'CNN14-BERT-PT.pt'
    state = write_wavcaps(path, tiny['text_model'], cnn14=(4, 4, 8, 8, 16, 16))
    model = _model(tiny, weight_file=str(path))
    wav = torch.randn(1, 3 * SR, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.inference_mode():
        ours = model.embed(wav, torch.tensor([3 * SR]))[0]  # two 2.5 s chunks, the second padded
        feats, _ = model.features(wav, torch.tensor([3 * SR]))

    def bn(x, key):
        return F.batch_norm(x, state[key + '.running_mean'], state[key + '.running_var'], state[key + '.weight'],
                            state[key + '.bias'], eps=1e-5)

    def w(key):
        return state['audio_encoder.audio_enc.' + key]

    embs = []
    for chunk in feats[0].T.split(feats.shape[2] // 2):  # [T, 64] each
        x = bn(chunk.T[None, :, :, None], 'audio_encoder.audio_enc.bn0')[..., 0].transpose(1, 2)[:, None]
        for i in range(1, 7):
            for j in (1, 2):
                x = F.relu(bn(F.conv2d(x, w(f'conv_block{i}.conv{j}.weight'), padding=1),
                              f'audio_encoder.audio_enc.conv_block{i}.bn{j}'))
            x = F.avg_pool2d(x, 2)
        x = x.mean(3)
        h = F.relu(F.linear(x.amax(2) + x.mean(2), state['audio_proj.0.weight'], state['audio_proj.0.bias']))
        embs.append(F.normalize(F.linear(h, state['audio_proj.2.weight'], state['audio_proj.2.bias']), dim=-1)[0])
    assert model.encoder == 'cnn14' and model.embedding_dim == 32
    torch.testing.assert_close(ours, torch.stack(embs).mean(0), atol=1e-5, rtol=1e-4)


def test_encode_text_truncates_at_30_tokens_and_is_unit_norm(tiny):
    model = _model(tiny)
    long = 'a dog barks while rain falls on a tin roof nearby'
    with torch.inference_mode():
        emb = model.encode_text([long, long[:28], 'rain', 'wind'])  # char tokens: <s> + 28 + </s> = 30
        alone = model.encode_text(['rain'])
    assert emb.shape == (4, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(emb[0], emb[1])
    torch.testing.assert_close(emb[2], alone[0], atol=1e-5, rtol=1e-5)  # padding to the longest caption is masked
    assert float((emb[2] - emb[3]).abs().max()) > 1e-3


def test_evar_yaml_loads_with_evar_names(tmp_path):
    config = load_config('config/wavcaps.yaml')
    assert config.audio_repr == 'wavcaps' and config.params.weight_file == 'external/WavCaps/HTSAT-BERT-PT.pt'
    assert (config.params.clip_sec, config.params.text_model, config.params.text_max_length) == (10.0, None, 30)


def _config(tmp_path, values):
    config = tmp_path / 'wavcaps.yaml'
    config.write_text('audio_repr: ar_wavcaps.AR_WavCaps\n'
                      + ''.join(f'{k}: {json.dumps(v)}\n' for k, v in values.items()))
    return config


@needs_shared
@pytest.mark.slow
def test_zeroshot_script_on_esc50_with_tiny_wavcaps(tmp_path, tiny_fast):
    check_zeroshot_esc50(tmp_path, _config(tmp_path, tiny_fast), 32, every=8)  # 52 clips of the 414


@needs_shared
@pytest.mark.slow
def test_retrieval_script_on_real_clips_with_tiny_wavcaps(tmp_path, tiny_fast):
    check_retrieval(tmp_path, _config(tmp_path, tiny_fast), 32)
