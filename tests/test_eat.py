"""EAT on small random checkpoints in the official formats (Hugging Face folder, fairseq state dict): strict
loading, Kaldi fbank front end, windows and masks, padding invariance on real clips, lineareval, errors
(evar.check's checks: tests/test_contract.py)."""

import math
import re

import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import kaldi_mel_filterbank
from evar.models.eat import read_safetensors

from helpers import ROOT, SHARED, batch_equals_single, demo_score, needs_shared, pad_clips
from helpers.tiny_models import eat_state, write_eat_folder

CONFIG = ROOT / 'config' / 'eat.yaml'


@pytest.fixture(scope='module')
def small_folder(tmp_path_factory):
    return write_eat_folder(tmp_path_factory.mktemp('eat') / 'EAT-small')


@pytest.fixture(scope='module')
def small_model(small_folder):
    return create_model('eat', weight_file=str(small_folder)).eval()


def test_kaldi_mel_banks_and_fbank_of_a_tone(small_model):
    banks = kaldi_mel_filterbank(16000, 512, 128, 20.0, 8000.0)  # [257, 128]
    assert banks.shape == (257, 128) and float(banks[-1].abs().max()) == 0.0 and float(banks.max()) <= 1.0
    t = torch.arange(16000) / 16000
    wav = torch.sin(2 * math.pi * 1000 * t)[None] * 0.5 + 0.3  # a DC offset the front end removes
    feats, frames = small_model.features(wav, torch.tensor([16000]))
    assert feats.shape == (1, 128, 98) and frames.tolist() == [98]  # 1 + (16000 - 400) // 160
    centres = 700 * (torch.exp((torch.arange(1, 129) * (1127 * math.log(1 + 8000 / 700) - 1127 * math.log(
        1 + 20 / 700)) / 129 + 1127 * math.log(1 + 20 / 700)) / 1127) - 1)
    peak = int(feats[0, :, 50].argmax())
    assert abs(float(centres[peak]) - 1000) < 40, float(centres[peak])
    zero_dc, _ = small_model.features(wav - 0.3, torch.tensor([16000]))
    # float32 rounding: a band E below its frame's strongest E_peak carries a log error ~eps32 sqrt(E_peak / E)
    # (test_beats), up to 6e-3 at this tone's faintest bands; measured 4x that bound here, 100x allowed.
    energy = zero_dc.double().exp()
    bound = torch.finfo(torch.float32).eps * (energy.amax(1, keepdim=True) / energy).sqrt()
    assert bool(((feats - zero_dc).abs() <= 100 * bound).all())


def test_windows_masks_and_frame_modes(small_folder, small_model):
    lengths = torch.tensor([16000 * 12, 16000 * 3, 200])  # two windows; one window; shorter than one fbank frame
    wav = torch.randn(3, int(lengths.max())) * 0.1
    with torch.inference_mode():
        frames = small_model(wav, lengths)
        # 12 s: 1198 fbank frames = 1024 + 174 -> 64 + 11 columns of 8 tokens; 3 s: 298 frames -> 19 columns.
        assert frames.embeddings.shape == (3, 1024, 64) and frames.mask.sum(1).tolist() == [600, 152, 8]
        cls = create_model('eat', weight_file=str(small_folder), frames='cls').eval()(wav, lengths)
        assert cls.embeddings.shape == (3, 2, 64) and cls.mask.tolist() == [[True, True], [True, False], [True, False]]
        everything = create_model('eat', weight_file=str(small_folder), frames='all').eval()(wav, lengths)
        assert everything.mask.sum(1).tolist() == [1026, 513, 513]
        # The same windows underneath: patch tokens and CLS are slices of the 'all' output.
        all_tokens = everything.embeddings.reshape(3, 2, 513, 64)
        torch.testing.assert_close(cls.embeddings[:, :, :], all_tokens[:, :, 0])
        torch.testing.assert_close(frames.embeddings.reshape(3, 2, 512, 64)[0, 1, :88], all_tokens[0, 1, 1:89])
        layers = create_model('eat', weight_file=str(small_folder), output_layers='all').eval()
        assert layers.embedding_dim == 128 and layers(wav[:1, :16000], lengths[:1].clamp(max=16000)).embeddings.shape[-1] == 128
    assert small_model.frame_hop_sec == pytest.approx(0.02) and cls.embeddings.shape[-1] == small_model.embedding_dim


