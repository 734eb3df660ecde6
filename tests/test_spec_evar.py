"""The spectrogram baselines give EVAR's embeddings: config/melspec.yaml and config/linspec.yaml, with EVAR's
standardisation as fixed `norm_stats`, against reference values from EVAR's own wrappers (`ar_spec.AR_MelSpec`,
`AR_LinSpec` of nttcslab/eval-audio-repr 88ba772, nnAudio 0.3.4, torch 2.13.0 CPU) on four real Speech Commands
clips; the other front ends kept as options (`mel_scale: htk`, `power: 2`); the unstandardised embedding as an
affine map of the standardised one; bad options.

The reference values were printed by (2026-12-06; EVAR exported to /tmp/evar_ref, its venv /tmp/venv_evarref: see
benchmarks/parity_evar.py), with FILES the four clips of EVAR_REFERENCE under speech_commands_v2_test_a/:

    /tmp/venv_evarref/bin/python benchmarks/evar_spec_values.py --evar_ref /tmp/evar_ref --config melspec \\
        --norm_stats -7.5 6.5 --index 0,5,17,30,41,50,58,63 --files $FILES
    /tmp/venv_evarref/bin/python benchmarks/evar_spec_values.py --evar_ref /tmp/evar_ref --config linspec \\
        --norm_stats -4.8 5.0 --index 2,40,100,200,300,400,480,512 --files $FILES

(benchmarks/parity_evar.py melspec linspec measured evar against EVAR at 2.8e-7 and 1.8e-4 relative on its clips.)
"""

import math

import numpy as np
import pytest
import torch

from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, SHARED, evar_reference_gaps, needs_shared

CLIPS = ['yes/0cb74144_nohash_0.flac', 'stop/022cd682_nohash_0.flac', '_silence_/1037.flac',
         '_unknown_/backward_0cb74144_nohash_2.flac']
# config -> (norm_stats, components printed, clip -> (L2 norm of EVAR's embedding, EVAR's components))
EVAR_REFERENCE = {
    'melspec': ([-7.5, 6.5], [0, 5, 17, 30, 41, 50, 58, 63], [
        (6.420997099334895, [0.9273263216018677, 1.3441026210784912, 0.6060769557952881, 0.8475930690765381,
                             -0.11710286140441895, 0.5329561233520508, -0.16219529509544373, -0.5159090757369995]),
        (4.473943611037806, [-0.30291831493377686, 0.47614362835884094, 0.8186336755752563, 0.4482438862323761,
                             0.31243258714675903, -0.04309439659118652, -0.21142446994781494, -0.7970172762870789]),
        (11.755144514361483, [1.90382719039917, 1.2775249481201172, 1.5087368488311768, 1.5228581428527832,
                              1.4727976322174072, 1.8977961540222168, 1.2383294105529785, 1.150182843208313]),
        (8.982695945552368, [1.3707101345062256, 1.8230441808700562, 1.0237489938735962, 1.061265468597412,
                             -0.6798749566078186, -0.3610646724700928, -0.3548603951931, -1.3962831497192383]),
    ]),
    'linspec': ([-4.8, 5.0], [2, 40, 100, 200, 300, 400, 480, 512], [
        (24.07702844726061, [0.997768223285675, 1.989312767982483, 1.4134608507156372, 0.9321584701538086,
                             1.0917994976043701, 0.7663137912750244, 0.5588141679763794, 0.07201123237609863]),
        (20.304139159192662, [-0.29365360736846924, 0.89329993724823, 1.363477349281311, 0.8504447937011719,
                              0.6585344076156616, 0.4908279478549957, 0.0649491548538208, -0.9139092564582825]),
        (43.23610271294321, [1.859912633895874, 1.9147553443908691, 1.873204231262207, 1.8559393882751465,
                             1.99540114402771, 1.8565568923950195, 1.7207653522491455, 1.7111773490905762]),
        (22.408424736956324, [1.0161341428756714, 2.2775163650512695, 1.7545804977416992, 0.7640027403831482,
                              0.5845507979393005, 0.3440973460674286, -0.18533334136009216, -1.119130253791809]),
    ]),
}
# evar and EVAR differ by float32 rounding (nnAudio's STFT is a float32 convolution; 3e-7 measured on these clips);
# the other front ends move these embeddings by 7-100 % of their norm: 1e-4 tells them apart on any CPU.
RTOL = 1e-4


