"""Spoken words in noise: a frame-level sound event detection task mixed from real Speech Commands words and real
background noise, at known onsets (evar's own task, made from the project's test data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, hash_split, stem, warn
from .speech_commands import SPC12_WORDS

HELP = """\
  sed_words       Speech Commands v2 <word>/<speakerhash>_nohash_<n> and _silence_/ 1-s noise cuts (the official
                  test-set layout, e.g. ../shared/data/speech_commands_v2_test_a) -> writes 10-s scenes of 2-4
                  words over noise and their events (events.csv beside the scenes); split by speaker hash
"""
SCENE_SEC = 10.0
SAMPLE_RATE = 16000
WORDS_PER_SCENE = (2, 4)  # inclusive range, uniform
SNR_DB = (0.0, 15.0)  # word RMS (over its active span) to background RMS, uniform per word
MIN_GAP_SEC = 0.25  # between consecutive words of a scene
ACTIVE_DB = 25.0  # a word's active span: 25 ms frames (10 ms hop) within 25 dB of its loudest frame
BACKGROUND_RMS = 0.02  # each noise cut is scaled to this RMS (about -34 dBFS) before the words are added
FADE_SEC = 0.005  # raised-cosine fade at both ends of every noise cut and word span
DEFAULT_SEED = 0
EVENTS_FILE = 'events.csv'


@dataclass(frozen=True)
class Placement:
    """One word in a scene.

    Attributes:
        file_name: the word clip, relative to the dataset root.
        label: its word (the folder).
        start, stop: its active span in the clip, samples at 16 kHz.
        onset_sec: where the span starts in the scene.
        snr_db: the span's RMS over the background's RMS, in dB.
    """
    file_name: str
    label: str
    start: int
    stop: int
    onset_sec: float
    snr_db: float

    @property
    def offset_sec(self) -> float:
        """Where the span ends in the scene."""
        return self.onset_sec + (self.stop - self.start) / SAMPLE_RATE


@dataclass(frozen=True)
class ScenePlan:
    """One scene: its file name, split, the noise cuts laid end to end under it and the words placed on them."""
    file_name: str
    split: str
    backgrounds: tuple  # SCENE_SEC noise cuts, relative to the dataset root
    words: tuple  # Placement, by onset


def _read(path: Path) -> np.ndarray:
    from ..audio import load_audio

    wav, _ = load_audio(path, SAMPLE_RATE)
    return wav.astype(np.float64)


def _fade(x: np.ndarray) -> np.ndarray:
    n = min(int(FADE_SEC * SAMPLE_RATE), len(x) // 2)
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def active_span(wav: np.ndarray) -> tuple:
    """(start, stop) samples of a word clip's active part: from the first to the last 25 ms frame (10 ms hop) whose
    RMS is within ACTIVE_DB of the loudest frame's."""
    win, hop = int(0.025 * SAMPLE_RATE), int(0.010 * SAMPLE_RATE)
    if len(wav) < win:
        return 0, len(wav)
    starts = np.arange(0, len(wav) - win + 1, hop)
    rms = np.sqrt(np.array([np.mean(wav[s:s + win] ** 2) for s in starts]) + 1e-20)
    on = np.flatnonzero(20 * np.log10(rms / rms.max()) >= -ACTIVE_DB)
    return int(starts[on[0]]), int(starts[on[-1]] + win)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def render_background(plan: ScenePlan, root: Path) -> np.ndarray:
    """float64 [SCENE_SEC * 16000] noise of a scene: its cuts, each scaled to BACKGROUND_RMS and faded, end to end."""
    n = int(SCENE_SEC * SAMPLE_RATE)
    out, pos = np.zeros(n), 0
    per_cut = n // len(plan.backgrounds)
    for rel in plan.backgrounds:
        cut = _read(root / rel)[:per_cut]
        cut = np.pad(cut, (0, per_cut - len(cut)))
        out[pos:pos + per_cut] = _fade(cut * BACKGROUND_RMS / max(_rms(cut), 1e-5))
        pos += per_cut
    return out


def render_scene(plan: ScenePlan, root: Path) -> np.ndarray:
    """float64 [SCENE_SEC * 16000] scene: `render_background` plus each word's active span (faded) at its onset,
    scaled to its SNR against BACKGROUND_RMS; the whole scene scaled down if its peak would pass 0.99."""
    out = render_background(plan, root)
    for w in plan.words:
        span = _read(root / w.file_name)[w.start:w.stop]
        gain = BACKGROUND_RMS * 10 ** (w.snr_db / 20) / max(_rms(span), 1e-8)
        at = int(round(w.onset_sec * SAMPLE_RATE))
        out[at:at + len(span)] += _fade(span * gain)
    peak = np.abs(out).max()
    return out * (0.99 / peak) if peak > 0.99 else out


def _speaker(rel: str) -> str:
    return stem(rel).split('_nohash_')[0].split('_')[-1]


