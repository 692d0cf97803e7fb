"""Multi-layer perceptrons, the building block of g, f and the baselines."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(in_dim: int, widths: Sequence[int], out_dim: int | None = None, dropout: float = 0.0) -> nn.Sequential:
    """Linear+ReLU for each width; then, if ``out_dim`` is given, dropout and a linear output layer."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    if out_dim is not None:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
