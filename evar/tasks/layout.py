"""What the metadata builders share: finding a publisher's files on disk, reading its lists, users' split files.

Paths in rows are relative to the dataset root, with posix slashes. A publisher's name matches the file on disk
whatever its audio extension (`x.wav` in a list matches `x.flac` on disk).
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

from ..audio import AUDIO_SUFFIXES, is_audio_file
from ..errors import EvarError
from ..split_names import SPLITS, SPLIT_ALIASES, canonical_split
from .base import Row


def warn(message: str) -> None:
    """Prints `warning: <message>` on stderr (the builders' one way to report what they left out)."""
    print(f'warning: {message}', file=sys.stderr)


def strip_audio_suffix(name: str) -> str:
    """`name` without its extension when that is an audio one (so `blues.00000.au` -> `blues.00000`)."""
    base, ext = os.path.splitext(name)
    return base if ext.lower() in AUDIO_SUFFIXES else name


def stem(rel: str) -> str:
    """The file name of the relative path `rel` without its audio extension."""
    return strip_audio_suffix(PurePosixPath(rel).name)


def clean(rel: str) -> str:
    """A publisher's relative path with posix slashes and no leading `./`."""
    rel = rel.strip().replace('\\', '/')
    while rel.startswith('./'):
        rel = rel[2:]
    return rel


def need(root: Path, rel: str, what: str) -> Path:
    """`root/rel`, or an EvarError naming it and what it should be."""
    path = root / rel
    if not path.exists():
        raise EvarError(f'Missing {path}: expected {what}. Is {root} the dataset folder as its publisher '
                        'distributes it?')
    return path


def first_existing(root: Path, rels: Iterable[str], what: str) -> Path:
    """The first of `root/rel` for `rels` that exists, or an EvarError naming the first and what it should be."""
    rels = list(rels)
    for rel in rels:
        if (root / rel).exists():
            return root / rel
    return need(root, rels[0], what)


def read_csv(path: Path, columns: Iterable[str], what: str) -> list[dict]:
    """The rows of a CSV with a header (values stripped), checked to have `columns`; EvarError naming the missing
    ones otherwise."""
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in columns if c not in header]
        if missing:
            raise EvarError(f'{path} lacks the column(s) {missing}: expected {what} with columns '
                            f'{list(columns)} (found {header}).')
        return [{k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()} for row in reader]


def to_int(value, where: Path) -> int:
    """`int(value)`, or an EvarError naming the file `where` it was read from."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EvarError(f'{where}: expected an integer, got {value!r}.') from None


def norm_split(value: str, where: Path) -> str:
    """'train', 'valid' or 'test' for a split name or alias read from `where`; EvarError otherwise."""
    split = canonical_split(value)
    if split is None:
        raise EvarError(f'{where}: split must be one of {"/".join(SPLITS)} (or an alias: '
                        f'{", ".join(a for a in SPLIT_ALIASES if a not in SPLITS)}), got {value!r}.')
    return split


def join_labels(text: str) -> str:
    """A publisher's comma-separated labels as one metadata label field (spaces around each removed)."""
    return ','.join(label.strip() for label in text.split(',') if label.strip())


def audio_files(root: Path, under: str = '') -> list[str]:
    """Relative posix paths of all audio files below `root/under`, sorted (hidden files and folders skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root / under, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        for name in filenames:
            if is_audio_file(name) and not name.startswith('.'):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


class Finder:
    """Finds the file on disk that a publisher's name means, whatever its audio extension (folders listed once)."""

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
                            names.setdefault(strip_audio_suffix(entry.name), []).append(entry.name)
            except OSError:
                pass
            self._dirs[rel_dir] = names
        return self._dirs[rel_dir]

    def find(self, rel: str) -> Optional[str]:
        """The relative path on disk of the publisher's `rel` (itself, or the preferred audio extension of its
        stem), or None."""
        rel = clean(rel)
        parent, _, name = rel.rpartition('/')
        names = self._listing(parent).get(strip_audio_suffix(name), [])
        if name not in names:
            audio = [n for n in names if os.path.splitext(n)[1].lower() in AUDIO_SUFFIXES]
            if not audio:
                return None
            name = min(audio, key=lambda n: (AUDIO_SUFFIXES.index(os.path.splitext(n)[1].lower()), n))
        return f'{parent}/{name}' if parent else name


