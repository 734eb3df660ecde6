"""Sound event detection (SED): event annotations, frame targets, decoding frame probabilities into events, and
the event- and segment-based metrics of sed_eval (Mesaros, Heittola & Virtanen, "Metrics for Polyphonic Sound
Event Detection", Applied Sciences 2016; https://github.com/TUT-ARG/sed_eval).

An SED task's strong labels are an events CSV `file_name,onset_sec,offset_sec,label,split`: one row per event, and
a row with empty onset, offset and label for a clip without events (DCASE's convention for empty files), so every
clip of the task and its split is listed. Times are seconds from the clip's start. The split is train, valid or
test, or for a cross-validated task (HEAR's MAESTRO) a fold number 1..k on every row: fold i is then tested with
fold i + 1 (mod k) for validation and the others for training (hear-eval-kit's `data_splits_from_folds`).

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
        splits: 'train' / 'valid' / 'test' per clip [N], or the clip's fold (int >= 1) in a cross-validated task.
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

    def rows(self, split) -> np.ndarray:
        """int64 indices of the clips in `split` (a split name, or a fold number, or a collection of them)."""
        wanted = set(split) if isinstance(split, (set, frozenset, tuple, list)) else {split}
        return np.array([i for i, s in enumerate(self.splits) if s in wanted], dtype=np.int64)

    @property
    def folds(self) -> tuple:
        """The fold numbers, sorted, of a cross-validated table; () for a train/valid/test one."""
        return tuple(sorted({s for s in self.splits if isinstance(s, int)}))

    def fold_splits(self) -> list:
        """The evaluation rounds: [(name, {'train': rows, 'valid': rows, 'test': rows})], one round named '' for a
        train/valid/test table, else one per fold i named 'fold<i>': test fold i, validation the next fold (the
        first after the last), training the others (HEAR's `data_splits_from_folds`)."""
        folds = self.folds
        if not folds:
            return [('', {s: self.rows(s) for s in ('train', 'valid', 'test')})]
        out = []
        for k, test in enumerate(folds):
            valid = folds[(k + 1) % len(folds)]
            out.append((f'fold{test}', {'train': self.rows([f for f in folds if f not in (test, valid)]),
                                        'valid': self.rows(valid), 'test': self.rows(test)}))
        return out

    def split_events(self, split: str) -> list:
        """Every `Event` of the clips in `split`, in clip order."""
        return [e for i in self.rows(split) for e in self.events[i]]


def write_events(path: Path, clips: Sequence[tuple]) -> None:
    """Writes an events CSV (atomically) from `clips`: (file_name, split or fold, [Event, ...]) each, a clip without
    events getting one row with empty onset, offset and label."""
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
            not after its onset, a clip listed in two splits, fold numbers mixed with split names, fewer than 3
            folds, or no event at all.
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
        text = (row['split'] or '').strip()
        split = int(text) if text.isdigit() and int(text) >= 1 else canonical_split(text)
        if not name or split is None:
            raise EvarError(f'Events CSV {path}, line {line}: expected a file_name and a split (train/valid/test, '
                            f'or a fold number >= 1), got {dict(row)!r}.')
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
    kinds = {isinstance(s, int) for s in splits.values()}
    if len(kinds) > 1:
        raise EvarError(f'Events CSV {path} mixes fold numbers and split names in its split column; use one.')
    if kinds == {True} and len(set(splits.values())) < 3:
        raise EvarError(f'Events CSV {path} has folds {sorted(set(splits.values()))}; cross-validation needs at '
                        'least 3 (test, validation and training folds).')
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
        event_macro_f1_200ms: event-based F1 with onsets within 200 ms and offsets within max(200 ms, 20 % of the
            reference event's length), the mean over classes of each class's F1 (DCASE 2018-2020 task 4's
            event-based F1 on DESED).
        psds1: PSDS scenario 1 (`psds1`), for the tasks whose protocol asks for it (DESED); else None.
    """
    onset_f1_200ms: float
    onset_f1_50ms: float
    onset_offset_f1_50ms: float
    segment_f1_1s: float
    segment_er_1s: float
    event_macro_f1_200ms: Optional[float] = None
    psds1: Optional[float] = None

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
        'event_macro_f1_200ms': dict(t_collar=0.2, percentage_of_length=0.2, evaluate_offset=True),
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
    f1 = {k: _f1(m) for k, m in metrics.items() if k != 'event_macro_f1_200ms'}
    f1['event_macro_f1_200ms'] = _f1(metrics['event_macro_f1_200ms'], macro=True)
    return SedScores(**f1, segment_f1_1s=_f1(segments),
                     segment_er_1s=float(segments.results_overall_metrics()['error_rate']['error_rate']))


def _f1(metrics, macro: bool = False) -> float:
    """sed_eval's overall F1 (or with `macro` the mean of its class-wise F1s), 0 where it is undefined because
    nothing was detected (sed_eval gives NaN: precision 0/0) or nothing was to be found, rather than NaN (a system
    that finds nothing scores 0, not 'unknown'). The macro mean is over the classes with a reference or an
    estimated event, a class found nowhere counting 0 (sed_eval's own class-wise average skips it as NaN)."""
    if macro:
        classes = metrics.results_class_wise_metrics().values()
        values = [np.nan_to_num(v['f_measure']['f_measure'], nan=0.0) for v in classes
                  if v['count']['Nref'] + v['count']['Nsys'] > 0]
        return float(np.mean(values)) if values else 0.0
    value = float(metrics.results_overall_metrics()['f_measure']['f_measure'])
    return 0.0 if np.isnan(value) else value


@dataclass(frozen=True)
class SedProtocol:
    """How `evar sed` evaluates one task: which score selects the post-processing on the validation split and is
    the result row's score, the post-processing grid, and whether PSDS is computed.

    Attributes:
        primary: a `SedScores` field: 'onset_f1_200ms' (HEAR's DCASE 2016 task 2 score, the default) or
            'onset_f1_50ms' (HEAR's MAESTRO score).
        grid: the `PostProcessing`s chosen among on the validation split.
        psds: also compute `psds1` on the test split (DCASE task 4 / DESED), over `PSDS_THRESHOLDS`.
    """
    primary: str = 'onset_f1_200ms'
    grid: tuple = HEAR_GRID
    psds: bool = False


# DCASE 2021-2023 task 4 baselines' operating points for PSDS: 50 thresholds 0.01, 0.03, ..., 0.99.
PSDS_THRESHOLDS = tuple(float(t) for t in np.arange(1, 100, 2) / 100)


def psds1(reference: Sequence[Event], detections: dict, durations: dict, max_efpr: float = 100.0) -> float:
    """PSDS scenario 1 of DCASE 2021-2023 task 4 (Bilen et al., "A Framework for the Robust Evaluation of Sound
    Event Detection", ICASSP 2020), computed by psds_eval (github.com/audioanalytic/psds_eval): detection and
    ground-truth intersection criteria 0.7, no cross-trigger cost (alpha_ct 0), alpha_st 1 (the mean TPR over
    classes less their standard deviation), area under the PSD-ROC up to `max_efpr` false positives per hour,
    divided by `max_efpr`. In [0, 1].

    Args:
        reference: the ground-truth events of the clips in `durations`.
        detections: threshold -> the `Event`s decoded at that threshold (one operating point each).
        durations: clip file name -> its length in seconds (every clip evaluated, events or not).
        max_efpr: the false-positive rate (per hour) the area stops at.

    Raises:
        EvarError: psds_eval (or pandas) is not installed, no reference event, or an event of a clip not in
            `durations`.
    """
    import warnings

    try:
        import pandas as pd
        from psds_eval import PSDSEval
    except ImportError as e:
        raise EvarError(f'PSDS needs psds_eval and pandas ({e}): pip install "evar[sed]".') from None
    columns = ['filename', 'onset', 'offset', 'event_label']

    def table(events):
        unknown = sorted({e.file_name for e in events} - set(durations))
        if unknown:
            raise EvarError(f'psds1: events of clips without a duration: {unknown[:3]}.')
        return pd.DataFrame([(e.file_name, float(e.onset_sec), float(e.offset_sec), e.label) for e in events],
                            columns=columns)

    if not reference:
        raise EvarError('psds1: no reference event; PSDS is undefined.')
    metadata = pd.DataFrame(sorted(durations.items()), columns=['filename', 'duration'])
    evaluator = PSDSEval(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=0.3,
                         ground_truth=table(reference), metadata=metadata)
    with warnings.catch_warnings():  # psds_eval's pandas fillna(method=) and all-NaN cross-trigger means
        warnings.simplefilter('ignore', category=FutureWarning)
        warnings.simplefilter('ignore', category=RuntimeWarning)
        warnings.filterwarnings('ignore', message='A similar operating point exists')  # same detections
        for threshold, events in sorted(detections.items()):
            evaluator.add_operating_point(table(events), info={'name': f'{threshold:g}', 'threshold': threshold})
        curve = evaluator.psd_roc_curves(alpha_ct=0.0)[2]  # TPR against effective FPR, per class
    # eTPR = mean - alpha_st * std over classes (NaN and negatives as 0), as psds_eval's PSDS; the area is psds_eval's
    # staircase sum too, computed here: psds_eval 0.5.3's own `_auc` fails on numpy >= 2 (int() of a 2-D array).
    etpr = np.clip(np.nan_to_num(curve.mean - 1.0 * curve.std, nan=0.0), 0.0, None)
    return staircase_area(np.asarray(curve.xp, dtype=np.float64), etpr, max_efpr) / max_efpr


def staircase_area(x: np.ndarray, y: np.ndarray, max_x: float) -> float:
    """The area under the step curve y(x) = y[i] on [x[i], x[i + 1]) from x[0] to `max_x` (x sorted ascending,
    the last step extended to `max_x`; 0 when x[0] >= max_x): psds_eval's rectangle sum."""
    keep = x < max_x
    return float(np.sum(np.diff(np.append(x[keep], max_x)) * y[keep]))


def write_event_task(out_dir: Path, folders: dict, clips: Sequence[tuple], events_file: str = 'events.csv') -> None:
    """Lays out an SED task whose audio stays where its publisher put it: `out_dir/<name>` becomes a symlink to
    each `folders[name]` (a folder of the dataset; an existing symlink is repointed, anything else refused) and
    `out_dir/<events_file>` gets the events CSV of `clips` (`write_events`), clip names relative to `out_dir`.

    Raises:
        EvarError: `out_dir/<name>` exists and is not a symlink, or a target is not a folder.
    """
    import os

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, target in folders.items():
        target, link = Path(target).resolve(), out_dir / name
        if not target.is_dir():
            raise EvarError(f'{target} is not a folder (expected the audio folder linked as {link}).')
        if os.path.lexists(link):
            if not link.is_symlink():
                raise EvarError(f'{link} exists and is not a symlink; remove it (the builder links {target} there).')
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link, target_is_directory=True)
    write_events(out_dir / events_file, clips)
