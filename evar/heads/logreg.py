"""L2-regularised logistic regression fitted to convergence, its strength chosen on the validation split."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import EvarError
from .base import TorchHead, loss_function, refuse_probe_options

DEFAULT_L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5)


@dataclass
class LogisticRegressionHead(TorchHead):
    """Logistic regression (softmax for single-label, per-class sigmoid for multi-label) on standardised
    embeddings, fitted by full-batch L-BFGS for each L2 strength of `l2_grid` (loss per sample + l2/2 * |W|^2, from
    strong to weak, each warm-started from the previous solution); the strength with the best validation score is
    kept. Deterministic: no seed-to-seed spread.

    Args:
        l2_grid: L2 strengths to try.
        max_iter: L-BFGS iterations per strength.
        tol: L-BFGS gradient tolerance.
        standard_scaler: standardise inputs with training statistics.
        seed: seeds torch (the fit itself starts from zeros).
        device: torch device.
        selection_metric: the metric it selects with on validation; None: accuracy (single-label) or mAP (multi-label).

    Learned attributes: `model_` (nn.Linear), `scaler_`, `l2_` (the chosen strength), `history_` ((l2, validation
    score) per strength), `best_valid_`.
    """
    l2_grid: tuple = DEFAULT_L2_GRID
    max_iter: int = 500
    tol: float = 1e-6
    standard_scaler: bool = True
    seed: int = 42
    device: str = 'cpu'
    selection_metric: Optional[str] = None

    @classmethod
    def from_options(cls, options, run, seed: int, device: str) -> 'LogisticRegressionHead':
        """Only standard_scaler and selection_metric are read from the options.

        Raises:
            EvarError: the probe's --lr, --hidden or --mixup given (they would have no effect).
        """
        refuse_probe_options(options, 'logreg', 'is fitted by L-BFGS with its L2 strength chosen on validation')
        return cls(standard_scaler=options.standard_scaler, seed=seed, device=device,
                   selection_metric=options.selection_metric)

    def selection(self) -> str:
        """The L2 strength kept."""
        return f'l2 {self.l2_:g}'

    @property
    def name(self) -> str:
        """The head\'s name in results."""
        return 'logreg'

    def fit(self, X, y, X_val, y_val) -> 'LogisticRegressionHead':
        """Fits on X [N, D], y for every strength; keeps the best on X_val, y_val. Returns self."""
        self._start_fit(y, X)
        self.history_ = []
        torch.manual_seed(self.seed)
        Xt, yt, Xv = self._tensor_x(X), self._tensor_y(y), self._tensor_x(X_val)
        loss_fn = loss_function(self.multi_label_)
        model = nn.Linear(Xt.shape[1], self.n_classes_).to(self.device)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        self.model_ = model
        best = (-np.inf, None, None)
        for l2 in sorted(self.l2_grid, reverse=True):
            opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                    tolerance_change=1e-9, history_size=20, line_search_fn='strong_wolfe')

            def closure(opt=opt, l2=l2):  # called by opt.step below, within this iteration
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(Xt), yt) + 0.5 * l2 * model.weight.pow(2).sum()
                loss.backward()
                return loss

            model.train()
            opt.step(closure)
            val = self._score_tensor(Xv, y_val)
            self.history_.append((l2, val))
            if val > best[0]:
                best = (val, l2, copy.deepcopy(model.state_dict()))
        if best[2] is None:
            raise EvarError(f'Logistic regression head: the validation {self.metric_} was never finite for any '
                            'strength (no validation rows, or no positive validation clip for any class); a head is '
                            'never returned untrained.')
        self.best_valid_, self.l2_, state = best
        model.load_state_dict(state)
        return self
