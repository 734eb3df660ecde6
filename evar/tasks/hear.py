"""HEAR 2021's tasks that EVAR lacks (Turian et al., "HEAR: Holistic Evaluation of Audio Representations", PMLR
176, 2022), read from HEAR's own preprocessed task folders, with HEAR's splits, folds, labels and clip lengths.

HEAR publishes each task preprocessed by hear-preprocess (github.com/hearbenchmark/hear-preprocess), on Zenodo
(doi:10.5281/zenodo.5885750, 48 kHz) and in gs://hear2021-archive/tasks/ (16, 22.05, 32, 44.1 kHz). A task folder
`tasks/<task_name>-<version>-<mode>/` holds:

- `task_metadata.json`: the task's configuration (task_name, version, mode, embedding_type, prediction_type,
  split_mode, splits, nfolds, sample_duration, evaluation);
- `<split>.json` per entry of `splits` (`train`, `valid`, `test`; or `fold00` .. `fold<k-1>` for k folds): clip
  file name -> list of labels;
- `labelvocabulary.csv`, and the audio `<sample rate>/<split>/<clip>.wav`, every clip trimmed or zero-padded to
  `sample_duration` seconds, one folder per sample rate distributed.

Rates. The metadata CSV names clips `<split>/<clip>.wav`, the same at every rate, so the dataset root given to
`python -m evar.metadata` is one of the task folder's rate folders (`.../beijing_opera-v1.0-hear2021-full/48000`):
evar links `work/<rate>/<task>` (e.g. `work/48k/beijing_opera`) to it. Run it once per rate folder downloaded; a
model whose rate has no folder reads the highest-rate one and resamples, as for every task.

Names. evar's names are HEAR's task names shortened to 16 characters where needed: gtzan_mus_speech is
tfds_gtzan_music_speech, beehive_fold0/1 are beehive_states_fold0/1, gunshot is gunshot_triangulation, and
nsynth_pitch_5h/50h are nsynth_pitch in HEAR's modes 5h and 50h (two different subsets). Gunshot triangulation is
a classification in HEAR (which of 4 microphones recorded a shot; 7 folds, one per firearm), not a regression.

Folds. HEAR's fold `foldNN` is evar's fold NN+1. HEAR tests on fold i, selects its head on fold i+1 and trains on
the rest (hear-eval-kit `data_splits_from_folds`); evar's cross-validation trains on the folds but the test fold,
holding part of them out for validation. The folds themselves are HEAR's.

Metric. HEAR's first `evaluation` entry is its primary score. evar scores multiclass tasks by accuracy, HEAR's
`top1_acc` (`pitch_acc` for NSynth pitch is the same top-1 accuracy over MIDI pitches). Beehive's primary score is
AUC-ROC: its records' metric is evar.metrics' `roc_auc_ovr` (for its two classes, the binary AUC of the positive
class's probability), and the frozen heads select on validation AUC too (`selecting_on_task_metric`).

Elsewhere: DCASE 2016 task 2 and MAESTRO are event tasks (timestamped labels, sound event detection), built by
`evar.tasks.hear_events` for `evar sed`; this builder refuses event tasks. LibriCount is registered with X-ARES's
tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import need, resolve, warn

_SPLIT_MODES = ('trainvaltest', 'presplit_kfold', 'new_split_kfold')
_TRAINVALTEST = ('train', 'valid', 'test')


@dataclass(frozen=True)
class HearTask:
    """Which HEAR 2021 task folder an evar task reads, as its task_metadata.json names it.

    The folder is `<task_name>-<version>-<mode>`; `sample_duration` (seconds) is each clip's length and the evar
    task's unit length; `nfolds` is 0 for HEAR's train/valid/test tasks, else the number of folds; `prediction_type`
    is 'multiclass' (one label a clip, scored by accuracy) or 'multilabel' (scored by mAP).
    Source: each task's `generic_task_config` in hear-preprocess (hearpreprocess/, secrettasks/hearsecrettasks/).
    """
    task_name: str
    version: str
    mode: str
    sample_duration: float
    nfolds: int = 0
    prediction_type: str = 'multiclass'

    @property
    def folder_name(self) -> str:
        """HEAR's task folder name, e.g. `beijing_opera-v1.0-hear2021-full`."""
        return f'{self.task_name}-{self.version}-{self.mode}'


