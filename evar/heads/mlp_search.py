"""A small grid search over probe heads, chosen on the validation split (`--head mlp_search`).

HEAR's practice (hear-eval-kit searches learning rate, hidden layers and more for its MLP), improved: the grid
includes the linear probe (HEAR's default grid has only hidden layers, so a representation that a linear layer reads
best is never scored as such), every point gets the same fixed budget (`epochs`, with early stopping on validation),
and the point is chosen on the validation split alone. The test split is only scored with the chosen point.

Grid: learning rate {1e-4, 1e-3, 1e-2} x hidden layers {none, 1 x 1024}: 6 EVAR-protocol probes (`ProbeHead`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..errors import EvarError
from .base import Head, probe_name, refuse_probe_options
from .probe import ProbeHead

DEFAULT_LRS = (1e-4, 1e-3, 1e-2)
DEFAULT_HIDDENS = ((), (1024,))


@dataclass
class MLPSearchHead(Head):
    """Grid search over `ProbeHead`s: every (lr, hidden) point is trained with the same budget and the one with the
    best validation score is kept (on a tie, the earlier point of the grid: linear before MLP, lower lr first).

    Args:
        lrs: Adam learning rates to try.
        hiddens: hidden layer sizes to try; () is the linear probe.
        epochs: maximum epochs of every point (the fixed budget).
        early_stop_epochs: epochs without a better validation score before a point stops.
        standard_scaler: standardise inputs with training statistics.
        mixup: the probes' mixup alpha; 0 disables.
        seed: every point's seed (same initialisation stream and batch order for each).
        device: torch device.
        selection_metric: the metric it selects with on validation; None: accuracy (single-label) or mAP (multi-label).

    Learned attributes: `best_` (the chosen fitted `ProbeHead`), `lr_`, `hidden_` (its point), `history_` ((lr,
    hidden, validation score, epochs run) per point, in grid order), `best_valid_`.
    """
    lrs: tuple = DEFAULT_LRS
    hiddens: tuple = DEFAULT_HIDDENS
    epochs: int = 200
    early_stop_epochs: int = 20
    standard_scaler: bool = True
    mixup: float = 0.0
    seed: int = 42
    device: str = 'cpu'
    selection_metric: Optional[str] = None

    def __post_init__(self):
        if not self.lrs or not self.hiddens:
            raise EvarError('mlp_search: the grid needs at least one learning rate and one hidden-layer setting.')

    @classmethod
    def from_options(cls, options, run, seed: int, device: str) -> 'MLPSearchHead':
        """The default grid with the options' epochs, early stopping (else the config's), scaler and mixup.

        Raises:
            EvarError: --lr or --hidden given (the search chooses them).
        """
        refuse_probe_options(replace(options, mixup=0.0), 'mlp_search',
                             'chooses the learning rate and hidden layers itself')
        return cls(epochs=options.epochs, early_stop_epochs=(options.early_stop_epochs if options.early_stop_epochs
                                                             is not None else run.early_stop_epochs),
                   standard_scaler=options.standard_scaler, mixup=options.mixup, seed=seed, device=device,
                   selection_metric=options.selection_metric)

    @property
    def name(self) -> str:
        """The head's name in results."""
        return 'mlp_search'

    def grid(self) -> list:
        """The (lr, hidden) points in search order: for each hidden setting, each learning rate."""
        return [(float(lr), tuple(int(h) for h in hidden)) for hidden in self.hiddens for lr in self.lrs]

    def selection(self) -> str:
        """The chosen point, its validation score and epoch (e.g. 'lr 0.001 linear, valid 0.91, best epoch 12 of 32')."""
        return (f'lr {self.lr_:g} {probe_name(self.hidden_)}, valid {self.best_valid_:.4f}, '
                f'{self.best_.selection()}')

    def fit(self, X, y, X_val, y_val) -> 'MLPSearchHead':
        """Trains every grid point on X [N, D], y; keeps the best on X_val, y_val. Returns self.

        Raises:
            EvarError: no point reached a finite validation score (see `ProbeHead.fit`).
        """
        self._start_fit(y)
        self.history_, best = [], None
        for lr, hidden in self.grid():
            probe = ProbeHead(hidden=hidden, lr=lr, epochs=self.epochs, early_stop_epochs=self.early_stop_epochs,
                              standard_scaler=self.standard_scaler, mixup=self.mixup, seed=self.seed,
                              device=self.device, selection_metric=self.selection_metric).fit(X, y, X_val, y_val)
            self.history_.append((lr, hidden, probe.best_valid_, probe.epochs_run_))
            if best is None or probe.best_valid_ > best.best_valid_:  # strict: ties keep the earlier, simpler point
                best = probe
        self.best_, self.lr_, self.hidden_ = best, best.lr, tuple(best.hidden)
        self.best_valid_ = float(best.best_valid_)
        return self

    def _scores(self, X) -> np.ndarray:
        return self.best_.predict_scores(X)
