"""plugin/MARBLE: an evar model as a MARBLE v2 encoder, driven through the host's call sequence.

MARBLE (a43992899/MARBLE at 938c03a6) needs lightning, torchmetrics, einops and its encoders' packages, so the test
repeats what its code does: the GTZANGenre DataModule cuts each file into clip_seconds slices (the last zero-padded,
kept when at least min_clip_ratio long) and yields float32 [C, T] at the task's sample_rate; the DataLoader stacks
them into [B, C, T]; BaseTask.forward calls `encoder(x)`; LayerSelector stacks `hidden_states[i]` for the chosen
layers at dim 1 ([B, L, T', H]) and TimeAvgPool averages T'; the MLP decoder's in_dim is the encoder's H.
"""

import importlib.util
import json
import sys

import pytest
import torch

from evar.audio import load_audio
from evar.config import load_config
from evar.errors import EvarError
from evar.models import create_model
from evar.models.base import stats_from_sums
from helpers import BYOLA_D512, ROOT, SHARED, needs_byola, needs_shared

DATA = SHARED / 'data'
FILES = ['yesno/0_0_0_1_0_0_0_1.flac', 'fsdd/recordings/7_theo_3.flac', 'piano/C4v10.flac']
BYOLA_OPTS = f'weight_file={BYOLA_D512},feature_d=512'


def _plugin():
    spec = importlib.util.spec_from_file_location('evar_marble', ROOT / 'plugin' / 'MARBLE' / 'evar_marble.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['evar_marble'] = module
    spec.loader.exec_module(module)
    return module


def _host_slices(paths, sample_rate=16000, clip_seconds=3.0, min_clip_ratio=0.1):
    """The GTZANGenre DataModule's items: (waveform float32 [1, clip], valid samples) per slice."""
    clip = int(clip_seconds * sample_rate)
    items = []
    for path in paths:
        wav, _ = load_audio(path, sample_rate)
        n_full, rem = divmod(len(wav), clip)
        for k in range(n_full + (rem / clip >= min_clip_ratio)):
            piece = torch.from_numpy(wav[k * clip:(k + 1) * clip])
            items.append((torch.nn.functional.pad(piece, (0, clip - len(piece)))[None], len(piece)))
    return items


def _host_forward(encoder, x, layers=(0,)):
    """BaseTask.forward's encoder call, then LayerSelector and TimeAvgPool: [B, L, 1, H]."""
    hidden_states = encoder(x)
    stacked = torch.stack([hidden_states[i] for i in layers], dim=1)
    assert stacked.ndim == 4
    return stacked.mean(dim=2, keepdim=True)


MEL_AS_IS = [0.0, 1.0]  # melspec standardises with training statistics (as EVAR's); [0, 1]: the log-mel as is


def _reference(config, options=''):
    cfg = load_config(config, options)
    return create_model(cfg.audio_repr, params=cfg.params).eval()


@needs_shared
def test_melspec_encoder_in_marble_call_sequence():
    plugin = _plugin()
    items = _host_slices([DATA / f for f in FILES])
    assert min(n for _, n in items) < 48000  # a zero-padded last slice is in the batch
    x = torch.stack([w for w, _ in items])  # the DataLoader's default collate: [B, 1, T]
    encoder = plugin.EvarEncoder(config=str(ROOT / 'config' / 'melspec.yaml'), sample_rate=16000, norm_stats=MEL_AS_IS)
    encoder.train()  # Lightning's fit: the evar model stays frozen in eval mode
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.parameters())
    out = _host_forward(encoder, x)
    assert out.shape == (len(items), 1, 1, encoder.num_features) and encoder.num_features == 64
    assert out.dtype == torch.float32 and not out.requires_grad
    head = torch.nn.Linear(encoder.num_features, 10)  # MLPDecoder: mean over L and T, then its layers
    assert head(out.mean(dim=(1, 2))).shape == (len(items), 10)

    model = _reference(ROOT / 'config' / 'melspec.yaml', '+norm_stats=[0.0,1.0]')
    with torch.inference_mode():  # the host gives no lengths: the padded slice is embedded as it comes
        full = model.embed(x[:, 0], torch.full((len(items),), x.shape[-1]))
        alone = [model.embed(w[:, :n], torch.tensor([n]))[0] for w, n in items]
    torch.testing.assert_close(out[:, 0, 0], full, rtol=1e-4, atol=1e-4)
    # With input_len the padding is masked: each slice as if embedded alone, unpadded.
    lengths = torch.tensor([n for _, n in items])
    torch.testing.assert_close(encoder(x, lengths)[0][:, 0], torch.stack(alone), rtol=1e-4, atol=1e-4)
    frames = plugin.EvarEncoder(config=str(ROOT / 'config' / 'melspec.yaml'), level='frame',
                                norm_stats=MEL_AS_IS)(x[:, 0])[0]
    assert frames.shape[0] == len(items) and frames.shape[2] == 64 and frames.shape[1] > 100

    with torch.autocast('cpu', dtype=torch.bfloat16):  # the trainer's precision: bf16 does not reach the model
        under_bf16 = _host_forward(encoder, x)
    assert under_bf16.dtype == torch.float32 and torch.equal(under_bf16, out)
    with pytest.raises(EvarError, match='24000 Hz audio'):
        plugin.EvarEncoder(config=str(ROOT / 'config' / 'melspec.yaml'), sample_rate=24000, norm_stats=MEL_AS_IS)
    with pytest.raises(EvarError, match='level'):
        plugin.EvarEncoder(config=str(ROOT / 'config' / 'melspec.yaml'), level='tokens', norm_stats=MEL_AS_IS)


