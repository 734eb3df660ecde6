"""VoxForge: read speech in six languages (EVAR's language identification task)."""

from __future__ import annotations

from pathlib import Path

from .base import Row, Task, task_table
from .layout import apply_splits, audio_files, load_split_file

HELP = """\
  voxforge        <folder>/wav/<clip> -> language. NEEDS --split_file: EVAR's evar/metadata/voxforge.csv
                  (file_name,label,split), as the archives hold neither the language nor a split
"""
VOXFORGE_NEED = ('VoxForge\'s language labels and EVAR\'s split are not in the downloaded archives. Pass EVAR\'s '
                 'evar/metadata/voxforge.csv (columns file_name,label,split) as --split_file.')


def voxforge(root: Path, split_file: Path) -> list[Row]:
    """Rows (clip, language, split), both from the split file."""
    splits = load_split_file(split_file, need_label=True)
    return apply_splits(((f, None) for f in audio_files(root)), splits)


TASKS = task_table(
    Task('voxforge', 5.8, domain='speech', build=voxforge, split_file='required', split_file_help=VOXFORGE_NEED),
)
