"""Dasheng gives EVAR's embeddings: config/dasheng.yaml (`temporal_pooling_type: mean_sigmoid`) against reference
values from EVAR's own wrapper (`ar_dasheng.AR_Dasheng` of nttcslab/eval-audio-repr 88ba772, which takes the hub
model's `logits`: with no output layer, the sigmoid of the frames' mean) on four real clips of at most 10 s, with a
small seeded Dasheng (64-d, 2 blocks) that both sides build from `seeded_state`; the official mean kept as
config/dasheng_official.yaml; the mean_sigmoid pooling itself; EVAR's YAML implying it.

The reference values were printed by (2026-12-06; EVAR exported to /tmp/evar_ref, its venv /tmp/venv_evarref: see
benchmarks/parity_evar.py; transformers 4.46.3, torch 2.13.0 CPU; the hub code at
jimbozhang/hf_transformers_custom_model_dasheng 31f5d6d), with FILES the four keys of EVAR_REFERENCE:

    /tmp/venv_evarref/bin/python benchmarks/evar_dasheng_values.py --evar_ref /tmp/evar_ref \\
        --hub_code /tmp/parity_b/ext/hf_transformers_custom_model_dasheng --index 0,7,19,33,42,50,58,63 --files $FILES

(benchmarks/parity_evar.py dasheng measured evar against EVAR at 1.9e-7 relative on clips up to 10 s, base size.)
"""

import importlib.util

import numpy as np
import pytest
import torch

from evar.config import load_config
from evar.models import create_model
from evar.models.base import Frames, pool
from evar.models.ced import AudioViT

from helpers import ROOT, SHARED, needs_shared

INDEX = [0, 7, 19, 33, 42, 50, 58, 63]
# clip -> (L2 norm of EVAR's 64-d embedding, EVAR's components at INDEX)
EVAR_REFERENCE = {
    'speech_commands_v2_test_a/yes/0cb74144_nohash_0.flac': (4.14426724663387, [
        0.22645871341228485, 0.46680718660354614, 0.4651035666465759, 0.30475082993507385, 0.38749703764915466,
        0.5114192366600037, 0.47936853766441345, 0.515631914138794]),
    'speech_commands_v2_test_a/stop/022cd682_nohash_0.flac': (4.138906611864908, [
        0.2545042037963867, 0.6065530180931091, 0.3904574513435364, 0.3186761140823364, 0.35210710763931274,
        0.5590848922729492, 0.45165833830833435, 0.44409018754959106]),
    'RAVDESS/Actor_01/03-01-01-01-01-01-01.flac': (4.117689346337062, [
        0.17985375225543976, 0.47015947103500366, 0.4638642370700836, 0.485592246055603, 0.3577004075050354,
        0.5481879711151123, 0.3447672128677368, 0.47720080614089966]),
    'ESC-50/audio/2-103426-A-3.flac': (4.068040030201869, [
        0.25125446915626526, 0.5041214227676392, 0.43140941858291626, 0.5134611129760742, 0.37262624502182007,
        0.5268755555152893, 0.40472471714019775, 0.4881787598133087]),
}
# evar and EVAR differ by float32 rounding (2e-7 measured); the official mean differs from these by O(1) (no
# sigmoid), and clips differ from each other by up to 0.15 per component: 1e-4 tells them apart on any CPU.
TOL = 1e-4


def values_script():
    """benchmarks/evar_dasheng_values.py as a module (its `seeded_state` and SIZES; nothing of EVAR is imported)."""
    spec = importlib.util.spec_from_file_location('evar_dasheng_values', ROOT / 'benchmarks' / 'evar_dasheng_values.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def small_dasheng(tmp_path_factory):
    """The seeded small Dasheng of the reference run, saved as the Zenodo checkpoints are ({'model': ...}); returns
    the config options that load it."""
    script = values_script()
    sizes = script.SIZES
    body = AudioViT(64, 1008, (64, 4), sizes['embed_dim'], sizes['depth'], sizes['num_heads'], 4.0)
    state = script.seeded_state({k: tuple(v.shape) for k, v in body.state_dict().items()})
    path = tmp_path_factory.mktemp('dasheng') / 'dasheng_small.pt'
    torch.save({'model': state}, path)
    return ','.join(f'{k}={v}' for k, v in {'weight_file': path, **sizes, 'feature_d': sizes['embed_dim']}.items())


def embeddings(config: str, options: str) -> np.ndarray:
    """[4, 64] float64 embeddings of the reference clips by config/<config>.yaml, all four as one padded batch."""
    import soundfile as sf

    cfg = load_config(ROOT / 'config' / f'{config}.yaml', options)
    model = create_model(cfg.audio_repr, cfg.params).eval()
    waves = [torch.from_numpy(sf.read(str(SHARED / 'data' / name), dtype='float32')[0]) for name in EVAR_REFERENCE]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.inference_mode():
        return pool(model(batch, lengths), model.pooling).double().numpy()


@needs_shared
def test_dasheng_yaml_gives_evars_embeddings(small_dasheng):
    ours = embeddings('dasheng', small_dasheng)
    for row, (norm, values) in zip(ours, EVAR_REFERENCE.values()):
        assert np.linalg.norm(row) == pytest.approx(norm, rel=TOL)
        np.testing.assert_allclose(row[INDEX], values, rtol=TOL, atol=TOL * 0.1)


@needs_shared
def test_dasheng_official_is_the_mean_before_evars_sigmoid(small_dasheng):
    official = embeddings('dasheng_official', small_dasheng)
    reference = np.array([values for _, values in EVAR_REFERENCE.values()])
    assert np.abs(official[:, INDEX] - reference).max() > 0.1  # not EVAR's embedding ...
    np.testing.assert_allclose(1 / (1 + np.exp(-official[:, INDEX])), reference, rtol=TOL, atol=TOL * 0.1)  # its logit


def test_mean_sigmoid_pools_valid_frames_only():
    x = torch.tensor([[[0.0, 2.0], [2.0, -4.0], [100.0, 100.0]]])  # [1, 3, 2]; the last frame is padding
    got = pool(Frames(x, torch.tensor([[True, True, False]])), 'mean_sigmoid')
    torch.testing.assert_close(got, torch.sigmoid(torch.tensor([[1.0, -1.0]])))


def test_evars_dasheng_yaml_implies_the_sigmoid(tmp_path):
    yaml = tmp_path / 'dasheng.yaml'  # EVAR 88ba772's config/dasheng.yaml, its model keys
    yaml.write_text('audio_repr: ar_dasheng.AR_Dasheng\nfeature_d: 768\nsample_rate: 16000\n'
                    'model_name: mispeech/dasheng-base\n')
    assert load_config(yaml).params.temporal_pooling_type == 'mean_sigmoid'
    assert load_config(yaml, '+temporal_pooling_type=mean').params.temporal_pooling_type == 'mean'
