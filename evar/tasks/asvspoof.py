"""ASVspoof 2015 (Wu et al., Interspeech 2015): genuine and spoofed speech (speech synthesis and voice conversion,
attacks S1-S10) of 106 speakers; the spoofing countermeasure task, genuine vs spoofed, as X-ARES evaluates it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import EvarError
from .base import Row, Task, task_table
from .layout import first_existing, resolve

HELP = """\
  asvspoof2015    wav/<speaker>/<utterance>.wav, CM_protocol/cm_{train.trn,develop.ndx,evaluation.ndx}[.txt] ->
                  human / spoof (the protocol's key column); training / development / evaluation protocol =
                  train / valid / test
"""
# The countermeasure protocols of the DataShare release (https://datashare.ed.ac.uk/handle/10283/853), per split.
ASVSPOOF2015_PROTOCOLS = (('train', 'cm_train.trn'), ('valid', 'cm_develop.ndx'), ('test', 'cm_evaluation.ndx'))
ASVSPOOF2015_KEYS = ('human', 'spoof')


def asvspoof2015(root: Path, split_file: Optional[Path] = None) -> list[Row]:
    """Rows (wav/<speaker>/<utterance>.wav, human|spoof, split) from the three countermeasure protocols.

    A protocol line is `<speaker> <utterance> <human|S1..S10> <human|spoof>`; the fourth field (the key) is the
    label, so the task is the challenge's binary genuine-vs-spoofed decision.

    Raises:
        EvarError: a missing protocol (named, with its expected format), or a line without four fields and a
            key `human`/`spoof` (file and line named: the evaluation list without keys is the pre-challenge one).
    """
    entries = []
    for split, name in ASVSPOOF2015_PROTOCOLS:
        path = first_existing(root, (f'CM_protocol/{name}', f'CM_protocol/{name}.txt'),
                              f'ASVspoof 2015\'s {split} countermeasure protocol (one "<speaker> <utterance> '
                              '<human|S1..S10> <human|spoof>" a line)')
        for number, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4 or parts[3] not in ASVSPOOF2015_KEYS:
                raise EvarError(f'{path} line {number}: expected "<speaker> <utterance> <human|S1..S10> '
                                f'<human|spoof>", got {line!r} (the evaluation protocol must carry its keys).')
            entries.append((f'wav/{parts[0]}/{parts[1]}.wav', parts[3], split))
    return resolve(root, entries, 'CM_protocol/cm_*')


TASKS = task_table(
    Task('asvspoof2015', 4.0, domain='speech', build=asvspoof2015),
)