@dataclass(frozen=True)
class HearMetadata:
    """What evar uses of a HEAR task_metadata.json (`path`): the task's identity, kind, splits and clip length."""
    path: Path
    task_name: str
    version: str
    mode: str
    embedding_type: str  # 'scene' (one label set per clip) or 'event' (timestamped events)
    prediction_type: str  # 'multiclass' or 'multilabel'
    split_mode: str  # one of _SPLIT_MODES
    splits: tuple  # the split file stems: train/valid/test or fold00..fold<k-1>
    sample_duration: Optional[float]  # seconds; None: clips kept at their own length

    @property
    def folded(self) -> bool:
        """True for HEAR's k-fold tasks (splits fold00..)."""
        return self.split_mode != 'trainvaltest'


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EvarError(f'{path} is not valid JSON ({e}): expected {what} as hear-preprocess writes it.') from None


def read_task_metadata(task_dir: Path) -> HearMetadata:
    """The HEAR task configuration in `task_dir/task_metadata.json`.

    Raises:
        EvarError naming the file: it is missing, not JSON, lacks a key or has a wrong value (split_mode not one of
        trainvaltest/presplit_kfold/new_split_kfold; splits not train/valid/test, or not fold00.. for `nfolds`).
    """
    path = need(task_dir, 'task_metadata.json', "HEAR's task configuration (a HEAR 2021 task folder)")
    spec = _read_json(path, 'a JSON object')
    if not isinstance(spec, dict):
        raise EvarError(f'{path}: expected a JSON object (HEAR\'s task configuration), got {type(spec).__name__}.')
    keys = ('task_name', 'version', 'mode', 'embedding_type', 'prediction_type', 'split_mode', 'splits')
    missing = [k for k in keys if k not in spec]
    if missing:
        raise EvarError(f'{path} lacks the key(s) {missing}: expected HEAR\'s task configuration with {list(keys)}.')
    split_mode, splits = spec['split_mode'], spec['splits']
    if split_mode not in _SPLIT_MODES:
        raise EvarError(f'{path}: split_mode must be one of {list(_SPLIT_MODES)}, got {split_mode!r}.')
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise EvarError(f'{path}: splits must be a list of split names, got {splits!r}.')
    if split_mode == 'trainvaltest':
        expected = list(_TRAINVALTEST)
        if sorted(splits) != sorted(expected):
            raise EvarError(f'{path}: a trainvaltest task\'s splits must be {expected}, got {splits}.')
    else:
        nfolds = spec.get('nfolds')
        if not isinstance(nfolds, int) or isinstance(nfolds, bool) or nfolds < 2:
            raise EvarError(f'{path}: a {split_mode} task needs nfolds, an integer >= 2; got {nfolds!r}.')
        expected = [f'fold{i:02d}' for i in range(nfolds)]
        if sorted(splits) != expected:
            raise EvarError(f'{path}: splits must be {expected} for nfolds {nfolds}, got {splits}.')
    duration = spec.get('sample_duration')
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))):
        raise EvarError(f'{path}: sample_duration must be a number of seconds or null, got {duration!r}.')
    return HearMetadata(path=path, task_name=str(spec['task_name']), version=str(spec['version']),
                        mode=str(spec['mode']), embedding_type=str(spec['embedding_type']),
                        prediction_type=str(spec['prediction_type']), split_mode=split_mode,
                        splits=tuple(sorted(splits) if split_mode != 'trainvaltest' else _TRAINVALTEST),
                        sample_duration=None if duration is None else float(duration))


