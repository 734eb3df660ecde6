"""Heart murmur detection on CirCor (PhysioNet, "The CirCor DigiScope Phonocardiogram Dataset" v1.0.3, Oliveira et
al., IEEE JBHI 2022), as in EVAR's EMBC paper on CirCor (nttcslab/eval-audio-repr, app/circor), over evar.

- Layout read (`build`): `<root>/training_data.csv` (columns `Patient ID`, `Murmur` = Present / Unknown / Absent)
  and `<root>/training_data/<patient>_<location>[_<n>].wav` (with the publisher's `.tsv` segmentations, `.hea`
  headers and `<patient>.txt` beside them, not needed here).
- Each recording is cut into non-overlapping 5-s segments (a recording shorter than 5 s is one shorter segment);
  every segment carries its patient's murmur label.
- Three seeded patient-level splits stratified by the murmur label (60 / 20 / 20 % train / valid / test patients),
  each an evar task `circor<k>`; validation patients never overlap training or test patients.
- `run`: frozen embeddings of the segments, an MLP head with class-weighted cross-entropy selected on the
  validation patients' weighted accuracy; segment outputs averaged per recording, the patient's class by the
  published rule (Present if any recording is Present, else Unknown if any is Unknown, else Absent; `--rule
  priority`) or the argmax of the recordings' mean (`--rule mean`); the Challenge 2022 weighted accuracy and UAR.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

from evar.errors import EvarError

from ..layout import (Clip, carve_valid, check_patient_disjoint, missing_dataset, pick_patients, remove_stale_tasks,
                      segment_bounds, write_clip, write_task)
from ..metrics import MURMUR_CLASSES, argmax_of_mean, circor_scores, patient_decisions, patient_labels, \
    priority_rule

NAME = 'circor'
SEGMENT_SEC = 5.0
HOW_TO_GET = ('CirCor v1.0.3 is on PhysioNet (https://physionet.org/content/circor-heart-sound/1.0.3/): accept its '
              'licence on that page, then download it, e.g. `wget -r -N -c -np '
              'https://physionet.org/files/circor-heart-sound/1.0.3/`, and pass the `1.0.3` folder.')
RULES = {'priority': lambda probs: priority_rule(probs, (0, 1)), 'mean': argmax_of_mean}


def read_patients(root: Path) -> dict:
    """{patient id: murmur label} from `<root>/training_data.csv`.

    Raises:
        EvarError: the file is missing (with where to get the dataset), lacks the columns, or has another label.
    """
    from evar.data import read_csv_rows

    csv_path = Path(root) / 'training_data.csv'
    if not csv_path.is_file():
        raise missing_dataset(csv_path, 'CirCor\'s training_data.csv', HOW_TO_GET)
    rows, _ = read_csv_rows(csv_path, 'CirCor table', 'or pass the CirCor v1.0.3 folder.')
    if not rows or not {'Patient ID', 'Murmur'} <= set(rows[0]):
        raise EvarError(f'{csv_path}: expected the columns "Patient ID" and "Murmur" of CirCor v1.0.3.')
    patients = {}
    for line, row in enumerate(rows, start=2):
        label = row['Murmur'].strip()
        if label not in MURMUR_CLASSES:
            raise EvarError(f'{csv_path}, line {line}: Murmur {label!r}; expected one of {list(MURMUR_CLASSES)}.')
        patients[row['Patient ID'].strip()] = label
    return patients


def build(root, out, n_splits: int = 3, seed: int = 1, test_fraction: float = 0.2,
          valid_fraction: float = 0.25) -> list:
    """Cuts CirCor's recordings into 5-s segments under `<out>/audio/` and writes the tasks circor1..circorN.

    Args:
        root: the CirCor v1.0.3 folder (training_data.csv, training_data/).
        out: the application folder to write.
        n_splits: seeded patient-level splits (seeds seed .. seed + n_splits - 1).
        seed: the first split's seed.
        test_fraction: share of each murmur class's patients held out for testing.
        valid_fraction: share of the remaining patients (per class) carved for validation.

    Returns:
        The `BuiltTask`s.

    Raises:
        EvarError: a missing folder or file (saying where to get the data), a patient without recordings.
    """
    from evar.audio import load_audio

    root, out = Path(root), Path(out)
    patients = read_patients(root)
    wav_dir = root / 'training_data'
    if not wav_dir.is_dir():
        raise missing_dataset(wav_dir, 'the folder of CirCor recordings (<patient>_<location>.wav)', HOW_TO_GET)
    segments = []  # (file_name, patient, recording)
    for patient in sorted(patients):
        wavs = sorted(wav_dir.glob(f'{patient}_*.wav'))
        if not wavs:
            raise EvarError(f'{wav_dir}: no recording {patient}_<location>.wav of patient {patient} listed in '
                            'training_data.csv.')
        for wav_path in wavs:
            wav, rate = load_audio(wav_path, None)
            for i, (a, b) in enumerate(segment_bounds(len(wav), int(round(SEGMENT_SEC * rate)))):
                name = f'{wav_path.stem}_{i:03d}.flac'
                write_clip(out / 'audio' / name, wav[a:b], rate)
                segments.append((name, patient, wav_path.stem))
    tasks = []
    for k in range(n_splits):
        test = pick_patients(patients, test_fraction, seed + k)
        clips = [Clip(name, patients[p], p, rec, 'test' if p in test else 'train') for name, p, rec in segments]
        clips = carve_valid(clips, valid_fraction, seed + k, strata=patients)
        check_patient_disjoint(clips)
        tasks.append(write_task(out, f'{NAME}{k + 1}', clips, out / 'audio', SEGMENT_SEC))
    remove_stale_tasks(out, NAME, [t.name for t in tasks])
    return tasks


def spec(rule: str = 'priority', hidden=(128,), lr: float = 1e-3, epochs: int = 100, early_stop_epochs: int = 20,
         batch_size: int = 64, device: str = 'cpu'):
    """The `AppSpec` of CirCor: clip embeddings, `ClipHead` with class-weighted CE, patient rule `rule`.

    Raises:
        EvarError: an unknown rule.
    """
    from ..heads import ClipHead, TrainSettings
    from ..runner import AppSpec

    if rule not in RULES:
        raise EvarError(f'--rule must be one of {list(RULES)}, got {rule!r}.')
    decide = RULES[rule]

    def scores(probs, split):
        keys, pred = patient_decisions(probs, split.recordings, split.patients, decide)
        _, true = patient_labels(split.y, split.patients)
        return circor_scores(true, pred)

    settings = dict(hidden=tuple(hidden), lr=lr, epochs=epochs, early_stop_epochs=early_stop_epochs,
                    batch_size=batch_size)
    return AppSpec(name=NAME, classes=MURMUR_CLASSES, level='clip',
                   make_head=lambda seed: ClipHead(len(MURMUR_CLASSES), TrainSettings(**settings, seed=seed,
                                                                                      device=device)),
                   valid_score=lambda probs, split: scores(probs, split).weighted_accuracy,
                   test_scores=lambda probs, split: asdict(scores(probs, split)),
                   head_name='mlp' + 'x'.join(map(str, hidden)) if hidden else 'linear',
                   options={'rule': rule, **settings})


def run(config_file, data, seeds=(42,), rule: str = 'priority', hidden=(128,), lr: float = 1e-3,
        epochs: int = 100, early_stop_epochs: int = 20, options: str = '', work_root: Optional[str] = None,
        results_dir: str = 'results', device: Optional[str] = None, progress: bool = False) -> list:
    """Evaluates the model of CONFIG_FILE on every built CirCor split in DATA; appends to
    `<results_dir>/circor-scores.csv` (weighted accuracy and UAR per split and seed, and their mean +- std).

    Args:
        config_file: an evar model YAML (config/<model>.yaml).
        data: the folder `build` wrote.
        seeds: head seeds, e.g. 42,43,44.
        rule: 'priority' (Present > Unknown > Absent) or 'mean' (argmax of the recordings' mean).
        hidden, lr, epochs, early_stop_epochs: the head's MLP and training.
        options: evar config overrides 'key=value,...'.
        work_root: evar's work folder for the embedding cache (default $EVAR_WORK or ./work).
        results_dir: where circor-scores.csv goes.
        device: cpu or cuda (default: cuda when available).
        progress: progress bars.
    """
    from ..runner import parse_hidden, run_folder

    hidden = parse_hidden(hidden)
    return run_folder(lambda dev: spec(rule, hidden, lr, epochs, early_stop_epochs, device=dev), NAME, config_file,
                      data, seeds, options, work_root, results_dir, device, progress)
