"""results/scores.csv: EVAR's columns first, then ours; appends are locked so parallel runs never interleave."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .fileio import atomic_write_text, locked

EVAR_COLUMNS = ['representation', 'task', 'score', 'run_id', 'report']
COLUMNS = EVAR_COLUMNS + ['std', 'runs', 'seed', 'metric', 'head', 'config_hash', 'weight_hash', 'elapsed_sec',
                          'timestamp']


def _rows_text(header: list, rows: list) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction='ignore', lineterminator='\n')
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()


def append_scores(path: Path, rows: list) -> None:
    """Appends rows (dicts) under an exclusive lock, in one write. A file with fewer columns (e.g. EVAR's own) is
    rewritten atomically with the missing columns added, keeping its rows."""
    path = Path(path)
    with locked(path):
        if not path.exists() or path.stat().st_size == 0:
            atomic_write_text(path, ','.join(COLUMNS) + '\n' + _rows_text(COLUMNS, rows))
            return
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            missing = [c for c in COLUMNS if c not in header]
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
    with open(path, newline='') as f:
        return list(csv.DictReader(f))
