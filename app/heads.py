"""Heads of the applications over frozen evar embeddings, trained with class-weighted cross-entropy and selected on
the validation split by the application's own (patient-level) score.

- `ClipHead`: a linear layer or MLP over clip embeddings [N, D] (CirCor, BMD-HS; EVAR trains an MLP with 128 hidden
  units and class-weighted CE there).
- `FrameHead`: a small Transformer encoder with a class token (EVAR's ICBHI/SPRSound head), or mean pooling and an
  MLP, over frame embeddings [N, T, D], with SpecAugment-style time and feature masks on the frames during
  training.

Both reuse evar's building blocks (`evar.heads.base`: standardisation, the MLP, Adam).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from evar.errors import EvarError
from evar.heads.base import Adam, Standardizer, make_mlp


def balanced_class_weights(y, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights float32 [C]: n / (C * n_c) (scikit-learn's 'balanced'), 0 for absent classes."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


@dataclass
class TrainSettings:
    """How a head is trained.

    Attributes:
        hidden: hidden layer sizes of the MLP (() for a linear layer).
        lr: Adam's learning rate.
        epochs: maximum epochs.
        early_stop_epochs: stop after this many epochs without a validation score >= the best (0: never).
        batch_size: minibatch size.
        class_weighted: inverse-frequency class weights in the cross-entropy.
        seed: seeds initialisation, shuffling and masks.
        device: torch device.
    """
    hidden: tuple = (128,)
    lr: float = 1e-3
    epochs: int = 100
    early_stop_epochs: int = 20
    batch_size: int = 64
    class_weighted: bool = True
    seed: int = 42
    device: str = 'cpu'


class _Trainer:
    """The training loop both heads share: weighted CE, Adam, epoch selection on `valid_score` (higher is better;
    ties move to the later epoch), best weights restored."""
    settings: TrainSettings

    def _loop(self, n_train: int, batch_loss: Callable, valid_probs: Callable, valid_score: Callable) -> None:
        s = self.settings
        gen = torch.Generator().manual_seed(s.seed)
        opt = Adam(self.model_.parameters(), lr=s.lr, weight_decay=1e-8)
        best, best_state, stale, self.history_ = -np.inf, copy.deepcopy(self.model_.state_dict()), 0, []
        for _ in range(s.epochs):
            self.model_.train()
            order = torch.randperm(n_train, generator=gen)
            for start in range(0, n_train, s.batch_size):
                loss = batch_loss(order[start:start + s.batch_size], gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
            value = float(valid_score(valid_probs()))
            self.history_.append(value)
            if np.isfinite(value) and value >= best:
                best, best_state, stale = value, copy.deepcopy(self.model_.state_dict()), 0
            else:
                stale += 1
            if s.early_stop_epochs and stale >= s.early_stop_epochs:
                break
        if not np.isfinite(best):
            raise EvarError(f'{type(self).__name__}: the validation score was never finite over {len(self.history_)} '
                            'epochs (does the validation split hold every class the score needs?).')
        self.model_.load_state_dict(best_state)
        self.best_valid_ = best
        self.best_epoch_ = max(i for i, v in enumerate(self.history_) if v == best) + 1

    def _loss_fn(self, y: np.ndarray) -> nn.Module:
        weight = None
        if self.settings.class_weighted:
            weight = torch.from_numpy(balanced_class_weights(y, self.n_classes_)).to(self.settings.device)
        return nn.CrossEntropyLoss(weight=weight)


class ClipHead(_Trainer):
    """Linear layer / MLP over standardised clip embeddings, trained with (class-weighted) cross-entropy.

    `fit(X [N, D], y [N], X_val, valid_score)` selects the epoch whose validation probabilities give the highest
    `valid_score(probs [N_val, C])`; `predict_proba(X) -> float32 [n, C]`.
    """

    def __init__(self, n_classes: int, settings: TrainSettings):
        self.n_classes_, self.settings = int(n_classes), settings

    def fit(self, X, y, X_val, valid_score: Callable) -> 'ClipHead':
        """Trains on X float [N, D] and class indices y [N]; returns self."""
        s = self.settings
        torch.manual_seed(s.seed)
        self.scaler_ = Standardizer().fit(np.asarray(X, dtype=np.float32))
        self.model_ = make_mlp(np.asarray(X).shape[1], tuple(s.hidden), self.n_classes_).to(s.device)
        Xt, yt = self._x(X), torch.from_numpy(np.asarray(y, dtype=np.int64)).to(s.device)
        Xv, loss_fn = self._x(X_val), self._loss_fn(y)
        self._loop(len(Xt), lambda idx, gen: loss_fn(self.model_(Xt[idx]), yt[idx]),
                   lambda: self._probs(Xv), valid_score)
        return self

    def _x(self, X) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.scaler_.transform(X))).to(self.settings.device)

    def _probs(self, Xt: torch.Tensor) -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            return torch.softmax(self.model_(Xt), -1).cpu().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities float32 [n, C] of clip embeddings [n, D]."""
        return self._probs(self._x(X))


