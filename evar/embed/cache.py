"""Content-addressed embedding cache.

The key is a hash of what changes the embeddings: the model and its parameters, the content of its weight files,
the metadata CSV's content, the task's data folder and source rate, unit length, crop policy, normalisation scope
and storage dtype. No absolute path enters it, so new weights at the same path never reuse old embeddings, and the
same run on another machine finds the same key. Files are written atomically and read memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..fileio import atomic_path, atomic_write_text
from ..models.base import file_sha256

CACHE_FORMAT = 1


def weight_hash(path: Path, memo_dir: Optional[Path] = None) -> str:
    """sha256 of a weight file's content, memoised per (path, size, mtime) so large files are read once."""
    path = Path(path).resolve()
    st = path.stat()
    memo = None
    if memo_dir is not None:
        memo = Path(memo_dir) / (hashlib.sha1(str(path).encode()).hexdigest() + '.json')
        try:
            known = json.loads(memo.read_text())
            if known['size'] == st.st_size and known['mtime_ns'] == st.st_mtime_ns:
                return known['sha256']
        except (OSError, ValueError, KeyError):
            pass
    digest = file_sha256(path)
    if memo is not None:
        atomic_write_text(memo, json.dumps({'size': st.st_size, 'mtime_ns': st.st_mtime_ns, 'sha256': digest}))
    return digest


def cache_key(fields: dict) -> str:
    """40 hex digits of sha256 over the JSON of `fields` (sorted keys) and the cache format."""
    text = json.dumps({'format': CACHE_FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class EmbeddingCache:
    """Embedding files under `root`, named by their key: `embs-<key>.npy` (clip embeddings [N, D]) or
    `frames-<key>.npy` + `frames-<key>.offsets.npy` (a `FrameEmbeddings`), each with a `.json` of the key's inputs.

    Every file is written atomically (a temporary file renamed into place), so a reader never sees half a file.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str, level: str = 'clip') -> Path:
        """The main file of `key`; `level` is 'clip' or 'frame'."""
        return self.root / (f'embs-{key}.npy' if level == 'clip' else f'frames-{key}.npy')

    @staticmethod
    def _read(path: Path) -> Optional[np.ndarray]:
        if not path.is_file():
            return None
        try:
            return np.load(path, mmap_mode='r')
        except (OSError, ValueError):  # unreadable: recompute rather than trust it
            return None

    def load(self, key: str, level: str = 'clip'):
        """Clip embeddings [N, D] (memory-mapped), a `FrameEmbeddings`, or None when absent or unreadable."""
        values = self._read(self.path(key, level))
        if level == 'clip' or values is None:
            return values
        offsets = self._read(self.path(key, level).with_suffix('.offsets.npy'))
        if offsets is None or offsets[-1] != len(values):
            return None
        from .extract import FrameEmbeddings

        return FrameEmbeddings(values=values, offsets=np.asarray(offsets))

    @staticmethod
    def _write(path: Path, array: np.ndarray) -> None:
        with atomic_path(path, suffix='.npy') as tmp:
            with open(tmp, 'wb') as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())

    def save(self, key: str, embeddings, fields: dict) -> Path:
        """Writes clip embeddings (an array [N, D]) or a `FrameEmbeddings`, and the key's inputs as JSON; returns
        the main file's path."""
        level = 'clip' if isinstance(embeddings, np.ndarray) else 'frame'
        path = self.path(key, level)
        if level == 'frame':  # offsets first: values without offsets are never read as complete
            self._write(path.with_suffix('.offsets.npy'), embeddings.offsets)
            self._write(path, embeddings.values)
        else:
            self._write(path, embeddings)
        # The key's inputs, for people: which model, weights, metadata this file belongs to.
        atomic_write_text(path.with_suffix('.json'), json.dumps(fields, indent=1, sort_keys=True, default=str))
        return path
