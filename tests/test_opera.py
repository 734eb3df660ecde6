"""OPERA-CT: the OPERA lightning checkpoint loaded strictly (HTS-AT encoder from evar.models.htsat), the per-clip
front end (trim, repeat-pad to 8 s, min-max log-mel), 1024-frame crops, padding invariance and the entry points.
A reduced encoder (16-d patches, 128 x 128 image) keeps the file fast; crops then hold 256 frames."""

import re

import numpy as np
import pytest
import torch

from evar.errors import EvarError
from evar.models import create_model
from evar.models.opera import repeat_pad, trim_silence

from helpers import ROOT, SHARED, demo_score, needs_shared
from helpers.tiny_models import OPERA_SMALL as SMALL, write_opera

CONFIG = ROOT / 'config' / 'opera_ct.yaml'


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('opera') / 'encoder-operaCT-small.ckpt'
    write_opera(path)
    return path


@pytest.fixture(scope='module')
def model(ckpt):
    return create_model('opera_ct', weight_file=str(ckpt), **SMALL).eval()


def options(path):
    return f'weight_file={path},' + ','.join(f'+{k}={v}' for k, v in SMALL.items()).replace(' ', '')


def test_trim_and_repeat_pad_follow_the_official_rules():
    y = torch.cat([torch.zeros(2400), torch.ones(4000) * 0.5, torch.zeros(5000)])
    kept = trim_silence(y, 60.0, 1600, 800)
    # librosa.effects.trim gives [2400, 7200] here: frames 3..8 (1600 long, hop 800, centred) touch the tone.
    assert kept.shape[0] == 4800 and float(kept.abs().sum()) == pytest.approx(0.5 * 4000)
    padded = repeat_pad(torch.arange(5.0), 12)
    assert padded.tolist() == [3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4]  # the clip ends the padded signal


def test_short_clips_become_8s_and_long_ones_are_cropped(model):
    torch.manual_seed(0)
    with torch.inference_mode():
        feats, n = model.features(torch.randn(2, 16000 * 3) * 0.1, torch.tensor([16000 * 3, 16000]))
        assert n.tolist() == [251, 251] and float(feats.min()) == 0.0 and float(feats.max()) == 1.0
        # 20 s -> 626 frames; crops of 256 frames every 128 while 258 frames remain: starts 0, 128, 256
        long = torch.randn(1, 16000 * 20) * 0.1
        frames = model(long, torch.tensor([long.shape[1]]))
        assert frames.embeddings.shape == (1, 3, 128)
        f, m = model.features(long, torch.tensor([long.shape[1]]))
        crop = model.swin(input_features=f[0, :, 128:384].T[None, None]).pooler_output[0]
        np.testing.assert_allclose(frames.embeddings[0, 1].numpy(), crop.numpy(), rtol=1e-5, atol=1e-6)


@needs_shared
def test_real_clips_with_silence_are_trimmed(model):
    from evar.audio import load_audio

    wav = load_audio(sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[5], 16000)[0]
    quiet = np.concatenate([np.zeros(16000, np.float32), wav, np.zeros(16000, np.float32)])
    with torch.inference_mode():
        a = model.embed(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        b = model.embed(torch.from_numpy(quiet)[None], torch.tensor([len(quiet)]))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)  # silence added at the ends is trimmed


def test_wrong_or_missing_keys_fail_with_the_strict_message(tmp_path, ckpt):
    state = torch.load(ckpt, weights_only=True)['state_dict']
    del state['encoder.encoder.htsat.bn0.running_var']
    torch.save({'state_dict': state}, tmp_path / 'missing.ckpt')
    with pytest.raises(EvarError, match=re.escape("Missing: ['bn0.running_var']")):
        create_model('opera_ct', weight_file=str(tmp_path / 'missing.ckpt'), **SMALL)
    torch.save({'state_dict': {'encoder.cnn1.weight': torch.zeros(3, 1, 3, 3)}}, tmp_path / 'operaCE.ckpt')
    with pytest.raises(EvarError, match='no encoder.encoder.htsat'):
        create_model('opera_ct', weight_file=str(tmp_path / 'operaCE.ckpt'), **SMALL)


@pytest.mark.slow
def test_lineareval_on_demo_writes_a_score(tmp_path, work, ckpt):
    demo_score(tmp_path, work, CONFIG, options(ckpt) + ',batch_size=64', 'opera_ct')
