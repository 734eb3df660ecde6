"""The EVAR-protocol probe: a linear layer (or MLP) trained by Adam with early stopping on validation.

It follows EVAR's linear evaluation (nttcslab/eval-audio-repr, `TorchMLPClassifier2`) so numbers stay comparable
with published EVAR results: standardised inputs, a linear layer (or Linear-ReLU-Dropout(0.5) blocks with
`hidden`), Adam with weight decay 1e-8, minibatches of min(200, n), up to 200 epochs, early stopping after
`early_stop_epochs` epochs without a validation accuracy / mAP at least as good as the best (ties move the best to
the later epoch), best weights restored. Mixup mixes each sample with its own Beta(alpha, alpha) weight.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import EvarError
from .base import Adam, TorchHead, loss_function, make_mlp, probe_name

log = logging.getLogger('evar')


@dataclass
class ProbeHead(TorchHead):
    """Linear probe / MLP head (EVAR protocol).

    Args:
        hidden: hidden layer sizes; () is a linear probe.
        lr: Adam's learning rate.
        epochs: maximum epochs.
        batch_size: minibatch size (min with the number of training rows).
        early_stop_epochs: stop after this many epochs without a validation score >= the best; 0 or None never
            stops early.
        standard_scaler: standardise inputs with training statistics.
        mixup: alpha of the per-sample Beta(alpha, alpha) mixing weights; 0 disables.
        seed: seeds initialisation, shuffling and mixup.
        device: torch device of the network.
        report_every: log the epoch, loss and validation score every this many epochs (EVAR's
            report_per_epochs); 0 is silent.
        selection_metric: the metric it selects with on validation; None: accuracy (single-label) or mAP (multi-label).

    Learned attributes: `model_` (the network with the best validation weights), `scaler_`, `history_` (one
    (epoch, last minibatch loss, validation score) per epoch run), `epochs_run_`, `best_valid_`.
    """
    hidden: tuple = ()
    lr: float = 3e-4
    epochs: int = 200
    batch_size: int = 200
    early_stop_epochs: int = 20
    standard_scaler: bool = True
    mixup: float = 0.0
    seed: int = 42
    device: str = 'cpu'
    report_every: int = 0
    selection_metric: Optional[str] = None

    @classmethod
    def from_options(cls, options, run, seed: int, device: str) -> 'ProbeHead':
        """Learning rate and early stopping from the options, else the config's lr_lineareval / early_stop_epochs."""
        return cls(hidden=tuple(options.hidden), lr=options.lr or run.lr_lineareval, epochs=options.epochs,
                   early_stop_epochs=(options.early_stop_epochs if options.early_stop_epochs is not None
                                      else run.early_stop_epochs),
                   standard_scaler=options.standard_scaler, mixup=options.mixup, seed=seed, device=device,
                   report_every=run.report_per_epochs, selection_metric=options.selection_metric)

    def selection(self) -> str:
        """The epoch whose weights were kept (the last of the best validation scores)."""
        best = max(i for i, (_, _, v) in enumerate(self.history_) if v == self.best_valid_) + 1
        return f'best epoch {best} of {self.epochs_run_}'

    @property
    def name(self) -> str:
        """The head\'s name in results."""
        return probe_name(self.hidden)

    def fit(self, X, y, X_val, y_val) -> 'ProbeHead':
        """Trains on X [N, D], y; selects the epoch on X_val, y_val. Returns self."""
        self._start_fit(y, X)
        self.history_ = []
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.model_ = make_mlp(np.asarray(X).shape[1], tuple(self.hidden), self.n_classes_).to(self.device)
        Xt, yt, Xv = self._tensor_x(X), self._tensor_y(y), self._tensor_x(X_val)
        opt = Adam(self.model_.parameters(), lr=self.lr, weight_decay=1e-8)
        loss_fn = loss_function(self.multi_label_)
        best, best_state, stale = -np.inf, copy.deepcopy(self.model_.state_dict()), 0
        batch_size = min(self.batch_size, len(Xt))
        for epoch in range(self.epochs):
            self.model_.train()
            order = torch.randperm(len(Xt), generator=gen).to(self.device)
            for start in range(0, len(Xt), batch_size):
                idx = order[start:start + batch_size]
                xb, yb = Xt[idx], yt[idx]
                if self.mixup > 0:
                    xb, yb = self._mix(xb, yb, gen)
                loss = loss_fn(self.model_(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            val = self._score_tensor(Xv, y_val)
            self.history_.append((epoch + 1, loss.item(), val))
            if self.report_every and (epoch + 1) % self.report_every == 0:
                log.info(f'probe epoch {epoch + 1}/{self.epochs}: loss {loss.item():.4f}, valid {self.metric_} '
                         f'{val:.4f} (best {max(best, val):.4f})')
            if val >= best:
                best, best_state, stale = val, copy.deepcopy(self.model_.state_dict()), 0
            else:
                stale += 1
            if self.early_stop_epochs and self.early_stop_epochs > 0 and stale >= self.early_stop_epochs:
                break
        if not np.isfinite(best):
            raise EvarError(f'Probe head: the validation {self.metric_} was never finite over {len(self.history_)} '
                            'epochs (no validation rows, or no positive validation clip for any class); a head is '
                            'never returned untrained.')
        self.model_.load_state_dict(best_state)
        self.best_valid_ = best
        self.epochs_run_ = len(self.history_)
        return self

    def _mix(self, xb, yb, gen):
        alpha = torch.full((len(xb), 1), float(self.mixup))
        lam = torch.distributions.Beta(alpha, alpha).sample().to(xb.device)
        perm = torch.randperm(len(xb), generator=gen).to(xb.device)
        target = yb if self.multi_label_ else nn.functional.one_hot(yb, self.n_classes_).float()
        return lam * xb + (1 - lam) * xb[perm], lam * target + (1 - lam) * target[perm]