@needs_byola
@needs_shared
def test_byola_encoder_with_statistics_of_the_training_jsonl(tmp_path, capsys):
    plugin = _plugin()
    config = str(ROOT / 'config' / 'byola.yaml')
    with pytest.raises(EvarError, match='norm_stats'):
        plugin.EvarEncoder(config=config, options=BYOLA_OPTS)

    # MARBLE's metadata: one JSON object per line, audio_path relative to MARBLE's folder.
    (tmp_path / 'data').mkdir()
    for f in FILES:
        (tmp_path / 'data' / f.split('/')[-1]).symlink_to(DATA / f)
    jsonl = tmp_path / 'data' / 'Task.train.jsonl'
    jsonl.write_text(''.join(json.dumps({'audio_path': f'data/{f.split("/")[-1]}', 'label': 'x', 'sample_rate': 16000,
                                         'channels': 1}) + '\n' for f in FILES))
    assert plugin.main(['stats', config, str(jsonl), '--options', BYOLA_OPTS, '--root', str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    mean, std = (float(v) for v in printed.removeprefix('norm_stats: [').removesuffix(']').split(','))

    model = _reference(config, BYOLA_OPTS)  # statistics by hand: every training clip whole, padding excluded
    sums = torch.zeros(3, dtype=torch.float64)
    for f in FILES:
        wav, _ = load_audio(DATA / f, 16000)
        with torch.inference_mode():
            sums += model.stat_sums(*model.features(torch.from_numpy(wav)[None], torch.tensor([len(wav)])))
    assert (mean, std) == pytest.approx(stats_from_sums(sums), rel=1e-6)

    encoder = plugin.EvarEncoder(config=config, options=BYOLA_OPTS, sample_rate=16000, norm_stats=[mean, std])
    items = _host_slices([DATA / f for f in FILES])
    x = torch.stack([w for w, _ in items])
    encoder.train()
    out = _host_forward(encoder, x)
    assert out.shape == (len(items), 1, 1, 512) and encoder.num_features == 512
    model.set_norm_stats(mean, std)
    with torch.inference_mode():
        expected = model.embed(x[:, 0], torch.full((len(items),), x.shape[-1]))
    torch.testing.assert_close(out[:, 0, 0], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_host_forward(encoder, x[:2])[:, 0, 0], expected[:2], rtol=1e-4, atol=1e-4)

    jsonl.write_text('{"path": "x.wav"}\n')
    with pytest.raises(EvarError, match='line 1: expected a JSON object with "audio_path"'):
        plugin.jsonl_audio_paths(str(jsonl))


def test_example_config_instantiates_as_marble_does(tmp_path, monkeypatch):
    """plugin/MARBLE/configs/probe.evar.GTZANGenre.yaml through marble.core.utils.instantiate_from_config's rule
    (import the module of `class_path`, call the class with `init_args`), run from another folder with
    plugin/MARBLE on the path: the encoder builds, its width is the decoder's in_dim, the rates agree."""
    import importlib

    import yaml

    monkeypatch.syspath_prepend(str(ROOT / 'plugin' / 'MARBLE'))
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((ROOT / 'plugin' / 'MARBLE' / 'configs' / 'probe.evar.GTZANGenre.yaml').read_text())
    task = cfg['model']['init_args']
    module, cls = task['encoder']['class_path'].rsplit('.', 1)
    encoder = getattr(importlib.import_module(module), cls)(**task['encoder'].get('init_args', {}))
    assert encoder.num_features == task['decoders'][0]['init_args']['in_dim']
    rates = {task['sample_rate'], encoder.sample_rate, *(cfg['data']['init_args'][s]['init_args']['sample_rate']
                                                          for s in ('train', 'val', 'test'))}
    assert rates == {16000}
    sys.modules.pop(module, None)
    with pytest.raises(EvarError, match='does not exist'):
        _plugin().EvarEncoder(config='config/no_such_model.yaml')


def test_subclasses_marbles_base_encoder_when_marble_is_installed(monkeypatch):
    """With MARBLE importable, EvarEncoder derives from marble.core.base_encoder.BaseEncoder (an ABC over
    torch.nn.Module with an abstract forward(input_tensor, input_len=None), as MARBLE declares it) and implements it."""
    import abc
    import types

    class BaseEncoder(torch.nn.Module, metaclass=abc.ABCMeta):
        @abc.abstractmethod
        def forward(self, input_tensor, input_len=None):
            raise NotImplementedError

    for name in ('marble', 'marble.core', 'marble.core.base_encoder'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules['marble.core.base_encoder'].BaseEncoder = BaseEncoder
    encoder = _plugin().EvarEncoder(config='config/melspec.yaml', norm_stats=MEL_AS_IS)
    assert isinstance(encoder, BaseEncoder)
    assert encoder(torch.zeros(2, 16000), torch.tensor([8000, 16000]))[0].shape == (2, 1, 64)
