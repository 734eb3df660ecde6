"""Every model YAML in config/: its keys are valid for its model, and it either passes `evar.check` with the
weights available on this machine (package-shipped or built in) or stops with one error that says where its
weights come from. Random-weight architecture checks of each family live in that family's test file."""

import re
from pathlib import Path

import pytest

from evar.check import check_model
from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model

from conftest import ROOT

CONFIGS = sorted((ROOT / 'config').glob('*.yaml'))
# Where the weights come from, as an error must say it: a folder to put them in, a URL, or a package to install.
WHERE = re.compile(r'external/|https?://|pip install|PYTHONPATH')
FASTER = {'crepe_full': 'hop_ms=100'}  # CREPE full costs ~0.3 s per second of audio at 10 ms on 2 cores


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """Hub ids fail at once instead of retrying the network (as on a machine without hub access)."""
    hub = pytest.importorskip('huggingface_hub.constants')
    monkeypatch.setattr(hub, 'HF_HUB_OFFLINE', True)


def test_the_zoo_has_every_family():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_checks_or_says_where_its_weights_are(path: Path):
    cfg = load_config(path)  # unknown keys for the model would raise here
    try:
        create_model(cfg.audio_repr, cfg.params)
    except EvarError as e:
        assert WHERE.search(str(e)), f'{path.name}: error does not say where the weights come from: {e}'
        return
    report = check_model(path, FASTER.get(path.stem, ''), device='cpu', long_sec=30.0)
    assert report.passed, report.table()
