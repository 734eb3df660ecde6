"""The built-in `demo` task: 300 one-second clips in 6 sound classes, generated deterministically on first use.

Each class has its own spectral and temporal structure (low hum, high whistle, beeps, rising sweep, click train,
hiss) while pitch, level and background noise are random, so loudness alone cannot tell the classes apart:
a spectrogram-based representation scores well above an energy-only one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .errors import EvarError
from .fileio import atomic_write_text

SAMPLE_RATE = 16000
CLASSES = ('hum', 'whistle', 'beeps', 'sweep', 'clicks', 'hiss')
PER_CLASS = 50
SEED = 20211101


def _clip(kind: str, rng: np.random.Generator) -> np.ndarray:
    n = SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    if kind == 'hum':  # low harmonic tone
        f0 = rng.uniform(80, 200)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 10))
    elif kind == 'whistle':  # high pure tone with vibrato
        f0 = rng.uniform(1500, 3000)
        x = np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    elif kind == 'beeps':  # mid tone switched on and off
        gate = (np.sin(2 * np.pi * rng.uniform(3, 8) * t + rng.uniform(0, 6.3)) > 0).astype(float)
        x = np.sin(2 * np.pi * rng.uniform(500, 1000) * t) * gate
    elif kind == 'sweep':  # rising chirp across the band
        f0, f1 = rng.uniform(200, 400), rng.uniform(3000, 5000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 2))
    elif kind == 'clicks':  # impulse train with decaying ringing
        x = np.zeros(n)
        x[int(rng.integers(0, 400))::int(SAMPLE_RATE / rng.uniform(5, 30))] = 1.0
        x = np.convolve(x, np.exp(-np.arange(64) / 8.0), mode='same')
    else:  # hiss: high-band noise
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spec *= freqs > rng.uniform(3000, 5000)
        x = np.fft.irfft(spec, n)
    x = x / (np.abs(x).max() + 1e-9) * 10 ** rng.uniform(-2.0, -0.3)  # random level: loudness tells nothing
    x = x + rng.standard_normal(n) * 10 ** rng.uniform(-4.0, -2.5)
    return np.clip(x, -1, 1).astype(np.float32)


def ensure_demo(work_root: Path) -> Path:
    """Writes `<work_root>/metadata/demo.csv` and `<work_root>/16k/demo/` unless they exist; returns the CSV path."""
    import soundfile as sf

    from .tasks import get_task

    work_root = Path(work_root)
    csv_path = work_root / 'metadata' / 'demo.csv'
    audio_root = work_root / '16k' / 'demo'
    if csv_path.is_file() and get_task('demo').data_root(work_root, SAMPLE_RATE)[0].is_dir():
        return csv_path  # already there (possibly converted to another rate's folder)
    rng = np.random.default_rng(SEED)
    tmp = audio_root.parent / f'.demo-{os.getpid()}.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    rows = ['file_name,label,split']
    try:
        for label in CLASSES:
            (tmp / label).mkdir(parents=True)
            for i in range(PER_CLASS):
                name = f'{label}/{label}_{i:03d}.flac'
                sf.write(str(tmp / name), _clip(label, rng), SAMPLE_RATE, subtype='PCM_16')
                split = 'test' if i % 5 == 0 else 'valid' if i % 5 == 1 else 'train'
                rows.append(f'{name},{label},{split}')
        if audio_root.exists():
            shutil.rmtree(audio_root)
        os.replace(tmp, audio_root)
    except OSError as e:
        raise EvarError(f'Cannot write the demo task under {work_root}: {e}') from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(csv_path, '\n'.join(rows) + '\n')
    return csv_path
