"""Speech Commands v1 and v2 (Warden 2018): one-second spoken words; EVAR's all-words tasks and the 12-class one."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import Row, Task, task_table
from .layout import audio_files, clean, hash_split, need, stem, strip_audio_suffix, warn

HELP = """\
  spcv1, spcv2    <word>/<clip>, validation_list.txt, testing_list.txt -> word folder (EVAR's protocol: every word
                  is a class, 30 in v1 / 35 in v2; _background_noise_ left out); the lists give valid/test
  spcv2_12        Speech Commands v2, 12-class protocol: see `spcv2_12` in evar/tasks/speech_commands.py
"""
SPC12_WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go')


def _read_list(path: Path) -> set[str]:
    return {strip_audio_suffix(clean(line)) for line in path.read_text().splitlines() if line.strip()}


def _spc_lists(root: Path) -> dict[str, set[str]]:
    what = 'Speech Commands\' list of {} clips (one <word>/<clip>.wav a line)'
    return {'valid': _read_list(need(root, 'validation_list.txt', what.format('validation'))),
            'test': _read_list(need(root, 'testing_list.txt', what.format('test')))}


def _spc_split(rel: str, lists: dict[str, set[str]]) -> str:
    key = strip_audio_suffix(rel)
    return 'valid' if key in lists['valid'] else 'test' if key in lists['test'] else 'train'


def speech_commands(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Speech Commands v1 or v2 with EVAR's protocol: every word folder is a class (30 in v1, 35 in v2);
    `_background_noise_` is left out; validation_list.txt / testing_list.txt give valid / test, the rest train."""
    lists = _spc_lists(root)
    files = [f for f in audio_files(root) if f.count('/') == 1 and f[0].isalpha()]
    return [(f, f.split('/')[0], _spc_split(f, lists)) for f in files]


def _spc_speaker(rel: str) -> str:
    """The speaker hash of `<hash>_nohash_<n>` or `<word>_<hash>_nohash_<n>`."""
    return stem(rel).split('_nohash_')[0].split('_')[-1]


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
    for f in audio_files(root):
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
            split = hash_split('silence/' + stem(f))
        elif lists is not None:
            split = _spc_split(f, lists)
        else:
            split = hash_split(_spc_speaker(f))
        rows.append((f, label, split))
    if official and rows and not any(label == '_silence_' for _, label, _ in rows):
        warn('no _silence_/ folder under the root: the metadata has no _silence_ class (see the spcv2_12 '
             'docstring in evar/tasks/speech_commands.py for how to add one).')
    return rows


TASKS = task_table(
    Task('spcv1', 1.0, domain='speech', build=speech_commands),
    Task('spcv2', 1.0, domain='speech', build=speech_commands),
    Task('spcv2_12', 1.0, domain='speech', build=spcv2_12),
)
