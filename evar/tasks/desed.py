"""DESED, Domestic Environment Sound Event Detection (Turpault et al., "Sound event detection in domestic
environments with weakly labeled data and soundscape synthesis", DCASE 2019 workshop; DCASE 2019-2024 task 4),
read from the publisher's layout (github.com/turpaultn/DESED; Zenodo: DESED_synth_*, DESED_public_eval and the
real validation set). One of X-ARES's tasks, evaluated here as a sound event detection task (`evar sed`).

The dataset root is DESED's `dataset/` folder:

- train: the strongly labelled synthetic soundscapes, `metadata/train/<synthetic set>/soundscapes.tsv` with audio
  `audio/train/<synthetic set>/soundscapes/` (`synthetic21_train` since DCASE 2021; the newest by name when
  several are there). The weakly labelled and unlabelled real clips are not used: the frame head needs strong
  labels.
- valid: the real validation set, `metadata/validation/validation.tsv`, audio `audio/validation/validation/` (or
  `audio/validation/` as older releases unpack it).
- test: the public evaluation set, `metadata/eval/public.tsv`, audio `audio/eval/public/`.

Each tsv has the columns `filename onset offset event_label` (seconds), one row per event; a row with empty
times and label marks a clip without events. Clips listed but not on disk (the real sets come from YouTube and
are often incomplete) are left out with a warning.

Protocol: unlike X-ARES, which scores DESED by a 1-s segment F1 with no post-processing and selects on the
evaluation set, evar selects the head and the post-processing on the validation set and scores the public
evaluation set by the class-averaged event-based F1 (onset collar 200 ms, offset max(200 ms, 20 %), DCASE 2018-2020
task 4's metric), the primary score, and PSDS scenario 1 (DCASE 2021-2023 task 4, psds_eval).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from ..sed import Event, SedProtocol, write_event_task
from .base import Row, Task, task_table
from .layout import need, warn

EVENTS_FILE = 'events.csv'
TSV_COLUMNS = ('filename', 'onset', 'offset', 'event_label')
CLASSES = ('Alarm_bell_ringing', 'Blender', 'Cat', 'Dishes', 'Dog', 'Electric_shaver_toothbrush', 'Frying',
           'Running_water', 'Speech', 'Vacuum_cleaner')


def read_tsv(path: Path) -> dict:
    """clip file name -> list of (label, onset_sec, offset_sec) of a DESED strong-label tsv, in file order (a clip
    whose row has empty times and label has no events; events whose offset is not after the onset are dropped,
    warned).

    Raises:
        EvarError naming the file and line: missing columns, a non-numeric time, or a label outside DESED's ten
        classes.
    """
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f, delimiter='\t')
        missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise EvarError(f'{path} lacks the column(s) {missing}; expected DESED\'s tab-separated '
                            f'{" ".join(TSV_COLUMNS)}.')
        clips, dropped = {}, 0
        for line, row in enumerate(reader, start=2):
            name = (row['filename'] or '').strip()
            label = (row['event_label'] or '').strip()
            onset, offset = (row['onset'] or '').strip(), (row['offset'] or '').strip()
            events = clips.setdefault(name, [])
            if not label and not onset and not offset:
                continue
            try:
                on, off = float(onset), float(offset)
            except ValueError:
                raise EvarError(f'{path}, line {line}: onset and offset must be seconds, got {onset!r}, '
                                f'{offset!r}.') from None
            if label not in CLASSES:
                raise EvarError(f'{path}, line {line}: event_label {label!r} is not one of DESED\'s classes '
                                f'{list(CLASSES)}.')
            if off <= on or on < 0:
                dropped += 1
                continue
            events.append((label, on, off))
    if dropped:
        warn(f'{path}: {dropped} event(s) with offset <= onset dropped.')
    return clips


def _synthetic_train(root: Path) -> tuple:
    """(tsv, audio folder) of the newest synthetic training set under `root`."""
    found = sorted((root / 'metadata' / 'train').glob('synthetic*/soundscapes.tsv'))
    if not found:
        raise EvarError(f'{root}/metadata/train/ has no synthetic*/soundscapes.tsv: expected DESED\'s strongly '
                        'labelled synthetic training set (e.g. metadata/train/synthetic21_train/soundscapes.tsv '
                        'from DESED_synth_dcase2021).')
    tsv = found[-1]
    return tsv, root / 'audio' / 'train' / tsv.parent.name / 'soundscapes'


def desed(root: Path, split_file: Optional[Path] = None, out_dir: Optional[Path] = None) -> list[Row]:
    """Links DESED's train (synthetic soundscapes), validation and public evaluation audio folders under `out_dir`
    as `train/`, `valid/` and `test/`, writes `out_dir`/events.csv and returns the clip rows (`<split>/<clip>`,
    its event classes comma-joined, split).

    Raises:
        EvarError: no `out_dir`; `root` lacks a tsv or an audio folder of the layout (named); a malformed tsv; no
        listed clip of a split on disk.
    """
    if out_dir is None:
        raise EvarError('desed writes its events.csv: call it with out_dir (python -m evar.metadata does).')
    root = Path(root)
    if not (root / 'metadata').is_dir() and (root / 'dataset' / 'metadata').is_dir():
        raise EvarError(f'{root} holds DESED\'s dataset/ folder: pass {root / "dataset"} as the dataset root.')
    train_tsv, train_audio = _synthetic_train(root)
    valid_audio = root / 'audio' / 'validation' / 'validation'
    sets = {
        'train': (train_tsv, train_audio),
        'valid': (need(root, 'metadata/validation/validation.tsv', 'DESED\'s real validation set labels'),
                  valid_audio if valid_audio.is_dir() else root / 'audio' / 'validation'),
        'test': (need(root, 'metadata/eval/public.tsv', 'DESED\'s public evaluation set labels (DESED_public_eval)'),
                 root / 'audio' / 'eval' / 'public'),
    }
    rows, clips = [], []
    for split, (tsv, audio) in sets.items():
        if not audio.is_dir():
            raise EvarError(f'{audio} is not a folder: expected the audio of {tsv.relative_to(root)} there.')
        listed = read_tsv(tsv)
        present = {n: events for n, events in listed.items() if (audio / n).is_file()}
        if len(present) < len(listed):
            missing = sorted(set(listed) - set(present))
            warn(f'{len(missing)} of {len(listed)} clips of {tsv} are not in {audio} (first: {missing[0]}); left out.')
        if not present:
            raise EvarError(f'No clip listed in {tsv} is in {audio}.')
        for n, events in present.items():
            name = f'{split}/{n}'
            clips.append((name, split, [Event(name, on, off, label) for label, on, off in events]))
            rows.append((name, ','.join(sorted({label for label, _, _ in events})), split))
    write_event_task(Path(out_dir), {split: audio for split, (_, audio) in sets.items()}, clips, EVENTS_FILE)
    return rows


TASKS = task_table(
    Task('desed', 10.0, domain='environmental', metric='mAP', build=desed, writes_audio=True, events=True),
)

# `evar sed`: DCASE task 4's class-averaged event F1 selects and scores; PSDS1 beside it; HEAR's grid.
SED_PROTOCOLS = {'desed': SedProtocol(primary='event_macro_f1_200ms', psds=True)}

HELP = """\
  desed           DESED dataset/: metadata/train/synthetic*/soundscapes.tsv, metadata/validation/validation.tsv,
                  metadata/eval/public.tsv (filename onset offset event_label) and their audio folders -> links
                  train/valid/test and writes events.csv under work/<rate>/desed; synthetic train, real
                  validation as valid, public evaluation as test
"""
