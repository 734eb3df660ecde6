"""Clips for fine-tuning: decoded once, cropped per epoch, batched by seeded samplers that a resumed run replays.

Every random choice of the data side (the order of an epoch, a training clip's crop) is a function of (seed,
epoch, row), not of a generator's history, so a run resumed at an epoch boundary sees exactly the batches an
uninterrupted run would.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from ..audio import load_audio, resolve_audio_path
from ..errors import EvarError

log = logging.getLogger('evar')


class ClipStore:
    """Decoded clips of a task at the model's rate, kept in memory when they fit `budget_mb` (decoding is then done
    once for all epochs), else decoded on each access.

    Args:
        root: the audio folder.
        file_names: per metadata row.
        sample_rate: the model's rate in Hz.
        budget_mb: memory for float32 waves.
    """

    def __init__(self, root, file_names, sample_rate: int, budget_mb: float = 4096.0):
        self.root, self.file_names, self.sample_rate = root, list(file_names), int(sample_rate)
        self.budget = budget_mb * 2 ** 20
        self._kept: dict = {}
        self._used = 0

    def wave(self, row: int) -> np.ndarray:
        """float32 [n] samples of metadata row `row`.

        Raises:
            EvarError: the file cannot be read (named).
        """
        wav = self._kept.get(row)
        if wav is None:
            wav, _ = load_audio(resolve_audio_path(self.root, self.file_names[row]), self.sample_rate)
            wav = np.asarray(wav, dtype=np.float32)
            if self._used + wav.nbytes <= self.budget:
                self._kept[row] = wav
                self._used += wav.nbytes
        return wav


def random_crop(wav: np.ndarray, unit_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of `unit_samples` of a longer clip (EVAR's training crop); shorter clips are returned whole."""
    if len(wav) <= unit_samples:
        return wav
    start = int(rng.integers(0, len(wav) - unit_samples + 1))
    return wav[start:start + unit_samples]


def collate(waves: list, targets: np.ndarray) -> tuple:
    """(waves float32 [B, N] zero-padded, lengths int64 [B], targets float32 [B, C])."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, :len(w)] = torch.from_numpy(w)
    return batch, lengths, torch.as_tensor(targets, dtype=torch.float32)


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 [n, C] targets: class indices [n] one-hot, or a multi-label matrix [n, C] as it is."""
    if y.ndim == 2:
        return y.astype(np.float32)
    out = np.zeros((len(y), n_classes), dtype=np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, targets: Optional[np.ndarray] = None,
                balanced: bool = False, rank: int = 0, world: int = 1) -> list:
    """The batches (lists of positions 0..n-1) of one training epoch for process `rank` of `world`.

    Shuffled by a generator seeded with (seed, epoch); all clips are used, except that a last batch of a single clip
    is dropped (the head's BatchNorm cannot train on one sample).
    `balanced` (multi-label `targets` [n, C] only): each sample draws a class uniformly, then one of its clips
    uniformly (a class-balanced sampler as EVAR's BalancedRandomSampler for AudioSet), ceil(n / batch) batches.
    With `world` > 1 each global batch of `batch_size` is split into `world` equal parts (DDP).

    Raises:
        EvarError: `batch_size` not divisible by `world`, or `balanced` on a single-label task.
    """
    if batch_size % world:
        raise EvarError(f'--batch_size {batch_size} must be divisible by the {world} processes of the run.')
    rng = np.random.default_rng([int(seed), int(epoch), 7919])
    if balanced:
        if targets is None or targets.ndim != 2:
            raise EvarError('--balanced samples classes of a multi-label task (metric mAP); this task is single-label.')
        members = [np.flatnonzero(targets[:, c]) for c in range(targets.shape[1])]
        members = [m for m in members if len(m)]
        total = -(-n // batch_size) * batch_size
        classes = rng.integers(0, len(members), size=total)
        order = np.array([members[c][rng.integers(0, len(members[c]))] for c in classes])
    else:
        order = rng.permutation(n)
        if n > 1 and n % batch_size == 1:  # a last batch of one clip would break the head's BatchNorm
            order = order[:-1]
    per_rank = batch_size // world
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        part = chunk[rank * per_rank:(rank + 1) * per_rank] if world > 1 else chunk
        if len(part):
            batches.append(part.tolist())
    return batches
