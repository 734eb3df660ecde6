"""M2D and MSM-MAE (evar/models/m2d.py): official checkpoint containers and folder names, strict loading, the
32 kHz front end, windowing of long clips, padding invariance on real clips, and a linear evaluation run. Weights are random
(the published ones cannot be downloaded here); parity with the official runtimes is benchmarks/parity_m2d.py."""

import math
import re

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.frontend import slaney_mel_filterbank

from helpers import ROOT, SHARED, demo_score, needs_shared, pad_clips
from helpers.tiny_models import M2D_SMALL as SMALL, write_m2d

M2D_32K_YAML, MSM_YAML = (ROOT / 'config' / f'{n}.yaml' for n in ('m2d_32k', 'msm_mae'))


def real_clips(seconds=(2.5, 1.0, 0.3)):
    """Real speech / sound clips from ../shared/data, cut to `seconds`."""
    from evar.audio import load_audio

    files = [sorted((SHARED / 'data' / 'RAVDESS' / 'Actor_01').glob('*.flac'))[0],
             sorted((SHARED / 'data' / 'speech_commands_v2_test_a' / 'yes').glob('*.flac'))[0],
             sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[0]]
    return [torch.from_numpy(load_audio(f, 16000)[0][:int(s * 16000)]) for f, s in zip(files, seconds)]


def assert_batch_equals_single(model, clips):
    wav, lengths = pad_clips(clips)
    with torch.inference_mode():
        batch = model.embed(wav, lengths)
        for i, c in enumerate(clips):
            single = model.embed(c[None], lengths[i:i + 1])
            np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), rtol=1e-4, atol=1e-4)
    return batch


def test_32k_weights_run_with_the_32k_config(tmp_path):
    """A p32k folder name needs config/m2d_32k.yaml's front end (the mismatch error: below); 32 kHz audio runs."""
    from evar.config import load_config

    path = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16p32k-t', **SMALL)
    cfg = load_config(M2D_32K_YAML, f'weight_file={path},feature_d=640')
    model = create_model(cfg.audio_repr, cfg.params).eval()
    with torch.inference_mode():
        emb = model.embed(torch.randn(1, 32000) * 0.1, torch.tensor([32000]))
    assert model.sample_rate == 32000 and emb.shape == (1, 640) and bool(torch.isfinite(emb).all())


@needs_shared
def test_real_size_vit_b_batch_equals_single_on_real_clips(tmp_path):
    """ViT-B as published (768-d, 12 blocks, 12 heads) on real clips of unequal lengths, one longer than the
    208-frame window; stacked output 5 x 768 per 160 ms patch column."""
    path = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16-real')
    model = create_model('m2d', weight_file=str(path)).eval()
    assert model.embedding_dim == 3840 and len(model.encoder.blocks) == 12 and model.encoder.blocks[0].attn.num_heads == 12
    assert (model.norm_mean, model.norm_std) == (-6.0, 4.5)  # the checkpoint's norm_stats
    clips = real_clips((2.5, 0.6))
    emb = assert_batch_equals_single(model, clips)
    assert emb.shape == (2, 3840) and torch.isfinite(emb).all()
    with torch.inference_mode():
        frames = model(clips[0][None], torch.tensor([len(clips[0])]))
    assert frames.embeddings.shape == (1, 26, 3840)  # 251 frames -> 2 windows of 13 columns
    assert frames.mask.sum().item() == math.ceil(251 / 16)


