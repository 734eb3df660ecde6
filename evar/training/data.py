"""Clips for fine-tuning: decoded once, cropped per epoch, batched by seeded samplers that a resumed run replays.

Every random choice of the data side (the order of an epoch, a training clip's crop) is a function of (seed,
epoch, row), not of a generator's history, so a run resumed at an epoch boundary sees exactly the batches an
uninterrupted run would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..audio import load_audio, resolve_audio_path
from ..errors import EvarError

log = logging.getLogger('evar')


class ClipStore:
    """Decoded clips of a task at the model's rate, kept in memory up to `budget_mb` so that decoding is done once for
    all epochs; clips beyond the budget are decoded on each access (in the DataLoader workers of `batch_loader`).

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

    def read(self, row: int) -> np.ndarray:
        """float32 [n] samples of metadata row `row`, decoded from its file (never kept).

        Raises:
            EvarError: the file cannot be read (named).
        """
        wav, _ = load_audio(resolve_audio_path(self.root, self.file_names[row]), self.sample_rate)
        return np.asarray(wav, dtype=np.float32)

    def wave(self, row: int) -> np.ndarray:
        """float32 [n] samples of metadata row `row`: the kept copy, else decoded (and kept while the budget allows).

        Raises:
            EvarError: the file cannot be read (named).
        """
        wav = self._kept.get(row)
        if wav is None:
            wav = self.read(row)
            self._keep(row, wav)
        return wav

    def _keep(self, row: int, wav: np.ndarray) -> None:
        if self._used + wav.nbytes <= self.budget:
            self._kept[row] = wav
            self._used += wav.nbytes

    def preload(self, rows, workers: int = 0) -> None:
        """Decodes `rows` once, `workers` processes in parallel, keeping them while the budget allows; the rest are
        decoded again on each access."""
        todo = [int(r) for r in dict.fromkeys(int(r) for r in rows) if int(r) not in self._kept]
        if not todo:
            return
        if workers <= 0:
            for row in todo:
                if self._used >= self.budget:
                    break
                self.wave(row)
            return
        loader = torch.utils.data.DataLoader(_Decoded(self, todo), batch_size=None, num_workers=workers,
                                             collate_fn=_as_is)
        for row, wav in zip(todo, loader):
            self._keep(row, wav)
            if self._used >= self.budget:
                break

    def holds(self, rows) -> bool:
        """True when every row of `rows` is kept in memory."""
        return all(int(r) in self._kept for r in rows)


class _Decoded(torch.utils.data.Dataset):
    """Item i: the decoded wave of `rows[i]` (what preload's workers compute)."""

    def __init__(self, store: ClipStore, rows: list):
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.store.read(self.rows[i])


def _as_is(item):
    return item


@dataclass(frozen=True)
class TrainCrop:
    """A training clip's random crop of `unit` samples, drawn from a generator seeded by (seed, epoch, row), so it does
    not depend on which process or in which order clips are prepared."""
    unit: int
    seed: int
    epoch: int

    def __call__(self, wav: np.ndarray, row: int) -> np.ndarray:
        """`unit` samples of `wav` (float32 [n]) of metadata row `row`; a shorter clip whole."""
        return random_crop(wav, self.unit, np.random.default_rng([self.seed, self.epoch, int(row)]))


@dataclass(frozen=True)
class EvalCrop:
    """The deterministic crop of validation and test clips (`evar.audio.crop` with the run's policy)."""
    unit: int
    policy: str

    def __call__(self, wav: np.ndarray, row: int) -> np.ndarray:
        """`unit` samples of `wav` (float32 [n]) by the crop policy; `row` is unused."""
        from ..audio import crop

        return crop(wav, self.unit, self.policy)


class ClipBatches(torch.utils.data.Dataset):
    """Item i: batch i, as collate's (waves [B, N], lengths [B], targets [B, C]), of clips `rows[batches[i]]` taken
    from `store`, cropped by `crop`.

    Args:
        store: the task's ClipStore.
        rows: metadata rows of the split, float32 targets [len(rows), C] beside them.
        batches: lists of positions into `rows` (an epoch's order, or consecutive slices).
        crop: TrainCrop or EvalCrop.
    """

    def __init__(self, store: ClipStore, rows, targets: np.ndarray, batches: list, crop):
        self.store, self.rows, self.targets, self.batches, self.crop = store, rows, targets, batches, crop

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple:
        positions = self.batches[i]
        waves = [self.crop(self.store.wave(int(self.rows[p])), int(self.rows[p])) for p in positions]
        return collate(waves, self.targets[positions])


def batch_loader(batches: ClipBatches, workers: int, pin_memory: bool = False):
    """Iterates `batches` in order: in this process when its clips are all in memory or `workers` is 0, else in
    `workers` DataLoader processes that decode and crop while the model computes. The batches are the same either way.
    """
    if workers <= 0 or batches.store.holds(batches.rows[p] for b in batches.batches for p in b):
        return (batches[i] for i in range(len(batches)))
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                       collate_fn=_as_is, pin_memory=pin_memory)


def default_workers() -> int:
    """DataLoader processes for clips that do not fit in memory: the cores less one, at most 8."""
    import os

    return max(0, min(8, (os.cpu_count() or 1) - 1))


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
