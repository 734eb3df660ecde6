"""Audio reading: the fast FLAC path (dr_flac) against libsndfile, crops, resampling."""

import numpy as np
import pytest
import soundfile as sf

from evar import audio
from evar.audio import load_audio
from evar.errors import EvarError

from helpers import SHARED, needs_shared


def libsndfile_mono(path, max_frames=-1):
    wav = sf.read(str(path), frames=max_frames, dtype='float32', always_2d=True)[0]
    return wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]


@needs_shared
def test_fast_flac_decoder_is_bit_identical_to_libsndfile_on_real_files():
    files = sorted((SHARED / 'data').glob('*/*.flac'))[::7] + sorted((SHARED / 'data').glob('*/*/*.flac'))[::97]
    assert len(files) > 60
    for path in files:
        wav, rate = load_audio(path, 16000)
        assert rate == 16000
        np.testing.assert_array_equal(wav, libsndfile_mono(path), err_msg=str(path))


@needs_shared
def test_head_crop_is_the_same_through_both_decoders(monkeypatch):
    path = SHARED / 'data' / 'piano' / 'A0v10.flac'  # 25.8 s
    fast, _ = load_audio(path, 16000, max_sec=2.0)
    monkeypatch.setattr(audio, '_FULL_DECODE_MAX_BYTES', 0)  # large files stream through libsndfile
    partial, _ = load_audio(path, 16000, max_sec=2.0)
    assert len(fast) == len(partial) == 32000 + 64
    np.testing.assert_array_equal(fast, partial)
    resampled, rate = load_audio(path, 22050, max_sec=2.0)
    assert rate == 16000 and abs(len(resampled) - (32000 + 64) * 22050 / 16000) <= 1


@pytest.mark.parametrize('subtype,channels', [('PCM_24', 1), ('PCM_16', 2)])
def test_fast_flac_decoder_handles_24_bit_and_stereo(tmp_path, subtype, channels):
    rng = np.random.default_rng(0)
    samples = np.clip(rng.standard_normal((8000, channels)) * 0.2, -1, 1).astype(np.float32)
    path = tmp_path / 'x.flac'
    sf.write(path, samples, 16000, subtype=subtype)
    wav, _ = load_audio(path, 16000)
    np.testing.assert_allclose(wav, libsndfile_mono(path), atol=1e-7)
    np.testing.assert_allclose(wav, samples.mean(axis=1), atol=1e-4)


def test_native_rate_quality_and_header_rate(tmp_path):
    """sample_rate=None keeps the file's rate (the metadata builders cut segments at it); `quality` picks soxr's
    recipe; audio_sample_rate reads the header only."""
    rng = np.random.default_rng(1)
    stereo = (rng.standard_normal((22050, 2)) * 0.1).astype(np.float32)
    path = tmp_path / 'x.wav'
    sf.write(path, stereo, 22050, subtype='FLOAT')
    wav, rate = load_audio(path, None)
    assert rate == 22050 and wav.dtype == np.float32
    np.testing.assert_array_equal(wav, stereo.mean(axis=1))
    assert audio.audio_sample_rate(path) == 22050
    quick, _ = load_audio(path, 16000, quality='QQ')
    best, _ = load_audio(path, 16000, quality='VHQ')
    assert quick.shape == best.shape == (16000,) and not np.array_equal(quick, best)
    (tmp_path / 'bad.wav').write_bytes(b'RIFF0000')
    with pytest.raises(EvarError, match='Cannot read audio file .*bad.wav'):
        audio.audio_sample_rate(tmp_path / 'bad.wav')
