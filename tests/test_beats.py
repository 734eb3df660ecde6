"""BEATs: the plain-torch Kaldi fbank, the architecture read from the checkpoint's cfg and loaded strictly under the
official names, padding invariance (the positional convolution at the padded edge included), chunking of long
clips, and the entry points.

Most tests use a tiny BEATs (2 layers, 48-d) written as an official container {'cfg': ..., 'model': ...}, so the
file runs in seconds; one test builds the real BEATs_iter3 size and runs it on a real clip."""

import math
import re

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import KaldiFbank

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared
from helpers.tiny_models import BEATS_TINY_CFG, write_beats

CONFIG = ROOT / 'config' / 'beats.yaml'
ITER3_CFG = dict(BEATS_TINY_CFG, embed_dim=512, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
                 encoder_attention_heads=12, conv_pos=128, conv_pos_groups=16)


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('beats') / 'BEATs_tiny.pt'
    write_beats(path)
    return path


@pytest.fixture(scope='module')
def tiny_model(tiny_ckpt):
    return create_model('beats', weight_file=str(tiny_ckpt)).eval()


def real_clips(sample_rate=16000):
    from evar.audio import load_audio

    files = [sorted((SHARED / 'data' / 'fsdd' / 'recordings').glob('*.flac'))[0],
             sorted((SHARED / 'data' / 'RAVDESS' / 'Actor_01').glob('*.flac'))[0],
             sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[0]]
    return [torch.from_numpy(load_audio(f, sample_rate)[0]) for f in files]


def test_fbank_matches_torchaudio_kaldi_values():
    """Values of torchaudio.compliance.kaldi.fbank(x * 2**15, num_mel_bins=128, sample_frequency=16000,
    frame_length=25, frame_shift=10, dither=0) for this signal (torchaudio 2.9.1), which is how BEATs calls it.

    The references were taken in float64 (x rounded to float32 first), so they hold on any CPU: torchaudio then
    computes in float64 except its mel filters (float32, cast), as the front end does when built under float64.
    float32 values are not stored: a band E below its frame's strongest band E_peak carries the FFT's float32 error
    (~eps32 x the strongest amplitude) as a log error ~eps32 sqrt(E_peak / E), up to 5e-2 for the faintest bands
    here, and another CPU's FFT moved the first band by 9.5e-5. So float32 is checked against float64 under that
    bound: measured at most 10x it here (100x allowed), 0.1x on the other CPU."""
    t = torch.arange(4000, dtype=torch.float64) / 16000
    x = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.sin(2 * math.pi * 3100 * t * (1 + t))).float()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the module's own window in float64, as torchaudio makes it for float64
    try:
        exact = KaldiFbank().double().log_mel(x.double()[None] * 2 ** 15)[0]
    finally:
        torch.set_default_dtype(previous)
    # float64 error ~eps64 sqrt(E_peak / E) per band: < 1e-11 at these bands, < 4e-4 summed over every band.
    np.testing.assert_allclose(exact[0, :4].numpy(), [7.854124629106196, 5.5322753596333865, 8.975676557947043,
                                                      -15.942385152878742], rtol=0, atol=1e-9)
    assert float(exact[12, 100]) == pytest.approx(10.4235013895028, abs=1e-9)
    assert float(exact.sum()) == pytest.approx(21729.11253539472, abs=1e-3)

    fbank = KaldiFbank().log_mel(x[None] * 2 ** 15)[0]
    assert fbank.shape == (23, 128) and fbank.dtype == torch.float32
    same_filters = KaldiFbank().double().log_mel(x.double()[None] * 2 ** 15)[0]  # float32 window and filters
    energy = same_filters.exp()
    bound = torch.finfo(torch.float32).eps * (energy.max(1, keepdim=True).values / energy).sqrt()
    assert bool(((fbank.double() - same_filters).abs() <= 100 * bound).all())


def test_architecture_comes_from_the_checkpoint_cfg(tiny_model):
    m = tiny_model
    assert m.arch.encoder_layers == 2 and m.embedding_dim == 48 and m.frame_hop_sec == pytest.approx(0.16)
    layers = m.model.encoder.layers
    assert layers[1].self_attn.relative_attention_bias is layers[0].self_attn.relative_attention_bias
    assert layers[0].residual_scale == pytest.approx(4 ** 0.25)  # deep-norm: (2 N)^(1/4)
    with torch.inference_mode():
        frames = m(torch.randn(2, 32000) * 0.1, torch.tensor([32000, 16000]))
    # 2 s: 198 frames -> 12 rows of 0.16 s; 1 s: 98 frames -> 6 rows.
    assert frames.embeddings.shape == (2, 12, 48) and frames.mask.sum(1).tolist() == [12, 6]