def plan_scenes(root: Path, seed: int = DEFAULT_SEED) -> list:
    """The `ScenePlan`s of a Speech Commands test-set layout under `root` (the recipe in `sed_words`).

    Raises:
        EvarError: no keyword clips or no `_silence_/` noise cuts under `root`.
    """
    files = audio_files(root)
    words = [f for f in files if f.count('/') == 1 and f.split('/')[0] in SPC12_WORDS]
    noise = [f for f in files if f.startswith('_silence_/')]
    if not words or not noise:
        raise EvarError(f'sed_words needs Speech Commands word folders ({", ".join(SPC12_WORDS)}) and _silence_/ '
                        f'noise cuts under {root}; found {len(words)} word clips and {len(noise)} noise cuts.')
    rng = np.random.default_rng(seed)
    plans = []
    for split in ('train', 'valid', 'test'):
        pool = [f for f in words if hash_split(_speaker(f)) == split]
        cuts = [f for f in noise if hash_split('silence/' + stem(f)) == split] or noise
        if not pool:
            warn(f'sed_words: no speaker of {root} falls in the {split} split; it has no scenes.')
            continue
        pool = [pool[i] for i in rng.permutation(len(pool))]
        while pool:
            k = min(int(rng.integers(WORDS_PER_SCENE[0], WORDS_PER_SCENE[1] + 1)), len(pool))
            chosen, pool = pool[:k], pool[k:]
            spans = [active_span(_read(root / f)) for f in chosen]
            lengths = [(b - a) / SAMPLE_RATE for a, b in spans]
            slack = SCENE_SEC - sum(lengths) - MIN_GAP_SEC * (k - 1)
            offsets = np.sort(rng.uniform(0, slack, size=k))
            before = np.concatenate([[0.0], np.cumsum(np.array(lengths[:-1]) + MIN_GAP_SEC)])
            snrs = rng.uniform(*SNR_DB, size=k)
            placed = tuple(Placement(f, f.split('/')[0], a, b, round(float(o + p) * SAMPLE_RATE) / SAMPLE_RATE,
                                     float(s))
                           for f, (a, b), o, p, s in zip(chosen, spans, offsets, before, snrs))
            backgrounds = tuple(cuts[i] for i in rng.integers(0, len(cuts), size=int(SCENE_SEC)))
            plans.append(ScenePlan(f'{split}/scene_{len(plans):04d}.flac', split, backgrounds, placed))
    return plans


def sed_words(root: Path, split_file: Optional[Path] = None, out_dir: Optional[Path] = None,
              seed: int = DEFAULT_SEED) -> list[Row]:
    """Writes the scenes of the spoken-words SED task under `out_dir` and their events to `out_dir`/events.csv;
    returns the clip rows (scene, its words comma-joined, split): a multi-label clip-level view of the same scenes.

    Recipe (evar's own, seeded by `seed`): the ten Speech Commands keywords (yes no up down left right on off stop
    go) of the official test-set layout are split 70/10/20 train/valid/test by a stable hash of the speaker (as
    `spcv2_12`), so no speaker is in two splits, and the `_silence_/` noise cuts (real recordings: running tap,
    dishes, exercise bike, white and pink noise...) by a hash of their name. Within a split, the word clips are
    shuffled and dealt into 10-s scenes of 2 to 4 words (uniform) until none is left; each clip is used once. A
    scene's background is ten 1-s noise cuts of its split drawn with replacement, each scaled to RMS 0.02 (about
    -34 dBFS) with 5 ms raised-cosine fades, laid end to end. Each word is cut to its active span (the 25 ms
    frames, 10 ms hop, within 25 dB of its loudest frame), faded 5 ms at both ends, scaled to an SNR drawn from
    U[0, 15] dB (span RMS over background RMS) and added at a random onset: the onsets are sorted uniform draws so
    that words never overlap and are at least 0.25 s apart. A scene whose peak would pass 0.99 is scaled down whole
    (SNRs hold). Events are the spans' exact positions, in seconds on the 16 kHz sample grid.

    Raises:
        EvarError: `out_dir` missing, or `plan_scenes`' errors; `split_file` is refused (the speakers give the split).
    """
    import soundfile as sf

    from ..sed import Event, write_events

    if out_dir is None:
        raise EvarError('sed_words writes its scenes: call it with out_dir (python -m evar.metadata does).')
    out_dir = Path(out_dir)
    plans = plan_scenes(root, seed)
    rows, clips = [], []
    for plan in plans:
        path = out_dir / plan.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), render_scene(plan, root).astype(np.float32), SAMPLE_RATE, subtype='PCM_16')
        events = [Event(plan.file_name, w.onset_sec, w.offset_sec, w.label) for w in plan.words]
        clips.append((plan.file_name, plan.split, events))
        rows.append((plan.file_name, ','.join(sorted({w.label for w in plan.words})), plan.split))
    write_events(out_dir / EVENTS_FILE, clips)
    return rows


TASKS = task_table(
    Task('sed_words', SCENE_SEC, domain='speech', metric='mAP', build=sed_words, writes_audio=True, events=True),
)