def read_split_labels(task_dir: Path, split: str, prediction_type: str) -> list[tuple[str, str]]:
    """(clip file name, metadata label field) for each clip of HEAR's `task_dir/<split>.json`.

    A multiclass clip has exactly one label; a multilabel clip's labels are joined with commas (evar's multi-label
    field). Labels are kept as HEAR writes them, numbers (NSynth's MIDI pitches) as their decimal text.

    Raises:
        EvarError naming the file: missing, not JSON, not an object of clip name -> non-empty list of labels, a
        multiclass clip with other than one label, or a multilabel label that holds a comma.
    """
    path = need(task_dir, f'{split}.json', f'HEAR\'s labels of the {split} split (clip file name -> labels)')
    labels = _read_json(path, 'an object of clip file name -> list of labels')
    if not isinstance(labels, dict):
        raise EvarError(f'{path}: expected an object of clip file name -> list of labels, got '
                        f'{type(labels).__name__}.')
    out = []
    for clip, values in labels.items():
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values)):
            raise EvarError(f'{path}: clip {clip!r} has labels {values!r}; expected a non-empty list of labels '
                            '(a HEAR scene task; event tasks list timestamped events).')
        texts = [str(v).strip() for v in values]
        if prediction_type == 'multiclass':
            if len(texts) != 1:
                raise EvarError(f'{path}: clip {clip!r} has {len(texts)} labels {texts}; a multiclass task has one.')
        elif any(',' in t for t in texts):
            raise EvarError(f'{path}: clip {clip!r} has a label with a comma {texts}; evar\'s multi-label field '
                            'separates labels by commas.')
        out.append((clip, ','.join(sorted(set(texts)))))
    return out


