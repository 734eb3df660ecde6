"""Sound event detection (SED): event annotations, frame targets, decoding frame probabilities into events, and
the event- and segment-based metrics of sed_eval (Mesaros, Heittola & Virtanen, "Metrics for Polyphonic Sound
Event Detection", Applied Sciences 2016; https://github.com/TUT-ARG/sed_eval).

An SED task's strong labels are an events CSV `file_name,onset_sec,offset_sec,label,split`: one row per event, and
a row with empty onset, offset and label for a clip without events (DCASE's convention for empty files), so every
clip of the task and its split is listed. Times are seconds from the clip's start.

Frames: an `AudioRepr` with hop `hop` seconds and window `window` gives frame i the time cell
[window / 2 + (i - 1/2) * hop, window / 2 + (i + 1/2) * hop), i.e. centred on window / 2 + i * hop (0-based);
the frame's target for a class is 1 when its centre lies inside one of the class's events.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import EvarError

EVENT_COLUMNS = ('file_name', 'onset_sec', 'offset_sec', 'label', 'split')


@dataclass(frozen=True)
class Event:
    """One annotated or detected sound event.

    Attributes:
        file_name: the clip, relative to the task's audio folder.
        onset_sec: start time in seconds from the clip's start (>= 0).
        offset_sec: end time in seconds (> onset_sec).
        label: the event class.
    """
    file_name: str
    onset_sec: float
    offset_sec: float
    label: str

    def as_sed_eval(self) -> dict:
        """The event as sed_eval reads it (a dcase_util meta item)."""
        return {'filename': self.file_name, 'event_label': self.label, 'onset': float(self.onset_sec),
                'offset': float(self.offset_sec)}


@dataclass(frozen=True)
class EventTable:
    """An SED task's strong labels: every clip (with its split) and its events.

    Attributes:
        path: the events CSV read (or None for a table made in code).
        file_names: the clips [N], in order of first appearance.
        splits: 'train' / 'valid' / 'test' per clip [N].
        events: per clip, a tuple of `Event`s (empty for a clip without events).
        labels: the classes, sorted.
        content_hash: sha256 of the CSV's bytes (or of the table's text).
    """
    path: Optional[Path]
    file_names: tuple
    splits: tuple
    events: tuple
    labels: tuple
    content_hash: str

    def rows(self, split: str) -> np.ndarray:
        """int64 indices of the clips in `split`."""
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def split_events(self, split: str) -> list:
        """Every `Event` of the clips in `split`, in clip order."""
        return [e for i in self.rows(split) for e in self.events[i]]


def write_events(path: Path, clips: Sequence[tuple]) -> None:
    """Writes an events CSV (atomically) from `clips`: (file_name, split, [Event, ...]) each, a clip without events
    getting one row with empty onset, offset and label."""
    import io

    from .fileio import atomic_write_text

    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(EVENT_COLUMNS)
    for file_name, split, events in clips:
        if not events:
            writer.writerow([file_name, '', '', '', split])
        for e in events:
            writer.writerow([file_name, f'{e.onset_sec:.4f}', f'{e.offset_sec:.4f}', e.label, split])
    atomic_write_text(Path(path), out.getvalue())


def read_events(path: Path) -> EventTable:
    """Reads an events CSV (`EVENT_COLUMNS`; see the module docstring).

    Raises:
        EvarError: a missing file, missing columns, a bad time or split (with the line), an event whose offset is
            not after its onset, a clip listed in two splits, or no event at all.
    """
    from .split_names import canonical_split

    path = Path(path)
    if not path.is_file():
        raise EvarError(f'Events CSV {path} does not exist (expected columns {",".join(EVENT_COLUMNS)}).')
    data = path.read_bytes()
    reader = csv.DictReader(data.decode('utf-8').splitlines())
    if not set(EVENT_COLUMNS) <= set(reader.fieldnames or ()):
        raise EvarError(f'Events CSV {path} has columns {reader.fieldnames}; expected {",".join(EVENT_COLUMNS)}.')
    splits, events = {}, {}
    for line, row in enumerate(reader, start=2):
        name, label = (row['file_name'] or '').strip(), (row['label'] or '').strip()
        split = canonical_split((row['split'] or '').strip())
        if not name or split is None:
            raise EvarError(f'Events CSV {path}, line {line}: expected a file_name and a split (train/valid/test), '
                            f'got {dict(row)!r}.')
        if splits.setdefault(name, split) != split:
            raise EvarError(f'Events CSV {path}, line {line}: {name} is in splits {splits[name]} and {split}.')
        clip = events.setdefault(name, [])
        onset, offset = (row['onset_sec'] or '').strip(), (row['offset_sec'] or '').strip()
        if not label and not onset and not offset:
            continue  # a clip without events
        try:
            event = Event(name, float(onset), float(offset), label)
        except ValueError:
            raise EvarError(f'Events CSV {path}, line {line}: onset_sec and offset_sec must be numbers (seconds), '
                            f'got {onset!r}, {offset!r}.') from None
        if not label or not 0 <= event.onset_sec < event.offset_sec:
            raise EvarError(f'Events CSV {path}, line {line}: expected a label and 0 <= onset_sec < offset_sec, got '
                            f'{dict(row)!r}.')
        clip.append(event)
    labels = tuple(sorted({e.label for clip in events.values() for e in clip}))
    if not labels:
        raise EvarError(f'Events CSV {path} lists no event.')
    names = tuple(events)
    return EventTable(path=path, file_names=names, splits=tuple(splits[n] for n in names),
                      events=tuple(tuple(events[n]) for n in names), labels=labels,
                      content_hash=hashlib.sha256(data).hexdigest())


def frame_centres(n_frames: int, hop_sec: float, window_sec: float = 0.0) -> np.ndarray:
    """float64 [n_frames]: the time in seconds each frame stands for (window / 2 + i * hop)."""
    return window_sec / 2 + np.arange(n_frames) * hop_sec


def frame_targets(events: Sequence[Event], labels: Sequence[str], n_frames: int, hop_sec: float,
                  window_sec: float = 0.0) -> np.ndarray:
    """float32 [n_frames, C] 0/1 targets of one clip: 1 where a frame's centre lies in [onset, offset) of an event of
    class c (C = len(labels)). Events of other classes raise EvarError."""
    index = {label: c for c, label in enumerate(labels)}
    t = frame_centres(n_frames, hop_sec, window_sec)
    out = np.zeros((n_frames, len(labels)), dtype=np.float32)
    for e in events:
        if e.label not in index:
            raise EvarError(f'Event label {e.label!r} of {e.file_name} is not one of the task\'s classes {list(labels)}.')
        out[(t >= e.onset_sec) & (t < e.offset_sec), index[e.label]] = 1.0
    return out


@dataclass(frozen=True)
class PostProcessing:
    """How frame probabilities become events (HEAR's `event_postprocessing_grid`: Turian et al., HEAR 2021, PMLR
    176; hear-eval-kit).

    Attributes:
        threshold: a frame is active for a class when its probability is >= threshold.
        median_filter_sec: length of the median filter over the binary activity (0: none); an odd number of frames,
            round(median_filter_sec / hop) made odd. A median filter commutes with thresholding, so this equals
            filtering the probabilities first.
        min_duration_sec: events shorter than this are dropped (after the filter).
    """
    threshold: float = 0.5
    median_filter_sec: float = 0.25
    min_duration_sec: float = 0.125

    def describe(self) -> str:
        """e.g. 'threshold 0.5, median 250 ms, min 125 ms'."""
        return (f'threshold {self.threshold:g}, median {self.median_filter_sec * 1000:.0f} ms, '
                f'min {self.min_duration_sec * 1000:.0f} ms')


# HEAR's grid for its event tasks: median filter 250 ms, minimum duration 125 or 250 ms; threshold 0.5.
HEAR_GRID = (PostProcessing(0.5, 0.25, 0.125), PostProcessing(0.5, 0.25, 0.25))


def median_filter_frames(sec: float, hop_sec: float) -> int:
    """The odd frame count of a `sec`-second median filter at `hop_sec` (1: no filtering)."""
    n = int(round(sec / hop_sec)) if sec > 0 else 1
    return max(1, n + 1 - n % 2)


def decode_events(probs: np.ndarray, labels: Sequence[str], file_name: str, hop_sec: float, post: PostProcessing,
                  window_sec: float = 0.0) -> list:
    """Events of one clip from its frame probabilities.

    Args:
        probs: [T, C] probabilities of the clip's valid frames (C = len(labels)).
        labels: class names.
        file_name: the clip, copied into each `Event`.
        hop_sec, window_sec: the model's frame hop and window (see the module docstring).
        post: threshold, median filter, minimum duration.

    Returns:
        `Event`s sorted by label then onset: each a run of active frames i..j spanning the frames' time cells,
        from centre(i) - hop/2 (floored at 0) to centre(j) + hop/2.
    """
    from scipy.ndimage import median_filter

    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise EvarError(f'decode_events: probabilities must be [T, {len(labels)}], got {probs.shape}.')
    active = probs >= post.threshold
    size = median_filter_frames(post.median_filter_sec, hop_sec)
    if size > 1 and len(active):
        active = median_filter(active.astype(np.uint8), size=(size, 1), mode='nearest').astype(bool)
    centres = frame_centres(len(active), hop_sec, window_sec)
    events = []
    for c, label in enumerate(labels):
        edges = np.diff(np.concatenate([[0], active[:, c].astype(np.int8), [0]]))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            onset = max(0.0, centres[start] - hop_sec / 2)
            offset = centres[stop] + hop_sec / 2
            if offset - onset >= post.min_duration_sec - 1e-9:
                events.append(Event(file_name, float(onset), float(offset), label))
    return events


@dataclass(frozen=True)
class SedScores:
    """sed_eval's figures for one set of clips, fractions in [0, 1] (error rates may exceed 1); F1 is the overall
    (micro-averaged) F-measure over all events or segments, as DCASE and HEAR report it.

    Attributes:
        onset_f1_200ms: event-based F1, onsets within 200 ms (offsets ignored): HEAR's primary DCASE 2016 task 2
            score.
        onset_f1_50ms: event-based F1, onsets within 50 ms.
        onset_offset_f1_50ms: event-based F1, onsets within 50 ms and offsets within max(50 ms, 20 % of the
            reference event's length).
        segment_f1_1s: segment-based F1 over 1 s segments.
        segment_er_1s: segment-based error rate over 1 s segments.
    """
    onset_f1_200ms: float
    onset_f1_50ms: float
    onset_offset_f1_50ms: float
    segment_f1_1s: float
    segment_er_1s: float

    def as_dict(self) -> dict:
        """name -> value."""
        from dataclasses import asdict

        return asdict(self)


def _sed_eval():
    import warnings

    try:
        with warnings.catch_warnings():  # dcase_util's `import pkg_resources` warns of its deprecation
            warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
            import sed_eval
    except ImportError as e:
        raise EvarError(f'Sound event detection needs sed_eval ({e}): pip install "evar[sed]" '
                        '(sed_eval, and setuptools<81 for its dcase_util).') from None
    return sed_eval


def sed_scores(reference: Sequence[Event], estimated: Sequence[Event], labels: Sequence[str],
               file_names: Sequence[str]) -> SedScores:
    """sed_eval's event-based and segment-based metrics of `estimated` against `reference`, summed over the clips
    `file_names` (clips without reference or estimated events count too: their estimates are insertions).

    Raises:
        EvarError: sed_eval is not installed.
    """
    sed_eval = _sed_eval()
    event_metrics = {
        'onset_f1_200ms': dict(t_collar=0.2, evaluate_offset=False),
        'onset_f1_50ms': dict(t_collar=0.05, evaluate_offset=False),
        'onset_offset_f1_50ms': dict(t_collar=0.05, percentage_of_length=0.2, evaluate_offset=True),
    }
    metrics = {k: sed_eval.sound_event.EventBasedMetrics(list(labels), evaluate_onset=True, **kw)
               for k, kw in event_metrics.items()}
    segments = sed_eval.sound_event.SegmentBasedMetrics(list(labels), time_resolution=1.0)
    ref_by, est_by = {n: [] for n in file_names}, {n: [] for n in file_names}
    for events, by in ((reference, ref_by), (estimated, est_by)):
        for e in events:
            if e.file_name in by:
                by[e.file_name].append(e.as_sed_eval())
    for name in file_names:
        for m in (*metrics.values(), segments):
            m.evaluate(reference_event_list=ref_by[name], estimated_event_list=est_by[name])
    f1 = {k: _f1(m) for k, m in metrics.items()}
    return SedScores(**f1, segment_f1_1s=_f1(segments),
                     segment_er_1s=float(segments.results_overall_metrics()['error_rate']['error_rate']))


def _f1(metrics) -> float:
    """sed_eval's overall F1, 0 where it is undefined because nothing was detected (sed_eval gives NaN: precision
    0/0) or nothing was to be found, rather than NaN (a system that finds nothing scores 0, not 'unknown')."""
    value = float(metrics.results_overall_metrics()['f_measure']['f_measure'])
    return 0.0 if np.isnan(value) else value
