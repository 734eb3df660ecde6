"""The network that fine-tuning trains: an audio representation, its pooled clip embedding, and a classifier head
(EVAR's TaskNetwork / TaskHead recipe)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """BatchNorm1d without affine parameters, then a linear layer or an MLP (ReLU between layers); every Linear's
    weights drawn from N(0, 0.01^2) and biases zero, as EVAR's fine-tuning head (nttcslab/eval-audio-repr
    finetune.py, TaskHead).

    Args:
        dim: D of the clip embeddings [B, D].
        n_classes: C, the logits' width.
        hidden: hidden layer sizes; () for a linear head.
    """

    def __init__(self, dim: int, n_classes: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        sizes = [dim, *hidden, n_classes]
        layers: list = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(a, b)
            nn.init.normal_(linear.weight, mean=0.0, std=0.01)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] of clip embeddings [B, D]."""
        return self.mlp(self.norm(x))


class TaskNetwork(nn.Module):
    """An `AudioRepr` (`ar`) and a `ClassifierHead` (`head`): waves [B, N] with lengths [B] -> logits [B, C].

    The AR's frames are pooled over valid frames only (`AudioRepr.embed`), so padding never reaches the head.
    """

    def __init__(self, ar: nn.Module, n_classes: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.ar = ar
        self.head = ClassifierHead(int(ar.embedding_dim), n_classes, hidden)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] (not probabilities) of waves [B, N] at the AR's sample rate with valid lengths [B]."""
        return self.head(self.ar.embed(wav, lengths).float())


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """requires_grad of every parameter of `module`."""
    for p in module.parameters():
        p.requires_grad_(trainable)


def trainable_summary(network: nn.Module) -> str:
    """'N of M parameters train' for the log."""
    total = sum(p.numel() for p in network.parameters())
    train = sum(p.numel() for p in network.parameters() if p.requires_grad)
    return f'{train:,} of {total:,} parameters train'
