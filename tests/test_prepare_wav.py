"""prepare_wav: dataset folder -> mono audio at one rate, same relative paths, resumable, failures reported."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evar.errors import EvarError
from evar.prepare_wav import TMP_TAG, prepare_wav

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
SR = 16000

# relative source path -> (frequency Hz, seconds, source rate, channels, write kwargs)
TONES = {
    'stereo.wav': (440.0, 1.0, 44100, 2, {}),
    'sub/mono.flac': (1000.0, 0.5, 48000, 1, {}),
    'sub/deeper/vorbis.ogg': (2000.0, 0.75, 22050, 1, {'format': 'OGG', 'subtype': 'VORBIS'}),
}
EXPECTED_OUT = {'stereo.wav': 'stereo.wav', 'sub/mono.flac': 'sub/mono.flac',
                'sub/deeper/vorbis.ogg': 'sub/deeper/vorbis.flac'}


def tone(freq, seconds, rate, channels):
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels == 2:  # different levels per channel; the average keeps the frequency
        return np.stack([x, 0.6 * x], axis=1)
    return x


def peak_hz(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


@pytest.fixture
def src(tmp_path):
    root = tmp_path / 'src'
    for rel, (freq, sec, rate, ch, kw) in TONES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, tone(freq, sec, rate, ch), rate, **kw)
    (root / 'sub' / 'broken.wav').write_bytes(np.random.default_rng(0).bytes(3000))  # not audio
    (root / 'sub' / 'notes.txt').write_text('not audio, not listed')
    return root


def test_convert_tree(src, tmp_path):
    dst = tmp_path / 'dst'
    s = prepare_wav(src, dst, SR, workers=2, progress=False)
    assert (s.converted, s.skipped, len(s.failed)) == (3, 0, 1)
    assert s.failed[0][0] == str(src / 'sub' / 'broken.wav') and s.failed[0][1]
    assert 'converted 3, skipped 0' in s.report() and 'broken.wav' in s.report()
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob('*') if p.is_file())
    assert files == sorted(EXPECTED_OUT.values())
    for rel, (freq, sec, _, _, _) in TONES.items():
        out = dst / EXPECTED_OUT[rel]
        info = sf.info(out)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, 'PCM_16')
        assert info.format == ('WAV' if out.suffix == '.wav' else 'FLAC')
        x, _ = sf.read(out)
        assert abs(len(x) - sec * SR) <= 2, rel
        assert abs(peak_hz(x, SR) - freq) <= 3, rel
        assert np.max(np.abs(x)) <= 1.0


def test_cli_reports_failure_and_resume(src, tmp_path, monkeypatch):
    dst = tmp_path / 'dst'
    r = subprocess.run([sys.executable, 'prepare_wav.py', str(src), str(dst), str(SR), '--workers', '2'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert 'broken.wav' in r.stderr and 'Traceback' not in r.stderr
    assert 'converted 3, skipped 0 (already done), failed 1' in r.stdout
    mtimes = {p: p.stat().st_mtime_ns for p in dst.rglob('*') if p.is_file()}
    assert len(mtimes) == 3

    # A run killed while writing leaves a temporary file; the next run removes it and skips finished files.
    stale = dst / 'sub' / f'.mono.flac.abc123{TMP_TAG}'
    stale.write_bytes(b'half a file')
    s = prepare_wav(src, dst, SR, workers=2, progress=False)
    assert (s.converted, s.skipped, len(s.failed), s.stale_removed) == (0, 3, 1, 1)
    assert not stale.exists()
    assert {p: p.stat().st_mtime_ns for p in dst.rglob('*') if p.is_file()} == mtimes

    # Interrupted in the middle of a write (Ctrl-C): no output and no temporary file remain.
    target = dst / 'sub' / 'deeper' / 'vorbis.flac'
    target.unlink()
    real_write = sf.write

    def write_then_interrupt(path, data, *args, **kwargs):
        real_write(path, data[: len(data) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, 'write', write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_wav(src, dst, SR, workers=1, progress=False)
    assert not target.exists()
    assert not [p for p in dst.rglob('*') if p.name.endswith('.tmp')]
    monkeypatch.undo()
    s = prepare_wav(src, dst, SR, workers=1, progress=False)
    assert (s.converted, s.skipped) == (1, 2) and sf.info(target).frames == 12000


def test_bad_input(src, tmp_path):
    with pytest.raises(EvarError, match='does not exist'):
        prepare_wav(tmp_path / 'missing', tmp_path / 'o', SR)
    empty = tmp_path / 'empty'
    (empty / 'a').mkdir(parents=True)
    (empty / 'a' / 'readme.txt').write_text('x')
    with pytest.raises(EvarError, match='No audio files'):
        prepare_wav(empty, tmp_path / 'o', SR)
    for rate in (0, -16000, '16k', 16000.5, True):
        with pytest.raises(EvarError, match='SAMPLE_RATE'):
            prepare_wav(src, tmp_path / 'o', rate)
    with pytest.raises(EvarError, match='quality'):
        prepare_wav(src, tmp_path / 'o', SR, quality='best')
    with pytest.raises(EvarError, match='FLAC'):  # FLAC stores integers only
        prepare_wav(src, tmp_path / 'o', SR, subtype='FLOAT')
    with pytest.raises(EvarError, match='source folder'):
        prepare_wav(src, src, SR)
    assert not (tmp_path / 'o').exists()
    r = subprocess.run([sys.executable, 'prepare_wav.py', str(src), str(tmp_path / 'o'), '16k'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and 'SAMPLE_RATE' in r.stderr and 'Traceback' not in r.stderr


def test_options(src, tmp_path):
    # Only wav inputs, float output, destination inside the source (not walked on a rerun).
    dst = src / 'out16k'
    s = prepare_wav(src, dst, SR, workers=1, suffixes='wav', subtype='float', quality='hq', progress=False)
    assert (s.converted, len(s.failed)) == (1, 1)  # stereo.wav converted, broken.wav reported
    assert sf.info(dst / 'stereo.wav').subtype == 'FLOAT'
    s = prepare_wav(src, dst, SR, workers=1, suffixes=['wav'], subtype='float', progress=False)
    assert (s.converted, s.skipped) == (0, 1)
    # Two inputs that would share an output are both reported, not silently overwritten.
    shutil.rmtree(dst)
    sf.write(src / 'sub' / 'mono.ogg', tone(300, 0.1, 8000, 1), 8000, format='OGG', subtype='VORBIS')
    s = prepare_wav(src, tmp_path / 'c', SR, workers=1, progress=False)
    clashing = sorted(Path(p).name for p, reason in s.failed if 'would also be written' in reason)
    assert clashing == ['mono.flac', 'mono.ogg'] and s.converted == 2


def test_real_esc50_files(tmp_path):
    audio = SHARED / 'data' / 'ESC-50' / 'audio'
    if not audio.is_dir():
        pytest.skip(f'shared test data not found at {audio}')
    picked = sorted(audio.glob('*.flac'))[:3]
    if len(picked) < 3:
        pytest.skip(f'fewer than 3 ESC-50 flac files in {audio}')
    src = tmp_path / 'esc'
    src.mkdir()
    for p in picked:
        os.symlink(p, src / p.name)
    s = prepare_wav(src, tmp_path / 'esc22k', 22050, workers=3, progress=False)
    assert (s.converted, len(s.failed)) == (3, 0)
    for p in picked:
        before, out = sf.info(p), sf.info(tmp_path / 'esc22k' / p.name)
        assert (out.samplerate, out.channels) == (22050, 1)
        assert out.duration == pytest.approx(before.duration, abs=1e-3)


def test_inputs_go_through_evars_reader(tmp_path):
    """prepare_wav decodes with evar.audio.load_audio: faults the loader refuses are reported, never written."""
    src = tmp_path / 'src'
    src.mkdir()
    sf.write(src / 'ok.wav', tone(440.0, 0.25, 8000, 2), 8000)
    sf.write(src / 'empty.wav', np.zeros(0, np.float32), 16000)
    bad = np.full(800, 0.1, np.float32)
    bad[100] = np.nan
    sf.write(src / 'nan.wav', bad, 16000, subtype='FLOAT')
    s = prepare_wav(src, tmp_path / 'dst', SR, workers=1, progress=False)
    assert s.converted == 1 and [(Path(p).name, reason) for p, reason in s.failed] == [
        ('empty.wav', f'Audio file {src / "empty.wav"} is empty (0 samples).'),
        ('nan.wav', f'Audio file {src / "nan.wav"} contains NaN or infinite samples.')]
    assert sorted(p.name for p in (tmp_path / 'dst').iterdir()) == ['ok.wav']
    from evar.audio import load_audio
    expected, _ = load_audio(src / 'ok.wav', SR, quality='VHQ')  # the same samples, to 16-bit precision
    np.testing.assert_allclose(sf.read(tmp_path / 'dst' / 'ok.wav', dtype='float32')[0], expected, atol=2 ** -15)
    with pytest.raises(EvarError, match=r'cannot read \.m4a, \.wma files; audio suffixes are \.wav, \.flac'):
        prepare_wav(src, tmp_path / 'o', SR, suffixes='wma,M4A,wav')
