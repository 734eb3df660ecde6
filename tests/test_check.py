"""`python -m evar.check`: every check passes on the built-in spectrogram models and BYOL-A, and a model whose
pooled output depends on padding fails with a non-zero exit."""

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from evar.check import check_ar, check_model
from evar.models.base import AudioRepr, Frames, lengths_to_mask

from helpers import BYOLA_D512, ROOT, needs_byola

LONG = 60.0
NAMES = ['shapes', 'frame_rate', 'length 0.2s', 'length 1s', 'length 10s', 'length 60s', 'batch_single',
         'deterministic', 'device']


@dataclass(frozen=True)
class LeakyParams:
    sample_rate: int = 16000
    hop: int = 160
    temporal_pooling_type: str = 'mean'


class LeakyAR(AudioRepr):
    """Broken on purpose: frames are normalised by the mean over the whole padded batch, so padding leaks into
    every clip's embedding."""
    Params = LeakyParams
    embedding_dim = 8

    @property
    def frame_hop_sec(self):
        return self.params.hop / self.params.sample_rate

    def encode(self, wav, lengths):
        b = wav.shape[0]
        frames = wav[:, :wav.shape[1] // self.params.hop * self.params.hop].reshape(b, -1, self.params.hop)
        frames = frames.abs() - wav.abs().mean()  # the batch mean includes the padding
        n = torch.div(lengths, self.params.hop, rounding_mode='floor').clamp(min=1)
        if frames.shape[1] == 0:
            frames = wav.new_zeros(b, 1, self.params.hop)
        return Frames(frames[..., :8], lengths_to_mask(n.clamp(max=frames.shape[1]), frames.shape[1]))


def run_check(*args, cwd):
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), str(ROOT / 'tests')])}
    return subprocess.run([sys.executable, '-m', 'evar.check', *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('config', ['melspec', 'linspec'])
def test_spectrograms_pass_every_check(config):
    report = check_model(ROOT / 'config' / f'{config}.yaml', device='cpu', long_sec=LONG)
    assert [c.name for c in report.checks] == NAMES
    assert report.passed, report.table()
    assert '100.10 frames/s' in report['frame_rate'].detail and not report['frame_rate'].skipped
    d = 64 if config == 'melspec' else 513
    assert f'pooled (3, {d})' in report['shapes'].detail


@needs_byola
def test_byola_passes_every_check_via_cli(tmp_path):
    proc = run_check(ROOT / 'config' / 'byola_d512.yaml', '--options', f'weight_file={BYOLA_D512}', '--device', 'cpu',
                     '--long_sec', LONG, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'all checks passed' in proc.stdout and '12.50 frames/s' in proc.stdout  # 8x coarser than the 10 ms hop
    assert 'norm_stats not in the config' in proc.stdout


def test_absent_weights_fail_with_the_models_message(tmp_path):
    proc = run_check(ROOT / 'config' / 'byola_d512.yaml', '--options', f'weight_file={tmp_path / "none.pth"}',
                     cwd=tmp_path)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('Error: BYOL-A: weight file') and 'does not exist' in proc.stderr


def test_leaky_model_fails_batch_single_with_nonzero_exit(tmp_path):
    config = tmp_path / 'leaky.yaml'
    config.write_text('audio_repr: test_check:LeakyAR\nsample_rate: 16000\nhop: 160\n')
    report = check_model(config, device='cpu', long_sec=LONG)
    failed = [c.name for c in report.checks if not c.passed]
    assert failed == ['batch_single'], report.table()
    assert report['frame_rate'].passed and 'declared hop 10 ms' in report['frame_rate'].detail
    proc = run_check(config, '--long_sec', LONG, '--device', 'cpu', cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'FAILED: batch_single' in proc.stdout and 'Traceback' not in proc.stdout + proc.stderr


def test_check_rows_record_exceptions_and_skip_without_hop(tmp_path, monkeypatch):
    """A model that raises on some inputs fails those checks (with the error) and the other checks still run."""
    config = tmp_path / 'leaky.yaml'
    config.write_text('audio_repr: test_check:LeakyAR\nsample_rate: 16000\n')
    original = LeakyAR.encode

    def short_fails(self, wav, lengths):
        if wav.shape[1] < 16000:
            raise RuntimeError('too short')
        return original(self, wav, lengths)

    monkeypatch.setattr(LeakyAR, 'encode', short_fails)
    monkeypatch.setattr(LeakyAR, 'frame_hop_sec', None)
    report = check_model(config, device='cpu', long_sec=LONG)
    assert not report.passed
    assert report['length 0.2s'].detail == 'RuntimeError: too short' and report['length 10s'].passed
    assert report['frame_rate'].skipped and report['frame_rate'].passed


def test_embedding_dim_other_than_the_frames_fails_shapes(monkeypatch):
    """check_ar on a built model: a declared embedding_dim that differs from the frames' D fails `shapes`."""
    monkeypatch.setattr(LeakyAR, 'embedding_dim', 9)
    report = check_ar(LeakyAR(LeakyParams()), device='cpu', long_sec=2.0, label='leaky')
    assert report.config == 'leaky' and not report['shapes'].passed
    assert 'D 8 differs from the declared embedding_dim 9' in report['shapes'].detail