def locate(root: Path) -> tuple[Path, Path]:
    """(HEAR task folder, rate folder) for the dataset root `root`, which must be one of a task folder's sample-rate
    folders (`<task>/48000`); EvarError otherwise, naming the rate folders when `root` is the task folder."""
    root = Path(root)
    if (root / 'task_metadata.json').is_file():
        rates = sorted((p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
        raise EvarError(f'{root} is a HEAR task folder: pass one of its sample-rate folders as the dataset root '
                        f'({", ".join(str(root / r) for r in rates) or "none found: download the audio"}); run '
                        'once per rate you want, the metadata CSV is the same.')
    if root.name.isdigit() and (root.parent / 'task_metadata.json').is_file():
        return root.parent, root
    need(root.parent, 'task_metadata.json', f'HEAR\'s task configuration beside the rate folder {root.name} '
         '(the dataset root is <HEAR task folder>/<rate>, e.g. beijing_opera-v1.0-hear2021-full/48000)')
    raise EvarError(f'{root}: the dataset root must be a HEAR task folder\'s sample-rate folder, named by its rate '
                    f'in Hz (48000, 16000, ...), got {root.name!r}.')


def _check_identity(meta: HearMetadata, hear: HearTask) -> None:
    """EvarError when the task folder is another HEAR task than `hear`; a warning for another version or length."""
    if (meta.task_name, meta.mode) != (hear.task_name, hear.mode):
        raise EvarError(f'{meta.path} is HEAR\'s task {meta.task_name} in mode {meta.mode}; this evar task reads '
                        f'{hear.task_name} in mode {hear.mode} (folder {hear.folder_name}).')
    if meta.prediction_type != hear.prediction_type:
        raise EvarError(f'{meta.path}: prediction_type {meta.prediction_type}; HEAR\'s {hear.folder_name} is '
                        f'{hear.prediction_type}.')
    if len(meta.splits) != (hear.nfolds or len(_TRAINVALTEST)) or meta.folded != bool(hear.nfolds):
        expected = f'{hear.nfolds} folds' if hear.nfolds else 'train/valid/test'
        raise EvarError(f'{meta.path}: splits {list(meta.splits)}; HEAR\'s {hear.folder_name} has {expected}.')
    if meta.version != hear.version:
        warn(f'{meta.path} is version {meta.version} of {meta.task_name}; HEAR 2021 used {hear.version}.')
    if meta.sample_duration != hear.sample_duration:
        warn(f'{meta.path}: sample_duration {meta.sample_duration} s; HEAR 2021\'s {hear.folder_name} has '
             f'{hear.sample_duration} s (the evar task\'s unit length).')


def hear_rows(task_dir: Path, rate_dir: Path, meta: HearMetadata) -> list[Row]:
    """Rows (<split>/<clip>, label, split) for a HEAR task's clips present in `rate_dir`, HEAR's splits kept:
    `train`/`valid`/`test`, or fold `foldNN` as the integer NN+1. Clips missing on disk are left out (warned)."""
    entries = []
    for split in meta.splits:
        where = int(split[4:]) + 1 if meta.folded else split
        entries += [(f'{split}/{clip}', label, where)
                    for clip, label in read_split_labels(task_dir, split, meta.prediction_type)]
    return resolve(rate_dir, entries, f'{task_dir}/{{{",".join(meta.splits)}}}.json')


def hear(root: Path, split_file: Optional[Path] = None, task: Optional[HearTask] = None) -> list[Row]:
    """The generic HEAR builder: rows for the scene task whose rate folder is `root` (see `locate`), checked to be
    HEAR's `task` when given.

    Raises:
        EvarError: `root` is no HEAR rate folder; task_metadata.json or a split's JSON is missing or malformed; the
        folder is an event task (sound event detection, which clip-level heads cannot use) or another task than
        `task`.
    """
    task_dir, rate_dir = locate(root)
    meta = read_task_metadata(task_dir)
    if meta.embedding_type != 'scene':
        raise EvarError(f'{meta.path}: embedding_type {meta.embedding_type!r}; evar\'s clip-level tasks read HEAR\'s '
                        'scene tasks only (event tasks are sound event detection).')
    if meta.prediction_type not in ('multiclass', 'multilabel'):
        raise EvarError(f'{meta.path}: prediction_type must be multiclass or multilabel, got '
                        f'{meta.prediction_type!r}.')
    if task is not None:
        _check_identity(meta, task)
    return hear_rows(task_dir, rate_dir, meta)


def hear_record(name: str, task: HearTask, domain: str, metric: str = '') -> Task:
    """The evar record of HEAR's scene `task`: unit length HEAR's sample_duration, HEAR's folds, and `metric` (HEAR's
    primary score), by default accuracy for a multiclass task and mAP for a multilabel one."""
    return Task(name, task.sample_duration, folds=max(task.nfolds, 1), domain=domain, build=partial(hear, task=task),
                metric=metric or ('accuracy' if task.prediction_type == 'multiclass' else 'mAP'))


# One record per HEAR 2021 task, with the configuration hear-preprocess gave it (HEAR 2021's released folders).
TASKS = task_table(
    hear_record('beijing_opera', HearTask('beijing_opera', 'v1.0-hear2021', 'full', 4.77, nfolds=5), 'music'),
    hear_record('mridangam_stroke', HearTask('mridangam_stroke', 'v1.5', 'full', 0.81, nfolds=5), 'music'),
    hear_record('mridangam_tonic', HearTask('mridangam_tonic', 'v1.5', 'full', 0.81, nfolds=5), 'music'),
    hear_record('gtzan_mus_speech', HearTask('tfds_gtzan_music_speech', '1.0.0', 'full', 30.0, nfolds=10), 'music'),
    hear_record('beehive_fold0', HearTask('beehive_states_fold0', 'v2', 'full', 600.0), 'bioacoustics',
                'roc_auc_ovr'),
    hear_record('beehive_fold1', HearTask('beehive_states_fold1', 'v2', 'full', 600.0), 'bioacoustics',
                'roc_auc_ovr'),
    hear_record('gunshot', HearTask('gunshot_triangulation', 'v1.0', 'full', 1.5, nfolds=7), 'environmental'),
    hear_record('nsynth_pitch_5h', HearTask('nsynth_pitch', 'v2.2.3', '5h', 4.0), 'music'),
    hear_record('nsynth_pitch_50h', HearTask('nsynth_pitch', 'v2.2.3', '50h', 4.0), 'music'),
    hear_record('vox_lingua_top10', HearTask('vox_lingua_top10', 'hear2021', 'full', 18.64, nfolds=5), 'speech'),
)


def hear_task_of(record: Task) -> HearTask:
    """The HEAR task folder that the built-in record `record` reads (KeyError/AttributeError for other records)."""
    return record.build.keywords['task']


def _help_line(name: str, task: Task) -> str:
    """`name`'s line of HELP (a name of 16 characters gets its own line, as the help's column is 18)."""
    split = f'{task.folds} folds' if task.folds > 1 else 'train/valid/test'
    head = f'  {name:<16}' if len(name) < 16 else f'  {name}\n{"":18}'
    return f'{head}HEAR {hear_task_of(task).folder_name}/<rate>: {split}\n'


HELP = ''.join(_help_line(name, task) for name, task in TASKS.items()) + """\
                  (HEAR 2021's preprocessed task folders, doi:10.5281/zenodo.5885750.) The dataset root is one of
                  a task folder's rate folders (48000, 16000, ...); the builder reads ../task_metadata.json and
                  ../<split>.json (clip -> labels) for HEAR's splits: train/valid/test, or fold00.. as fold 1..
                  Run once per rate folder: each links work/<rate>/<task>; the CSV is the same
"""