def test_windows_are_encoded_independently_and_padding_is_masked(tmp_path):
    path = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16-w', **SMALL)
    model = create_model('m2d', weight_file=str(path)).eval()
    torch.manual_seed(1)
    feats = torch.randn(1, 80, 500) * 4 - 6
    with torch.inference_mode():
        whole = model.encode(feats, torch.tensor([500]))
        tail = model.encode(feats[..., 416:], torch.tensor([84]))  # the third window on its own
        first = model.encode(feats[..., :208], torch.tensor([208]))
        assert whole.mask.sum().item() == 13 + 13 + math.ceil(84 / 16)
        torch.testing.assert_close(whole.embeddings[0, :13], first.embeddings[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(whole.embeddings[0, 26:32], tail.embeddings[0, :6], rtol=1e-5, atol=1e-5)
        # Frames after the clip's end do not depend on what follows it: changing the padding changes nothing.
        longer = torch.cat([feats, torch.randn(1, 80, 300)], -1)
        padded = model.encode(longer, torch.tensor([500]))
        n = whole.mask.sum().item()
        torch.testing.assert_close(padded.embeddings[0, :n], whole.embeddings[0, :n], rtol=1e-5, atol=1e-5)


def test_msm_mae_attend_padding_matches_official_zero_padding(tmp_path):
    """attend_padding: the last window is zero-padded to full width and attended to (the official runtime); the
    default masks it. With norm_stats [0, 1], zero padding is the same in both spaces."""
    path = write_m2d(tmp_path, '80x208p16x16_p', 'msm_mae', cls=False, **SMALL)
    common = dict(weight_file=str(path), norm_stats=[0.0, 1.0])
    official_like = create_model('msm_mae', attend_padding=True, **common).eval()
    masked = create_model('msm_mae', **common).eval()
    assert not hasattr(masked.encoder, 'cls_token') and masked.needs_norm_stats
    torch.manual_seed(2)
    feats = torch.randn(2, 80, 300)
    zero_padded = torch.cat([feats, torch.zeros(2, 80, 116)], -1)
    with torch.inference_mode():
        a = official_like.encode(feats, torch.tensor([300, 300]))
        ref = official_like.encode(zero_padded, torch.tensor([416, 416]))
        b = masked.encode(feats, torch.tensor([300, 300]))
    n = math.ceil(300 / 16)
    assert a.mask[0].sum().item() == b.mask[0].sum().item() == n
    torch.testing.assert_close(a.embeddings[:, :n], ref.embeddings[:, :n], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.embeddings[:, :13], a.embeddings[:, :13], rtol=1e-5, atol=1e-5)  # full window
    assert (b.embeddings[:, 13:n] - a.embeddings[:, 13:n]).abs().max() > 1e-2  # the padded window differs


def test_layers_flat_features_and_checkpoint_prefixes(tmp_path):
    path = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16-l', **SMALL)
    state = torch.load(path, weights_only=False)['model']
    wav, lengths = torch.randn(1, 8000) * 0.1, torch.tensor([8000])
    base = create_model('m2d', weight_file=str(path)).eval()
    with torch.inference_mode():
        ref = base(wav, lengths).embeddings
        for options, d in (({'output_layers': [0, -1]}, 1280), ({'output_layers': 'all', 'layer_average': True}, 640),
                           ({'flat_features': True}, 128), ({'output_layers': 0, 'flat_features': True}, 128)):
            m = create_model('m2d', weight_file=str(path), **options).eval()
            out = m(wav, lengths).embeddings
            assert m.embedding_dim == d == out.shape[-1], options
        both = create_model('m2d', weight_file=str(path), output_layers=[0, -1]).eval()(wav, lengths).embeddings
        torch.testing.assert_close(both[..., 640:], ref)
        flat = create_model('m2d', weight_file=str(path), flat_features=True).eval()(wav, lengths).embeddings
        torch.testing.assert_close(flat, ref.reshape(1, -1, 5, 128).mean(2))  # frequency rows averaged
        # RuntimeM2D ('backbone.') and EVAR fine-tuning ('module.ar.runtime.backbone.') states load the same.
        for prefix in ('backbone.', 'module.ar.runtime.backbone.'):
            other = tmp_path / f'm2d_vit_base-80x208p16x16-{prefix[:6]}' / 'w.pth'
            other.parent.mkdir()
            torch.save({prefix + k: v for k, v in state.items()}, other)
            torch.testing.assert_close(create_model('m2d', weight_file=str(other)).eval()(wav, lengths).embeddings, ref)
    with pytest.raises(EvarError, match='out of range'):
        create_model('m2d', weight_file=str(path), output_layers=5)


def test_old_checkpoints_get_the_default_norm_stats(tmp_path):
    path = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16-o', edit=lambda s: s.pop('norm_stats'), **SMALL)
    model = create_model('m2d', weight_file=str(path))
    assert (model.norm_mean, model.norm_std) == pytest.approx((-7.1, 4.2))
    assert (create_model('m2d', weight_file=str(path), norm_stats=[-5, 3]).norm_mean) == -5


@pytest.mark.parametrize('kind, folder, drop', [('m2d', 'm2d_vit_base-80x208p16x16-x', 'blocks.1.attn.qkv.weight'),
                                                ('msm_mae', '80x208p16x16_x', 'blocks.0.attn.q_bias')])


def test_missing_or_renamed_key_fails_with_the_strict_message(tmp_path, kind, folder, drop):
    def rename(state):
        state[drop.replace('blocks.', 'block.')] = state.pop(drop)

    path = write_m2d(tmp_path, folder, kind, edit=rename, **SMALL)
    with pytest.raises(EvarError, match=re.escape(drop)) as err:
        create_model(kind, weight_file=str(path))
    assert 'does not match the architecture' in str(err.value)


def test_folder_name_is_checked_against_the_checkpoint_and_the_config(tmp_path):
    wrong_width = write_m2d(tmp_path, 'm2d_vit_base-80x608p16x16-s', input_size=(80, 208), **SMALL)
    with pytest.raises(EvarError, match='pos_embed'):
        create_model('m2d', weight_file=str(wrong_width))
    khz32 = write_m2d(tmp_path, 'm2d_vit_base-80x208p16x16p32k-s', **SMALL)
    with pytest.raises(EvarError, match='m2d_32k.yaml'):
        create_model('m2d', weight_file=str(khz32))  # the 16 kHz front end for 32 kHz weights
    unnamed = write_m2d(tmp_path, 'weights', **SMALL)
    with pytest.raises(EvarError, match='folder name'):
        create_model('m2d', weight_file=str(unnamed))


def test_slaney_filterbank_matches_librosa_formula():
    """Filters of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=50, fmax=8000) (Slaney scale and area
    norm), spot values computed with librosa 0.11 in the reference environment."""
    fb = slaney_mel_filterbank(16000, 400, 80, 50, 8000)
    assert fb.shape == (201, 80)
    assert fb[2, 0].item() == pytest.approx(0.022368604, rel=1e-5)  # the 80 Hz bin in the first filter
    assert fb[:, 40].argmax().item() == 44 and fb[:, 79].argmax().item() == 193
    assert fb[:, 79].sum().item() == pytest.approx(0.024945049, rel=1e-5)


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work):
    """MSM-MAE: also exercises the training-split normalisation statistics."""
    path = write_m2d(tmp_path, '80x208p16x16_demo', 'msm_mae', **SMALL)
    demo_score(tmp_path, work, MSM_YAML, f'weight_file={path},feature_d=640', 'msm_mae')
