"""Physics models: RNs over the balls (each ball's 16 positions are one object) and MLP baselines
over all trajectories concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from relnet.nn import mlp
from relnet.rn import RelationFunction, RelationNetwork

from relnet.tasks.physics.simulate import NUM_BALLS


def upper_pairs(num_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j), i < j, of the unordered pairs in row-major order: 45 for 10 balls."""
    return torch.triu_indices(num_objects, num_objects, offset=1).unbind(0)


class ConnectionRN(nn.Module):
    """Reads each pair's connection from g: a linear head on g(o_i, o_j), averaged over the two
    orders of the pair, gives one logit per unordered pair [B, 45]."""

    def __init__(self, object_dim: int, g_widths: Sequence[int] = (256,) * 4):
        super().__init__()
        self.g = RelationFunction(object_dim, 0, g_widths)
        self.head = nn.Linear(self.g.out_dim, 1)
        first, second = upper_pairs(NUM_BALLS)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        left, right = self.g.project(trajectories, None)
        logits = self.head(self.g.pairs(left, right)).squeeze(-1)  # [B, N, N], ordered pairs
        return 0.5 * (logits[:, self.first, self.second] + logits[:, self.second, self.first])


class CountRN(nn.Module):
    """The paper's RN, f over the summed relations: logits over the number of systems."""

    def __init__(self, object_dim: int, num_classes: int, g_widths: Sequence[int] = (256,) * 4,
                 f_widths: Sequence[int] = (256, 256)):
        super().__init__()
        self.rn = RelationNetwork(object_dim, num_classes, 0, g_widths, f_widths)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        return self.rn(trajectories)


class TrajectoryMLP(nn.Module):
    """Baseline: every ball's trajectory concatenated, into an MLP."""

    def __init__(self, object_dim: int, out_dim: int, widths: Sequence[int] = (256,) * 4):
        super().__init__()
        self.mlp = mlp(NUM_BALLS * object_dim, widths, out_dim=out_dim)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        return self.mlp(trajectories.flatten(1))
