"""Reading audio: any format libsndfile reads, mixed to mono, resampled to the model's rate with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import EvarError

AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.mp3', '.aiff', '.aif', '.opus', '.au')


def resolve_audio_path(root: Path, file_name: str) -> Path:
    """`root/file_name`, or the same stem with another audio extension (prepare_wav may change it)."""
    path = Path(root) / file_name
    if path.exists():
        return path
    for suffix in AUDIO_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise EvarError(f'Audio file {path} does not exist (also looked for {", ".join(AUDIO_SUFFIXES)}).')


# FLAC files up to this size are decoded whole by dr_flac (miniaudio), about twice as fast as libsndfile and
# bit-identical to it on every 16-bit file in ../shared; larger ones go through libsndfile, which can stop at a crop.
_FULL_DECODE_MAX_BYTES = 8 << 20


def _read_flac_whole(path: Path) -> tuple[np.ndarray, int]:
    """(None, 0) where dr_flac refuses the file; libsndfile then reads it or names the fault (empty, corrupt)."""
    import miniaudio

    try:
        decoded = miniaudio.flac_read_file_f32(str(path))
    except miniaudio.DecodeError:
        return None, 0
    wav = np.frombuffer(decoded.samples, dtype=np.float32).reshape(-1, decoded.nchannels)
    return wav, decoded.sample_rate


def _read_soundfile(path: Path, max_sec: float = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        # Decode only what a head crop keeps (plus a margin for the resampler's filter).
        frames = -1 if max_sec is None else int(np.ceil(max_sec * rate)) + 64
        return f.read(frames, dtype='float32', always_2d=True), rate


def load_audio(path: Path, sample_rate: int, max_sec: float = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples at `sample_rate` (at most the first `max_sec` seconds), and the file's own rate.
    Bad files raise EvarError naming the file."""
    path = Path(path)
    try:
        if path.suffix.lower() == '.flac' and path.stat().st_size <= _FULL_DECODE_MAX_BYTES:
            wav, rate = _read_flac_whole(path)
            if wav is not None and max_sec is not None:
                wav = wav[:int(np.ceil(max_sec * rate)) + 64]
        else:
            wav = None
        if wav is None:
            wav, rate = _read_soundfile(path, max_sec)
    except Exception as e:  # the decoders raise several types for unreadable files
        raise EvarError(f'Cannot read audio file {path}: {str(e) or type(e).__name__}') from e
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if wav.size == 0:
        raise EvarError(f'Audio file {path} is empty (0 samples).')
    if not np.isfinite(wav).all():
        raise EvarError(f'Audio file {path} contains NaN or infinite samples.')
    if rate != sample_rate:
        import soxr

        wav = soxr.resample(wav, rate, sample_rate, quality='HQ').astype(np.float32, copy=False)
    return np.ascontiguousarray(wav), rate


def crop(wav: np.ndarray, unit_samples: int, policy: str) -> np.ndarray:
    """At most `unit_samples` samples: from the start ('head', as EVAR's test split), the middle, or all ('full').

    Shorter clips are returned as they are; batching pads them and the model masks the padding out.
    """
    if policy == 'full' or len(wav) <= unit_samples:
        return wav
    start = 0 if policy == 'head' else (len(wav) - unit_samples) // 2
    return wav[start:start + unit_samples]
