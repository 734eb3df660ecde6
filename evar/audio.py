"""Reading audio: the one reader (decode -> mono -> resample) and the one list of audio file suffixes.

Every part of evar that reads audio goes through `load_audio` (the data loader, prepare_wav, the metadata
builders) or `audio_sample_rate` (a header only), so all of them accept the same files and decode them the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .errors import EvarError

# The suffixes of the files libsndfile (>= 1.1, which soundfile >= 0.12 bundles) decodes, matched case-insensitively;
# in order of preference where a folder holds one clip under several of them (lossless first). Containers that it
# cannot read (m4a, aac, wma) are not audio to evar: convert them first.
AUDIO_SUFFIXES = ('.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3', '.aiff', '.aif', '.aifc', '.au', '.snd', '.caf',
                  '.w64', '.rf64')


def is_audio_file(name: str) -> bool:
    """Whether the file name `name` ends with one of `AUDIO_SUFFIXES` (any case)."""
    return str(name).lower().endswith(AUDIO_SUFFIXES)


def resolve_audio_path(root: Path, file_name: str) -> Path:
    """`root/file_name`, or the same stem with another audio extension (prepare_wav may change it)."""
    path = Path(root) / file_name
    if path.exists():
        return path
    for suffix in AUDIO_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise EvarError(f'Audio file {path} does not exist (also looked for {", ".join(AUDIO_SUFFIXES)}).'
                    + _missing_file_hint(Path(root), str(file_name)))


def _missing_file_hint(root: Path, file_name: str) -> str:
    """Why a listed name may miss a file that is there: Windows separators, or another Unicode normalisation."""
    import unicodedata

    if '\\' in file_name:
        fixed = file_name.replace('\\', '/')
        there = ' (and that file exists)' if (root / fixed).exists() else ''
        return f' The name uses "\\" separators; write it with "/" ({fixed}){there}.'
    for form in ('NFC', 'NFD'):
        other = unicodedata.normalize(form, file_name)
        if other != file_name and (root / other).exists():
            return (f' A file with the same name in Unicode {form} form exists ({root / other}): the CSV and the '
                    'file system normalise accented characters differently; rewrite the CSV with that form.')
    return ''


# FLAC files up to this size are decoded whole by dr_flac (miniaudio), about twice as fast as libsndfile and
# bit-identical to it on every 16-bit file in ../shared; larger ones go through libsndfile, which can stop at a crop.
_FULL_DECODE_MAX_BYTES = 8 << 20


def _read_flac_whole(path: Path) -> tuple[np.ndarray, int]:
    """(None, 0) where dr_flac refuses the file; libsndfile then reads it or names the fault (empty, corrupt)."""
    import miniaudio

    try:
        decoded = miniaudio.flac_read_file_f32(str(path))
        declared = miniaudio.flac_get_file_info(str(path)).num_frames
    except miniaudio.DecodeError:
        return None, 0
    # dr_flac stops quietly at damage; a decoded length that disagrees with the header is a fault, never a clip.
    if declared and decoded.num_frames != declared:
        raise EvarError(f'Audio file {path} is truncated or corrupt: {decoded.num_frames} of the {declared} samples '
                        'its header declares could be decoded.')
    wav = np.frombuffer(decoded.samples, dtype=np.float32).reshape(-1, decoded.nchannels)
    return wav, decoded.sample_rate


def _read_soundfile(path: Path, max_sec: float = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        # Decode only what a head crop keeps (plus a margin for the resampler's filter).
        frames = -1 if max_sec is None else int(np.ceil(max_sec * rate)) + 64
        return f.read(frames, dtype='float32', always_2d=True), rate


def load_audio(path: Path, sample_rate: Optional[int], max_sec: Optional[float] = None,
               quality: str = 'HQ') -> tuple[np.ndarray, int]:
    """Mono float32 samples `[N]` in [-1, 1] at `sample_rate` Hz, and the file's own rate in Hz.

    sample_rate: the rate to resample to (soxr, recipe `quality`: QQ/LQ/MQ/HQ/VHQ); None keeps the file's rate.
    max_sec: decode at most about the first `max_sec` seconds (a head crop; a few samples more, for the resampler).
    Channels are averaged. An unreadable, empty or non-finite file raises EvarError naming the file.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise EvarError(f'Audio file {path} is empty (0 bytes).')
        if path.suffix.lower() == '.flac' and path.stat().st_size <= _FULL_DECODE_MAX_BYTES:
            wav, rate = _read_flac_whole(path)
            if wav is not None and max_sec is not None:
                wav = wav[:int(np.ceil(max_sec * rate)) + 64]
        else:
            wav = None
        if wav is None:
            wav, rate = _read_soundfile(path, max_sec)
    except EvarError:
        raise
    except Exception as e:  # the decoders raise several types for unreadable files
        raise EvarError(f'Cannot read audio file {path}: {str(e) or type(e).__name__}') from e
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if wav.size == 0:
        raise EvarError(f'Audio file {path} is empty (0 samples).')
    if not np.isfinite(wav).all():
        raise EvarError(f'Audio file {path} contains NaN or infinite samples.')
    if sample_rate is not None and rate != sample_rate:
        import soxr

        wav = soxr.resample(wav, rate, sample_rate, quality=quality).astype(np.float32, copy=False)
    return np.ascontiguousarray(wav), rate


def audio_sample_rate(path: Path) -> int:
    """The sample rate in Hz that the header of the audio file `path` declares (nothing else is decoded).
    An unreadable file raises EvarError naming it."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise EvarError(f'Cannot read audio file {path}: {str(e) or type(e).__name__}') from e


def audio_file_fault(path: Path) -> Optional[str]:
    """What is wrong with the audio file at `path` judging by its size and header alone (nothing is decoded), or
    None when it looks readable: missing, empty (0 bytes), a format no decoder recognises, or 0 samples declared."""
    import soundfile as sf

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return 'empty (0 bytes)'
        info = sf.info(str(path))
    except FileNotFoundError:
        return 'does not exist'
    except Exception as e:  # soundfile raises several types for unreadable headers
        return f'unreadable header ({str(e) or type(e).__name__})'
    if info.frames == 0:
        return 'declares 0 samples'
    return None


def crop(wav: np.ndarray, unit_samples: int, policy: str) -> np.ndarray:
    """At most `unit_samples` samples: from the start ('head', as EVAR's test split), the middle, or all ('full').

    Shorter clips are returned as they are; batching pads them and the model masks the padding out.
    """
    if policy == 'full' or len(wav) <= unit_samples:
        return wav
    start = 0 if policy == 'head' else (len(wav) - unit_samples) // 2
    return wav[start:start + unit_samples]
