"""Downstream task definitions: one small typed record per task, looked up by name or read from a YAML file.

A built-in task's metadata CSV lives at `<work_root>/metadata/<name>.csv` (written by
`python -m evar.metadata <task> <dataset_root>`) and its audio under `<work_root>/<16k|22k|...>/<data_folder>/`.
A user task is a YAML file with keys `metadata`, `data`, `unit_sec` and optional `folds`, `metric`, `name`;
its relative paths are read relative to the YAML file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Optional

from .errors import EvarError

METRICS = ('accuracy', 'mAP')
# Folder names that EVAR uses for each sample rate under the work root.
RATE_FOLDERS = MappingProxyType({16000: '16k', 22000: '22k', 22050: '22k', 32000: '32k', 44100: '44k', 48000: '48k'})


@dataclass(frozen=True)
class Task:
    """What a downstream task is: its clips' unit length, cross-validation folds, metric and where its files are."""
    name: str
    unit_sec: float
    folds: int = 1  # >1: leave-one-fold-out cross-validation over a `fold` column
    data_folder: Optional[str] = None  # folder under work/<rate>/; the task name when None
    metric: str = 'accuracy'  # 'accuracy' (single label) or 'mAP' (multi-label)
    balanced: bool = False  # class-balanced sampling when fine-tuning
    metadata: Optional[Path] = None  # explicit CSV path (user tasks); else <work_root>/metadata/<name>.csv
    data: Optional[Path] = None  # explicit audio root (user tasks); else found under the work root

    @property
    def folder(self) -> str:
        return self.data_folder or self.name

    def metadata_path(self, work_root: Path) -> Path:
        return self.metadata if self.metadata is not None else Path(work_root) / 'metadata' / f'{self.name}.csv'

    def data_root(self, work_root: Path, sample_rate: int) -> tuple[Path, Optional[int]]:
        """The audio folder for a model running at `sample_rate`, and the rate its folder name declares.

        Prefers `work/<rate>/<folder>` at the model's rate; falls back to another rate's folder (the loader then
        resamples). Returns the preferred path even when nothing exists, so the error can name it.
        """
        if self.data is not None:
            return Path(self.data), None
        work_root = Path(work_root)
        own = RATE_FOLDERS.get(int(sample_rate))
        preferred = work_root / (own or f'{int(sample_rate) // 1000}k') / self.folder
        if preferred.exists():
            return preferred, int(sample_rate)
        # Prefer higher rates as the resampling source: downsampling loses nothing the model can use.
        for rate in sorted(RATE_FOLDERS, reverse=True):
            candidate = work_root / RATE_FOLDERS[rate] / self.folder
            if candidate.exists():
                return candidate, rate
        return preferred, int(sample_rate)


def _t(name, unit_sec, folds=1, folder=None, metric='accuracy', balanced=False):
    return Task(name=name, unit_sec=unit_sec, folds=folds, data_folder=folder, metric=metric, balanced=balanced)


# Facts from EVAR's task table (folds, unit seconds, data folder, balanced) and the datasets' own protocols.
BUILTIN_TASKS = MappingProxyType({t.name: t for t in (
    _t('us8k', 4.0, folds=10),
    _t('esc50', 5.0, folds=5),
    _t('fsd50k', 7.6358, metric='mAP'),
    _t('fsdnoisy18k', 8.25),
    _t('gtzan', 30.0),
    _t('nsynth', 4.0),
    _t('nspitch', 4.0, folder='nsynth'),
    _t('nsvelocity', 4.0, folder='nsynth'),
    _t('cremad', 2.5),
    _t('cremad_gender', 2.5, folder='cremad'),
    _t('spcv1', 1.0),
    _t('spcv2', 1.0),
    _t('surge', 4.0),
    _t('vc1', 8.2),
    _t('vocalsound', 4.18),
    _t('voxforge', 5.8),
    _t('as20k', 10.0, folder='as', metric='mAP'),
    _t('as', 10.0, folder='as', metric='mAP', balanced=True),
    # Real sets that ship with the project's test data (../shared/data); useful tasks in their own right.
    _t('fsdd', 1.0),  # Free Spoken Digit Dataset: digit, official split (index 0-4 test)
    _t('fsdd_speaker', 1.0, folder='fsdd'),  # same clips, speaker identity
    _t('ravdess', 4.0),  # RAVDESS speech emotion, actor-independent split
    _t('ravdess_gender', 4.0, folder='ravdess'),
    _t('spcv2_12', 1.0),  # Speech Commands v2, 12-class protocol
    _t('piano_pitch', 0.5),  # Salamander piano notes: pitch, split by time within each note's decay
    _t('demo', 1.0),  # generated offline on first use (evar.demo)
)})


def _task_from_yaml(path: Path) -> Task:
    from .params import read_yaml_mapping

    spec = read_yaml_mapping(path, 'Task file')
    allowed = {'metadata', 'data', 'unit_sec', 'folds', 'metric', 'name', 'balanced'}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise EvarError(f'Task file {path}: unknown key(s) {unknown}; valid keys are {sorted(allowed)}.')
    missing = [k for k in ('metadata', 'data', 'unit_sec') if k not in spec]
    if missing:
        raise EvarError(f'Task file {path}: missing key(s) {missing} (expected metadata: CSV path, '
                        'data: audio folder, unit_sec: seconds).')
    base = path.parent

    def resolve(p):
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else base / p

    try:
        unit_sec = float(spec['unit_sec'])
        folds = int(spec.get('folds', 1))
    except (TypeError, ValueError) as e:
        raise EvarError(f'Task file {path}: unit_sec must be a number and folds an integer ({e}).') from e
    task = Task(name=str(spec.get('name', path.stem)), unit_sec=unit_sec, folds=folds,
                metric=str(spec.get('metric', 'accuracy')), balanced=bool(spec.get('balanced', False)),
                metadata=resolve(spec['metadata']), data=resolve(spec['data']))
    return validate_task(task, source=str(path))


def validate_task(task: Task, source: str) -> Task:
    if task.metric not in METRICS:
        raise EvarError(f'{source}: metric must be one of {list(METRICS)}, got {task.metric!r}.')
    if not task.unit_sec > 0:
        raise EvarError(f'{source}: unit_sec must be positive, got {task.unit_sec}.')
    if task.folds < 1:
        raise EvarError(f'{source}: folds must be >= 1, got {task.folds}.')
    return task


def get_task(name_or_path: str, unit_sec: Optional[float] = None) -> Task:
    """The task named `name_or_path` (a built-in name, or a path to a task YAML file)."""
    text = str(name_or_path)
    if text in BUILTIN_TASKS:
        task = BUILTIN_TASKS[text]
    elif text.endswith(('.yaml', '.yml')) or os.sep in text:
        task = _task_from_yaml(Path(text))
    else:
        raise EvarError(f'Unknown task {text!r}. Built-in tasks: {", ".join(sorted(BUILTIN_TASKS))}; '
                        'or give the path to a task YAML file (keys: metadata, data, unit_sec, folds, metric, name).')
    if unit_sec is not None:
        task = validate_task(replace(task, unit_sec=float(unit_sec)), source='--unit_sec')
    return task
