"""`python -m evar.check`: every check passes on the built-in spectrogram models and BYOL-A; models broken on purpose
fail the check that is about their fault (padding leaking into a clip, NaN on silence, a random crop of long clips, a
wrong declared hop) with a non-zero exit."""

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from evar.check import check_ar, check_model, long_clip_sec
from evar.errors import EvarError
from evar.models import create_model
from evar.models.base import AudioRepr, Frames, lengths_to_mask
from evar.models.spec import MelSpec, SpecParams

from helpers import BYOLA_D512, ROOT, needs_byola
from helpers.tiny_models import write_hf_folder

LONG = 60.0
NAMES = ['shapes', 'silence', 'frame_rate', 'length 0.2s', 'length 1s', 'length 10s', 'length 60s', 'batch_single',
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
    assert '100.00 frames/s (1000 frames added by 10 s, 1001 frames from 10 s)' in report['frame_rate'].detail
    assert not report['frame_rate'].skipped and 'silent clips' in report['silence'].detail
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


class StdNormMelSpec(MelSpec):
    """Broken on purpose: each clip is divided by its own standard deviation, 0 / 0 = NaN on silence."""

    def features(self, wav, lengths):
        valid = lengths_to_mask(lengths, wav.shape[1])
        n = lengths[:, None].clamp(min=1)
        mean = (wav * valid).sum(1, keepdim=True) / n
        std = (((wav - mean) * valid).square().sum(1, keepdim=True) / n).sqrt()
        return super().features(wav / std * valid, lengths)


@dataclass(frozen=True)
class CropParams(SpecParams):
    chunk_sec: float = 12.0


class RandomCropMelSpec(MelSpec):
    """Broken on purpose: a clip longer than chunk_sec starts at a random sample and wraps around (a random crop that
    keeps the length, as repeat-padded random crops do); clips up to chunk_sec are untouched, so only a long clip can
    show it."""
    Params = CropParams

    def features(self, wav, lengths):
        chunk = int(self.params.chunk_sec * self.params.sample_rate)
        out = wav.clone()
        for i, n in enumerate(lengths.tolist()):
            if n > chunk:
                out[i, :n] = wav[i, :n].roll(int(torch.randint(1, n, ())))
        return super().features(out, lengths)


@dataclass(frozen=True)
class PieceParams(SpecParams):
    piece_sec: float = 10.0
    declared_hop_sec: float = 30.0


class PieceMeanMelSpec(MelSpec):
    """One frame per piece of piece_sec (the mean log-mel of its frames), declaring `declared_hop_sec` as its hop: a
    CLAP-like model that declared 30 s while giving one embedding per 10 s passed the old 10-s frame-rate check."""
    Params = PieceParams

    @property
    def frame_hop_sec(self):
        return self.params.declared_hop_sec

    def encode(self, feats, feat_lengths):
        per = round(self.params.piece_sec * self.params.sample_rate / self.params.hop_size)
        b, m, t = feats.shape
        pieces = -(-t // per)
        x = torch.nn.functional.pad(feats, (0, pieces * per - t)).reshape(b, m, pieces, per)
        valid = lengths_to_mask(feat_lengths, pieces * per).reshape(b, 1, pieces, per)
        means = (x * valid).sum(-1) / valid.sum(-1).clamp(min=1)
        counts = torch.div(feat_lengths + per - 1, per, rounding_mode='floor')
        return Frames(means.transpose(1, 2), lengths_to_mask(counts, pieces))


def failed_checks(model) -> list:
    report = check_ar(model, device='cpu', long_sec=2.0, label=type(model).__name__)
    return report, [c.name for c in report.checks if not c.passed]


def test_nan_on_silence_fails_the_silence_check():
    report, failed = failed_checks(StdNormMelSpec(SpecParams()))
    assert failed == ['silence'], report.table()
    assert 'non-finite values in embeddings' in report['silence'].detail
    assert 'silent clips of 0.2 s, 1 s, 10 s' in report['silence'].detail


def test_random_crop_of_long_clips_fails_the_determinism_check():
    """chunk_sec 12 makes the long clip 2.5 x 12 = 30 s; every clip of the other checks is at most 12 s."""
    model = RandomCropMelSpec(CropParams())
    assert long_clip_sec(model) == 30.0
    torch.manual_seed(0)
    report, failed = failed_checks(model)
    assert failed == ['deterministic'], report.table()
    assert 'one clip of 30 s: two runs differ' in report['deterministic'].detail
    assert 'batch of' not in report['deterministic'].detail  # the short batch is deterministic


def test_wrong_declared_hop_fails_the_frame_rate_check():
    report, failed = failed_checks(PieceMeanMelSpec(PieceParams()))  # 30 s declared, one frame per 10 s
    assert failed == ['frame_rate'], report.table()
    assert '0.10 frames/s' in report['frame_rate'].detail and 'expected 4 +- 1.08 frames added' in \
        report['frame_rate'].detail
    report, failed = failed_checks(PieceMeanMelSpec(PieceParams(declared_hop_sec=10.0)))
    assert failed == [], report.table()
    report, failed = failed_checks(MelSpec(SpecParams(hop_size=192)))  # 12 ms hop: 83.3 frames/s
    assert failed == [] and '83.33 frames/s' in report['frame_rate'].detail, report.table()
    with_wrong_hop = MelSpec(SpecParams(hop_size=192))
    with_wrong_hop.params = SpecParams(hop_size=160)  # declares 10 ms (hop_size / sample_rate), runs 12 ms
    report, failed = failed_checks(with_wrong_hop)
    assert failed == ['frame_rate'], report.table()


def test_clap_chunk_longer_than_its_input_is_refused(tmp_path):
    """A CLAP piece longer than the model's 10 s input would be cut (randomly, in transformers' 'rand_trunc');
    evar refuses such a chunk_sec when the model is built."""
    folder = str(write_hf_folder(tmp_path / 'clap', 'clap'))
    with pytest.raises(EvarError, match='chunk_sec 30.0 is longer than the CLAP input of 10 s'):
        create_model('hf', model_id=folder, sample_rate=48000, chunk_sec=30.0)
    model = create_model('hf', model_id=folder, sample_rate=48000, chunk_sec=5.0)
    report = check_ar(model, device='cpu', long_sec=2.0, label='clap')
    assert report.passed, report.table()
    assert 'one clip of 25 s' in report['deterministic'].detail
