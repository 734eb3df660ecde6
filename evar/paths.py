"""Where evar keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_work_root() -> Path:
    """The work root (metadata CSVs, audio folders, embedding cache): `$EVAR_WORK` when set, else `work` in the
    current folder."""
    return Path(os.environ.get('EVAR_WORK') or 'work')
