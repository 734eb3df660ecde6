"""Results: one row record for every evaluation mode, and one locked append / read pair for `results/scores.csv`.

EVAR's columns `representation,task,score,run_id,report` come first, so EVAR's own tables and scripts read evar's
files; evar's columns follow. Appends are locked so parallel runs never interleave, and every write is one
atomic write or one appended block.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from ..fileio import atomic_write_text, locked

EVAR_COLUMNS = ['representation', 'task', 'score', 'run_id', 'report']
MODES = ('linear', 'knn', 'zeroshot', 'retrieval', 'finetune', 'sed')

@dataclass(frozen=True)
class ResultRow:
    """One row of results/scores.csv: a score of one representation on one task by one mode.

    Attributes:
        representation: the model's name (the config's `name`, else its file stem).
        task: the task's name.
        score: the test score, a fraction (0.9 = 90 %), or the mean over `runs` seeds.
        run_id: hash of the model and run settings (EVAR's column).
        report: a free-text line saying what ran (EVAR's column).
        std: sample std (ddof=1) over seeds for a mean row, else None.
        runs: 1 for a single run; the number of seeds for a mean row.
        seed: the seed, or the seeds of a mean row joined by ';'.
        metric: the metric's registry name (accuracy, mAP, ...).
        mode: how the score was obtained: one of MODES.
        head: the head's name within the mode (linear, mlp512, logreg, knn, ...).
        config_hash: 16 hex digits of the model's parameters.
        weight_hash: 16 hex digits over the weight files' content ('' without weights).
        elapsed_sec: wall time of the run in seconds.
        timestamp: local time, ISO 8601 to the second.
        settings: JSON of every setting that changes the score (model, weights, run settings, task, head
            hyper-parameters); `run_id` hashes it.
    """
    representation: str
    task: str
    score: float
    run_id: str
    report: str
    std: Optional[float] = None
    runs: int = 1
    seed: str = ''
    metric: str = ''
    mode: str = 'linear'
    head: str = ''
    config_hash: str = ''
    weight_hash: str = ''
    elapsed_sec: float = 0.0
    timestamp: str = ''
    settings: str = ''

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f'ResultRow.mode must be one of {MODES}, got {self.mode!r}')

    def to_csv(self) -> dict:
        """The row as CSV strings (scores to 5 decimals, as EVAR writes them)."""
        values = dataclasses.asdict(self)
        values['score'] = f'{self.score:.5f}'
        values['std'] = '' if self.std is None else f'{self.std:.5f}'
        values['elapsed_sec'] = f'{self.elapsed_sec:.1f}'
        return {k: str(v) for k, v in values.items()}

    @classmethod
    def from_csv(cls, row: dict, where: str = 'results file') -> 'ResultRow':
        """A row read from a CSV dict; columns other than the record's are ignored, missing ones take their
        defaults (EVAR's own files have only its five columns; rows written before the mode column are linear).

        Raises:
            EvarError: a missing representation/task/score, or a value of the wrong type, naming `where`.
        """
        try:
            def number(key, cast, default):
                text = (row.get(key) or '').strip()
                return cast(text) if text else default

            return cls(representation=row['representation'], task=row['task'], score=float(row['score']),
                       run_id=row.get('run_id') or '', report=row.get('report') or '',
                       std=number('std', float, None), runs=number('runs', int, 1), seed=row.get('seed') or '',
                       metric=row.get('metric') or '', mode=row.get('mode') or 'linear', head=row.get('head') or '',
                       config_hash=row.get('config_hash') or '', weight_hash=row.get('weight_hash') or '',
                       elapsed_sec=number('elapsed_sec', float, 0.0), timestamp=row.get('timestamp') or '',
                       settings=row.get('settings') or '')
        except (KeyError, TypeError, ValueError) as e:
            raise EvarError(f'{where}: row {row!r} is not a valid result row ({type(e).__name__}: {e}).') from None

# Settings that belong to the task rather than to the way a model was evaluated (see `ResultRow.variant`).
TASK_SETTINGS = ('task', 'metadata', 'unit_sec', 'embedding_dim')


def settings_variant(settings: str) -> str:
    """Eight hex digits over a row's settings JSON without its task-specific entries: rows of one model evaluated
    the same way on different tasks share it; '' for rows without settings (EVAR's own, or older files).

    Raises:
        EvarError: settings that are not a JSON object.
    """
    import hashlib
    import json

    if not settings:
        return ''
    try:
        values = json.loads(settings)
    except ValueError as e:
        raise EvarError(f'settings {settings[:80]!r} are not JSON ({e}).') from None
    if not isinstance(values, dict):
        raise EvarError(f'settings {settings[:80]!r} are not a JSON object.')
    kept = {k: v for k, v in values.items() if k not in TASK_SETTINGS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]


COLUMNS = EVAR_COLUMNS + [f.name for f in dataclasses.fields(ResultRow) if f.name not in EVAR_COLUMNS]

def _rows_text(header: list, rows: list) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction='ignore', lineterminator='\n')
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()

def append_rows(path: Path, rows: list, columns: Optional[list] = None) -> None:
    """Appends `ResultRow`s (or dicts of CSV strings) to the CSV at `path` under an exclusive lock, in one write.

    `columns` (default `COLUMNS`) are the file's columns when it is new; a file with fewer (EVAR's own, or one
    written before a column existed) is rewritten atomically with the missing columns added at the end, keeping its
    rows.
    """
    path = Path(path)
    columns = COLUMNS if columns is None else list(columns)
    rows = [r.to_csv() if isinstance(r, ResultRow) else r for r in rows]
    with locked(path):
        if not path.exists() or path.stat().st_size == 0:
            atomic_write_text(path, ','.join(columns) + '\n' + _rows_text(columns, rows))
            return
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            missing = [c for c in columns if c not in header]
            old_rows = list(reader) if missing else None
        if missing:
            header = header + missing
            atomic_write_text(path, ','.join(header) + '\n' + _rows_text(header, old_rows + rows))
            return
        with open(path, 'a', newline='') as f:
            f.write(_rows_text(header, rows))
            f.flush()
            os.fsync(f.fileno())

def read_scores(path: Path) -> list:
    """The raw rows of a scores CSV as dicts of strings (every column, including ones evar does not know)."""
    return [row for _, row in read_table(path, required=())[1]]


def read_table(path: Path, required=('representation', 'task', 'score')) -> tuple:
    """The header and rows of a scores CSV, tolerant of EVAR's own files and of blank lines.

    Returns:
        (header: list of column names, rows: list of (line number, {column: stripped text})).

    Raises:
        EvarError: a missing, empty or unreadable file, or a header without the `required` columns.
    """
    expected = f'expected a CSV with a header starting {",".join(EVAR_COLUMNS)}'
    path = Path(path)
    if not path.is_file():
        raise EvarError(f'Scores file {path} not found ({expected}, as appended by lineareval.py; '
                        'pass --results PATH to read another file).')
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise EvarError(f'Scores file {path} is empty; {expected}.')
            header = [h.strip() for h in header]
            missing = [c for c in required if c not in header]
            if missing:
                raise EvarError(f'Scores file {path}: header lacks column(s) {", ".join(missing)}; {expected}. '
                                f'Found: {",".join(header)[:200]}.')
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue  # blank line
                row = {name: (values[i].strip() if i < len(values) else '') for i, name in enumerate(header)}
                rows.append((reader.line_num, row))
    except (UnicodeDecodeError, csv.Error) as e:
        raise EvarError(f'Scores file {path} is not a readable CSV ({e}); {expected}.') from e
    return header, rows


def read_rows(path: Path) -> list:
    """The `ResultRow`s of a scores CSV.

    Raises:
        EvarError: see `read_table`, or a row with a bad value (naming its line).
    """
    _, rows = read_table(path)
    return [ResultRow.from_csv(row, where=f'Scores file {path}, line {line}') for line, row in rows]