@needs_shared
def test_batch_equals_single_on_real_clips_of_unequal_lengths(tiny_model):
    """Lengths whose last 16 frames are partly padding in the batch: the official padding mask would keep that
    patch; here it is dropped as in the clip alone, and the positional convolution sees zeros past the end."""
    clips = real_clips()
    lengths = [c.shape[0] for c in clips] + [2000, 52800]  # fsdd ~0.3 s, RAVDESS 3.3 s, ESC-50 5 s, 0.125 s, 3.3 s
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        source = clips[i % len(clips)]
        wav[i, :n] = source[:n] if source.shape[0] >= n else source.repeat(n // source.shape[0] + 1)[:n]
    lens = torch.tensor(lengths)
    with torch.inference_mode():
        batch = tiny_model.embed(wav, lens)
        for i, n in enumerate(lengths):
            alone = tiny_model.embed(wav[i:i + 1, :n], lens[i:i + 1])[0]
            np.testing.assert_allclose(batch[i].numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
    batch_equals_single(tiny_model, [16000 * 4 + 123, 16000, 3000, 700])  # noise in the padding region


def test_long_clips_are_cut_into_pieces_run_alone(tiny_ckpt):
    m = create_model('beats', weight_file=str(tiny_ckpt), chunk_sec=3.0).eval()
    assert m.chunk_rows == 18  # 300 frames -> 18 rows of 16 frames
    torch.manual_seed(1)
    x = torch.randn(1, 16000 * 8) * 0.1
    piece = 18 * 16 * 160
    with torch.inference_mode():
        frames = m(x, torch.tensor([x.shape[1]]))
        assert frames.embeddings.shape == (1, 49, 48) and bool(frames.mask.all())  # 798 frames: 18 + 18 + 13 rows
        second = x[:, piece:2 * piece + 240]  # the wave of rows 18..35: exactly 288 frames
        alone = m(second, torch.tensor([second.shape[1]])).embeddings[0]
        np.testing.assert_allclose(frames.embeddings[0, 18:36].numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
        whole = create_model('beats', weight_file=str(tiny_ckpt), chunk_sec=None).eval()
        assert not torch.allclose(whole(x, torch.tensor([x.shape[1]])).embeddings, frames.embeddings, atol=1e-3)
    batch_equals_single(m, [16000 * 8, 16000 * 4, 5000])


def test_layer_selection(tiny_ckpt):
    wav, n = torch.randn(1, 24000) * 0.1, torch.tensor([24000])
    with torch.inference_mode():
        first = create_model('beats', weight_file=str(tiny_ckpt), output_layers=0).eval()(wav, n).embeddings
        last = create_model('beats', weight_file=str(tiny_ckpt)).eval()(wav, n).embeddings
        both = create_model('beats', weight_file=str(tiny_ckpt), output_layers='all').eval()(wav, n).embeddings
    assert both.shape[-1] == 96 and torch.allclose(both[..., :48], first) and torch.allclose(both[..., 48:], last)
    with pytest.raises(EvarError, match='out of range'):
        create_model('beats', weight_file=str(tiny_ckpt), output_layers=5).eval()(wav, n)


@needs_shared
def test_real_size_model_on_a_real_clip(tmp_path):
    """The BEATs_iter3 size (90M parameters) loads strictly from its official container and embeds a real clip."""
    write_beats(tmp_path / 'BEATs_iter3_random.pt', cfg=ITER3_CFG, perturb=False)
    m = create_model('beats', weight_file=str(tmp_path / 'BEATs_iter3_random.pt')).eval()
    wav = real_clips()[2]
    with torch.inference_mode():
        frames = m(wav[None], torch.tensor([wav.shape[0]]))
    assert frames.embeddings.shape == (1, 31, 768) and torch.isfinite(frames.embeddings).all()  # 5 s: 498 frames
    assert sum(p.numel() for p in m.model.parameters()) > 90e6


def test_wrong_or_missing_keys_fail_with_the_strict_message(tmp_path, tiny_ckpt):
    container = torch.load(tiny_ckpt, weights_only=True)
    state = container['model']
    missing = {k: v for k, v in state.items() if k != 'encoder.layers.1.self_attn.grep_a'}
    torch.save({'cfg': container['cfg'], 'model': missing}, tmp_path / 'missing.pt')
    with pytest.raises(EvarError, match=re.escape("Missing: ['encoder.layers.1.self_attn.grep_a']")):
        create_model('beats', weight_file=str(tmp_path / 'missing.pt'))
    extra = dict(state, **{'encoder.pos_conv.0.weight': torch.zeros(1)})
    torch.save({'cfg': container['cfg'], 'model': extra}, tmp_path / 'extra.pt')
    with pytest.raises(EvarError, match=re.escape("unexpected: ['encoder.pos_conv.0.weight']")):
        create_model('beats', weight_file=str(tmp_path / 'extra.pt'))
    torch.save({'cfg': dict(container['cfg'], encoder_ffn_embed_dim=64), 'model': state}, tmp_path / 'shape.pt')
    with pytest.raises(EvarError, match=re.escape('encoder.layers.0.fc1.weight: file (96, 48) vs model (64, 48)')):
        create_model('beats', weight_file=str(tmp_path / 'shape.pt'))
    torch.save(state, tmp_path / 'bare.pt')
    with pytest.raises(EvarError, match="not an official BEATs checkpoint"):
        create_model('beats', weight_file=str(tmp_path / 'bare.pt'))


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, tiny_ckpt):
    demo_score(tmp_path, work, CONFIG, f'weight_file={tiny_ckpt},batch_size=64', 'beats')
