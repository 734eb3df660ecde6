"""Respiratory sound classification on ICBHI 2017 and SPRSound, as in EVAR's EMBC 2025 evaluation
(nttcslab/eval-audio-repr, app/icbhi_sprs), over evar.

- ICBHI 2017 (Rocha et al., Physiological Measurement 2019): `<root>/<patient>_<rec>_<location>_<mode>_<device>.wav`
  with `.txt` annotations (one respiratory cycle a line: start and end in seconds, crackle 0/1, wheeze 0/1) and the
  official split list `ICBHI_challenge_train_test.txt` (`<recording>\\t<train|test>`). Cycles are cut into clips
  labelled normal, crackle, wheeze or both; the official test split is the test split.
- SPRSound (Zhang et al., IEEE TBioCAS 2022; BioCAS 2022 layout): `*_wav/` folders of
  `<patient>_<age>_<gender>_<location>_<number>.wav` and `*_json/` folders of annotations
  (`event_annotation`: start and end in ms and the event type); the training JSON folder's name contains `train`,
  the test folders' `intra` and `inter`. Events are cut into clips labelled with the 7 event types; tasks
  `sprs_intra` and `sprs_inter` share the training split and differ in their test set.
- EVAR selects on its test split; here validation patients are carved from the training patients (about 10 % of
  the training cycles, patient-disjoint) and the test split is scored once.
- `run`: frozen frame embeddings, a small Transformer encoder (or mean-pool MLP) head with inverse-frequency
  weighted cross-entropy and SpecAugment-style masks on the frames, selected on the validation ICBHI score; the
  ICBHI sensitivity, specificity and score (Se + Sp) / 2 (`app.metrics.icbhi_scores`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from evar.errors import EvarError

from ..layout import Clip, carve_valid, check_patient_disjoint, missing_dataset, write_clip, write_task
from ..metrics import icbhi_scores

NAME = 'icbhi_sprs'
ICBHI_CLASSES = ('normal', 'crackle', 'wheeze', 'both')
SPRS_CLASSES = ('Normal', 'Rhonchi', 'Wheeze', 'Stridor', 'Coarse Crackle', 'Fine Crackle', 'Wheeze+Crackle')
SPRS_ALIASES = {'Wheeze & Crackle': 'Wheeze+Crackle'}
UNIT_SEC = 8.0  # EVAR's cycle length (longer cycles are cut by the config's crop)
ICBHI_SPLIT = 'ICBHI_challenge_train_test.txt'
ICBHI_HOW = ('ICBHI 2017 is at https://bhichallenge.med.auth.gr/ICBHI_2017_Challenge (accept its terms there): '
             'download ICBHI_final_database.zip and the official split ICBHI_challenge_train_test.txt, unzip the '
             'database and pass its folder (with the split list in it, or --split_file).')
SPRS_HOW = ('SPRSound is at https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound (read its licence there): clone it '
            'and pass the folder of one challenge year (e.g. BioCAS2022, with train2022_wav/, train2022_json/, '
            'test2022_wav/, test2022_json/).')


def _cut(wav_path: Path, events: list, out: Path, prefix: str) -> list:
    """Writes each (start_sec, end_sec, label) event of a recording as `<out>/<prefix>_<i>.flac`; returns
    (file name relative to out's parent, label) pairs. Events outside the recording are dropped."""
    from evar.audio import load_audio

    wav, rate = load_audio(wav_path, None)
    clips = []
    for i, (start, end, label) in enumerate(events):
        a, b = int(round(start * rate)), min(int(round(end * rate)), len(wav))
        if b - a < 1:
            continue
        name = f'{prefix}_{i:03d}.flac'
        write_clip(out / name, wav[a:b], rate)
        clips.append((f'{out.name}/{name}', label))
    return clips


def read_icbhi_cycles(txt: Path) -> list:
    """(start_sec, end_sec, label) of each cycle of an ICBHI annotation file.

    Raises:
        EvarError: a line that is not four numbers (start, end, crackle 0/1, wheeze 0/1).
    """
    cycles = []
    for n, line in enumerate(txt.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start, end, crackle, wheeze = float(parts[0]), float(parts[1]), int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            raise EvarError(f'{txt}, line {n}: expected "start end crackle wheeze", got {line!r}.') from None
        if crackle not in (0, 1) or wheeze not in (0, 1) or end <= start:
            raise EvarError(f'{txt}, line {n}: crackle and wheeze must be 0/1 and end > start, got {line!r}.')
        cycles.append((start, end, ICBHI_CLASSES[crackle + 2 * wheeze]))
    return cycles


def build_icbhi(root, out, split_file: Optional[str] = None, valid_fraction: float = 0.1, seed: int = 1):
    """Cuts ICBHI 2017's cycles into `<out>/icbhi/` and writes the task `icbhi` (official train/test, validation
    carved from the training patients).

    Args:
        root: the unzipped ICBHI_final_database folder.
        out: the application folder to write.
        split_file: the official train/test list (default: `<root>/ICBHI_challenge_train_test.txt`).
        valid_fraction, seed: the validation carve.

    Raises:
        EvarError: missing folder, split list, recordings or annotations (named), or a malformed line.
    """
    root, out = Path(root), Path(out)
    split_path = Path(split_file) if split_file else root / ICBHI_SPLIT
    if not split_path.is_file():
        raise missing_dataset(split_path, 'the official ICBHI 2017 train/test list', ICBHI_HOW)
    splits = {}
    for n, line in enumerate(split_path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ('train', 'test'):
            raise EvarError(f'{split_path}, line {n}: expected "<recording> train|test", got {line!r}.')
        splits[parts[0]] = parts[1]
    missing = [s for s in sorted(splits) if not (root / f'{s}.wav').is_file() or not (root / f'{s}.txt').is_file()]
    if missing:
        raise EvarError(f'{root}: {len(missing)} recording(s) of {split_path.name} lack their .wav or .txt, e.g. '
                        f'{missing[:3]}. {ICBHI_HOW}')
    clips = []
    for stem, split in sorted(splits.items()):
        for name, label in _cut(root / f'{stem}.wav', read_icbhi_cycles(root / f'{stem}.txt'), out / 'icbhi', stem):
            clips.append(Clip(name, label, stem.split('_')[0], stem, split))
    clips = carve_valid(clips, valid_fraction, seed)
    check_patient_disjoint(clips)
    return write_task(out, 'icbhi', clips, out, UNIT_SEC)


def read_sprs_events(path: Path) -> list:
    """(start_sec, end_sec, type) of each event of a SPRSound JSON annotation (times in ms in the file).

    Raises:
        EvarError: unreadable JSON, missing keys or an unknown event type.
    """
    try:
        events = json.loads(path.read_text())['event_annotation']
        out = [(float(e['start']) / 1000, float(e['end']) / 1000, SPRS_ALIASES.get(e['type'], e['type']))
               for e in events]
    except (ValueError, KeyError, TypeError) as e:
        raise EvarError(f'{path}: not a SPRSound annotation (event_annotation with start, end, type): {e}') from None
    unknown = sorted({t for _, _, t in out if t not in SPRS_CLASSES})
    if unknown:
        raise EvarError(f'{path}: event type(s) {unknown}; expected one of {list(SPRS_CLASSES)}.')
    return out


def build_sprs(root, out, valid_fraction: float = 0.1, seed: int = 1) -> list:
    """Cuts SPRSound's events into `<out>/sprs/` and writes the tasks `sprs_inter` and `sprs_intra`.

    Args:
        root: one challenge year's folder (its `*train*json*` and `*inter*`/`*intra*` JSON folders, `*wav*` folders).
        out: the application folder to write.
        valid_fraction, seed: the validation carve from the training patients.

    Raises:
        EvarError: missing folders, a JSON without its .wav (named), malformed annotations.
    """
    root, out = Path(root), Path(out)
    json_dirs = [d for d in sorted(root.rglob('*')) if d.is_dir() and 'json' in d.name.lower()]
    found = {kind: [d for d in json_dirs if kind in d.name.lower()] for kind in ('train', 'inter', 'intra')}
    absent = [kind for kind, dirs in found.items() if not dirs]
    if absent:
        raise missing_dataset(root, f'SPRSound JSON folders for {"/".join(absent)} (names containing '
                                    '"train", "inter" and "intra" and "json")', SPRS_HOW)
    wavs = {p.stem: p for p in root.rglob('*.wav')}
    clips = {}
    for kind, dirs in found.items():
        clips[kind] = []
        for path in sorted(p for d in dirs for p in d.glob('*.json')):
            if path.stem not in wavs:
                raise EvarError(f'{path}: no recording {path.stem}.wav under {root}. {SPRS_HOW}')
            for name, label in _cut(wavs[path.stem], read_sprs_events(path), out / 'sprs', path.stem):
                clips[kind].append(Clip(name, label, path.stem.split('_')[0], path.stem,
                                        'train' if kind == 'train' else 'test'))
    train = carve_valid(clips['train'], valid_fraction, seed)
    tasks = []
    for kind in ('inter', 'intra'):  # intra-patient test patients are training patients by design
        task_clips = train + clips[kind]
        check_patient_disjoint(task_clips, (('train', 'valid'),) + ((('train', 'test'), ('valid', 'test'))
                                                                    if kind == 'inter' else ()))
        tasks.append(write_task(out, f'sprs_{kind}', task_clips, out, UNIT_SEC))
    return tasks


DATASETS = {'icbhi': ICBHI_CLASSES, 'sprs': SPRS_CLASSES}


def spec(dataset: str, head: str = 'transformer', hidden=(128,), depth: int = 2, lr: float = 1e-4,
         epochs: int = 100, early_stop_epochs: int = 20, batch_size: int = 64, time_mask: int = 20,
         feature_mask: int = 8, frame_pool: int = 1, device: str = 'cpu'):
    """The `AppSpec` of ICBHI (dataset 'icbhi') or SPRSound ('sprs'): frame embeddings, `FrameHead` with
    inverse-frequency weighted CE and SpecAugment masks, selection on the validation ICBHI score.

    Raises:
        EvarError: an unknown dataset or head.
    """
    from ..heads import FrameHead, TrainSettings
    from ..runner import AppSpec

    if dataset not in DATASETS:
        raise EvarError(f'--dataset must be one of {list(DATASETS)}, got {dataset!r}.')
    if head not in FrameHead.KINDS:
        raise EvarError(f'--head must be one of {list(FrameHead.KINDS)}, got {head!r}.')
    classes = DATASETS[dataset]
    settings = dict(hidden=tuple(hidden), lr=lr, epochs=epochs, early_stop_epochs=early_stop_epochs,
                    batch_size=batch_size)

    def make_head(seed):
        return FrameHead(len(classes), TrainSettings(**settings, seed=seed, device=device), kind=head, depth=depth,
                         time_mask=time_mask, feature_mask=feature_mask)

    def scores(probs, split):
        return icbhi_scores(split.y, probs.argmax(1), len(classes), normal=0)

    return AppSpec(name=NAME, classes=classes, level='frame', make_head=make_head,
                   valid_score=lambda probs, split: scores(probs, split).score,
                   test_scores=lambda probs, split: asdict(scores(probs, split)),
                   head_name=f'{head}{depth}' if head == 'transformer' else 'mlp' + 'x'.join(map(str, hidden)),
                   options={'dataset': dataset, 'head': head, 'depth': depth, 'time_mask': time_mask,
                            'feature_mask': feature_mask, **settings},
                   frame_pool=frame_pool)


def run(config_file, data, dataset: str = 'icbhi', seeds=(42,), head: str = 'transformer', hidden=(128,),
        depth: int = 2, lr: float = 1e-4, epochs: int = 100, early_stop_epochs: int = 20, time_mask: int = 20,
        feature_mask: int = 8, frame_pool: int = 1, options: str = '', work_root: Optional[str] = None,
        results_dir: str = 'results', device: Optional[str] = None, progress: bool = False) -> list:
    """Evaluates the model of CONFIG_FILE on ICBHI 2017 (`--dataset icbhi`: task icbhi) or SPRSound (`--dataset
    sprs`: tasks sprs_inter and sprs_intra) built in DATA; appends to `<results_dir>/icbhi_sprs-scores.csv` (Se, Sp,
    ICBHI score and accuracy per task and seed, and their mean +- std per task).

    Args:
        config_file: an evar model YAML.
        data: the folder `build_icbhi` / `build_sprs` wrote.
        dataset: icbhi or sprs.
        seeds: head seeds, e.g. 42,43,44,45,46.
        head: transformer (a class token and `depth` encoder layers) or mlp (mean over frames, then the MLP).
        hidden: the MLP head's hidden sizes.
        depth, lr, epochs, early_stop_epochs: the head and its training.
        time_mask, feature_mask: SpecAugment widths on the frame embeddings (frames, dimensions); 0 disables.
        frame_pool: average this many frames per head input frame (a lower frame rate; 1 keeps the model's).
        options, work_root, results_dir, device, progress: as `python -m app.circor run`.
    """
    from ..runner import parse_hidden, run_folder

    hidden = parse_hidden(hidden)
    return run_folder(lambda dev: spec(dataset, head, hidden, depth, lr, epochs, early_stop_epochs, 64, time_mask,
                                       feature_mask, frame_pool, device=dev),
                      dataset, config_file, data, seeds, options, work_root, results_dir, device, progress)
