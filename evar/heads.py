"""Probe heads on frozen embeddings, as small estimators with fit / predict_scores / predict / score.

- `ProbeHead` follows EVAR's linear-evaluation protocol (its TorchMLPClassifier2) so numbers stay comparable with
  published EVAR results: standardised inputs, a linear layer (or an MLP of Linear-ReLU-Dropout(0.5) blocks with
  `hidden`), Adam with weight decay 1e-8, minibatches of min(200, n), up to 200 epochs, early stopping after
  `early_stop_epochs` epochs without a validation accuracy / mAP at least as good as the best (ties move the best
  to the later epoch), best weights restored; mixup mixes each sample with its own Beta(0.1, 0.1) weight.
- `LogisticRegressionHead` fits a converged L2-regularised logistic regression by full-batch L-BFGS for each
  strength on a grid and keeps the one that scores best on the validation split.
Both output one logit per class (two for a binary task), softmax + cross-entropy for single-label tasks and
sigmoid + BCE for multi-label ones. The test split never selects anything: only `fit`'s validation data does.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .metrics import score as metric_score

log = logging.getLogger('evar')


class Standardizer:
    def fit(self, X: np.ndarray):
        self.mean = X.mean(0, dtype=np.float64).astype(np.float32)
        std = X.std(0, dtype=np.float64).astype(np.float32)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float32) - self.mean) / self.std


def _loss_fn(multi_label: bool):
    return nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()


class _HeadBase:
    """Shared plumbing: label handling, standardisation, device placement, scoring."""
    multi_label: bool
    device: str
    model: nn.Module

    def _prepare(self, X, y):
        self.multi_label = np.asarray(y).ndim == 2
        self.n_classes = int(np.asarray(y).shape[1] if self.multi_label else np.max(y) + 1)
        self.metric = 'mAP' if self.multi_label else 'accuracy'
        self.scaler = Standardizer().fit(np.asarray(X, dtype=np.float32)) if self.standard_scaler else None

    def _tensor_x(self, X):
        X = self.scaler.transform(X) if self.scaler is not None else np.asarray(X, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(X)).to(self.device)

    def _tensor_y(self, y):
        y = torch.from_numpy(np.asarray(y))
        return (y.float() if self.multi_label else y.long()).to(self.device)

    def predict_scores(self, X) -> np.ndarray:
        """Class probabilities (softmax) or per-class sigmoid scores (multi-label)."""
        return self._scores_tensor(self._tensor_x(X))

    def _scores_tensor(self, Xt) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(Xt)
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
        return probs.float().cpu().numpy()

    def _score_tensor(self, Xt, y) -> float:
        return metric_score(self.metric, np.asarray(y), self._scores_tensor(Xt))

    def predict(self, X) -> np.ndarray:
        s = self.predict_scores(X)
        return (s > 0.5).astype(np.int64) if self.multi_label else s.argmax(1)

    def score(self, X, y) -> float:
        return metric_score(self.metric, np.asarray(y), self.predict_scores(X))


class Adam:
    """Adam with L2 weight decay, the same update as torch.optim.Adam. Written out because constructing any
    torch.optim optimizer imports torch._dynamo, which costs about 1.5 s per process on a 2-core CPU."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / correction2 ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / correction1)


def probe_name(hidden) -> str:
    """'linear', or 'mlp512' / 'mlp512x256' for hidden layer sizes."""
    return 'linear' if not hidden else 'mlp' + 'x'.join(str(int(h)) for h in hidden)


def make_mlp(d_in: int, hidden: tuple, n_out: int) -> nn.Sequential:
    layers, d = [], d_in
    for h in hidden:
        layers += [nn.Linear(d, int(h)), nn.ReLU(), nn.Dropout(0.5)]
        d = int(h)
    return nn.Sequential(*layers, nn.Linear(d, n_out))


@dataclass
class ProbeHead(_HeadBase):
    hidden: tuple = ()
    lr: float = 3e-4
    epochs: int = 200
    batch_size: int = 200
    early_stop_epochs: int = 20
    standard_scaler: bool = True
    mixup: float = 0.0  # alpha of the per-sample Beta(alpha, alpha) mixing weights; 0 disables
    seed: int = 42
    device: str = 'cpu'
    history: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return probe_name(self.hidden)

    def fit(self, X, y, X_val, y_val):
        self._prepare(X, y)
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.model = make_mlp(np.asarray(X).shape[1], tuple(self.hidden), self.n_classes).to(self.device)
        Xt, yt, Xv = self._tensor_x(X), self._tensor_y(y), self._tensor_x(X_val)
        opt = Adam(self.model.parameters(), lr=self.lr, weight_decay=1e-8)
        loss_fn = _loss_fn(self.multi_label)
        best, best_state, stale = -np.inf, copy.deepcopy(self.model.state_dict()), 0
        batch_size = min(self.batch_size, len(Xt))
        for epoch in range(self.epochs):
            self.model.train()
            order = torch.randperm(len(Xt), generator=gen).to(self.device)
            for start in range(0, len(Xt), batch_size):
                idx = order[start:start + batch_size]
                xb, yb = Xt[idx], yt[idx]
                if self.mixup > 0:
                    xb, yb = self._mix(xb, yb, gen)
                loss = loss_fn(self.model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            val = self._score_tensor(Xv, y_val)
            self.history.append((epoch + 1, loss.item(), val))
            if val >= best:
                best, best_state, stale = val, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
            if self.early_stop_epochs and self.early_stop_epochs > 0 and stale >= self.early_stop_epochs:
                break
        self.model.load_state_dict(best_state)
        self.best_valid = best
        self.epochs_run = len(self.history)
        return self

    def _mix(self, xb, yb, gen):
        alpha = torch.full((len(xb), 1), float(self.mixup))
        lam = torch.distributions.Beta(alpha, alpha).sample().to(xb.device)
        perm = torch.randperm(len(xb), generator=gen).to(xb.device)
        target = yb if self.multi_label else nn.functional.one_hot(yb, self.n_classes).float()
        return lam * xb + (1 - lam) * xb[perm], lam * target + (1 - lam) * target[perm]


DEFAULT_L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5)


@dataclass
class LogisticRegressionHead(_HeadBase):
    """L2-regularised logistic regression; the strength (per-sample loss + l2/2 * |W|^2) is chosen on validation."""
    l2_grid: tuple = DEFAULT_L2_GRID
    max_iter: int = 500
    tol: float = 1e-6
    standard_scaler: bool = True
    seed: int = 42
    device: str = 'cpu'
    history: list = field(default_factory=list)
    name: str = 'logreg'

    def fit(self, X, y, X_val, y_val):
        self._prepare(X, y)
        torch.manual_seed(self.seed)
        Xt, yt, Xv = self._tensor_x(X), self._tensor_y(y), self._tensor_x(X_val)
        loss_fn = _loss_fn(self.multi_label)
        model = nn.Linear(Xt.shape[1], self.n_classes).to(self.device)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        self.model = model
        best = (-np.inf, None, None)
        # From strong to weak regularisation, each fit warm-started from the previous solution.
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
            self.history.append((l2, val))
            if val > best[0]:
                best = (val, l2, copy.deepcopy(model.state_dict()))
        self.best_valid, self.l2, state = best
        model.load_state_dict(state)
        return self
