"""AudioCaps (Kim et al., NAACL 2019): 10 s AudioSet clips with human captions (one per clip in train, five in
val/test), and the Japanese captions of ML-AudioCaps; for audio-text retrieval."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, first_existing, norm_split, read_csv, report_missing, stem

HELP = """\
  audiocaps       {train,val,test}.csv (or en/ or dataset/ of them: youtube_id, caption), audio anywhere below
                  named by YouTube id (Y<id>.wav, <id>.wav, <id>_<start>.wav) -> one row per caption
  ja_audiocaps    ML-AudioCaps' ja/{train,val,test}.csv (youtube_id, caption), audio as audiocaps
"""
AUDIOCAPS_SPLITS = ('train', 'val', 'test')
YOUTUBE_ID_LEN = 11


def youtube_id(file_name: str) -> str:
    """The YouTube id a downloaded AudioCaps/AudioSet file is named by: `Y<id>...` (AudioSet's and WavCaps' naming)
    or `<id>...`, the 11 characters after the optional leading Y."""
    name = stem(file_name)
    return name[1:1 + YOUTUBE_ID_LEN] if name.startswith('Y') and len(name) > YOUTUBE_ID_LEN else name[:YOUTUBE_ID_LEN]


def audiocaps(root: Path, split_file: Optional[Path] = None, folders: tuple = ('', 'en', 'dataset')) -> list[Row]:
    """Rows (audio file, caption, split), one per caption of the {train,val,test}.csv found in the first of
    `folders` that has train.csv; captions whose clip is not under `root` are left out (warned: AudioCaps is
    downloaded from YouTube and some clips are always missing)."""
    by_id = {}
    for rel in audio_files(root):
        by_id.setdefault(youtube_id(rel), rel)
    rows = []
    for split in AUDIOCAPS_SPLITS:
        path = first_existing(root, [f'{f}/{split}.csv'.lstrip('/') for f in folders],
                              f'the AudioCaps {split} CSV (columns youtube_id, caption)')
        found, missing = [], []
        for r in read_csv(path, ('youtube_id', 'caption'), 'an AudioCaps caption CSV'):
            rel = by_id.get(r['youtube_id'])
            if rel is None:
                missing.append(r['youtube_id'])
            elif r['caption']:
                found.append((rel, r['caption'], norm_split(split, path)))
        rows += report_missing(found, missing, path, root)
    if not rows:
        raise EvarError(f'No AudioCaps clip listed in the CSVs is under {root}.')
    return rows


TASKS = task_table(
    Task('audiocaps', 10.0, domain='general', build=audiocaps, captions=True),
    Task('ja_audiocaps', 10.0, data_folder='audiocaps', domain='general', build=partial(audiocaps, folders=('ja',)),
         captions=True),
)
