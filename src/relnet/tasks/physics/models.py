"""Physics models: RNs over the balls (each ball's 16 positions are one object) and MLP baselines
over all trajectories concatenated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from relnet.nn import mlp
from relnet.nn.symmetry import SYMMETRIES, symmetrized
from relnet.rn import RelationFunction, RelationNetwork

from relnet.tasks.physics.simulate import NUM_BALLS, NUM_FRAMES

# Frame-to-frame velocity and acceleration are tiny next to positions (about 0.02 and 0.003 per
# frame); these scales bring them to order 1 so that g does not have to learn them from
# near-cancelling weights. They are fixed linear functions of the positions: no new information.
VELOCITY_GAIN, ACCELERATION_GAIN = 20.0, 400.0
MOTION_DIM = 2 * (NUM_FRAMES + (NUM_FRAMES - 1) + (NUM_FRAMES - 2))


def motion_features(trajectories: torch.Tensor) -> torch.Tensor:
    """[B, balls, 2*16] positions (16 x, then 16 y) -> [B, balls, 90]: positions, scaled first
    and second differences over the frames."""
    paths = trajectories.unflatten(-1, (2, NUM_FRAMES))  # [B, balls, (x, y), frames]
    velocity = paths.diff(dim=-1)
    acceleration = velocity.diff(dim=-1)
    return torch.cat([paths.flatten(-2), VELOCITY_GAIN * velocity.flatten(-2),
                      ACCELERATION_GAIN * acceleration.flatten(-2)], dim=-1)


def upper_pairs(num_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j), i < j, of the unordered pairs in row-major order: 45 for 10 balls."""
    return torch.triu_indices(num_objects, num_objects, offset=1).unbind(0)


def _checked(symmetries: str) -> str:
    if symmetries not in SYMMETRIES:
        raise ValueError(f"symmetries must be one of {SYMMETRIES}, got {symmetries!r}")
    return symmetries


class ConnectionRN(nn.Module):
    """Reads each pair's connection from g: a linear head on g(o_i, o_j), averaged over the two
    orders of the pair, gives one logit per unordered pair [B, 45]. ``symmetries="d4"`` makes it
    respect the box's mirrors and turns (``relnet.nn.symmetry``), which leave the springs as they are."""

    def __init__(self, g_widths: Sequence[int] = (256,) * 4, symmetries: str = "none"):
        super().__init__()
        self.symmetries = _checked(symmetries)
        self.g = RelationFunction(MOTION_DIM, 0, g_widths)
        self.head = nn.Linear(self.g.out_dim, 1)
        first, second = upper_pairs(NUM_BALLS)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        return symmetrized(self.logits, trajectories, self.symmetries, self.training)

    def logits(self, trajectories: torch.Tensor) -> torch.Tensor:
        left, right = self.g.project(motion_features(trajectories), None)
        logits = self.head(self.g.pairs(left, right)).squeeze(-1)  # [B, N, N], ordered pairs
        return 0.5 * (logits[:, self.first, self.second] + logits[:, self.second, self.first])


class CountRN(nn.Module):
    """The paper's RN, f over the summed relations: logits over the number of systems;
    ``symmetries`` as for ``ConnectionRN``."""

    def __init__(self, num_classes: int, g_widths: Sequence[int] = (256,) * 4,
                 f_widths: Sequence[int] = (256, 256), symmetries: str = "none"):
        super().__init__()
        self.symmetries = _checked(symmetries)
        self.rn = RelationNetwork(MOTION_DIM, num_classes, 0, g_widths, f_widths)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        return symmetrized(self.logits, trajectories, self.symmetries, self.training)

    def logits(self, trajectories: torch.Tensor) -> torch.Tensor:
        return self.rn(motion_features(trajectories))


class TrajectoryMLP(nn.Module):
    """Baseline: every ball's trajectory concatenated, into an MLP."""

    def __init__(self, out_dim: int, widths: Sequence[int] = (256,) * 4):
        super().__init__()
        self.mlp = mlp(NUM_BALLS * MOTION_DIM, widths, out_dim=out_dim)

    def forward(self, trajectories: torch.Tensor) -> torch.Tensor:
        return self.mlp(motion_features(trajectories).flatten(1))
