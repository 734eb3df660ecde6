"""The model contract (evar.models.base.AudioRepr) holds for every registered model, each built from its family's
tiny random checkpoint (tests/helpers/tiny_models.py): every `evar.check` check (shapes and the declared
embedding_dim, frame rate against the declared frame_hop_sec, lengths from 0.2 s to LONG_SEC, batch == single,
determinism, device), padding invariance at awkward lengths, the declarations themselves, reset_norm_stats, and
gradients reaching the network through `embed` (no torch.no_grad or numpy detour inside a model)."""

import importlib
import sys

import pytest
import torch

from evar.check import check_ar
from evar.models import MODELS, create_model
from evar.models.base import AudioRepr

from helpers import batch_equals_single
from helpers.tiny_models import ADAPTER_MODULES, TINY

LONG_SEC = 12.0  # past the tiny models' windows and chunks (CED 10.1 s, Dasheng 10.1 s, ATST 6 s, EAT 2.6 s, ...)
CHECKS = ['shapes', 'silence', 'frame_rate', 'length 0.2s', 'length 1s', 'length 10s', f'length {LONG_SEC:g}s',
          'batch_single', 'deterministic', 'device']
# Models whose frames are not evenly spaced in time, with the case's reason (the property's docstring says it too).
NO_HOP = {'esresnext_fbsp': 'one embedding per clip', 'opera_ct': 'one embedding per crop of the trimmed clip',
          'hf-ast': 'patch tokens of a frequency x time grid', 'hear': 'HEAR gives timestamps, not a hop',
          'm2d_clap': 'output audio_embeds: one joint-space embedding per clip'}


def test_every_registered_model_has_a_tiny_case():
    assert {case.audio_repr for case in TINY.values()} == set(MODELS)


@pytest.fixture
def tiny_model(request, tmp_path, monkeypatch):
    """The case's model built from files written under tmp_path (HEAR/X-ARES modules importable from there)."""
    case = TINY[request.param]
    monkeypatch.syspath_prepend(str(tmp_path))
    values = case.write(tmp_path)
    importlib.invalidate_caches()
    yield request.param, create_model(case.audio_repr, **values)
    for name in ADAPTER_MODULES:
        sys.modules.pop(name, None)


@pytest.mark.parametrize('tiny_model', sorted(TINY), indirect=True)  # ~1 s each on 2 idle cores
def test_model_contract(tiny_model):
    name, model = tiny_model
    cls = type(model)
    assert cls.frame_hop_sec is not AudioRepr.frame_hop_sec, f'{cls.__name__} does not declare frame_hop_sec'
    assert cls.embedding_dim is not AudioRepr.embedding_dim, f'{cls.__name__} does not declare embedding_dim'
    assert (model.frame_hop_sec is None) == (name in NO_HOP), model.frame_hop_sec

    # reset_norm_stats returns to the statistics the model was built with (none where they come from the data)
    built_with = (model.norm_mean, model.norm_std)
    if model.needs_norm_stats:
        assert built_with == (None, None)  # the tiny configs set no norm_stats

    report = check_ar(model, long_sec=LONG_SEC, label=name)
    print(report.table())
    assert [c.name for c in report.checks] == CHECKS
    assert report.passed, report.table()
    assert report['frame_rate'].skipped == (name in NO_HOP)
    model.set_norm_stats(0.5, 2.0)
    model.reset_norm_stats()
    assert (model.norm_mean, model.norm_std) == built_with
    if model.needs_norm_stats:
        model.set_norm_stats(-5.0, 4.0)  # as an extraction sets them from the training split

    sr = model.sample_rate
    model.cpu()
    emb = batch_equals_single(model, [int(2.3 * sr) + 1, int(0.4 * sr) + 3, 300])  # 300: under most windows
    assert emb.shape == (3, model.embedding_dim)

    # A backward through embed reaches the network's parameters and the input waves.
    wav = (torch.randn(2, sr) * 0.1).requires_grad_()
    model.zero_grad()
    emb = model.embed(wav, torch.tensor([sr, sr // 2]))
    (emb * torch.randn_like(emb)).sum().backward()
    params = [p for p in model.parameters() if p.requires_grad]
    if params:
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params), 'no gradient reached'
    else:
        assert name in ('melspec', 'linspec'), 'only the spectrogram baselines have nothing to train'
    assert wav.grad is not None and bool(torch.isfinite(wav.grad).all())
