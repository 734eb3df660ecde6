"""Weighted k-nearest-neighbour classification over cosine similarity: a parameter-free probe.

The protocol of X-ARES (its kNN evaluation of frozen embeddings): clip embeddings are L2-normalised; each test clip
takes the `k` training clips of highest cosine similarity (k = 10), weights them by softmax(similarity /
temperature) with temperature 0.07, and scores each class by the summed weight of the neighbours carrying it. For
single-label tasks the scores are class probabilities (they sum to 1); for multi-label tasks a class's score is the
weight of the neighbours that have it, in [0, 1], ranked for mAP. Nothing is trained, so there is no seed-to-seed
spread; with `k='auto'` the k of `k_grid` with the best validation score is used.

The similarities are one matrix product per chunk of test clips, on the GPU when the head's device is one; chunks
bound memory to about `chunk_mb` for the [chunk, N_train] similarity block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from ..errors import EvarError
from ..metrics import score as metric_score
from .base import Head, refuse_probe_options

K_GRID = (1, 3, 5, 10, 20, 50)


def l2_normalize(X) -> torch.Tensor:
    """Rows of X [N, D] scaled to unit L2 norm (all-zero rows stay zero), float32."""
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    return X / X.norm(dim=1, keepdim=True).clamp(min=1e-12)


@dataclass
class KNNHead(Head):
    """kNN over cosine similarity with softmax(similarity / temperature) weights (X-ARES's kNN protocol).

    Args:
        k: neighbours per test clip (at most the number of training clips), or 'auto' to pick from `k_grid` on the
            validation split.
        temperature: softmax temperature over cosine similarities (> 0).
        k_grid: the candidates of k='auto'.
        chunk_mb: memory bound of one [chunk, N_train] float32 similarity block, in MiB.
        device: torch device of the matrix products.
        selection_metric: the metric it selects with on validation; None: accuracy (single-label) or mAP (multi-label).

    Learned attributes: `train_` (normalised training embeddings [N, D] on the device), `targets_` (one-hot or
    multi-hot float32 [N, C] on the device), `k_` (the k used), `history_` ((k, validation score) per candidate),
    `best_valid_`.

    Raises:
        EvarError: k not a positive integer or 'auto', temperature not positive.
    """
    k: Union[int, str] = 10
    temperature: float = 0.07
    k_grid: tuple = K_GRID
    chunk_mb: float = 256.0
    device: str = 'cpu'
    selection_metric: Optional[str] = None
    mode = 'knn'

    def __post_init__(self):
        if not (self.k == 'auto' or (isinstance(self.k, int) and not isinstance(self.k, bool) and self.k > 0)):
            raise EvarError(f'kNN: k must be a positive integer or "auto", got {self.k!r}.')
        if not self.temperature > 0:
            raise EvarError(f'kNN: temperature must be positive, got {self.temperature!r}.')

    @classmethod
    def from_options(cls, options, run, seed: int, device: str) -> 'KNNHead':
        """k and temperature from the options; the seed is not used (kNN is deterministic).

        Raises:
            EvarError: a k that is not a positive integer or 'auto'; the probe's --lr, --hidden or --mixup given.
        """
        refuse_probe_options(options, 'knn', 'trains nothing (cosine neighbours of the training clips)')
        k = options.k
        if isinstance(k, str) and k != 'auto':
            try:
                k = int(k)
            except ValueError:
                raise EvarError(f'--k must be a positive integer or auto, got {k!r}.') from None
        return cls(k=k, temperature=float(options.temperature), device=device,
                   selection_metric=options.selection_metric)

    @property
    def needs_validation(self) -> bool:
        """Only k='auto' selects on validation."""
        return self.k == 'auto'

    def selection(self) -> str:
        """The k used."""
        return f'k {self.k_}'

    @property
    def name(self) -> str:
        """The head\'s name in results."""
        return 'knn'

    def fit(self, X, y, X_val, y_val) -> 'KNNHead':
        """Keeps the normalised training embeddings X [N, D] and targets y; with k='auto', scores each k of
        `k_grid` on X_val, y_val and keeps the best (the smaller k on ties; `best_valid_` its score). A fixed k
        ignores X_val (`best_valid_` is NaN). Returns self."""
        self._start_fit(y)
        y = np.asarray(y)
        self.train_ = l2_normalize(X).to(self.device)
        onehot = y.astype(np.float32) if self.multi_label_ else np.eye(self.n_classes_, dtype=np.float32)[y]
        self.targets_ = torch.from_numpy(onehot).to(self.device)
        n_train = len(self.train_)
        candidates = ([min(k, n_train) for k in self.k_grid] if self.k == 'auto' else [min(self.k, n_train)])
        candidates = sorted(set(candidates))
        self.history_ = []
        if len(candidates) == 1:  # a fixed k selects nothing: validation is not scored (it may be part of training)
            self.k_ = candidates[0]
            self.best_valid_ = float('nan')
            return self
        scores = self._scores_for_ks(X_val, candidates)
        for k, s in zip(candidates, scores):
            self.history_.append((k, metric_score(self.metric_, np.asarray(y_val), s)))
        self.k_, self.best_valid_ = max(self.history_, key=lambda kv: (kv[1], -kv[0]))
        return self

    def _scores(self, X) -> np.ndarray:
        return self._scores_for_ks(X, [self.k_])[0]

    def _scores_for_ks(self, X, ks: list) -> list:
        """Scores float32 [N, C] of X [N, D] for each k of `ks`, from one top-max(ks) search per chunk."""
        Q = l2_normalize(X)
        n_train = len(self.train_)
        k_max = max(ks)
        chunk = max(1, int(self.chunk_mb * 2**20 // (4 * max(n_train, 1))))
        out = [np.zeros((len(Q), self.n_classes_), dtype=np.float32) for _ in ks]
        with torch.no_grad():
            for start in range(0, len(Q), chunk):
                sims = Q[start:start + chunk].to(self.device) @ self.train_.T  # cosine similarity [n, N_train]
                top_sims, top_idx = sims.topk(k_max, dim=1)  # sorted, most similar first
                for scores, k in zip(out, ks):
                    weights = torch.softmax(top_sims[:, :k] / self.temperature, dim=1)  # [n, k]
                    votes = self.targets_[top_idx[:, :k]]  # [n, k, C]
                    scores[start:start + chunk] = (weights.unsqueeze(-1) * votes).sum(1).float().cpu().numpy()
        return out
