"""Salamander grand piano notes: the pitch of single notes, split by time within each note's decay."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ..audio import load_audio
from .base import Row, Task, task_table
from .layout import audio_files, stem, warn

HELP = """\
  piano_pitch     <note><octave>[v<velocity>].<ext> (e.g. F#5v10.flac, the Salamander piano notes) -> note name;
                  WRITES AUDIO: cuts each recording into 0.5 s segments from the onset, keeps the leading segments
                  at or above -50 dBFS RMS (at most 12), splits them by time (earlier train, one valid, later
                  test) and writes them to <work_root>/<rate>/piano_pitch/ (also with --no_link): see `piano_pitch`
                  in evar/tasks/piano.py
"""
_PIANO = re.compile(r'([A-G]#?)(\d)(?:v\d+)?$')
PIANO_SEGMENT_SEC = 0.5
PIANO_MIN_DBFS = -50.0
PIANO_MAX_SEGMENTS = 12


def piano_segments(wav, rate: int, segment_sec: float = PIANO_SEGMENT_SEC, min_dbfs: float = PIANO_MIN_DBFS,
                   max_segments: int = PIANO_MAX_SEGMENTS) -> list[tuple[int, str]]:
    """(start sample, split) of the segments `piano_pitch` keeps from one note's recording (see there).

    wav: mono samples `[N]` in [-1, 1] at `rate` Hz; segment_sec: segment length in seconds; min_dbfs: the lowest
    RMS level kept, in dB relative to full scale. Fewer than 3 kept segments give [].
    """
    import numpy as np

    size = int(round(segment_sec * rate))
    starts = []
    for start in range(0, len(wav) - size + 1, size):
        power = float(np.mean(np.square(wav[start:start + size], dtype=np.float64)))
        if 10 * np.log10(power + 1e-20) < min_dbfs:
            break  # decayed away: this segment and everything after it are left out
        starts.append(start)
        if len(starts) == max_segments:
            break
    if len(starts) < 3:
        return []
    n_test = max(1, len(starts) // 3)
    n_train = len(starts) - n_test - 1
    return [(s, 'train' if i < n_train else 'valid' if i == n_train else 'test') for i, s in enumerate(starts)]


def piano_pitch(root: Path, split_file: Optional[Path] = None, out_dir: Optional[Path] = None) -> list[Row]:
    """Pitch of single piano notes, split by time within each note's decay; writes its segments to `out_dir`.

    Data: one recording per note, `<note><octave>[v<velocity>].<ext>` (the Salamander grand piano set in
    ../shared/data/piano: velocity 10, every minor third from A0 to C8, 16 kHz mono, long decays). With one
    take per note there is no other axis to split on, so the question asked is: does the representation carry
    the note's pitch in a form a linear probe learns on one part of the sound and still recognises later, when
    the level has fallen and the timbre has changed (the attack and the fast-decaying upper partials are gone)?

    Design (fixed before any model was scored):
    - Segments: each recording is cut from its first sample into consecutive, non-overlapping 0.5 s segments
      (`PIANO_SEGMENT_SEC`; the task's unit_sec). 0.5 s rather than 1 s because the upper notes at this soft
      velocity decay into the noise within 1-2 s; longer segments would leave them one segment or none.
    - Energy rule (what "decayed away" means): a segment is kept only if its RMS level, 10*log10(mean(x^2))
      with x in [-1, 1], is at least -50 dBFS (`PIANO_MIN_DBFS`); the first segment below it ends the note
      (it and everything after are left out, even if a later stretch of noise is louder). -50 dBFS is 10 dB
      above the loudest noise floor of the set: the recordings of the top notes that have died away sit at
      -69 to -60 dBFS, which is background noise (no energy at the note's partials) and says nothing of pitch.
      One absolute level for all notes, not one relative to each note's attack, so that a quiet note's noise
      tail is never kept because its attack was quiet too.
    - At most the first 12 kept segments (6 s, `PIANO_MAX_SEGMENTS`) per note, so that the long-ringing bass
      notes (over 30 kept segments each) do not outweigh the others in training and in the test accuracy.
    - Split by time within each note: with k kept segments, the last max(1, k // 3) are test, the one before
      them valid, the earlier ones train (k = 3: 1/1/1; k = 12: 7/1/4). Train always holds the attack; test
      is always later in the decay, never overlapping train.
    - Notes with fewer than 3 kept segments cannot be split so and are left out with a warning (on the
      Salamander v10 set: the top notes, which fall below -50 dBFS within a second); the labels are the notes
      kept. The class count therefore depends on the data and is printed.
    - Segments are written as 16-bit PCM WAV at the recording's rate, `<stem>_<start ms>ms.wav` in `out_dir`
      (rows name them relative to it); audio is not re-levelled, so level is part of what changes over time.
    """
    import soundfile as sf

    rows, dropped = [], []
    for rel in audio_files(root):
        name = stem(rel)
        m = _PIANO.match(name)
        if not m:
            continue
        wav, rate = load_audio(root / rel, None)
        kept = piano_segments(wav, rate)
        if not kept:
            dropped.append(name)
            continue
        size = int(round(PIANO_SEGMENT_SEC * rate))
        for start, split in kept:
            segment = f'{name}_{round(1000 * start / rate):05d}ms.wav'
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                sf.write(str(out_dir / segment), wav[start:start + size], rate, subtype='PCM_16')
            rows.append((segment, m[1] + m[2], split))
    if dropped:
        warn(f'{len(dropped)} piano notes decay below {PIANO_MIN_DBFS:g} dBFS before 3 segments of '
             f'{PIANO_SEGMENT_SEC:g} s and were left out: {", ".join(sorted(dropped))}.')
    return rows


TASKS = task_table(
    Task('piano_pitch', PIANO_SEGMENT_SEC, domain='music', build=piano_pitch, writes_audio=True),
)
