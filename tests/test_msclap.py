"""MS-CLAP 2022 / 2023 (evar.models.msclap): strict loading of tiny random checkpoints in msclap's layout, the
version table and EVAR's `weight_file: 2023`, the torchaudio-equivalent resampler, msclap's window filling and text
pooling rules, encode_text, and the tiny models through zeroshot.py (ESC-50 subset) and retr_a2t_t2a.py."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from helpers import ROOT, SHARED, needs_shared, run_script
from helpers.tiny_msclap import tiny_msclap

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model
from evar.models.msclap import fill_window, resolve_version, sinc_resample


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp('msclap')
    return {v: tiny_msclap(folder / v, v) for v in ('2022', '2023')}


def _model(values, **extra):
    return create_model('msclap', **{**values, **extra}).eval()


def test_strict_loading_errors(tiny, tmp_path):
    values = tiny['2022']
    state = torch.load(values['weight_file'])
    bad = dict(state['model'])
    bad['audio_encoder.base.conv_block1.conv9.weight'] = bad.pop('audio_encoder.base.conv_block1.conv2.weight')
    torch.save({'model': bad}, tmp_path / 'CLAP_weights_2022.pth')
    with pytest.raises(EvarError, match=r'conv_block1\.conv2\.weight'):
        _model(values, weight_file=str(tmp_path / 'CLAP_weights_2022.pth'))
    extra = dict(state['model'], **{'caption_encoder.base.pooler.extra': torch.zeros(1)})
    torch.save({'model': extra}, tmp_path / 'x_2022.pth')
    with pytest.raises(EvarError, match=r'pooler\.extra'):
        _model(values, weight_file=str(tmp_path / 'x_2022.pth'))
    with pytest.raises(EvarError, match=r'missing logit_scale'):
        torch.save({'model': {k: v for k, v in state['model'].items() if k != 'logit_scale'}}, tmp_path / 'y_2022.pth')
        _model(values, weight_file=str(tmp_path / 'y_2022.pth'))
    with pytest.raises(EvarError, match=r'does not exist.*huggingface\.co/microsoft/msclap'):
        _model(values, weight_file=str(tmp_path / 'absent_2022.pth'))
    with pytest.raises(EvarError, match='does not match'):  # a 2022 file read as 2023
        _model(values, version='2023')


def test_versions_from_evar_weight_file():
    p = load_config(ROOT / 'config' / 'msclap.yaml').params
    assert resolve_version(p) == ('2023', 'external/CLAP_weights_2023.pth')
    p = load_config(ROOT / 'config' / 'msclap.yaml', 'weight_file=2022').params  # EVAR's all_msclap2022.sh
    assert resolve_version(p) == ('2022', 'external/CLAP_weights_2022.pth')
    assert resolve_version(load_config(ROOT / 'config' / 'msclap_2022.yaml').params)[0] == '2022'
    with pytest.raises(EvarError, match='contradicts'):
        resolve_version(load_config(ROOT / 'config' / 'msclap.yaml', 'weight_file=2022,+version=2023').params)
    with pytest.raises(EvarError, match='cannot tell the version'):
        resolve_version(load_config(ROOT / 'config' / 'msclap.yaml', 'weight_file=w.pth').params)


def test_sinc_resample_matches_the_windowed_sinc_formula():
    # torchaudio's sinc_interp_hann worked out directly: output j at time j / 441 (in 1/320 input steps),
    # y_j = sum_n x_n h(j / 441 * 320 - n), h(d) = sinc(c d) hann(d) c / 320 on |c d| <= 6, c = 0.99 * 320 / 320.
    torch.manual_seed(0)
    x = torch.randn(1, 700, dtype=torch.float64)
    y = sinc_resample(x, 32000, 44100)
    assert y.shape == (1, math.ceil(700 * 441 / 320))
    c = 0.99
    for j in (0, 5, 400, 963):
        d = j * 320 / 441 - np.arange(700)
        t = np.clip(c * d, -6, 6)
        h = np.sinc(t) * np.cos(t * np.pi / 12) ** 2 * c
        assert float(y[0, j]) == pytest.approx(float((x[0].numpy() * h).sum()), abs=1e-9)
    assert sinc_resample(x, 16000, 16000) is x


def test_window_fill_and_text_rules(tiny):
    wave = torch.arange(5.0)
    assert fill_window(wave, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]  # tiled, cut (msclap's rule)
    gpt = _model(tiny['2023'])
    tokens = gpt._tokens(['ab', 'a!'])
    ids = tokens['input_ids']
    assert ids.shape == (2, 77) and gpt._tokenizer.pad_token_id == 0  # '!' pads, as in GPT-2's vocabulary
    eot = gpt._tokenizer.convert_tokens_to_ids('<|endoftext|>')
    assert ids[0, :4].tolist()[-1] == eot and int((ids[0] != 0).sum()) == 4  # a, b, ' ', <|endoftext|>
    bert = _model(tiny['2022'])
    tokens = bert._tokens(['ab'])
    assert tokens['input_ids'].shape == (1, 100) and tokens['input_ids'][0, 0] == bert._tokenizer.cls_token_id
    for model in (gpt, bert):
        with torch.inference_mode():
            text = model.encode_text(['a dog barks', 'rain', 'a dog barks'])
        assert text.shape == (3, 16)
        np.testing.assert_allclose(text.norm(dim=-1).numpy(), 1.0, atol=1e-6)
        assert torch.allclose(text[0], text[2]) and not torch.allclose(text[0], text[1], atol=1e-3)


def test_windows_chunks_head_and_batch_independence(tiny):
    model = _model(tiny['2022'], sample_rate=44100)
    torch.manual_seed(1)
    long = torch.randn(12 * 44100) * 0.1  # 5 + 5 + 2 s
    with torch.inference_mode():
        frames = model(long[None], torch.tensor([len(long)]))
        parts = [model.embed(p[None], torch.tensor([len(p)])) for p in long.split(5 * 44100)]
        head = _model(tiny['2022'], sample_rate=44100, long_clip='head').embed(long[None], torch.tensor([len(long)]))
        short = long[:3 * 44100]
        batch = model.embed(torch.stack([long, torch.nn.functional.pad(short, (0, len(long) - len(short)))]),
                            torch.tensor([len(long), len(short)]))
        alone = model.embed(short[None], torch.tensor([len(short)]))
    assert frames.embeddings.shape == (1, 3, 16) and frames.mask.all()
    np.testing.assert_allclose(frames.embeddings[0].numpy(), torch.cat(parts).numpy(), atol=1e-5)
    np.testing.assert_allclose(head.numpy(), parts[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(batch[1].numpy(), alone[0].numpy(), atol=1e-5)


def _config(tmp_path, values) -> str:
    config = tmp_path / 'msclap.yaml'
    config.write_text('audio_repr: msclap\n' + ''.join(f'{k}: {json.dumps(v)}\n' for k, v in values.items()))
    return config


@needs_shared
@pytest.mark.slow
def test_zeroshot_script_on_esc50_clips_with_tiny_msclap(tmp_path, tiny):
    from evar.audio import load_audio

    values = tiny['2022']
    config = _config(tmp_path, values)
    esc = SHARED / 'data' / 'ESC-50'
    with open(esc / 'meta' / 'esc50.csv', newline='') as f:
        clips = list(csv.DictReader(f))[:9]
    with open(tmp_path / 'zs.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['file_name', 'label', 'split'])
        for i, c in enumerate(clips):
            writer.writerow([f'audio/{c["filename"]}', c['category'], ('train', 'valid', 'test')[i % 3]])
    task = tmp_path / 'zs.yaml'
    task.write_text(f'metadata: zs.csv\ndata: {esc}\nunit_sec: 5.0\n')
    proc = run_script('zeroshot.py', config, task, '--templates', "['the sound of {}']", '--work_root',
                      tmp_path / 'work', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / 'results' / 'scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    assert (row['task'], row['mode'], row['metric']) == ('zs_zs', 'zeroshot', 'accuracy')
    # Reference outside the pipeline: the model on each test clip read at 32 kHz, cosine with each class caption.
    model = _model(values)
    classes = sorted({c['category'] for c in clips})
    test = [c for i, c in enumerate(clips) if i % 3 == 2]
    with torch.inference_mode():
        text = model.encode_text([f'the sound of {c.replace("_", " ")}' for c in classes]).double().numpy()
        audio = np.concatenate([model.embed(torch.from_numpy(x)[None], torch.tensor([len(x)])).double().numpy()
                                for x in (load_audio(esc / 'audio' / c['filename'], 32000)[0] for c in test)])
    expected = np.mean((audio @ text.T).argmax(1) == np.array([classes.index(c['category']) for c in test]))
    assert float(row['score']) == pytest.approx(expected, abs=5e-6)


@needs_shared
@pytest.mark.slow
def test_retrieval_script_on_real_clips_with_tiny_msclap(tmp_path, tiny):
    from helpers.clap_scripts import check_retrieval

    row = check_retrieval(tmp_path, _config(tmp_path, tiny['2023']), dim=16)
    assert row['model'] == 'msclap'