@needs_shared
def test_real_clips_batch_equals_single(small_model):
    files = sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[:3]
    clips = [torch.from_numpy(load_audio(f, 16000)[0]) for f in files]
    long = torch.cat(clips)[:16000 * 12]  # longer than one 10.24 s window
    waves = [long, clips[0][:16000 * 3], clips[1][:300], clips[2][:16000]]
    wav, lengths = pad_clips(waves)
    with torch.inference_mode():
        feats, counts = small_model.features(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, _ = small_model.features(wav[i:i + 1, :n], lengths[i:i + 1])
            torch.testing.assert_close(feats[i:i + 1, :, :alone.shape[-1]], alone)
            assert float(feats[i, :, int(counts[i]):].abs().sum()) == 0.0  # zero fbank past the end
    batch_equals_single(small_model, [16000 * 11, 5000, 16000 * 2])


def test_safetensors_folder_loads_to_the_same_model(tmp_path, small_model):
    pytest.importorskip('safetensors')
    folder = write_eat_folder(tmp_path / 'EAT-st', safetensors=True)
    from safetensors.torch import load_file

    ours, theirs = read_safetensors(folder / 'model.safetensors'), load_file(str(folder / 'model.safetensors'))
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    model = create_model('eat', weight_file=str(folder)).eval()
    wav = torch.randn(1, 16000) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(model.embed(wav, torch.tensor([16000])),
                                   small_model.embed(wav, torch.tensor([16000])), rtol=0, atol=0)


def test_fairseq_state_dict_loads_to_the_same_model(tmp_path, small_folder, small_model):
    hf = torch.load(small_folder / 'pytorch_model.bin', weights_only=True)
    fairseq = {}
    for key, value in hf.items():
        key = key[len('model.'):]
        if key.startswith('pre_norm.'):
            key = 'modality_encoders.IMAGE.context_encoder.norm.' + key[len('pre_norm.'):]
        elif not key.startswith('blocks.'):
            key = 'modality_encoders.IMAGE.' + key
        fairseq[key] = value
    fairseq['modality_encoders.IMAGE.decoder.blocks.0.0.weight'] = torch.zeros(3)  # pre-training only: dropped
    fairseq['_ema'] = {'blocks.0.norm1.weight': torch.zeros(64)}
    torch.save({'model': fairseq}, tmp_path / 'eat_fairseq.pt')
    model = create_model('eat', weight_file=str(tmp_path / 'eat_fairseq.pt'), num_heads=4).eval()
    wav = torch.randn(1, 16000) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(model.embed(wav, torch.tensor([16000])),
                                   small_model.embed(wav, torch.tensor([16000])))


@pytest.mark.slow
def test_real_size_checkpoint_loads_and_runs(tmp_path):
    """EAT-base's shapes (768-d, 12 blocks of 12 heads, 768 x 8 positions): 150 tensors loaded strictly."""
    state = eat_state(dim=768, depth=12, num_heads=12, mlp_hidden=3072)
    assert len(state) == 150 and tuple(state['model.fixed_positional_encoder.positions'].shape) == (1, 6144, 768)
    folder = write_eat_folder(tmp_path / 'EAT-base', state, num_heads=12)
    model = create_model('eat', weight_file=str(folder)).eval()
    assert model.body.blocks[0].attn.num_heads == 12 and model.embedding_dim == 768
    with torch.inference_mode():
        emb = model.embed(torch.randn(1, 8000) * 0.1, torch.tensor([8000]))
    assert emb.shape == (1, 768) and bool(torch.isfinite(emb).all())


@pytest.mark.slow
def test_lineareval_on_demo(tmp_path, work, small_folder):
    # The demo's 1 s clips (98 fbank frames) fit one 112-frame window: 7x fewer tokens than 1024.
    demo_score(tmp_path, work, CONFIG, f'weight_file={small_folder},feature_d=64,target_length=112', 'eat')


def test_wrong_checkpoints_fail_with_one_clear_message(tmp_path):
    state = eat_state()
    state.pop('model.blocks.1.mlp.fc2.bias')
    state['model.blocks.0.attn.qkv.weight'] = state['model.blocks.0.attn.qkv.weight'][:64]
    state['model.blocks.0.attn.extra'] = torch.zeros(1)
    folder = write_eat_folder(tmp_path / 'bad', state)
    with pytest.raises(EvarError, match=re.escape("Missing: ['blocks.1.mlp.fc2.bias']")) as e:
        create_model('eat', weight_file=str(folder))
    assert 'blocks.0.attn.qkv.weight: file (64, 64) vs model (192, 64)' in str(e.value)
    assert "unexpected: ['blocks.0.attn.extra']" in str(e.value)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(EvarError, match='holds neither model.safetensors nor pytorch_model.bin'):
        create_model('eat', weight_file=str(tmp_path / 'empty'))
    torch.save({'model': {'something.else': torch.zeros(2)}}, tmp_path / 'other.pt')
    with pytest.raises(EvarError, match='has no extra_tokens'):
        create_model('eat', weight_file=str(tmp_path / 'other.pt'))