def report_missing(rows: list, missing: list[str], listed_in, root: Path) -> list:
    """`rows`, after warning that the listed files `missing` are not on disk (an EvarError when nothing is)."""
    if missing and not rows:
        raise EvarError(f'None of the {len(missing)} files listed in {listed_in} is under {root} '
                        f'(first: {missing[0]}). Is {root} the dataset root?')
    if missing:
        warn(f'{len(missing)} of {len(missing) + len(rows)} files listed in {listed_in} are not under {root} '
             f'and were left out (first: {missing[0]}).')
    return rows


def resolve(root: Path, entries: Iterable[tuple], listed_in) -> list[Row]:
    """(published name, label, split) -> rows naming the files on disk; names not found are left out (warned)."""
    finder = Finder(root)
    rows, missing = [], []
    for rel, label, split in entries:
        found = finder.find(rel)
        if found is None:
            missing.append(rel)
        else:
            rows.append((found, label, split))
    return report_missing(rows, missing, listed_in, root)


def hash_unit(key: str) -> float:
    """A stable number in [0, 1) for `key` (same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha1(key.encode('utf-8')).digest()[:8], 'big') / 2.0 ** 64


def hash_split(key: str, valid: float = 0.1, test: float = 0.2) -> str:
    """'train', 'valid' or 'test' for `key`, in the fractions given, by its stable hash."""
    u = hash_unit(key)
    return 'train' if u < 1 - valid - test else 'valid' if u < 1 - test else 'test'


class SplitFile:
    """A user's split file: clip -> (name, label or None, split), matched by relative path or by bare name, either
    without its audio extension. `matched` collects the names that some clip matched."""

    def __init__(self, entries: list[tuple], source: Path):
        self.entries, self.source = entries, source
        self._by_path: dict[str, tuple] = {}
        self._by_name: dict[str, Optional[tuple]] = {}
        for entry in entries:
            key = strip_audio_suffix(clean(entry[0]))
            self._by_path[key] = entry
            name = key.rpartition('/')[2]
            # A bare name listed twice with different entries is ambiguous: only its full path matches.
            self._by_name[name] = None if name in self._by_name and self._by_name[name] != entry else entry
        self.matched: set = set()

    def get(self, rel: str) -> Optional[tuple]:
        """The entry for the clip at `rel`, or None."""
        key = strip_audio_suffix(clean(rel))
        entry = self._by_path.get(key) or self._by_name.get(key.rpartition('/')[2])
        if entry is not None:
            self.matched.add(entry[0])
        return entry


def load_split_file(path: Path, keys: tuple = ('file_name',), need_label: bool = False) -> SplitFile:
    """Reads a split CSV (clip column: the first of `keys` in its header; `split`; `label` when `need_label`) or
    a folder holding `{train,valid,test}_filtered.txt` or `{train,valid,test}.txt` (one clip a line)."""
    if path.is_dir():
        entries = []
        for split in SPLITS:
            names = [f'{split}_filtered.txt', f'{split}.txt']
            listing = next((path / n for n in names if (path / n).is_file()), None)
            if listing is None:
                raise EvarError(f'Split folder {path} holds neither {names[0]} nor {names[1]} '
                                '(one clip path a line).')
            entries += [(line.strip(), None, split) for line in listing.read_text().splitlines() if line.strip()]
        return SplitFile(entries, path)
    with open(path, newline='', encoding='utf-8-sig') as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    key = next((k for k in keys if k in header), keys[0])
    columns = (key, 'label', 'split') if need_label else (key, 'split')
    rows = read_csv(path, columns, f'a split file (clip column: {" or ".join(keys)})')
    return SplitFile([(r[key], r.get('label'), norm_split(r['split'], path)) for r in rows], path)


def apply_splits(labeled: Iterable[tuple], splits: SplitFile,
                 lookup: Optional[Callable[[str], Optional[tuple]]] = None) -> list[Row]:
    """(file on disk, label) -> rows with the split file's split (and its label where `label` is None); files
    it does not list are left out, with a warning, and so are its entries that match no file."""
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
        warn(f'{len(unlisted)} clips are not in the split file {splits.source} and were left out '
             f'(first: {unlisted[0]}).')
    keys = {e[0] for e in splits.entries}
    if len(splits.matched) < len(keys):
        warn(f'{len(keys) - len(splits.matched)} entries of the split file {splits.source} match no clip on disk.')
    return rows
