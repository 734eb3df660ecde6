"""Turning a task's clips into clip or frame embeddings: decoding in DataLoader workers, inference on the
model's device.

Models that standardise their front end with training-split statistics (BYOL-A, as in EVAR) get them without a
second pass over the audio: the training clips' front-end features are kept in memory while the statistics are
summed, then fed to the network. When they would not fit in `feature_budget_mb`, the statistics come from a seeded
random subset of the training clips instead (logged), and the rest is streamed.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import EvarError
from ..data import ClipDataset, collate_clips, warn_resampling
from ..models.base import pool, stats_from_sums

log = logging.getLogger('evar')


# On CPU a batch holds at most this many (padded) samples: 8 five-minute clips at 22.05 kHz in one batch took 5.5 GB
# (SoundNet); 2**23 samples (6.3 min at 22.05 kHz) keeps a batch's activations to a few hundred MB.
CPU_BATCH_SAMPLES = 2 ** 23


@dataclass(frozen=True)
class ExtractSettings:
    """How clips are batched and run.

    Attributes:
        batch_size: at most this many clips per forward pass.
        num_workers: decoding worker processes (None: `default_workers`).
        device: torch device of the model.
        bf16: bf16 autocast for the network (GPU).
        feature_budget_mb: memory for the training clips' features kept while normalisation statistics are summed.
        stats_seed: seeds the subset of training clips for statistics when they exceed the budget.
        progress: progress bars.
        max_batch_samples: at most this many samples (clips x the longest, after cropping) per batch; None:
            `CPU_BATCH_SAMPLES` on CPU, no limit on GPU.
    """
    batch_size: int = 64
    num_workers: Optional[int] = None
    device: str = 'cpu'
    bf16: bool = False
    feature_budget_mb: float = 2048.0
    stats_seed: int = 0
    progress: bool = True
    max_batch_samples: Optional[int] = None

    @property
    def sample_budget(self) -> Optional[int]:
        """The effective samples-per-batch limit."""
        if self.max_batch_samples is not None:
            return self.max_batch_samples
        return None if str(self.device).startswith('cuda') else CPU_BATCH_SAMPLES


def clip_samples(dataset: ClipDataset, indices) -> np.ndarray:
    """Samples each clip of `indices` gives after cropping, int64 [n]: the unit length bounds cropped clips; whole
    clips (crop 'full') are measured from their headers (nothing is decoded)."""
    if dataset.crop_policy != 'full':
        return np.full(len(indices), dataset.unit_samples, dtype=np.int64)
    import soundfile as sf

    from ..audio import resolve_audio_path

    out = np.zeros(len(indices), dtype=np.int64)
    for k, i in enumerate(indices):
        info = sf.info(str(resolve_audio_path(dataset.root, dataset.file_names[int(i)])))
        out[k] = int(np.ceil(info.frames * dataset.sample_rate / info.samplerate))
    return out


def batch_groups(samples: np.ndarray, batch_size: int, max_samples: Optional[int]) -> list:
    """Consecutive groups of positions 0..n-1, each at most `batch_size` long and, padded to its longest clip, at most
    `max_samples` samples (a clip longer than that alone forms its group)."""
    groups, current, longest = [], [], 0
    for pos, n in enumerate(np.asarray(samples).tolist()):
        widest = max(longest, n)
        if current and (len(current) >= batch_size or (max_samples and widest * (len(current) + 1) > max_samples)):
            groups.append(current)
            current, widest = [], n
        current.append(pos)
        longest = widest
    if current:
        groups.append(current)
    return groups


def default_workers(device: str) -> int:
    """Decoding worker processes: on a GPU run they keep the GPU fed; on a small CPU box the model already uses
    every core, and a worker process only adds start-up and contention (BYOL-A on 1,200 clips, 2 cores: 2.18 s
    decoding in-process against 2.8 s with one worker, 1.90 s for the model alone)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    if not str(device).startswith('cuda'):
        return 0 if cpus <= 4 else min(4, cpus // 4)
    return max(1, min(8, cpus - 1))


def _worker_init(_):
    torch.set_num_threads(1)  # workers only decode and resample; leave the cores to the model


def _in_process(dataset, indices, groups: list):
    """Batches decoded in this process, between forward passes (a decoding thread was measured no faster)."""
    pad_to = dataset.unit_samples if dataset.crop_policy != 'full' else 0
    for group in groups:
        yield collate_clips([dataset[int(indices[p])] for p in group], pad_to)


def _loader(dataset, indices, groups: list, settings: ExtractSettings):
    from torch.utils.data import DataLoader, Subset

    workers = default_workers(settings.device) if settings.num_workers is None else settings.num_workers
    if workers == 0:
        return _in_process(dataset, indices, groups)
    return DataLoader(Subset(dataset, [int(i) for i in indices]), batch_sampler=groups, num_workers=workers,
                      collate_fn=collate_clips, worker_init_fn=_worker_init, prefetch_factor=4,
                      persistent_workers=False)


def _batches(dataset, indices, settings: ExtractSettings, desc: str, warned: set):
    """Yields (row indices, wav, lengths) on the device, in order, in batches bounded by clip count and samples."""
    from tqdm import tqdm

    start = 0
    groups = batch_groups(clip_samples(dataset, indices), settings.batch_size, settings.sample_budget)
    loader = _loader(dataset, indices, groups, settings)
    for wav, lengths, rates in tqdm(loader, desc=desc, total=len(groups),
                                    disable=not settings.progress, mininterval=2.0, leave=False):
        if wav is None:
            raise EvarError(rates)
        warn_resampling(rates, dataset.sample_rate, str(dataset.root), warned)
        rows = indices[start:start + len(lengths)]
        start += len(lengths)
        yield rows, wav.to(settings.device, non_blocking=True), lengths.to(settings.device)


def _autocast(settings: ExtractSettings):
    if settings.bf16 and str(settings.device).startswith('cuda'):
        return torch.autocast('cuda', dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class FrameEmbeddings:
    """Frame embeddings of N clips stored ragged: only valid frames, no padding.

    Attributes:
        values: float32 [sum of T_i, D], the clips' valid frames one after another.
        offsets: int64 [N + 1]; clip i's frames are values[offsets[i]:offsets[i + 1]].
    """
    values: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Valid frames per clip, int64 [N]."""
        return np.diff(self.offsets)

    def clip(self, i: int) -> np.ndarray:
        """Clip i's frames, [T_i, D]."""
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def padded(self, rows=None) -> tuple:
        """(frames float32 [n, T_max, D] zero-padded, mask bool [n, T_max] True on valid frames) of `rows`
        (all clips when None)."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        lengths = self.lengths[rows]
        t_max = int(lengths.max()) if len(rows) else 0
        out = np.zeros((len(rows), t_max, self.values.shape[1]), dtype=np.float32)
        for i, r in enumerate(rows):
            out[i, :lengths[i]] = self.clip(int(r))
        return out, np.arange(t_max)[None, :] < lengths[:, None]


class _ClipSink:
    """Collects pooled clip embeddings [N, D] in row order."""

    def __init__(self, n: int, pooling: str):
        self.n, self.pooling, self.out = n, pooling, None

    def add(self, rows, frames) -> None:
        emb = pool(frames, self.pooling).float().cpu().numpy()
        if self.out is None:
            self.out = np.zeros((self.n, emb.shape[1]), dtype=np.float32)
        self.out[rows] = emb

    def result(self) -> np.ndarray:
        return self.out


class _FrameSink:
    """Collects the valid frames of each clip, [T_i, D] per row."""

    def __init__(self, n: int, pooling: str):
        self.clips = [None] * n

    def add(self, rows, frames) -> None:
        x = frames.embeddings.float().cpu().numpy()
        valid = frames.mask.sum(1).cpu().numpy()
        for r, clip, t in zip(rows, x, valid):
            self.clips[int(r)] = clip[:int(t)]

    def result(self) -> FrameEmbeddings:
        lengths = np.array([len(c) for c in self.clips], dtype=np.int64)
        return FrameEmbeddings(values=np.concatenate(self.clips).astype(np.float32, copy=False),
                               offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


LEVELS = {'clip': _ClipSink, 'frame': _FrameSink}


def extract_embeddings(model, dataset: ClipDataset, train_indices: np.ndarray, settings: ExtractSettings,
                       warned: Optional[set] = None, level: str = 'clip', protocol=None):
    """Embeddings of every clip of `dataset`, in order, computed under `torch.inference_mode`.

    Args:
        model: an `AudioRepr`; when it needs normalisation statistics and has none, they are taken from the
            front-end features of `train_indices` (a seeded subset if they exceed the memory budget).
        dataset: the clips.
        train_indices: dataset rows whose audio may set normalisation statistics.
        settings: batch size, workers, device, autocast.
        warned: (source, rate) pairs already warned about resampling; updated.
        level: 'clip' for pooled clip embeddings float32 [N, D]; 'frame' for a `FrameEmbeddings` of the valid
            frames at the model's own hop.
        protocol: an `evar.embed.protocol.EvarProtocol`; with `running_stats`, the statistics follow EVAR's rule
            (its batches of `train_indices`, its divisor) instead of pooling every training frame.

    Raises:
        EvarError: an unreadable audio file (named), or an unknown `level`.
    """
    if level not in LEVELS:
        raise EvarError(f'embedding level must be one of {sorted(LEVELS)}, got {level!r}.')
    warned = set() if warned is None else warned
    sink = LEVELS[level](len(dataset), model.pooling)
    done = np.zeros(len(dataset), dtype=bool)

    def encode(rows, feats, feat_lengths):
        with _autocast(settings):
            frames = model.encode(feats, feat_lengths)
        sink.add(rows, frames)  # pooled in the frames' dtype, outside autocast, as before the sinks existed
        done[rows] = True

    model.eval()
    with torch.inference_mode():
        if model.needs_norm_stats and model.norm_mean is None:
            for rows, feats, feat_lengths in _set_norm_stats(model, dataset, train_indices, settings, warned, protocol):
                encode(rows, feats, feat_lengths)
        rest = np.flatnonzero(~done)
        for rows, wav, lengths in _batches(dataset, rest, settings, 'embeddings', warned):
            encode(rows, *model.features(wav, lengths))
    return sink.result()


def _set_norm_stats(model, dataset: ClipDataset, train_indices, settings: ExtractSettings, warned: set,
                    protocol=None) -> list:
    """Sets the model's normalisation statistics from the front-end features of training clips (pooled over every
    valid frame, or by EVAR's rule when `protocol.running_stats`); returns the (rows, feats, feat_lengths) batches it
    kept, so they need not be decoded again (none when they would not fit the memory budget)."""
    evar_stats = protocol is not None and protocol.running_stats
    if evar_stats:
        batches = protocol.stats_batches(train_indices)
        stat_rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        keep = _clips_in_budget(model, dataset, settings) >= len(stat_rows)  # else decoded again to embed
        clip_sums = {}
    else:
        stat_rows, keep = _stats_rows(model, dataset, np.asarray(train_indices), settings), True
        sums = torch.zeros(3, dtype=torch.float64)
    kept = []
    for rows, wav, lengths in _batches(dataset, stat_rows, settings, 'statistics', warned):
        feats, feat_lengths = model.features(wav, lengths)
        if evar_stats:  # per clip, to be regrouped into EVAR's batches
            for k, row in enumerate(rows.tolist()):
                clip_sums[row] = model.stat_sums(feats[k:k + 1], feat_lengths[k:k + 1]).cpu().numpy()
        else:
            sums += model.stat_sums(feats, feat_lengths).cpu()
        if keep:
            kept.append((rows, feats, feat_lengths))
    if evar_stats:
        from .protocol import running_stats

        mean, std = running_stats([sum(clip_sums[r] for r in b.tolist()) for b in batches])
        how = f'EVAR\'s running statistics over {len(batches)} batches of'
    else:
        mean, std = stats_from_sums(sums)
        how = 'normalisation statistics from'
    model.set_norm_stats(mean, std)
    log.info(f'{how} {len(stat_rows)} training clips: mean {mean:.5f}, std {std:.5f}')
    return kept


def _clips_in_budget(model, dataset: ClipDataset, settings: ExtractSettings) -> int:
    """How many clips' front-end features fit in `settings.feature_budget_mb`."""
    probe_len = dataset.unit_samples if dataset.crop_policy != 'full' else dataset.unit_samples * 4
    with torch.inference_mode():
        feats, _ = model.features(torch.zeros(1, probe_len, device=settings.device),
                                  torch.tensor([probe_len], device=settings.device))
    per_clip = feats.numel() * feats.element_size()
    return int(settings.feature_budget_mb * 2**20 // max(per_clip, 1))


def _stats_rows(model, dataset: ClipDataset, train_indices: np.ndarray, settings: ExtractSettings) -> np.ndarray:
    """All training rows if their features fit the memory budget, else a seeded random subset that does."""
    fit = _clips_in_budget(model, dataset, settings)
    if fit >= len(train_indices):
        return train_indices
    rng = np.random.default_rng(settings.stats_seed)
    chosen = np.sort(rng.choice(train_indices, size=max(fit, 1), replace=False))
    log.warning(f'training features exceed feature_budget_mb={settings.feature_budget_mb}: normalisation statistics '
                f'from a random subset of {len(chosen)} of {len(train_indices)} training clips')
    return chosen


def compute_norm_stats(model, dataset: ClipDataset, train_indices: np.ndarray, settings: ExtractSettings,
                       warned: Optional[set] = None) -> tuple:
    """Sets and returns the model's normalisation statistics (mean, std) over the front-end features of the
    `train_indices` clips of `dataset` (the statistics pass of `extract_embeddings` alone, for fine-tuning, which
    trains on the clips instead of embedding them). A model that needs none, or has fixed ones, is left as it is.

    Returns:
        (mean, std) in the front end's units, or None when the model does not need them.
    """
    if not model.needs_norm_stats or model.norm_mean is not None:
        return None if not model.needs_norm_stats else (model.norm_mean, model.norm_std)
    sums = torch.zeros(3, dtype=torch.float64)
    with torch.inference_mode():
        rows = np.asarray(train_indices)
        for _, wav, lengths in _batches(dataset, rows, settings, 'statistics', set() if warned is None else warned):
            sums += model.stat_sums(*model.features(wav, lengths)).cpu()
    mean, std = stats_from_sums(sums)
    model.set_norm_stats(mean, std)
    log.info(f'normalisation statistics from {len(train_indices)} training clips: mean {mean:.5f}, std {std:.5f}')
    return mean, std