def embeddings(config: str, options: str = '', path=None) -> np.ndarray:
    """[4, D] float64 embeddings of the reference clips (each exactly 1 s, as EVAR embedded them) by
    config/<config>.yaml (or the YAML at `path`) with the reference's norm_stats and `options`."""
    import soundfile as sf

    waves = []
    for name in CLIPS:
        wave, rate = sf.read(SHARED / 'data' / 'speech_commands_v2_test_a' / name, dtype='float32')
        assert rate == 16000 and len(wave) == 16000, name
        waves.append(torch.from_numpy(wave))
    stats = EVAR_REFERENCE[config][0]
    cfg = load_config(path or ROOT / 'config' / f'{config}.yaml',
                      ','.join([f'+norm_stats={stats}'] + [options] * bool(options)))
    model = create_model(cfg.audio_repr, params=cfg.params).eval()
    with torch.inference_mode():
        return model.embed(torch.stack(waves), torch.full((len(waves),), 16000)).double().numpy()


def reference_gap(config: str, emb: np.ndarray) -> float:
    """Largest |norm - EVAR's| or |component - EVAR's|, over EVAR's norm, over the clips."""
    _, index, reference = EVAR_REFERENCE[config]
    return max(evar_reference_gaps(emb, reference, index))


@needs_shared
@pytest.mark.parametrize('config', ['melspec', 'linspec'])
def test_evar_named_configs_give_evars_embeddings(config):
    assert reference_gap(config, embeddings(config)) < RTOL


# EVAR's own YAMLs (config/melspec.yaml, linspec.yaml of EVAR 88ba772): its class names, no evar-only key.
EVAR_YAML = {'melspec': 'audio_repr: ar_spec.AR_MelSpec\nfeature_d: 64\nn_mels: 64\nf_min: 60\nf_max: 7800\n',
             'linspec': 'audio_repr: ar_spec.AR_LinSpec\nfeature_d: 513\nf_min: 60\nf_max: 7800\n'}
EVAR_COMMON = 'sample_rate: 16000\nn_fft: 1024\nwindow_size: 1024\nhop_size: 160\ntemporal_pooling_type: mean_max\n'


@needs_shared
@pytest.mark.parametrize('config', ['melspec', 'linspec'])
def test_evars_own_yaml_gives_evars_embeddings(config, tmp_path):
    """An EVAR YAML naming EVAR's class, without mel_scale or power, gets EVAR's front end (the defaults)."""
    path = tmp_path / f'{config}.yaml'
    path.write_text(EVAR_YAML[config] + EVAR_COMMON)
    assert reference_gap(config, embeddings(config, path=path)) < RTOL


@needs_shared
@pytest.mark.parametrize('config, option', [('melspec', 'mel_scale=htk'), ('linspec', 'power=2')])
def test_other_front_ends_differ_from_evars(config, option):
    """HTK-scale unnormalised filters (torchaudio's defaults) and the power spectrum stay available, and differ."""
    assert reference_gap(config, embeddings(config, option)) > 0.05


@pytest.mark.parametrize('pooling, copies', [('mean_max', 2), ('mean', 1), ('max', 1)])
def test_unstandardised_embedding_is_an_affine_map_of_the_standardised_one(pooling, copies):
    """With norm_stats [0, 1] every frame is x instead of (x - mean) / std, so the pooled embedding is the standardised
    one times std plus mean once per pooled statistic (mean_max = mean + max: twice)."""
    t = torch.arange(12000) / 16000
    wave = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(12000, generator=torch.Generator().manual_seed(0)))
    wave, lengths = torch.stack([wave, wave * 0.1]), torch.tensor([12000, 9000])
    mean, std = -6.0, 3.0
    for name in ('melspec', 'linspec'):
        plain = create_model(name, temporal_pooling_type=pooling, norm_stats=[0.0, 1.0]).embed(wave, lengths)
        standard = create_model(name, temporal_pooling_type=pooling, norm_stats=[mean, std]).embed(wave, lengths)
        torch.testing.assert_close(plain, standard * std + copies * mean, rtol=1e-5, atol=1e-4)
        assert (plain - standard).abs().max() > 1.0  # the standardisation did something


@pytest.mark.parametrize('options, message', [
    (dict(mel_scale='slanley'), "mel_scale 'slanley' is not one of"),
    (dict(power=0), 'power must be positive'),
    (dict(norm_stats=[1.0]), r'norm_stats must be \[mean, std\]'),
    (dict(norm_stats=[1.0, 0.0]), r'norm_stats must be \[mean, std\]'),
])
def test_bad_front_end_options_are_errors(options, message):
    with pytest.raises(EvarError, match=message):
        create_model('melspec', **options)
