"""HEAR 2021's event tasks (sound event detection, `evar sed`), read from HEAR's own preprocessed task folders
(Turian et al., "HEAR: Holistic Evaluation of Audio Representations", PMLR 176, 2022).

The task folder is laid out as for HEAR's scene tasks (`evar.tasks.hear`): `task_metadata.json` with
`"embedding_type": "event"`, the audio `<rate>/<split>/<clip>.wav` trimmed or zero-padded to `sample_duration`, and
per split `<split>.json`, which for an event task maps each clip to its events:
`{"<clip>.wav": [{"label": ..., "start": <ms>, "end": <ms>}, ...]}` (hear-preprocess's pipeline, events that
start after `sample_duration` dropped and longer ones cut at it). Times are milliseconds in the JSON, seconds in
evar's events CSV.

The builder leaves the audio where HEAR put it: `work/<rate>/<task>/` gets a symlink per split folder
(`train` -> `<task folder>/<rate>/train`, or `fold00` ..) and the task's `events.csv`, clip names
`<split>/<clip>.wav` as in the metadata CSV (whose label field is each clip's event classes, a multi-label view of
the same clips).

- `dcase2016_task2`: HEAR's `dcase2016_task2-hear2021-full`, DCASE 2016 task 2's office sounds (11 classes) in
  120-s mixtures, development and public evaluation sets pooled and split 60/20/20 train/valid/test by HEAR.
  Primary score: event-based onset F1 with a 200 ms collar (HEAR's `event_onset_200ms_fms`; DCASE 2016 ranked
  by the 1-s segment error rate, which evar reports beside it); post-processing chosen on the validation split
  from HEAR's default grid (median filter 250 ms, minimum duration 125 or 250 ms).
- `maestro`: HEAR's `maestro-v3.0.0-5h`, piano notes of MAESTRO v3.0.0 (Hawthorne et al., ICLR 2019) as events
  labelled by MIDI pitch, 5 h in 120-s excerpts in HEAR's 5 folds. Primary score: note onset F-measure with a
  50 ms collar (HEAR's `event_onset_50ms_fms`, sed_eval's event-based onset F1), beside onset+offset F1; the
  post-processing is HEAR's task-specific grid (median filter 150 ms, minimum duration 50 ms). Each fold is
  tested with the next as validation and the rest for training (hear-eval-kit's `data_splits_from_folds`); the
  row is the mean over the 5 folds.

Sources: hear-preprocess's `hearpreprocess/dcase2016_task2.py` and `secrettasks/hearsecrettasks/maestro.py`
(generic_task_config), hear-eval-kit's `heareval/score.py` and `predictions/task_predictions.py`
(EVENT_POSTPROCESSING_GRID, `data_splits_from_folds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from ..sed import Event, PostProcessing, SedProtocol, write_event_task
from .base import Row, Task, task_table
from .hear import HearTask, _check_identity, _read_json, locate, read_task_metadata
from .layout import need, warn

EVENTS_FILE = 'events.csv'


@dataclass(frozen=True)
class HearEvents:
    """The events of one HEAR split file: clip file name -> tuple of (label, start_sec, end_sec)."""
    path: Path
    clips: dict


def read_split_events(task_dir: Path, split: str) -> HearEvents:
    """The events of HEAR's `task_dir/<split>.json` (an event task's: clip -> [{"label", "start", "end"}] in ms).

    Raises:
        EvarError naming the file: missing, not JSON, not an object of clip -> list of events, or an event without
        a label, with a non-numeric time, or with end < start or start < 0.
    """
    path = need(task_dir, f'{split}.json', f'HEAR\'s events of the {split} split (clip -> list of events)')
    data = _read_json(path, 'an object of clip file name -> list of {"label", "start", "end"} events (ms)')
    if not isinstance(data, dict):
        raise EvarError(f'{path}: expected an object of clip file name -> list of events, got {type(data).__name__}.')
    clips = {}
    for clip, events in data.items():
        if not isinstance(events, list):
            raise EvarError(f'{path}: clip {clip!r} has {events!r}; expected a list of {{"label", "start", "end"}} '
                            'events (a HEAR event task; scene tasks list labels).')
        out = []
        for e in events:
            try:
                label, start, end = str(e['label']).strip(), float(e['start']), float(e['end'])
            except (TypeError, KeyError, ValueError):
                raise EvarError(f'{path}: clip {clip!r} has the event {e!r}; expected {{"label": name, "start": ms, '
                                '"end": ms}.') from None
            if not label or not 0 <= start <= end:
                raise EvarError(f'{path}: clip {clip!r} has the event {e!r}; expected a label and 0 <= start <= end '
                                '(milliseconds).')
            if end > start:  # a zero-length event (cut at the clip's end) cannot be detected
                out.append((label, start / 1000.0, end / 1000.0))
        clips[str(clip)] = tuple(out)
    return HearEvents(path, clips)


def hear_events(root: Path, split_file: Optional[Path] = None, out_dir: Optional[Path] = None,
                task: Optional[HearTask] = None) -> list[Row]:
    """The builder of HEAR's event tasks: reads the event task whose rate folder is `root` (see
    `evar.tasks.hear.locate`), links its split folders under `out_dir` and writes `out_dir`/events.csv; returns the
    clip rows (`<split>/<clip>`, its event classes comma-joined, split or fold NN+1). Clips listed but not on disk
    are left out (warned).

    Raises:
        EvarError: no `out_dir`; `root` is no HEAR rate folder; task_metadata.json or a split's JSON is missing or
        malformed; the folder is a scene task or another task than `task`; no clip of the lists is on disk.
    """
    if out_dir is None:
        raise EvarError('HEAR event tasks write their events.csv: call the builder with out_dir '
                        '(python -m evar.metadata does).')
    task_dir, rate_dir = locate(root)
    meta = read_task_metadata(task_dir)
    if meta.embedding_type != 'event':
        raise EvarError(f'{meta.path}: embedding_type {meta.embedding_type!r}; this builder reads HEAR\'s event '
                        'tasks (scene tasks are read by the HEAR scene builder, evar.tasks.hear).')
    if task is not None:
        _check_identity(meta, task)
    rows, clips, folders, missing = [], [], {}, []
    for split in meta.splits:
        where = int(split[4:]) + 1 if meta.folded else split
        events = read_split_events(task_dir, split)
        for clip, items in events.clips.items():
            name = f'{split}/{clip}'
            if not (rate_dir / name).is_file():
                missing.append(name)
                continue
            folders[split] = rate_dir / split
            clips.append((name, where, [Event(name, start, end, label) for label, start, end in items]))
            rows.append((name, ','.join(sorted({label for label, _, _ in items})), where))
    if missing:
        warn(f'{len(missing)} clip(s) listed in {task_dir}/<split>.json are not under {rate_dir} (first: '
             f'{missing[0]}); left out.')
    if not rows:
        raise EvarError(f'No clip of {task_dir}/{{{",".join(meta.splits)}}}.json is under {rate_dir}.')
    write_event_task(Path(out_dir), folders, clips, EVENTS_FILE)
    return rows


def hear_event_record(name: str, task: HearTask, domain: str) -> Task:
    """The evar record of HEAR's event `task`: unit length HEAR's sample_duration, HEAR's folds, mAP for the
    clip-level view of its event classes."""
    return Task(name, task.sample_duration, folds=max(task.nfolds, 1), domain=domain, metric='mAP',
                build=partial(hear_events, task=task), writes_audio=True, events=True)


TASKS = task_table(
    hear_event_record('dcase2016_task2', HearTask('dcase2016_task2', 'hear2021', 'full', 120.0,
                                                  prediction_type='multilabel'), 'environmental'),
    hear_event_record('maestro', HearTask('maestro', 'v3.0.0', '5h', 120.0, nfolds=5,
                                          prediction_type='multilabel'), 'music'),
)

# How `evar sed` scores each task (HEAR's primary score and post-processing grid).
SED_PROTOCOLS = {
    'dcase2016_task2': SedProtocol(primary='onset_f1_200ms'),
    'maestro': SedProtocol(primary='onset_f1_50ms', grid=(PostProcessing(0.5, 0.15, 0.05),)),
}

HELP = """\
  dcase2016_task2 HEAR dcase2016_task2-hear2021-full/<rate>: train/valid/test; <split>.json clip -> events (ms)
  maestro         HEAR maestro-v3.0.0-5h/<rate>: 5 folds; <split>.json clip -> note events labelled by MIDI pitch
                  (HEAR 2021's event tasks, doi:10.5281/zenodo.5885750; evar sed.) The dataset root is a rate
                  folder; the builder links its split folders under work/<rate>/<task> and writes events.csv there
"""
