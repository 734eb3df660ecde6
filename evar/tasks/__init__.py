"""Downstream tasks: one record per task (`Task`), looked up by name or read from a YAML file.

Built-in tasks are grouped by dataset family, one module each (`esc50.py`, `speech_commands.py`, ...), holding
the family's records in `TASKS` (definition, metadata builder, flags) and its builders' layout help in `HELP`.
`_FAMILY_OF` below is the registry: a task name -> its family module, imported the first time one of its
tasks is looked up. Adding a task touches its family module and one line here.

A built-in task's metadata CSV lives at `<work_root>/metadata/<name>.csv` (written by
`python -m evar.metadata <task> <dataset_root>`) and its audio under `<work_root>/<16k|22k|...>/<data_folder>/`.
A user task is a YAML file with keys `metadata`, `data`, `unit_sec` and optional `folds`, `metric`, `name`,
`balanced`, `domain` (one of DOMAINS, for reports' per-domain averages); its relative paths are read relative to the YAML file.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

from ..errors import EvarError
from .base import DOMAINS, RATE_FOLDERS, SPLIT_FILE_MODES, Task, rate_folder

__all__ = ['BUILTIN_TASKS', 'DOMAINS', 'RATE_FOLDERS', 'SPLIT_FILE_MODES', 'Task', 'families',
           'family_module', 'get_task', 'rate_folder', 'validate_task']

# Task name -> family module, in EVAR's table order (summaries list tasks in this order), then evar's own sets.
_FAMILY_OF = {
    'us8k': 'urbansound8k',
    'esc50': 'esc50',
    'fsd50k': 'fsd50k',
    'fsdnoisy18k': 'fsdnoisy18k',
    'gtzan': 'gtzan',
    'nsynth': 'nsynth',
    'nspitch': 'nsynth',
    'nsvelocity': 'nsynth',
    'cremad': 'cremad',
    'cremad_gender': 'cremad',
    'spcv1': 'speech_commands',
    'spcv2': 'speech_commands',
    'surge': 'surge',
    'vc1': 'voxceleb1',
    'vocalsound': 'vocalsound',
    'voxforge': 'voxforge',
    'as20k': 'audioset',
    'as': 'audioset',
    'audiocaps': 'audiocaps',  # audio-text retrieval (retr_a2t_t2a.py)
    'ja_audiocaps': 'audiocaps',
    'clotho': 'clotho',
    # X-ARES's public tasks that EVAR lacks (jimbozhang/xares src/tasks).
    'asvspoof2015': 'asvspoof',
    'fsc': 'fluent_speech_commands',
    'libricount': 'libricount',
    'librispeech_mf': 'librispeech',
    'voxlingua33': 'voxlingua',
    'vocal_imitation': 'vocal_imitation',
    'fsdkaggle2018': 'fsdkaggle2018',
    'fma_small': 'fma',
    # HEAR 2021's tasks that EVAR lacks, read from HEAR's preprocessed task folders.
    'beijing_opera': 'hear',
    'mridangam_stroke': 'hear',
    'mridangam_tonic': 'hear',
    'gtzan_mus_speech': 'hear',
    'beehive_fold0': 'hear',
    'beehive_fold1': 'hear',
    'gunshot': 'hear',
    'nsynth_pitch_5h': 'hear',
    'nsynth_pitch_50h': 'hear',
    'vox_lingua_top10': 'hear',
    'dcase2016_task2': 'hear_events',  # HEAR's event tasks (evar sed)
    'maestro': 'hear_events',
    'desed': 'desed',  # X-ARES's DESED from the publisher's layout (evar sed)
    # Real sets that ship with the project's test data (../shared/data); useful tasks in their own right.
    'fsdd': 'fsdd',
    'fsdd_speaker': 'fsdd',
    'ravdess': 'ravdess',
    'ravdess_gender': 'ravdess',
    'spcv2_12': 'speech_commands',
    'piano_pitch': 'piano',
    'sed_words': 'sed_words',  # sound event detection (evar sed): Speech Commands words mixed into noise
    'demo': 'demo',
}


def family_module(family: str):
    """The module `evar.tasks.<family>` (imported on first use)."""
    return importlib.import_module(f'{__name__}.{family}')


def families() -> list[str]:
    """The family module names, in the order their first task appears in the registry."""
    return list(dict.fromkeys(_FAMILY_OF.values()))


class _BuiltinTasks(Mapping):
    """Read-only name -> built-in `Task`, in registry order; a family's module is imported when one of its
    records is first read (names and membership need no import)."""

    def __getitem__(self, name: str) -> Task:
        return family_module(_FAMILY_OF[name]).TASKS[name]

    def __contains__(self, name) -> bool:
        return name in _FAMILY_OF

    def __iter__(self) -> Iterator[str]:
        return iter(_FAMILY_OF)

    def __len__(self) -> int:
        return len(_FAMILY_OF)

    def __repr__(self) -> str:
        return f'BUILTIN_TASKS({", ".join(_FAMILY_OF)})'


BUILTIN_TASKS = _BuiltinTasks()


def _task_from_yaml(path: Path) -> Task:
    from ..params import read_yaml_mapping

    spec = read_yaml_mapping(path, 'Task file')
    allowed = {'metadata', 'data', 'unit_sec', 'folds', 'metric', 'name', 'balanced', 'domain'}
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
                domain=None if spec.get('domain') is None else str(spec['domain']),
                metadata=resolve(spec['metadata']), data=resolve(spec['data']))
    return validate_task(task, source=str(path))


def validate_task(task: Task, source: str) -> Task:
    """`task` itself when its metric, unit length, folds and flags are valid; else an EvarError naming `source`
    (the YAML file or flag it came from) and what was expected."""
    from ..metrics import METRICS  # any registered metric; 'mAP' and 'roc_auc' make a task multi-label

    if task.metric not in METRICS:
        raise EvarError(f'{source}: metric must be one of {list(METRICS)}, got {task.metric!r}.')
    if not task.unit_sec > 0:
        raise EvarError(f'{source}: unit_sec must be positive, got {task.unit_sec}.')
    if task.folds < 1:
        raise EvarError(f'{source}: folds must be >= 1, got {task.folds}.')
    if task.domain is not None and task.domain not in DOMAINS:
        raise EvarError(f'{source}: domain must be one of {list(DOMAINS)}, got {task.domain!r}.')
    if task.split_file not in SPLIT_FILE_MODES:
        raise EvarError(f'{source}: split_file must be one of {list(SPLIT_FILE_MODES)}, got {task.split_file!r}.')
    return task


def get_task(name_or_path: str, unit_sec: Optional[float] = None) -> Task:
    """The task named `name_or_path` (a built-in name, or a path to a task YAML file), with `unit_sec` seconds
    per clip when given. An unknown name or a bad YAML file raises EvarError."""
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
