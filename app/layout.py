"""What the applications' builders share: clips with their patient and recording, patient-level splits, cutting
recordings into clips, and writing an evar task (metadata CSV, groups CSV, task YAML) per split.

A built application folder holds:
- `audio/`: the clips (FLAC, at the source's own rate; evar resamples on load) when the builder cuts recordings;
- `<task>.csv`: evar metadata `file_name,label,split` with train / valid / test rows;
- `<task>-groups.csv`: `file_name,patient,recording` for the patient-level rules and metrics;
- `<task>.yaml`: an evar task file (metadata, data, unit_sec), run by evar's own embedding path.

Validation is always carved from the training patients (patient-disjoint from training and from test); a test
split is never used to select anything.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from evar.errors import EvarError
from evar.fileio import atomic_write_text


@dataclass(frozen=True)
class Clip:
    """One clip of a built application task.

    Attributes:
        file_name: path relative to the task's audio folder (posix slashes).
        label: the clip's class name.
        patient: the patient (subject) identifier; splits never divide a patient.
        recording: the recording the clip was cut from (segments of one recording share it).
        split: 'train', 'valid' or 'test'.
    """
    file_name: str
    label: str
    patient: str
    recording: str
    split: str


def missing_dataset(path: Path, what: str, how: str) -> EvarError:
    """The error for a dataset that is not where the user said: names `path`, what was expected there, and how to
    obtain it (`how`: the publisher's page and its licence step)."""
    return EvarError(f'{path}: expected {what}, found nothing. {how}')


def pick_patients(strata: dict, fraction: float, seed: int) -> set:
    """A seeded, stratified choice of patients: from each stratum of n patients, round(n * fraction) of them, at
    least one and at most n - 1 (a stratum of one patient contributes none).

    Args:
        strata: patient -> stratum (e.g. the patient's label).
        fraction: share to pick, in (0, 1).
        seed: numpy default_rng seed.

    Raises:
        EvarError: a fraction outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise EvarError(f'A patient fraction must be in (0, 1), got {fraction}.')
    rng = np.random.default_rng(seed)
    by_stratum: dict = {}
    for patient in sorted(strata):
        by_stratum.setdefault(strata[patient], []).append(patient)
    chosen = set()
    for key in sorted(by_stratum):
        members = by_stratum[key]
        n = min(max(int(round(len(members) * fraction)), 1), len(members) - 1) if len(members) >= 2 else 0
        chosen.update(rng.choice(members, size=n, replace=False).tolist())
    return chosen


def carve_valid(clips: Sequence[Clip], fraction: float, seed: int, strata: Optional[dict] = None) -> list:
    """`clips` with the training clips of a seeded choice of training patients moved to 'valid'.

    With `strata` (patient -> stratum) the choice is stratified (`pick_patients`); without, patients are taken in
    a seeded random order until the valid side holds at least `fraction` of the training clips (respiratory sets,
    where a patient's clips span several classes).

    Raises:
        EvarError: fewer than two training patients.
    """
    train_patients = sorted({c.patient for c in clips if c.split == 'train'})
    if len(train_patients) < 2:
        raise EvarError(f'Cannot carve a patient-disjoint validation split from {len(train_patients)} training '
                        'patient(s); at least two are needed.')
    if strata is not None:
        valid = pick_patients({p: strata[p] for p in train_patients}, fraction, seed)
    else:
        counts = {p: 0 for p in train_patients}
        for c in clips:
            if c.split == 'train':
                counts[c.patient] += 1
        order = np.random.default_rng(seed).permutation(len(train_patients))
        target, valid, taken = fraction * sum(counts.values()), set(), 0
        for i in order[:-1]:  # at least one patient stays in training
            if taken >= target:
                break
            valid.add(train_patients[i])
            taken += counts[train_patients[i]]
    return [replace(c, split='valid') if c.split == 'train' and c.patient in valid else c for c in clips]


def segment_bounds(n_samples: int, segment: int) -> list:
    """(start, end) sample bounds of non-overlapping segments of `segment` samples covering a recording of
    `n_samples`: floor(n / segment) full segments, or one shorter segment when the recording is shorter than one."""
    if n_samples <= segment:
        return [(0, n_samples)]
    return [(s, s + segment) for s in range(0, n_samples - segment + 1, segment)]


def write_clip(path: Path, wav: np.ndarray, rate: int) -> None:
    """Writes float samples [N] in [-1, 1] as 16-bit FLAC at `rate` Hz (parent folders made)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), int(rate), subtype='PCM_16', format='FLAC')


