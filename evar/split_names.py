"""The one table of split names: evar's three splits and every alias accepted for them.

Metadata CSVs (`evar.data`), publishers' lists and users' split files (`evar.tasks`) all read split names through
this table, so a name accepted in one place is accepted in every other.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Optional

SPLITS = ('train', 'valid', 'test')
# Lower-case alias -> split. 'dev' and 'eval' are the development (validation) and evaluation (test) sets of
# speech corpora and challenges; 'val' and 'validation' are FSD50K's and Speech Commands' spellings.
SPLIT_ALIASES = MappingProxyType({'train': 'train', 'valid': 'valid', 'val': 'valid', 'validation': 'valid',
                                  'dev': 'valid', 'test': 'test', 'eval': 'test', 'evaluation': 'test'})


def canonical_split(value) -> Optional[str]:
    """'train', 'valid' or 'test' for `value` or one of its aliases (case and surrounding spaces ignored); None
    for anything else."""
    return SPLIT_ALIASES.get(str(value).strip().lower())
