"""What every head shares: the estimator contract, standardisation, the probe network, Adam, and the options.

A head is a small scikit-learn-style estimator over frozen clip embeddings: hyper-parameters are constructor
arguments, learned state lives in attributes ending in `_` and is reset by every `fit`, and `fit` returns the
head. Targets are class indices int [N] (single-label) or 0/1 matrices [N, C] (multi-label); a binary task gets two
outputs. `fit` receives the training and the validation rows only: whatever the head selects (an epoch, a
regularisation strength, a `k`) it selects on validation. The test split is only ever passed to `predict_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import EvarError
from ..metrics import score as metric_score


@dataclass(frozen=True)
class HeadOptions:
    """The command line's head settings, shared by the frozen-embedding heads (each reads the ones it uses).

    Attributes:
        head: the head's registry name (probe, logreg, knn).
        lr: the probe's learning rate; None takes the config's `lr_lineareval`.
        hidden: the probe's hidden layer sizes; () is a linear probe.
        standard_scaler: standardise embeddings with training-split statistics (probe, logreg).
        mixup: alpha of the probe's per-sample Beta(alpha, alpha) mixup; 0 disables.
        epochs: the probe's maximum number of epochs.
        early_stop_epochs: epochs without a better validation score before the probe stops; None takes the
            config's `early_stop_epochs`.
        valid_fraction: share of the training rows carved as validation when a task has no validation split.
        k: neighbours of the kNN head, or 'auto' to choose it on the validation split.
        temperature: the kNN head's softmax temperature over cosine similarities.
        selection_metric: the metric heads select with on the validation split (a key of `evar.metrics.METRICS`);
            None: accuracy for single-label targets, mAP for multi-label ones. `evar linear` sets the task's metric
            when it is neither (e.g. roc_auc_ovr), so what is selected is what is scored.
    """
    head: str = 'probe'
    lr: Optional[float] = None
    hidden: tuple = ()
    standard_scaler: bool = True
    mixup: float = 0.0
    epochs: int = 200
    early_stop_epochs: Optional[int] = None
    valid_fraction: float = 0.1
    k: Union[int, str] = 10
    temperature: float = 0.07
    selection_metric: Optional[str] = None


def refuse_probe_options(options: HeadOptions, head: str, why: str) -> None:
    """Raises EvarError when the probe's --lr, --hidden or --mixup are set for `head`, which does not use them
    (`why` says what it does instead), so a flag never passes without effect."""
    given = {name: value for name, value in (('lr', options.lr), ('hidden', tuple(options.hidden)),
                                             ('mixup', options.mixup)) if value}
    if given:
        flags = ', '.join(f'--{name} {value!r}' for name, value in given.items())
        raise EvarError(f'--head {head} {why}; drop {flags}.')


class Standardizer:
    """Per-dimension standardisation with statistics of the data it is fitted on (float64 sums, float32 output);
    constant dimensions are left unscaled."""

    def fit(self, X: np.ndarray) -> 'Standardizer':
        """Learns `mean_` and `std_` [D] of X [N, D]."""
        self.mean_ = X.mean(0, dtype=np.float64).astype(np.float32)
        std = X.std(0, dtype=np.float64).astype(np.float32)
        self.std_ = np.where(std > 0, std, 1.0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(X - mean_) / std_, float32 [N, D]."""
        return (np.asarray(X, dtype=np.float32) - self.mean_) / self.std_


def loss_function(multi_label: bool) -> nn.Module:
    """BCE-with-logits for multi-label targets, cross-entropy for class indices."""
    return nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()


class Head:
    """Base of the frozen-embedding heads.

    Subclasses set `mode` (the results column: 'linear' or 'knn'), implement `fit(X, y, X_val, y_val)` and
    `_scores(X)`, and build themselves from the command line's options with `from_options`.

    Learned attributes common to all heads (set by `fit`): `multi_label_`, `n_classes_`, `metric_` (the metric the
    head selects with: its `selection_metric`, else accuracy or mAP), `best_valid_` (the validation score of what was
    selected).
    """
    mode: ClassVar[str] = 'linear'
    selection_metric: Optional[str] = None  # each head's dataclass declares it as a field

    @classmethod
    def from_options(cls, options: HeadOptions, run, seed: int, device: str) -> 'Head':
        """The head configured by the command line's `options` and the model config's run settings `run`."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The head's name in results (e.g. linear, mlp512, logreg, knn)."""
        raise NotImplementedError

    @property
    def needs_validation(self) -> bool:
        """Whether `fit` selects anything on the validation rows; a head that does not (kNN with a fixed k) is fitted
        on the whole training split when the validation rows were carved from it."""
        return True

    def selection(self) -> str:
        """What `fit` chose on validation, for logs (e.g. 'l2 0.001', 'k 10', 'best epoch 37 of 57')."""
        return ''

    def _start_fit(self, y) -> None:
        """Resets learned state from the targets' form: 1-D class indices or a 2-D 0/1 matrix."""
        y = np.asarray(y)
        self.multi_label_ = y.ndim == 2
        self.n_classes_ = int(y.shape[1] if self.multi_label_ else y.max() + 1)
        self.metric_ = self.selection_metric or ('mAP' if self.multi_label_ else 'accuracy')

    def predict_scores(self, X) -> np.ndarray:
        """Scores float32 [N, C] of clip embeddings X [N, D]: class probabilities (single-label, rows sum to 1) or
        per-class scores in [0, 1] (multi-label)."""
        return self._scores(X)

    def _scores(self, X) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        """Class indices int64 [N] (single-label), or 0/1 int64 [N, C] at a 0.5 threshold (multi-label)."""
        s = self.predict_scores(X)
        return (s > 0.5).astype(np.int64) if self.multi_label_ else s.argmax(1)

    def score(self, X, y) -> float:
        """The head's selection metric (`metric_`) of X [N, D] against targets y."""
        return metric_score(self.metric_, np.asarray(y), self.predict_scores(X))


class TorchHead(Head):
    """A head whose model is a torch module over (optionally standardised) embeddings."""
    standard_scaler: bool
    device: str

    def _start_fit(self, y, X=None) -> None:
        super()._start_fit(y)
        self.scaler_ = Standardizer().fit(np.asarray(X, dtype=np.float32)) if self.standard_scaler else None

    def _tensor_x(self, X) -> torch.Tensor:
        X = self.scaler_.transform(X) if self.scaler_ is not None else np.asarray(X, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(X)).to(self.device)

    def _tensor_y(self, y) -> torch.Tensor:
        y = torch.from_numpy(np.asarray(y))
        return (y.float() if self.multi_label_ else y.long()).to(self.device)

    def _scores(self, X) -> np.ndarray:
        return self._scores_tensor(self._tensor_x(X))

    def _scores_tensor(self, Xt: torch.Tensor) -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            logits = self.model_(Xt)
            probs = torch.sigmoid(logits) if self.multi_label_ else torch.softmax(logits, -1)
        return probs.float().cpu().numpy()

    def _score_tensor(self, Xt: torch.Tensor, y) -> float:
        return metric_score(self.metric_, np.asarray(y), self._scores_tensor(Xt))


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
        """Drops the parameters' gradients."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        """One Adam update of every parameter that has a gradient."""
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
    """Linear(d_in, n_out), or Linear-ReLU-Dropout(0.5) blocks of `hidden` sizes then Linear to n_out (EVAR's
    MLP)."""
    layers, d = [], d_in
    for h in hidden:
        layers += [nn.Linear(d, int(h)), nn.ReLU(), nn.Dropout(0.5)]
        d = int(h)
    return nn.Sequential(*layers, nn.Linear(d, n_out))
