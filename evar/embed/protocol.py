"""EVAR's own cropping, padding and normalisation statistics, reproduced on request for an exact comparison with a
published EVAR number (the run setting `evar_protocol`, off by default).

evar departs from EVAR on purpose in three places; each part of the protocol restores one of them:

- `random_crop`: EVAR crops training and validation clips longer than the unit at a random start (uniform over
  0 .. len - unit - 1, as `numpy.random.randint(len - unit)` draws); its test split keeps the head. evar crops every
  split by `crop` (the head by default). Here the start comes from a generator seeded by (`seed`, the clip's file
  name), so a clip's crop is the same in every run and every fold and does not depend on the order of the rows.
- `zero_padding`: EVAR zero-pads clips shorter than the unit to its length and feeds the zeros to the model as audio,
  so they enter its normalisation statistics and its pooling. evar masks padding out.
- `running_stats`: EVAR's normalisation statistics (BYOL-A, MSM-MAE with no fixed statistics) come from its
  `RunningStats`, whose running mean adds (batch mean - running mean) / n for the n-th batch after the first, where
  an average needs n + 1. Its statistics are therefore the plain average of the batch means of batches 2..K (the
  first batch drops out), and its variance the average of each batch's mean squared deviation from the running mean
  of that moment. The batches are those of EVAR's training loader: the training clips shuffled (seeded here),
  `batch_size` (the config's) at a time, stopping after the batch that reaches 5,000 clips. evar pools the sums of
  every valid frame of every training clip instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..data import ClipDataset
from ..errors import EvarError

PARTS = ('random_crop', 'zero_padding', 'running_stats')
# EVAR's default --seed: seeds the random crops and the statistics' shuffle, the same for every head seed, so that
# --repeat's seeds share one set of embeddings (as EVAR's 2pass runs share its cache).
PROTOCOL_SEED = 42
STATS_MAX_CLIPS = 5000  # EVAR's calculate_norm_stats(max_samples=5000)


def protocol_parts(value: Any, crop: str, source: str):
    """The canonical value of the `evar_protocol` setting: False when off, else the sorted list of its parts.

    Args:
        value: False / True (every part) / a list of names from `PARTS` (empty: off).
        crop: the run's crop policy; EVAR keeps the head of test clips, so cropping or padding parts need 'head'.
        source: the config file, for messages.

    Raises:
        EvarError: a value that is neither a bool nor a list of known part names, or a crop policy other than 'head'
            with `random_crop` or `zero_padding`.
    """
    if isinstance(value, bool):
        parts = sorted(PARTS) if value else []
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        unknown = sorted(set(value) - set(PARTS))
        if unknown:
            raise EvarError(f'{source}: evar_protocol part(s) {unknown} are unknown; expected true, false or a list '
                            f'of {", ".join(PARTS)}.')
        parts = sorted(set(value))
    else:
        raise EvarError(f'{source}: evar_protocol must be true, false or a list of {", ".join(PARTS)}; got {value!r}.')
    if crop != 'head' and {'random_crop', 'zero_padding'} & set(parts):
        raise EvarError(f'{source}: evar_protocol {parts} reproduces EVAR\'s crops, which keep the head of test '
                        f'clips; it needs crop: head, not crop: {crop}.')
    return parts or False


@dataclass(frozen=True)
class EvarProtocol:
    """Which of EVAR's behaviours an extraction reproduces (see the module docstring).

    Attributes:
        random_crop: training and validation clips longer than the unit are cropped at a seeded random start.
        zero_padding: clips shorter than the unit are zero-padded to it, and the zeros count as audio.
        running_stats: normalisation statistics by EVAR's running mean over its shuffled loader batches.
        batch_size: clips per batch of EVAR's training loader (the config's `batch_size`), for `running_stats`.
        seed: seeds the crops and the statistics' shuffle.
        stats_max_clips: EVAR stops reading statistics after the batch that reaches this many clips.
    """
    random_crop: bool = False
    zero_padding: bool = False
    running_stats: bool = False
    batch_size: int = 256
    seed: int = PROTOCOL_SEED
    stats_max_clips: int = STATS_MAX_CLIPS

    @classmethod
    def from_run(cls, run) -> Optional['EvarProtocol']:
        """The protocol a config's run settings (`evar.config.RunSettings`) ask for, or None when it is off."""
        parts = run.evar_protocol or []
        if not parts:
            return None
        return cls(**{p: True for p in parts}, batch_size=int(run.batch_size))

    def key(self, with_stats: bool) -> dict:
        """What the embeddings depend on, for the cache key; `with_stats`: the model takes statistics from the task."""
        fields = {'parts': [p for p in PARTS if getattr(self, p) and (p != 'running_stats' or with_stats)],
                  'seed': self.seed}
        if self.running_stats and with_stats:
            fields.update(batch_size=self.batch_size, stats_max_clips=self.stats_max_clips)
        return fields

    def crop_start(self, file_name: str, n_samples: int, unit_samples: int) -> int:
        """EVAR's random crop start for a clip of `n_samples` > `unit_samples`: uniform in 0 .. n - unit - 1, drawn
        from a generator seeded by (`seed`, the file name)."""
        digest = hashlib.sha256(file_name.encode('utf-8')).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], 'little')])
        return int(rng.integers(0, n_samples - unit_samples))

    def stats_batches(self, train_rows: np.ndarray) -> list:
        """The row batches EVAR's statistics read: `train_rows` shuffled (seeded), `batch_size` at a time, up to and
        including the batch that reaches `stats_max_clips` clips. A list of int64 arrays."""
        order = np.random.default_rng(self.seed).permutation(np.asarray(train_rows, dtype=np.int64))
        n_batches = -(-min(len(order), self.stats_max_clips) // self.batch_size)
        return [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(n_batches)]


def running_stats(batch_sums: np.ndarray) -> tuple:
    """EVAR's (mean, std) from the per-batch (sum, sum of squares, count) [K, 3] of the front-end values, in float64.

    The batch mean m_k = sum / count; the running mean starts at m_1 and adds (m_k - mean) / (k - 1) for batch
    k >= 2, the divisor EVAR uses. The variance runs the same way over v_k, batch k's mean squared deviation from the
    running mean after batch k (v_k = E[x^2] - 2 mean E[x] + mean^2 of that batch). std = sqrt(variance).

    Raises:
        EvarError: no batch, or a batch with no values.
    """
    sums = np.asarray(batch_sums, dtype=np.float64).reshape(-1, 3)
    if len(sums) == 0 or (sums[:, 2] <= 0).any():
        raise EvarError('EVAR running statistics need at least one batch of training values.')
    mean = var = 0.0
    for n, (total, total_sq, count) in enumerate(sums):
        m, m2 = total / count, total_sq / count
        mean = m if n == 0 else mean + (m - mean) / n  # n, not n + 1: EVAR's RunningMean
        v = m2 - 2.0 * mean * m + mean * mean
        var = v if n == 0 else var + (v - var) / n
    return mean, float(np.sqrt(max(var, 0.0)))


class ProtocolClipDataset(ClipDataset):
    """`ClipDataset` with EVAR's cropping and padding: rows in `random_rows` that are longer than the unit are
    cropped at the protocol's random start, the others by `crop_policy` (the head); with `zero_padding` every clip
    shorter than the unit is zero-padded to it, so its length (and the model's mask) covers the zeros.

    Args:
        root, file_names, sample_rate, unit_sec, crop_policy: as `ClipDataset`.
        protocol: the parts to reproduce.
        random_rows: bool [N], True for rows EVAR crops at random (training and validation rows).
    """

    def __init__(self, root, file_names, sample_rate: int, unit_sec: float, crop_policy: str,
                 protocol: EvarProtocol, random_rows: np.ndarray):
        super().__init__(root, file_names, sample_rate, unit_sec, crop_policy)
        self.protocol = protocol
        self.random_rows = np.asarray(random_rows, dtype=bool)

    def __getitem__(self, i):
        if self.protocol.random_crop and self.random_rows[i]:
            from ..audio import load_audio, resolve_audio_path

            try:
                wav, rate = load_audio(resolve_audio_path(self.root, self.file_names[i]), self.sample_rate)
            except EvarError as e:  # carried to the main process as a message, as ClipDataset does
                return None, str(e)
            if len(wav) > self.unit_samples:
                start = self.protocol.crop_start(self.file_names[i], len(wav), self.unit_samples)
                wav = wav[start:start + self.unit_samples]
        else:
            wav, rate = super().__getitem__(i)
            if wav is None:
                return wav, rate
        if self.protocol.zero_padding and len(wav) < self.unit_samples:
            wav = np.pad(wav, (0, self.unit_samples - len(wav)))
        return wav, rate
