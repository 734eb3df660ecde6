"""The task record: what a downstream task is, where its files are, and how its metadata CSV is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Optional

# Folder names that EVAR uses for each sample rate under the work root.
RATE_FOLDERS = MappingProxyType({16000: '16k', 22000: '22k', 22050: '22k', 32000: '32k', 44100: '44k', 48000: '48k'})
# What a task's sounds are: `speech` (spoken words, speakers, languages, emotions and other vocal sounds),
# `music` (instruments, genres, notes), `environmental` (everyday sound events and scenes), `bioacoustics`
# (animal sounds: birds, whales, insects), `general` (an ontology of all of these, as AudioSet's) or `synthetic`
# (generated signals). Reports average scores per domain.
DOMAINS = ('speech', 'music', 'environmental', 'bioacoustics', 'general', 'synthetic')
# How a task's metadata builder uses `--split_file`: `none` (the dataset's own files give the split; a split file
# is refused), `optional` (it replaces a list the dataset may lack), `required` (the publisher distributes no
# split, or only on the web).
SPLIT_FILE_MODES = ('none', 'optional', 'required')

Row = tuple  # a metadata row: (file_name: str, label: str, split: str | fold: int)


def rate_folder(sample_rate: int) -> str:
    """The folder name under the work root for audio at `sample_rate` Hz: EVAR's ('16k', '44k', ...) or e.g. '8k'."""
    return RATE_FOLDERS.get(int(sample_rate)) or f'{int(sample_rate) // 1000}k'


@dataclass(frozen=True)
class Task:
    """What a downstream task is: its clips' unit length, cross-validation folds, metric and where its files are;
    for a built-in task also how its metadata CSV is built from the dataset as published.

    The builder `build(dataset_root: Path, split_file: Optional[Path]) -> list[Row]` returns the CSV's rows in
    any order; a task that `writes_audio` (cuts recordings into new clips) also takes `out_dir: Path`, writes the
    clips there and names them relative to it. User tasks (YAML) have no builder.
    """
    name: str
    unit_sec: float  # seconds of audio per clip given to the model
    folds: int = 1  # >1: leave-one-fold-out cross-validation over a `fold` column
    data_folder: Optional[str] = None  # folder under work/<rate>/; the task name when None
    metric: str = 'accuracy'  # a key of evar.metrics.METRICS: 'accuracy', 'mAP' (multi-label), 'roc_auc_ovr', ...
    balanced: bool = False  # class-balanced sampling when fine-tuning
    metadata: Optional[Path] = None  # explicit CSV path (user tasks); else <work_root>/metadata/<name>.csv
    data: Optional[Path] = None  # explicit audio root (user tasks); else found under the work root
    domain: Optional[str] = None  # one of DOMAINS; every built-in task declares it (task_table checks), user tasks may
    build: Optional[Callable] = field(default=None, repr=False, compare=False)  # the metadata builder
    split_file: str = 'none'  # one of SPLIT_FILE_MODES
    split_file_help: str = ''  # for split_file 'required': what the file is and where its publisher has it
    writes_audio: bool = False  # the builder writes the task's clips (called with out_dir)
    captions: bool = False  # audio-text retrieval: rows are (file_name, caption, split), any number per clip
    events: bool = False  # sound event detection: strong labels in `<audio folder>/events.csv` (evar.sed, evar sed)

    @property
    def folder(self) -> str:
        """The task's audio folder name under `<work_root>/<rate>/`."""
        return self.data_folder or self.name

    def metadata_path(self, work_root: Path) -> Path:
        """The metadata CSV: the task's own path (user tasks) or `<work_root>/metadata/<name>.csv`."""
        return self.metadata if self.metadata is not None else Path(work_root) / 'metadata' / f'{self.name}.csv'

    def data_root(self, work_root: Path, sample_rate: int) -> tuple[Path, Optional[int]]:
        """The audio folder for a model running at `sample_rate`, and the rate its folder name declares.

        Prefers `work/<rate>/<folder>` at the model's rate; falls back to another rate's folder (the loader then
        resamples). Returns the preferred path even when nothing exists, so the error can name it.
        """
        if self.data is not None:
            return Path(self.data), None
        work_root = Path(work_root)
        preferred = work_root / rate_folder(sample_rate) / self.folder
        if preferred.exists():
            return preferred, int(sample_rate)
        # Prefer higher rates as the resampling source: downsampling loses nothing the model can use.
        for rate in sorted(RATE_FOLDERS, reverse=True):
            candidate = work_root / RATE_FOLDERS[rate] / self.folder
            if candidate.exists():
                return candidate, rate
        return preferred, int(sample_rate)


def task_table(*tasks: Task) -> Mapping[str, Task]:
    """A family module's read-only `TASKS`: name -> record, in the order given.

    Raises:
        ValueError: a built-in task without a `domain` in DOMAINS (a programming error: reports group tasks by it).
    """
    for task in tasks:
        if task.domain not in DOMAINS:
            raise ValueError(f'Built-in task {task.name!r} must declare its domain, one of {DOMAINS}; got {task.domain!r}.')
    return MappingProxyType({task.name: task for task in tasks})