class TransformerPool(nn.Module):
    """A class token prepended to the frames [B, T, D], `depth` pre-norm Transformer encoder layers (`heads`
    attention heads, feed-forward width D), the class token's output normalised, then a linear layer to C classes.
    Padded frames are masked out of attention."""

    def __init__(self, dim: int, n_classes: int, depth: int = 2, heads: int = 1):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] of frames x [B, T, D] with `mask` [B, T] True on valid frames."""
        x = torch.cat([self.token.expand(len(x), -1, -1), x], 1)
        pad = torch.cat([torch.zeros(len(x), 1, dtype=torch.bool, device=x.device), ~mask], 1)
        return self.linear(self.norm(self.encoder(x, src_key_padding_mask=pad)[:, 0]))


class MeanPoolMLP(nn.Module):
    """Mean over valid frames [B, T, D] -> [B, D], then evar's MLP (`make_mlp`) to C classes."""

    def __init__(self, dim: int, n_classes: int, hidden: tuple):
        super().__init__()
        self.mlp = make_mlp(dim, hidden, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] of frames x [B, T, D] with `mask` [B, T] True on valid frames."""
        m = mask.unsqueeze(-1).float()
        return self.mlp((x * m).sum(1) / m.sum(1).clamp(min=1.0))


def spec_augment(x: torch.Tensor, mask: torch.Tensor, time_width: int, feature_width: int,
                 gen: torch.Generator) -> torch.Tensor:
    """SpecAugment (Park et al., Interspeech 2019) on frame embeddings: per clip one time mask of up to
    `time_width` frames (within its valid frames) and one feature mask of up to `feature_width` dimensions, both
    set to 0 (the standardised mean). x [B, T, D], mask [B, T] -> a masked copy of x."""
    x = x.clone()
    lengths = mask.sum(1).tolist()
    for i, n in enumerate(lengths):
        if time_width > 0 and n > 1:
            w = int(torch.randint(0, min(time_width, int(n)) + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, int(n) - w + 1, (1,), generator=gen))
            x[i, t0:t0 + w] = 0
        if feature_width > 0:
            w = int(torch.randint(0, min(feature_width, x.shape[2]) + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, x.shape[2] - w + 1, (1,), generator=gen))
            x[i, :, f0:f0 + w] = 0
    return x


class FrameHead(_Trainer):
    """A head over frame embeddings: 'transformer' (`TransformerPool`) or 'mlp' (`MeanPoolMLP`), with frames
    standardised by training statistics and SpecAugment masks during training.

    Args:
        n_classes: C.
        settings: training settings (`hidden` is the MLP's).
        kind: 'transformer' or 'mlp'.
        depth, heads: the Transformer's layers and attention heads.
        time_mask, feature_mask: SpecAugment widths in frames and dimensions (0 disables).
    """
    KINDS = ('transformer', 'mlp')

    def __init__(self, n_classes: int, settings: TrainSettings, kind: str = 'transformer', depth: int = 2,
                 heads: int = 1, time_mask: int = 20, feature_mask: int = 8):
        if kind not in self.KINDS:
            raise EvarError(f'--head must be one of {list(self.KINDS)}, got {kind!r}.')
        self.n_classes_, self.settings, self.kind = int(n_classes), settings, kind
        self.depth, self.heads, self.time_mask, self.feature_mask = depth, heads, time_mask, feature_mask

    def fit(self, frames, y, frames_val, valid_score: Callable) -> 'FrameHead':
        """Trains on `frames` (x float [N, T, D], mask bool [N, T]) and class indices y [N]; selects the epoch on
        `frames_val` by `valid_score(probs)`. Returns self."""
        s = self.settings
        torch.manual_seed(s.seed)
        x, mask = frames
        self.scaler_ = Standardizer().fit(np.asarray(x, dtype=np.float32)[np.asarray(mask)])
        dim = x.shape[2]
        self.model_ = (TransformerPool(dim, self.n_classes_, self.depth, self.heads) if self.kind == 'transformer'
                       else MeanPoolMLP(dim, self.n_classes_, tuple(s.hidden))).to(s.device)
        xt, mt = self._x(frames)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(s.device)
        val, loss_fn = self._x(frames_val), self._loss_fn(y)

        def batch_loss(idx, gen):
            xb = spec_augment(xt[idx], mt[idx], self.time_mask, self.feature_mask, gen)
            return loss_fn(self.model_(xb, mt[idx]), yt[idx])

        self._loop(len(xt), batch_loss, lambda: self._probs(*val), valid_score)
        return self

    def _x(self, frames) -> tuple:
        x, mask = frames
        x = (np.asarray(x, dtype=np.float32) - self.scaler_.mean_) / self.scaler_.std_
        x = np.where(np.asarray(mask)[..., None], x, 0.0).astype(np.float32)
        return (torch.from_numpy(x).to(self.settings.device),
                torch.from_numpy(np.asarray(mask, dtype=bool)).to(self.settings.device))

    def _probs(self, xt: torch.Tensor, mt: torch.Tensor, batch: int = 256) -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            return np.concatenate([torch.softmax(self.model_(xt[i:i + batch], mt[i:i + batch]), -1).cpu().numpy()
                                   for i in range(0, len(xt), batch)])

    def predict_proba(self, frames) -> np.ndarray:
        """Class probabilities float32 [n, C] of frames (x [n, T, D], mask [n, T])."""
        return self._probs(*self._x(frames))


def pool_frames(x: np.ndarray, mask: np.ndarray, factor: int) -> tuple:
    """Averages every `factor` consecutive valid frames (a lower frame rate for the head): x [N, T, D], mask [N, T]
    -> x [N, ceil(T / factor), D], mask. factor 1 returns the inputs."""
    if factor <= 1:
        return x, mask
    n, t, d = x.shape
    t2 = -(-t // factor)
    xp = np.zeros((n, t2 * factor, d), dtype=np.float32)
    mp = np.zeros((n, t2 * factor), dtype=np.float32)
    xp[:, :t], mp[:, :t] = x * mask[..., None], mask
    sums = xp.reshape(n, t2, factor, d).sum(2)
    counts = mp.reshape(n, t2, factor).sum(2)
    return (sums / np.maximum(counts, 1)[..., None]).astype(np.float32), counts > 0

