"""Multi-layer perceptrons, the building block of g, f and the baselines."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FeatureBatchNorm(nn.BatchNorm1d):
    """Batch norm over the last dimension of a tensor of any shape: every leading position (a
    sample, a pair of objects) is one row of the statistics."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features.reshape(-1, features.shape[-1])).reshape(features.shape)


def mlp(in_dim: int, widths: Sequence[int], out_dim: int | None = None, dropout: float = 0.0,
        batch_norm: bool = False) -> nn.Sequential:
    """Linear+ReLU for each width (Linear+batch norm+ReLU with ``batch_norm``); then, if
    ``out_dim`` is given, dropout and a linear output layer."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width, bias=not batch_norm), *([FeatureBatchNorm(width)] if batch_norm else []),
                   nn.ReLU()]
        in_dim = width
    if out_dim is not None:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
