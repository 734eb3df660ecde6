"""Murmur vs normal on BMD-HS (BUET Multi-disease Heart Sound dataset, Ali et al., arXiv:2409.00724,
github.com/mHealthBuet/BMD-HS-Dataset), as in EVAR's BMD-HS evaluation (nttcslab/eval-audio-repr, app/bmdhs), over
evar.

- Layout read (`build`): the publisher's table (`train.csv`: `patient_id`, the diagnosis columns `AS AR MR MS N`,
  `recording_1` .. `recording_8`) and `train/<recording>.wav`, eight 20-s recordings per patient. A patient is
  Normal when `N` is 1, else Murmur.
- Splits: the published patient-level splits (`--split_files`: CSVs with `patient_id` and `split` = train / test,
  such as EVAR's split1..3.csv), or seeded stratified ones (a third of each class's patients for testing). Validation
  patients are carved from the training patients, stratified by class (never the test split).
- `run`: frozen clip embeddings of the 20-s recordings, an MLP head with class-weighted cross-entropy selected on
  the validation patients' ICBHI score; the patient's prediction is the argmax of the mean of its recordings'
  softmax outputs. Accuracy, sensitivity, specificity, F1 and the ICBHI score (Se + Sp) / 2 at the recording
  (sample) and the patient level.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from evar.errors import EvarError

from ..layout import (Clip, carve_valid, check_patient_disjoint, missing_dataset, pick_patients, remove_stale_tasks,
                      write_task)
from ..metrics import argmax_of_mean, binary_scores, patient_decisions, patient_labels

NAME = 'bmdhs'
CLASSES = ('Normal', 'Murmur')  # Murmur is the positive class (index 1)
UNIT_SEC = 20.0
RECORDINGS = tuple(f'recording_{i}' for i in range(1, 9))
HOW_TO_GET = ('BMD-HS is published at https://github.com/mHealthBuet/BMD-HS-Dataset (read its licence there): '
              '`git clone https://github.com/mHealthBuet/BMD-HS-Dataset` and pass the clone\'s folder.')


def read_table(root: Path, table: str = 'train.csv') -> dict:
    """{patient_id: (label, [recording stems])} from the publisher's table.

    Raises:
        EvarError: a missing table (with where to get the data) or missing columns.
    """
    from evar.data import read_csv_rows

    path = Path(root) / table
    if not path.is_file():
        raise missing_dataset(path, 'BMD-HS\'s patient table (patient_id, N, recording_1..8)', HOW_TO_GET)
    rows, _ = read_csv_rows(path, 'BMD-HS table', 'or pass the BMD-HS folder.')
    needed = {'patient_id', 'N', *RECORDINGS}
    if not rows or not needed <= set(rows[0]):
        raise EvarError(f'{path}: expected the columns {sorted(needed)}.')
    return {r['patient_id'].strip(): (CLASSES[0] if r['N'].strip() == '1' else CLASSES[1],
                                      [r[c].strip() for c in RECORDINGS if r[c].strip()]) for r in rows}


def read_split_file(path: Path, patients: dict) -> dict:
    """{patient_id: 'train' | 'test'} from a split CSV (columns patient_id and split).

    Raises:
        EvarError: a missing file, other columns, another split name, or patients the table does not list.
    """
    from evar.data import read_csv_rows

    rows, _ = read_csv_rows(Path(path), 'BMD-HS split file', 'or give a CSV with columns patient_id,split.')
    if not rows or not {'patient_id', 'split'} <= set(rows[0]):
        raise EvarError(f'{path}: expected the columns patient_id and split (train / test).')
    splits = {r['patient_id'].strip(): r['split'].strip().lower() for r in rows}
    bad = sorted({s for s in splits.values() if s not in ('train', 'test')})
    unknown = sorted(set(splits) - set(patients))
    if bad or unknown:
        raise EvarError(f'{path}: ' + (f'split(s) {bad}, expected train or test; ' if bad else '')
                        + (f'patients {unknown[:5]} are not in the table' if unknown else ''))
    return splits


def build(root, out, split_files: Optional[Sequence[str]] = None, n_splits: int = 3, seed: int = 1,
          test_fraction: float = 1 / 3, valid_fraction: float = 0.1, table: str = 'train.csv') -> list:
    """Writes the tasks bmdhs1..N (metadata pointing at the publisher's files; nothing is copied) under `out`.

    Args:
        root: the BMD-HS folder (train.csv, train/).
        out: the application folder to write.
        split_files: the published split CSVs (patient_id, split), one task each; None: `n_splits` seeded splits.
        n_splits, seed, test_fraction: the seeded splits (seeds seed .. seed + n_splits - 1).
        valid_fraction: share of each class's training patients carved for validation.
        table: the patient table's name under `root`.

    Raises:
        EvarError: a missing table, folder or recording (named), or a bad split file.
    """
    root, out = Path(root), Path(out)
    patients = read_table(root, table)
    missing = [f'train/{s}.wav' for _, (_, stems) in sorted(patients.items()) for s in stems
               if not (root / 'train' / f'{s}.wav').is_file()]
    if missing:
        raise EvarError(f'{root}: {len(missing)} recording(s) listed in {table} are missing, e.g. {missing[:3]} '
                        '(the published repository names MD_085_sit_Tri as MD_085_sit_Tri6_06.wav: rename it).'
                        + ('' if (root / 'train').is_dir() else f' {HOW_TO_GET}'))
    labels = {p: label for p, (label, _) in patients.items()}
    if isinstance(split_files, str):
        split_files = [s for s in split_files.split(',') if s]
    plans = ([read_split_file(Path(f), patients) for f in split_files] if split_files else
             [{p: 'test' if p in test else 'train' for p in patients}
              for test in (pick_patients(labels, test_fraction, seed + k) for k in range(n_splits))])
    tasks = []
    for k, plan in enumerate(plans):
        clips = [Clip(f'train/{stem}.wav', label, p, stem, plan[p]) for p, (label, stems) in sorted(patients.items())
                 if p in plan for stem in stems]
        clips = carve_valid(clips, valid_fraction, seed + k, strata=labels)
        check_patient_disjoint(clips)
        tasks.append(write_task(out, f'{NAME}{k + 1}', clips, root, UNIT_SEC))
    remove_stale_tasks(out, NAME, [t.name for t in tasks])
    return tasks


def scores(probs, split) -> dict:
    """{'patient_<metric>', 'sample_<metric>': value} of `BinaryScores` for recording probabilities [n, 2] of a
    split: samples are recordings; a patient's prediction is the argmax of its recordings' mean softmax."""
    _, pred = patient_decisions(probs, split.recordings, split.patients, argmax_of_mean)
    _, true = patient_labels(split.y, split.patients)
    patient, sample = binary_scores(true, pred), binary_scores(split.y, probs.argmax(1))
    return {**{f'patient_{k}': v for k, v in asdict(patient).items()},
            **{f'sample_{k}': v for k, v in asdict(sample).items()}}


def spec(hidden=(128,), lr: float = 1e-3, epochs: int = 100, early_stop_epochs: int = 20, batch_size: int = 64,
         device: str = 'cpu'):
    """The `AppSpec` of BMD-HS: clip embeddings, `ClipHead` with class-weighted CE, selection on the validation
    patients' ICBHI score."""
    from ..heads import ClipHead, TrainSettings
    from ..runner import AppSpec

    settings = dict(hidden=tuple(hidden), lr=lr, epochs=epochs, early_stop_epochs=early_stop_epochs,
                    batch_size=batch_size)
    return AppSpec(name=NAME, classes=CLASSES, level='clip',
                   make_head=lambda seed: ClipHead(len(CLASSES), TrainSettings(**settings, seed=seed, device=device)),
                   valid_score=lambda probs, split: scores(probs, split)['patient_icbhi_score'],
                   test_scores=scores, head_name='mlp' + 'x'.join(map(str, hidden)) if hidden else 'linear',
                   options=settings)


def run(config_file, data, seeds=(42,), hidden=(128,), lr: float = 1e-3, epochs: int = 100,
        early_stop_epochs: int = 20, options: str = '', work_root: Optional[str] = None,
        results_dir: str = 'results', device: Optional[str] = None, progress: bool = False) -> list:
    """Evaluates the model of CONFIG_FILE on every built BMD-HS split in DATA; appends to
    `<results_dir>/bmdhs-scores.csv` (patient- and sample-level scores per split and seed, and their mean +- std).

    Args:
        config_file: an evar model YAML.
        data: the folder `build` wrote.
        seeds: head seeds, e.g. 42,43,44.
        hidden, lr, epochs, early_stop_epochs: the head's MLP and training.
        options, work_root, results_dir, device, progress: as `python -m app.circor run`.
    """
    from ..runner import parse_hidden, run_folder

    hidden = parse_hidden(hidden)
    return run_folder(lambda dev: spec(hidden, lr, epochs, early_stop_epochs, device=dev), NAME, config_file, data,
                      seeds, options, work_root, results_dir, device, progress)