def _csv_text(header: list, rows: Iterable) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@dataclass(frozen=True)
class BuiltTask:
    """One evar task an application built: its name, the task YAML, its metadata and groups CSVs."""
    name: str
    yaml: Path
    metadata: Path
    groups: Path


def write_task(out_dir: Path, name: str, clips: Sequence[Clip], audio_root: Path, unit_sec: float) -> BuiltTask:
    """Writes `<name>.csv`, `<name>-groups.csv` and `<name>.yaml` under `out_dir` for `clips` whose files lie under
    `audio_root`.

    Raises:
        EvarError: no training, validation or test clip, or a patient in more than one split.
    """
    splits = {s: {c.patient for c in clips if c.split == s} for s in ('train', 'valid', 'test')}
    empty = [s for s in splits if not splits[s]]
    if empty:
        raise EvarError(f'Task {name}: no {"/".join(empty)} clips; the dataset folder holds too few patients or '
                        'recordings for a train / valid / test split.')
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata, groups, yaml = out_dir / f'{name}.csv', out_dir / f'{name}-groups.csv', out_dir / f'{name}.yaml'
    atomic_write_text(metadata, _csv_text(['file_name', 'label', 'split'],
                                          [(c.file_name, c.label, c.split) for c in clips]))
    atomic_write_text(groups, _csv_text(['file_name', 'patient', 'recording'],
                                        [(c.file_name, c.patient, c.recording) for c in clips]))
    import yaml as pyyaml

    audio_root, here = Path(audio_root).resolve(), out_dir.resolve()
    # relative when the audio lies in the application folder (the folder can move), else absolute
    data = audio_root.relative_to(here).as_posix() if audio_root == here or here in audio_root.parents else str(audio_root)
    atomic_write_text(yaml, pyyaml.safe_dump({'name': name, 'metadata': metadata.name, 'data': data or '.',
                                              'unit_sec': float(unit_sec)}))
    return BuiltTask(name=name, yaml=yaml, metadata=metadata, groups=groups)


def remove_stale_tasks(out_dir: Path, prefix: str, keep: Sequence[str]) -> list:
    """Deletes the task files (`<prefix><k>.yaml`, `.csv`, `-groups.csv`) of an earlier build in `out_dir` whose
    task is not in `keep` (a rebuild with fewer splits must not leave a split that `run` would pick up); returns
    the deleted paths. Other files are never touched."""
    import re

    pattern = re.compile(rf'^({re.escape(prefix)}\d+)(\.yaml|\.csv|-groups\.csv)$')
    stale = [p for p in sorted(Path(out_dir).glob(f'{prefix}*')) if p.is_file() and (m := pattern.match(p.name))
             and m.group(1) not in keep]
    for path in stale:
        path.unlink()
    return stale


def check_patient_disjoint(clips: Sequence[Clip], pairs=(('train', 'valid'), ('train', 'test'),
                                                           ('valid', 'test'))) -> None:
    """EvarError naming patients that appear in two of the splits of `pairs`."""
    for a, b in pairs:
        shared = sorted({c.patient for c in clips if c.split == a} & {c.patient for c in clips if c.split == b})
        if shared:
            raise EvarError(f'Patients {shared[:5]} are in both the {a} and {b} splits; splits must be '
                            'patient-disjoint.')


def read_groups(path: Path, file_names: Sequence[str]) -> tuple:
    """(patient, recording) string arrays [n] aligned with `file_names` from a groups CSV.

    Raises:
        EvarError: a missing file or a file name it does not list.
    """
    from evar.data import read_csv_rows

    rows, _ = read_csv_rows(Path(path), 'Groups file', 'or build the application folder again.')
    table = {r['file_name']: (r['patient'], r['recording']) for r in rows}
    missing = [f for f in file_names if f not in table]
    if missing:
        raise EvarError(f'Groups file {path} lacks {len(missing)} clip(s) of its task, e.g. {missing[:3]}; build the '
                        'application folder again.')
    return (np.array([table[f][0] for f in file_names]), np.array([table[f][1] for f in file_names]))
