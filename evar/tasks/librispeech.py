"""LibriSpeech (Panayotov et al., ICASSP 2015): read English audiobook speech; X-ARES's male/female task labels each
utterance with its speaker's sex from SPEAKERS.TXT."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import audio_files, need, warn

HELP = """\
  librispeech_mf  SPEAKERS.TXT, {train-clean-100,dev-clean,test-clean}/<speaker>/<chapter>/<utterance>.flac ->
                  male / female (the speaker's SEX in SPEAKERS.TXT); the subsets are train / valid / test (X-ARES)
"""
LIBRISPEECH_MF_SUBSETS = (('train-clean-100', 'train'), ('dev-clean', 'valid'), ('test-clean', 'test'))
_SEX = {'M': 'male', 'F': 'female'}


def librispeech_sexes(path: Path) -> dict[str, str]:
    """Speaker id -> 'male' / 'female' from LibriSpeech's SPEAKERS.TXT (`ID | SEX | SUBSET | MINUTES | NAME` a
    line, `;` comments).

    Raises:
        EvarError: a line whose SEX field is not M or F (file and line named).
    """
    sexes = {}
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(';'):
            continue
        fields = [f.strip() for f in line.split('|')]
        if len(fields) < 2 or fields[1] not in _SEX:
            raise EvarError(f'{path} line {number}: expected "<id> | <M|F> | <subset> | <minutes> | <name>", '
                            f'got {line!r}.')
        sexes[fields[0]] = _SEX[fields[1]]
    return sexes


def librispeech_mf(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (<subset>/<speaker>/<chapter>/<utterance>.flac, male|female, split) for train-clean-100 / dev-clean /
    test-clean (the three subsets' speakers are disjoint).

    Raises:
        EvarError: a missing SPEAKERS.TXT or subset folder (named), or a speaker SPEAKERS.TXT lacks.
    """
    sexes = librispeech_sexes(need(root, 'SPEAKERS.TXT', 'LibriSpeech\'s speaker list (ID | SEX | SUBSET | ...)'))
    rows = []
    for subset, split in LIBRISPEECH_MF_SUBSETS:
        need(root, subset, f'LibriSpeech\'s {subset} folder (<speaker>/<chapter>/<utterance>.flac)')
        files = audio_files(root, subset)
        if not files:
            warn(f'{root / subset} holds no audio: the {split} split is empty.')
        for rel in files:
            speaker = rel.split('/')[1]
            if speaker not in sexes:
                raise EvarError(f'{root / rel}: speaker {speaker} is not in {root / "SPEAKERS.TXT"}.')
            rows.append((rel, sexes[speaker], split))
    return rows


TASKS = task_table(
    Task('librispeech_mf', 12.7, domain='speech', build=librispeech_mf),
)
