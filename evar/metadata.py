"""Write a built-in task's metadata CSV from its dataset as the publisher distributes it.

Usage:
    python -m evar.metadata <task> <dataset_root> [--work_root work] [--out PATH] [--split_file PATH] [--no_link]

The CSV has the columns `file_name,label,split` (split: train/valid/test) or `file_name,label,fold` for the
cross-validated tasks (us8k: 10 folds, esc50: 5). `file_name` is the clip's path relative to `dataset_root`
(posix slashes), naming the file that exists on disk whatever its audio extension: a publisher list naming
`x.wav` matches `x.flac`. Multi-label labels are comma-separated in one (quoted) field. Rows are sorted by
file name. Clips that a publisher list names but that are not on disk are left out with a warning.

The CSV goes to `<work_root>/metadata/<task>.csv` (or `--out`), written atomically. Unless `--no_link`, the
audio is made usable at once: when `<work_root>/<rate>/<data folder>` does not exist, it becomes a symlink to
the dataset root, `<rate>` being the folder name of the first clip's sample rate (16k, 22k, 32k, 44k, 48k, or
e.g. 8k). Models running at another rate read that folder and resample.

Builders: what each reads under `dataset_root` -> label; split. "NEEDS --split_file" marks the datasets whose
authors publish no split (or publish it only on the web): the user supplies it.

  us8k            metadata/UrbanSound8K.csv, audio/fold<k>/ -> class; fold 1..10
  esc50           meta/esc50.csv, audio/ -> category; fold 1..5
  fsd50k          FSD50K.ground_truth/{dev,eval}.csv, FSD50K.{dev,eval}_audio/ -> labels (comma-separated);
                  dev.csv's train/val, eval = test
  fsdnoisy18k     FSDnoisy18k.meta/{train,test}.csv, FSDnoisy18k.audio_{train,test}/ -> label; valid = a fixed
                  10% of train picked by a stable hash of the file name (EVAR draws a random 10%), test = test
  gtzan           <genre>/<clip> -> genre. NEEDS --split_file: a folder holding the fault-filtered lists
                  train_filtered.txt, valid_filtered.txt, test_filtered.txt, published in
                  https://github.com/jongpillee/music_dataset_split (GTZAN_split/); unlisted clips are left out
  nsynth          nsynth-{train,valid,test}/examples.json, nsynth-*/audio/ -> instrument_family_str; the folders
  nspitch         same -> pitch (MIDI number)
  nsvelocity      same -> velocity. Like EVAR, all 305,979 notes are kept: no pitch-range or other filtering.
  cremad          <actor>_<sentence>_<EMO>_<level>.<ext> anywhere below -> emotion code (ANG DIS FEA HAP NEU SAD).
                  NEEDS --split_file: EVAR's evar/metadata/cremad.csv (speaker-disjoint 70/10/20) or any
                  file_name,split CSV
  cremad_gender   same, plus VideoDemographics.csv (CREMA-D repository; in the root or its parent) -> Sex of the
                  actor. NEEDS --split_file as cremad
  spcv1, spcv2    <word>/<clip>, validation_list.txt, testing_list.txt -> word folder (EVAR's protocol: every word
                  is a class, 30 in v1 / 35 in v2; _background_noise_ left out); the lists give valid/test
  spcv2_12        Speech Commands v2, 12-class protocol: see `spcv2_12` below
  surge           <tone>/<note>.ogg -> note (file stem). NEEDS --split_file: EVAR's
                  evar/predefined/dataset_surge_tone_splits.csv (tone,split) or a file_name,split CSV
  vc1             wav/<id>/<video>/<n>.wav, iden_split.txt (in the root or meta/, or given as --split_file) ->
                  speaker id; 1/2/3 = train/valid/test
  vocalsound      datafiles/{tr,val,te}.json (or *_rev.json), class_labels_indices_vs.csv, audio anywhere below
                  -> display_name of the clip's mid; the json files give the split
  voxforge        <folder>/wav/<clip> -> language. NEEDS --split_file: EVAR's evar/metadata/voxforge.csv
                  (file_name,label,split), as the archives hold neither the language nor a split
  as20k           balanced_train_segments/, eval_segments/ and AudioSet's segment lists balanced_train_segments.csv,
                  eval_segments.csv in the root -> positive mids (comma-separated); train/test as in EVAR (no
                  valid). Only clips on disk are listed (files named <YTID>... or Y<YTID>...)
  as              as20k's, plus unbalanced_train_segments/ and unbalanced_train_segments.csv (-> train)
  fsdd            {digit}_{speaker}_{index}.<ext> (root: the fsdd folder or its recordings/) -> digit; official
                  split: index 0-4 test, the rest train
  fsdd_speaker    same -> speaker; same split
  ravdess         Actor_NN/03-01-EE-II-SS-RR-AA.<ext> (audio-only speech) -> emotion name; actor-independent:
                  actors paired (1,2),(3,4),...; with P pairs, test = the last max(1, round(P/6)) pairs, valid =
                  as many pairs before them, train = the rest
  ravdess_gender  same -> male (odd actor) / female; same split
  piano_pitch     <note><octave>[v<velocity>].<ext> (e.g. F#5v10.flac, the Salamander piano notes) -> note name;
                  WRITES AUDIO: cuts each recording into 0.5 s segments from the onset, keeps the leading segments
                  at or above -50 dBFS RMS (at most 12), splits them by time (earlier train, one valid, later
                  test) and writes them to <work_root>/<rate>/piano_pitch/ (also with --no_link): see `piano_pitch`

A --split_file is a CSV with columns file_name,split (an EVAR metadata CSV works: extra columns are ignored;
file names match with or without folders and extensions), or a folder holding {train,valid,test}_filtered.txt
or {train,valid,test}.txt with one file name a line.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
from collections import Counter
from functools import partial
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Callable, Iterable, Optional, Union

from .errors import EvarError
from .fileio import atomic_write_text
from .tasks import BUILTIN_TASKS, RATE_FOLDERS

AUDIO_EXTS = ('.wav', '.flac', '.ogg', '.opus', '.mp3', '.aiff', '.aif', '.au', '.m4a', '.aac', '.wma')
SPLITS = ('train', 'valid', 'test')
_SPLIT_ALIASES = {'train': 'train', 'valid': 'valid', 'val': 'valid', 'validation': 'valid', 'test': 'test'}

Row = tuple  # (file_name: str, label: str, split: str | fold: int)


# ----------------------------------------------------------------------------------------------------------
# Shared helpers: files, publisher CSVs, split files.

def _warn(message: str) -> None:
    print(f'warning: {message}', file=sys.stderr)


def _strip_audio_ext(name: str) -> str:
    """`name` without its extension when that is an audio one (so `blues.00000.au` -> `blues.00000`)."""
    base, ext = os.path.splitext(name)
    return base if ext.lower() in AUDIO_EXTS else name


def _stem(rel: str) -> str:
    return _strip_audio_ext(PurePosixPath(rel).name)


def _clean(rel: str) -> str:
    rel = rel.strip().replace('\\', '/')
    while rel.startswith('./'):
        rel = rel[2:]
    return rel


def _need(root: Path, rel: str, what: str) -> Path:
    """`root/rel`, or an EvarError naming it and what it should be."""
    path = root / rel
    if not path.exists():
        raise EvarError(f'Missing {path}: expected {what}. Is {root} the dataset folder as its publisher '
                        'distributes it?')
    return path


def _first_existing(root: Path, rels: Iterable[str], what: str) -> Path:
    rels = list(rels)
    for rel in rels:
        if (root / rel).exists():
            return root / rel
    return _need(root, rels[0], what)


def _read_csv(path: Path, columns: Iterable[str], what: str) -> list[dict]:
    """The rows of a CSV with a header, checked to have `columns`."""
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in columns if c not in header]
        if missing:
            raise EvarError(f'{path} lacks the column(s) {missing}: expected {what} with columns '
                            f'{list(columns)} (found {header}).')
        return [{k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()} for row in reader]


def _int(value, where: Path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EvarError(f'{where}: expected an integer, got {value!r}.') from None


def _norm_split(value: str, where: Path) -> str:
    split = _SPLIT_ALIASES.get(str(value).strip().lower())
    if split is None:
        raise EvarError(f'{where}: split must be one of train/valid/test (or val), got {value!r}.')
    return split


def _audio_files(root: Path, under: str = '') -> list[str]:
    """Relative posix paths of all audio files below `root/under`, sorted (hidden folders skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root / under, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        for name in filenames:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTS and not name.startswith('.'):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


class _Finder:
    """Finds the file on disk that a publisher's name means, whatever its audio extension."""

    def __init__(self, root: Path):
        self.root = root
        self._dirs: dict[str, dict[str, list[str]]] = {}

    def _listing(self, rel_dir: str) -> dict[str, list[str]]:
        if rel_dir not in self._dirs:
            names: dict[str, list[str]] = {}
            try:
                with os.scandir(self.root / rel_dir) as it:
                    for entry in it:
                        if entry.is_file():
                            names.setdefault(_strip_audio_ext(entry.name), []).append(entry.name)
            except OSError:
                pass
            self._dirs[rel_dir] = names
        return self._dirs[rel_dir]

    def find(self, rel: str) -> Optional[str]:
        rel = _clean(rel)
        parent, _, name = rel.rpartition('/')
        names = self._listing(parent).get(_strip_audio_ext(name), [])
        if name not in names:
            audio = [n for n in names if os.path.splitext(n)[1].lower() in AUDIO_EXTS]
            if not audio:
                return None
            name = min(audio, key=lambda n: (AUDIO_EXTS.index(os.path.splitext(n)[1].lower()), n))
        return f'{parent}/{name}' if parent else name


def _report_missing(rows: list, missing: list[str], listed_in, root: Path) -> list:
    if missing and not rows:
        raise EvarError(f'None of the {len(missing)} files listed in {listed_in} is under {root} '
                        f'(first: {missing[0]}). Is {root} the dataset root?')
    if missing:
        _warn(f'{len(missing)} of {len(missing) + len(rows)} files listed in {listed_in} are not under {root} '
              f'and were left out (first: {missing[0]}).')
    return rows


def _resolve(root: Path, entries: Iterable[tuple], listed_in) -> list[Row]:
    """(published name, label, split) -> rows naming the files on disk; names not found are left out."""
    finder = _Finder(root)
    rows, missing = [], []
    for rel, label, split in entries:
        found = finder.find(rel)
        if found is None:
            missing.append(rel)
        else:
            rows.append((found, label, split))
    return _report_missing(rows, missing, listed_in, root)


def _hash_unit(key: str) -> float:
    """A stable number in [0, 1) for `key` (same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha1(key.encode('utf-8')).digest()[:8], 'big') / 2.0 ** 64


def _hash_split(key: str, valid: float = 0.1, test: float = 0.2) -> str:
    u = _hash_unit(key)
    return 'train' if u < 1 - valid - test else 'valid' if u < 1 - test else 'test'


class _Splits:
    """A user's split file: clip -> split (and label), matched by relative path or by bare name, either without
    its audio extension."""

    def __init__(self, entries: list[tuple], source: Path):
        self.entries, self.source = entries, source
        self._by_path: dict[str, tuple] = {}
        self._by_name: dict[str, Optional[tuple]] = {}
        for entry in entries:
            key = _strip_audio_ext(_clean(entry[0]))
            self._by_path[key] = entry
            name = key.rpartition('/')[2]
            self._by_name[name] = None if name in self._by_name and self._by_name[name] != entry else entry
        self.matched: set = set()

    def get(self, rel: str) -> Optional[tuple]:
        key = _strip_audio_ext(_clean(rel))
        entry = self._by_path.get(key) or self._by_name.get(key.rpartition('/')[2])
        if entry is not None:
            self.matched.add(entry[0])
        return entry


def _load_split_file(path: Path, keys: tuple = ('file_name',), need_label: bool = False) -> _Splits:
    if path.is_dir():
        entries = []
        for split in SPLITS:
            names = [f'{split}_filtered.txt', f'{split}.txt']
            listing = next((path / n for n in names if (path / n).is_file()), None)
            if listing is None:
                raise EvarError(f'Split folder {path} holds neither {names[0]} nor {names[1]} '
                                '(one clip path a line).')
            entries += [(line.strip(), None, split) for line in listing.read_text().splitlines() if line.strip()]
        return _Splits(entries, path)
    with open(path, newline='', encoding='utf-8-sig') as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    key = next((k for k in keys if k in header), keys[0])
    columns = (key, 'label', 'split') if need_label else (key, 'split')
    rows = _read_csv(path, columns, f'a split file (clip column: {" or ".join(keys)})')
    return _Splits([(r[key], r.get('label'), _norm_split(r['split'], path)) for r in rows], path)


def _require_split_file(split_file: Optional[Path], need: str, **kwargs) -> _Splits:
    if split_file is None:
        raise EvarError(f'This task needs --split_file: {need}')
    return _load_split_file(split_file, **kwargs)


def _apply_splits(labeled: Iterable[tuple], splits: _Splits,
                  lookup: Optional[Callable[[str], Optional[tuple]]] = None) -> list[Row]:
    """(file on disk, label) -> rows with the split file's split (and its label where `label` is None); files
    it does not list are left out."""
    lookup = lookup or splits.get
    rows, unlisted = [], []
    for rel, label in labeled:
        entry = lookup(rel)
        if entry is None:
            unlisted.append(rel)
        else:
            rows.append((rel, entry[1] if label is None else label, entry[2]))
    if unlisted and not rows:
        raise EvarError(f'No clip on disk is listed in the split file {splits.source} (first clip: {unlisted[0]}; '
                        f'first listed: {splits.entries[0][0] if splits.entries else "nothing"}).')
    if unlisted:
        _warn(f'{len(unlisted)} clips are not in the split file {splits.source} and were left out '
              f'(first: {unlisted[0]}).')
    keys = {e[0] for e in splits.entries}
    if len(splits.matched) < len(keys):
        _warn(f'{len(keys) - len(splits.matched)} entries of the split file {splits.source} match no clip on disk.')
    return rows


# ----------------------------------------------------------------------------------------------------------
# Builders: (dataset root, split file or None) -> rows (file_name, label, split or fold).

def us8k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    path = _need(root, 'metadata/UrbanSound8K.csv', 'the UrbanSound8K metadata CSV')
    rows = _read_csv(path, ('slice_file_name', 'fold', 'class'), 'the UrbanSound8K metadata CSV')
    return _resolve(root, [(f'audio/fold{_int(r["fold"], path)}/{r["slice_file_name"]}', r['class'],
                            _int(r['fold'], path)) for r in rows], path)


def esc50(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    path = _need(root, 'meta/esc50.csv', 'the ESC-50 metadata CSV')
    rows = _read_csv(path, ('filename', 'fold', 'category'), 'the ESC-50 metadata CSV')
    return _resolve(root, [(f'audio/{r["filename"]}', r['category'], _int(r['fold'], path)) for r in rows], path)


def _labels(text: str) -> str:
    return ','.join(label.strip() for label in text.split(',') if label.strip())


def fsd50k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    entries = []
    for name, audio in (('dev', 'FSD50K.dev_audio'), ('eval', 'FSD50K.eval_audio')):
        path = _need(root, f'FSD50K.ground_truth/{name}.csv', f'FSD50K\'s {name} ground truth')
        columns = ('fname', 'labels', 'split') if name == 'dev' else ('fname', 'labels')
        for r in _read_csv(path, columns, f'FSD50K\'s {name} ground truth'):
            split = _norm_split(r['split'], path) if name == 'dev' else 'test'
            entries.append((f'{audio}/{r["fname"]}.wav', _labels(r['labels']), split))
    return _resolve(root, entries, 'FSD50K.ground_truth/{dev,eval}.csv')


def fsdnoisy18k(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    meta = {}
    for name in ('train', 'test'):
        path = _need(root, f'FSDnoisy18k.meta/{name}.csv', f'FSDnoisy18k\'s {name} metadata')
        meta[name] = _read_csv(path, ('fname', 'label'), f'FSDnoisy18k\'s {name} metadata')
    # EVAR moves a random 10% of train to valid; a hash order makes the same choice on every run.
    ranked = sorted((r['fname'] for r in meta['train']), key=lambda n: (hashlib.sha1(n.encode()).hexdigest(), n))
    valid = set(ranked[:int(len(ranked) * 0.1)])
    entries = [(f'FSDnoisy18k.audio_train/{r["fname"]}', r['label'], 'valid' if r['fname'] in valid else 'train')
               for r in meta['train']]
    entries += [(f'FSDnoisy18k.audio_test/{r["fname"]}', r['label'], 'test') for r in meta['test']]
    return _resolve(root, entries, 'FSDnoisy18k.meta/{train,test}.csv')


GTZAN_NEED = ('GTZAN\'s standard fault-filtered split is published only on the web: download train_filtered.txt, '
              'valid_filtered.txt and test_filtered.txt from https://github.com/jongpillee/music_dataset_split '
              '(folder GTZAN_split/) into one folder and pass that folder as --split_file.')


def gtzan(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    splits = _require_split_file(split_file, GTZAN_NEED)
    files = [f for f in _audio_files(root) if '/' in f]
    return _apply_splits(((f, f.split('/')[-2]) for f in files), splits)


def nsynth(root: Path, split_file: Optional[Path] = None, column: str = 'instrument_family_str') -> list[Row]:
    """NSynth with EVAR's label choice `column`; all notes kept (EVAR filters none, pitch included)."""
    entries = []
    for split in SPLITS:
        path = _need(root, f'nsynth-{split}/examples.json', f'NSynth\'s {split} note list (examples.json)')
        for note_id, note in json.loads(path.read_text()).items():
            if column not in note:
                raise EvarError(f'{path}: note {note_id} has no {column!r} field.')
            entries.append((f'nsynth-{split}/audio/{note_id}.wav', str(note[column]), split))
    return _resolve(root, entries, 'nsynth-{train,valid,test}/examples.json')


_CREMAD = re.compile(r'(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$')
CREMAD_NEED = ('CREMA-D publishes no split. Pass a CSV with columns file_name,split, e.g. EVAR\'s '
               'evar/metadata/cremad.csv (speaker-disjoint 70/10/20 split following NOSS), as --split_file.')


def _cremad_sexes(root: Path) -> dict[str, str]:
    for folder in (root, root.parent):
        if (folder / 'VideoDemographics.csv').is_file():
            path = folder / 'VideoDemographics.csv'
            return {r['ActorID']: r['Sex'] for r in _read_csv(path, ('ActorID', 'Sex'), 'CREMA-D\'s demographics')}
    _need(root, 'VideoDemographics.csv', 'CREMA-D\'s actor demographics (columns ActorID,Sex), published in '
          'https://github.com/CheyneyComputerScience/CREMA-D beside AudioWAV/')
    return {}


def cremad(root: Path, split_file: Optional[Path] = None, gender: bool = False) -> list[Row]:
    splits = _require_split_file(split_file, CREMAD_NEED)
    clips = [(f, m) for f in _audio_files(root) for m in [_CREMAD.match(_stem(f))] if m]
    if not gender:
        return _apply_splits(((f, m[3]) for f, m in clips), splits)
    sexes = _cremad_sexes(root)
    unknown = sorted({m[1] for _, m in clips} - set(sexes))
    if unknown:
        raise EvarError(f'VideoDemographics.csv has no Sex for actor(s) {unknown[:5]}.')
    return _apply_splits(((f, sexes[m[1]]) for f, m in clips), splits)


def _read_list(path: Path) -> set[str]:
    return {_strip_audio_ext(_clean(line)) for line in path.read_text().splitlines() if line.strip()}


def _spc_lists(root: Path) -> dict[str, set[str]]:
    what = 'Speech Commands\' list of {} clips (one <word>/<clip>.wav a line)'
    return {'valid': _read_list(_need(root, 'validation_list.txt', what.format('validation'))),
            'test': _read_list(_need(root, 'testing_list.txt', what.format('test')))}


def _spc_split(rel: str, lists: dict[str, set[str]]) -> str:
    key = _strip_audio_ext(rel)
    return 'valid' if key in lists['valid'] else 'test' if key in lists['test'] else 'train'


def speech_commands(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Speech Commands v1 or v2 with EVAR's protocol: every word folder is a class (30 in v1, 35 in v2);
    `_background_noise_` is left out; validation_list.txt / testing_list.txt give valid / test, the rest train."""
    lists = _spc_lists(root)
    files = [f for f in _audio_files(root) if f.count('/') == 1 and f[0].isalpha()]
    return [(f, f.split('/')[0], _spc_split(f, lists)) for f in files]


SPC12_WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go')


def _spc_speaker(rel: str) -> str:
    """The speaker hash of `<hash>_nohash_<n>` or `<word>_<hash>_nohash_<n>`."""
    return _stem(rel).split('_nohash_')[0].split('_')[-1]


def spcv2_12(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Speech Commands v2, 12-class protocol: yes no up down left right on off stop go _silence_ _unknown_.

    Two layouts:
    - The official full dataset (validation_list.txt / testing_list.txt present): every other word folder is
      mapped to `_unknown_`, `_background_noise_` is left out, and the lists give valid / test, the rest train.
      `_silence_` has no clips of its own there: the protocol cuts 1 s pieces from `_background_noise_`'s long
      recordings, which a metadata file cannot express. If you cut such clips into a `_silence_/` folder under
      the root, they are included, split 70/10/20 by a stable hash of their file name; otherwise the task has
      11 classes and a warning says so.
    - The official test-set layout (`<class>/<speakerhash>_nohash_<n>` with `_silence_/` and `_unknown_/`
      folders, `_unknown_` files named `<word>_<speakerhash>_nohash_<n>`; no lists): a speaker-grouped split
      70/10/20 train/valid/test by a stable hash (SHA-1) of the speaker hash, so no speaker is in two splits;
      `_silence_` clips (no speaker) are split by a hash of their file name.
    """
    official = (root / 'validation_list.txt').exists() or (root / 'testing_list.txt').exists()
    lists = _spc_lists(root) if official else None
    rows = []
    for f in _audio_files(root):
        if f.count('/') != 1:
            continue
        folder = f.split('/')[0]
        if folder in SPC12_WORDS or folder in ('_silence_', '_unknown_'):
            label = folder
        elif folder.startswith('_') or not folder[0].isalpha():
            continue
        else:
            label = '_unknown_'
        if label == '_silence_':
            split = _hash_split('silence/' + _stem(f))
        elif lists is not None:
            split = _spc_split(f, lists)
        else:
            split = _hash_split(_spc_speaker(f))
        rows.append((f, label, split))
    if official and rows and not any(label == '_silence_' for _, label, _ in rows):
        _warn('no _silence_/ folder under the root: the metadata has no _silence_ class (see the spcv2_12 '
              'docstring in evar/metadata.py for how to add one).')
    return rows


SURGE_NEED = ('the Surge dataset publishes no split. Pass EVAR\'s evar/predefined/dataset_surge_tone_splits.csv '
              '(columns tone,split) or a CSV with columns file_name,split as --split_file.')


def surge(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    splits = _require_split_file(split_file, SURGE_NEED, keys=('tone', 'file_name'))
    files = [f for f in _audio_files(root) if f.count('/') == 1]
    return _apply_splits(((f, _stem(f)) for f in files), splits,
                         lookup=lambda f: splits.get(f) or splits.get(f.split('/')[0]))


def vc1(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    if split_file is not None:
        path = split_file / 'iden_split.txt' if split_file.is_dir() else split_file
        if not path.is_file():
            raise EvarError(f'Missing {path}: expected VoxCeleb1\'s iden_split.txt.')
    else:
        path = _first_existing(root, ('iden_split.txt', 'meta/iden_split.txt'),
                               'VoxCeleb1\'s identification split iden_split.txt ("1|2|3 idNNNNN/<video>/<n>.wav" '
                               'a line; https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt); '
                               'or give its path with --split_file')
    prefix = 'wav/' if (root / 'wav').is_dir() else ''
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in ('1', '2', '3'):
            raise EvarError(f'{path} line {number}: expected "<1|2|3> <id>/<video>/<n>.wav", got {line!r}.')
        entries.append((prefix + parts[1], parts[1].split('/')[0], SPLITS[int(parts[0]) - 1]))
    return _resolve(root, entries, path)


def vocalsound(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    classes = _need(root, 'class_labels_indices_vs.csv', 'VocalSound\'s class list (columns mid,display_name)')
    names = {r['mid']: r['display_name'] for r in _read_csv(classes, ('mid', 'display_name'), 'VocalSound\'s class list')}
    by_stem: dict[str, str] = {}
    for f in _audio_files(root):
        by_stem.setdefault(_stem(f), f)
    rows, missing = [], []
    for split, stem in (('train', 'tr'), ('valid', 'val'), ('test', 'te')):
        path = _first_existing(root, (f'datafiles/{stem}.json', f'datafiles/{stem}_rev.json'),
                               f'VocalSound\'s {split} list ({{"data": [{{"wav", "labels"}}...]}})')
        for item in json.loads(path.read_text())['data']:
            if item['labels'] not in names:
                raise EvarError(f'{path}: label {item["labels"]!r} is not in {classes}.')
            clip = by_stem.get(_stem(item['wav']))
            if clip is None:
                missing.append(item['wav'])
            else:
                rows.append((clip, names[item['labels']], split))
    return _report_missing(rows, missing, 'datafiles/*.json', root)


VOXFORGE_NEED = ('VoxForge\'s language labels and EVAR\'s split are not in the downloaded archives. Pass EVAR\'s '
                 'evar/metadata/voxforge.csv (columns file_name,label,split) as --split_file.')


def voxforge(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    splits = _require_split_file(split_file, VOXFORGE_NEED, need_label=True)
    return _apply_splits(((f, None) for f in _audio_files(root)), splits)


AUDIOSET_CSV_URL = 'http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/'
AUDIOSET_SPLITS = {'balanced_train_segments': 'train', 'unbalanced_train_segments': 'train', 'eval_segments': 'test'}


def _audioset_labels(path: Path) -> dict[str, str]:
    """YTID -> comma-separated mids, from a segment list (`# ` comment lines, then `YTID, start, end, "mids"`)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')]
    labels = {}
    for row in csv.reader(lines, skipinitialspace=True):
        if len(row) < 4:
            raise EvarError(f'{path}: expected rows "YTID, start_seconds, end_seconds, positive_labels", got {row}.')
        labels[row[0]] = _labels(row[3])
    return labels


def audioset(root: Path, split_file: Optional[Path] = None, subsets: tuple = ()) -> list[Row]:
    """AudioSet clips present on disk, as in EVAR: `<subset>/.../<YTID>...` (or `Y<YTID>...`) files matched to
    the subset's segment list; balanced/unbalanced train -> train, eval -> test."""
    rows = []
    for subset in subsets:
        _need(root, subset, f'the folder of AudioSet\'s {subset} clips')
        path = _need(root, f'{subset}.csv', f'AudioSet\'s segment list ({AUDIOSET_CSV_URL}{subset}.csv)')
        labels = _audioset_labels(path)
        unlisted = []
        for f in _audio_files(root, subset):
            stem = _stem(f)
            ytid = stem[:11] if stem[:11] in labels else stem[1:12] if stem.startswith('Y') else None
            if ytid in labels:
                rows.append((f, labels[ytid], AUDIOSET_SPLITS[subset]))
            else:
                unlisted.append(f)
        if unlisted:
            _warn(f'{len(unlisted)} files under {subset}/ are not in {path.name} and were left out '
                  f'(first: {unlisted[0]}).')
    return rows


_FSDD = re.compile(r'(\d)_([^_]+)_(\d+)$')


def fsdd(root: Path, split_file: Optional[Path] = None, label: str = 'digit') -> list[Row]:
    """Free Spoken Digit Dataset `{digit}_{speaker}_{index}`: official split, index 0-4 test, the rest train."""
    rows = []
    for f in _audio_files(root):
        m = _FSDD.match(_stem(f))
        if m:
            rows.append((f, m[1] if label == 'digit' else m[2], 'test' if int(m[3]) < 5 else 'train'))
    return rows


_RAVDESS = re.compile(r'(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$')
RAVDESS_EMOTIONS = {'01': 'neutral', '02': 'calm', '03': 'happy', '04': 'sad', '05': 'angry', '06': 'fearful',
                    '07': 'disgust', '08': 'surprised'}


def _actor_pair_splits(actors: Iterable[int]) -> dict[int, str]:
    """Actor -> split: pairs (1,2),(3,4),...; with P pairs, test = last max(1, round(P/6)) pairs, valid = as
    many before them, train = the rest."""
    pairs = sorted({(a + 1) // 2 for a in actors})
    n = max(1, round(len(pairs) / 6))
    if len(pairs) < 2 * n + 1:
        raise EvarError(f'An actor-independent split needs at least 3 actor pairs; found actors {sorted(actors)}.')
    split_of_pair = {p: 'test' if i >= len(pairs) - n else 'valid' if i >= len(pairs) - 2 * n else 'train'
                     for i, p in enumerate(pairs)}
    return {a: split_of_pair[(a + 1) // 2] for a in actors}


def ravdess(root: Path, split_file: Optional[Path] = None, gender: bool = False) -> list[Row]:
    """RAVDESS speech (audio-only modality 03, vocal channel 01) `03-01-EE-II-SS-RR-AA`, actor-independent split."""
    clips = [(f, m) for f in _audio_files(root) for m in [_RAVDESS.match(_stem(f))]
             if m and m[1] == '03' and m[2] == '01' and m[3] in RAVDESS_EMOTIONS]
    if not clips:
        return []
    splits = _actor_pair_splits({int(m[7]) for _, m in clips})
    return [(f, ('male' if int(m[7]) % 2 else 'female') if gender else RAVDESS_EMOTIONS[m[3]], splits[int(m[7])])
            for f, m in clips]



_PIANO = re.compile(r'([A-G]#?)(\d)(?:v\d+)?$')
PIANO_SEGMENT_SEC = 0.5
PIANO_MIN_DBFS = -50.0
PIANO_MAX_SEGMENTS = 12


def piano_segments(wav, rate: int, segment_sec: float = PIANO_SEGMENT_SEC, min_dbfs: float = PIANO_MIN_DBFS,
                   max_segments: int = PIANO_MAX_SEGMENTS) -> list[tuple[int, str]]:
    """(start sample, split) of the segments `piano_pitch` keeps from one note's recording (see there)."""
    import numpy as np

    size = int(round(segment_sec * rate))
    starts = []
    for start in range(0, len(wav) - size + 1, size):
        power = float(np.mean(np.square(wav[start:start + size], dtype=np.float64)))
        if 10 * np.log10(power + 1e-20) < min_dbfs:
            break  # decayed away: this segment and everything after it are left out
        starts.append(start)
        if len(starts) == max_segments:
            break
    if len(starts) < 3:
        return []
    n_test = max(1, len(starts) // 3)
    n_train = len(starts) - n_test - 1
    return [(s, 'train' if i < n_train else 'valid' if i == n_train else 'test') for i, s in enumerate(starts)]


def piano_pitch(root: Path, split_file: Optional[Path] = None, out_dir: Optional[Path] = None) -> list[Row]:
    """Pitch of single piano notes, split by time within each note's decay; writes its segments to `out_dir`.

    Data: one recording per note, `<note><octave>[v<velocity>].<ext>` (the Salamander grand piano set in
    ../shared/data/piano: velocity 10, every minor third from A0 to C8, 16 kHz mono, long decays). With one
    take per note there is no other axis to split on, so the question asked is: does the representation carry
    the note's pitch in a form a linear probe learns on one part of the sound and still recognises later, when
    the level has fallen and the timbre has changed (the attack and the fast-decaying upper partials are gone)?

    Design (fixed before any model was scored):
    - Segments: each recording is cut from its first sample into consecutive, non-overlapping 0.5 s segments
      (`PIANO_SEGMENT_SEC`; the task's unit_sec). 0.5 s rather than 1 s because the upper notes at this soft
      velocity decay into the noise within 1-2 s; longer segments would leave them one segment or none.
    - Energy rule (what "decayed away" means): a segment is kept only if its RMS level, 10*log10(mean(x^2))
      with x in [-1, 1], is at least -50 dBFS (`PIANO_MIN_DBFS`); the first segment below it ends the note
      (it and everything after are left out, even if a later stretch of noise is louder). -50 dBFS is 10 dB
      above the loudest noise floor of the set: the recordings of the top notes that have died away sit at
      -69 to -60 dBFS, which is background noise (no energy at the note's partials) and says nothing of pitch.
      One absolute level for all notes, not one relative to each note's attack, so that a quiet note's noise
      tail is never kept because its attack was quiet too.
    - At most the first 12 kept segments (6 s, `PIANO_MAX_SEGMENTS`) per note, so that the long-ringing bass
      notes (over 30 kept segments each) do not outweigh the others in training and in the test accuracy.
    - Split by time within each note: with k kept segments, the last max(1, k // 3) are test, the one before
      them valid, the earlier ones train (k = 3: 1/1/1; k = 12: 7/1/4). Train always holds the attack; test
      is always later in the decay, never overlapping train.
    - Notes with fewer than 3 kept segments cannot be split so and are left out with a warning (on the
      Salamander v10 set: the top notes, which fall below -50 dBFS within a second); the labels are the notes
      kept. The class count therefore depends on the data and is printed.
    - Segments are written as 16-bit PCM WAV at the recording's rate, `<stem>_<start ms>ms.wav` in `out_dir`
      (rows name them relative to it); audio is not re-levelled, so level is part of what changes over time.
    """
    import soundfile as sf

    rows, dropped = [], []
    for rel in _audio_files(root):
        stem = PurePosixPath(_stem(rel)).name
        m = _PIANO.match(stem)
        if not m:
            continue
        try:
            wav, rate = sf.read(str(root / rel), dtype='float32', always_2d=True)
        except Exception as e:  # soundfile raises several types for unreadable files
            raise EvarError(f'Cannot read piano recording {root / rel} ({e}).') from e
        wav = wav.mean(axis=1)
        kept = piano_segments(wav, rate)
        if not kept:
            dropped.append(stem)
            continue
        size = int(round(PIANO_SEGMENT_SEC * rate))
        for start, split in kept:
            name = f'{stem}_{round(1000 * start / rate):05d}ms.wav'
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                sf.write(str(out_dir / name), wav[start:start + size], rate, subtype='PCM_16')
            rows.append((name, m[1] + m[2], split))
    if dropped:
        _warn(f'{len(dropped)} piano notes decay below {PIANO_MIN_DBFS:g} dBFS before 3 segments of '
              f'{PIANO_SEGMENT_SEC:g} s and were left out: {", ".join(sorted(dropped))}.')
    return rows

BUILDERS = MappingProxyType({
    'us8k': us8k,
    'esc50': esc50,
    'fsd50k': fsd50k,
    'fsdnoisy18k': fsdnoisy18k,
    'gtzan': gtzan,
    'nsynth': partial(nsynth, column='instrument_family_str'),
    'nspitch': partial(nsynth, column='pitch'),
    'nsvelocity': partial(nsynth, column='velocity'),
    'cremad': cremad,
    'cremad_gender': partial(cremad, gender=True),
    'spcv1': speech_commands,
    'spcv2': speech_commands,
    'surge': surge,
    'vc1': vc1,
    'vocalsound': vocalsound,
    'voxforge': voxforge,
    'as20k': partial(audioset, subsets=('balanced_train_segments', 'eval_segments')),
    'as': partial(audioset, subsets=('balanced_train_segments', 'unbalanced_train_segments', 'eval_segments')),
    'fsdd': fsdd,
    'fsdd_speaker': partial(fsdd, label='speaker'),
    'ravdess': ravdess,
    'ravdess_gender': partial(ravdess, gender=True),
    'spcv2_12': spcv2_12,
    'piano_pitch': piano_pitch,
})
# Builders that read --split_file; the others refuse it rather than ignore it.
TAKES_SPLIT_FILE = frozenset({'gtzan', 'cremad', 'cremad_gender', 'surge', 'vc1', 'voxforge'})
# Builders that cut the recordings into new clips: called with out_dir=<work_root>/<rate>/<folder>, where they
# write them (whatever --no_link says: the clips exist nowhere else); the CSV names them relative to it.
WRITES_AUDIO = frozenset({'piano_pitch'})


# ----------------------------------------------------------------------------------------------------------
# Writing and linking.

def csv_text(rows: list[Row], third: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['file_name', 'label', third])
    writer.writerows(rows)
    return out.getvalue()


def _rate_folder(root: Path, first: str) -> str:
    import soundfile as sf

    try:
        rate = int(sf.info(str(root / first)).samplerate)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise EvarError(f'Cannot read the sample rate of {root / first} ({e}). Pass --no_link and put the audio '
                        'under <work_root>/<rate>/<folder> yourself.') from e
    return RATE_FOLDERS.get(rate) or f'{rate // 1000}k'


def link_audio(root: Path, dest: Path) -> str:
    """Makes `dest` a symlink to `root` unless something is already there; says what happened."""
    target = root.resolve()
    if os.path.lexists(dest):
        if dest.is_symlink() and Path(os.path.realpath(dest)) != target:
            return f'Kept existing {dest} -> {os.readlink(dest)} (not {target}: file names may not match)'
        return f'Kept existing {dest}'
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, dest, target_is_directory=True)
    return f'Linked {dest} -> {target}'


def make_metadata(task: str, dataset_root: Union[str, Path], work_root: Union[str, Path] = 'work',
                  out: Optional[Union[str, Path]] = None, split_file: Optional[Union[str, Path]] = None,
                  link: bool = True) -> Path:
    """Writes `task`'s metadata CSV from `dataset_root`, links the audio under the work root; returns the CSV path."""
    if task not in BUILDERS:
        raise EvarError(f'No metadata builder for task {task!r}. Known builders: {", ".join(sorted(BUILDERS))}.')
    root = Path(dataset_root).expanduser()
    if not root.is_dir():
        raise EvarError(f'Dataset root {root} is not a folder.')
    if split_file is not None:
        split_file = Path(split_file).expanduser()
        if task not in TAKES_SPLIT_FILE:
            raise EvarError(f'Task {task} takes its split from the dataset\'s own files; --split_file is only for '
                            f'{", ".join(sorted(TAKES_SPLIT_FILE))}.')
        if not split_file.exists():
            raise EvarError(f'Split file {split_file} does not exist.')
    spec = BUILTIN_TASKS[task]
    if task in WRITES_AUDIO:
        first = next(iter(_audio_files(root)), None)
        if first is None:
            raise EvarError(f'No {task} audio found under {root}.')
        out_dir = Path(work_root) / _rate_folder(root, first) / spec.folder
        if out_dir.is_symlink():
            raise EvarError(f'{out_dir} is a symlink; {task} writes its segments there. Remove it first.')
        rows = sorted(BUILDERS[task](root, split_file, out_dir=out_dir), key=lambda r: r[0])
        link = False
        print(f'Wrote {len(rows)} segments to {out_dir}')
    else:
        rows = sorted(BUILDERS[task](root, split_file), key=lambda r: r[0])
    if not rows:
        raise EvarError(f'No {task} audio found under {root}; see `python -m evar.metadata --help` for the '
                        'layout each task expects.')
    duplicated = [name for name, n in Counter(r[0] for r in rows).items() if n > 1]
    if duplicated:
        raise EvarError(f'{len(duplicated)} files appear twice in the {task} lists (first: {duplicated[0]}).')
    third = 'fold' if spec.folds > 1 else 'split'
    dest = Path(work_root) / _rate_folder(root, rows[0][0]) / spec.folder if link else None
    path = Path(out) if out is not None else spec.metadata_path(Path(work_root))
    atomic_write_text(path, csv_text(rows, third))
    counts = Counter(r[2] for r in rows)
    order = sorted(counts, key=lambda k: (SPLITS.index(k) if k in SPLITS else len(SPLITS), k))
    parts = ', '.join(f'{third} {k}: {counts[k]}' for k in order)
    print(f'Wrote {path}: {len(rows)} clips, {len({r[1] for r in rows})} labels ({parts})')
    if dest is not None:
        print(link_audio(root, dest))
    return path


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m evar.metadata', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Write a task\'s metadata CSV (file_name,label,split|fold) from its dataset as published.',
        epilog=__doc__[__doc__.index('Builders:'):])
    parser.add_argument('task', help=f'one of: {", ".join(sorted(BUILDERS))}')
    parser.add_argument('dataset_root', help='the dataset folder as its publisher distributes it')
    parser.add_argument('--work_root', default='work', help='work folder (default: work)')
    parser.add_argument('--out', default=None, help='CSV path (default: <work_root>/metadata/<task>.csv)')
    parser.add_argument('--split_file', default=None, help='split CSV or folder, for tasks with no published split')
    parser.add_argument('--no_link', action='store_true', help='do not link the audio under <work_root>/<rate>/')
    args = parser.parse_args(argv)
    try:
        make_metadata(args.task, args.dataset_root, work_root=args.work_root, out=args.out,
                      split_file=args.split_file, link=not args.no_link)
    except EvarError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
