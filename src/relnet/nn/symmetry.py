"""The symmetries of a square box centred at the origin (the dihedral group D4: swap the axes or
not, then mirror x or not, and y or not), acting on 2-D trajectories laid out as
``[..., x at every frame, y at every frame]``.

A model whose task does not change under these maps (which balls are joined by springs, how many
systems there are) can be made to respect them (``symmetrized``): trained on a random map of each
example, and evaluated as the mean of its outputs over all eight, which is then exactly invariant."""

from __future__ import annotations

from collections.abc import Callable

import torch

SYMMETRIES = ("none", "d4")  # what a model may be made to respect (its model.symmetries)


def _mapped(trajectories: torch.Tensor, swap, flip_x, flip_y) -> torch.Tensor:
    """The trajectories under one map (or one map an example: [B, 1, 1] masks)."""
    x, y = trajectories.chunk(2, dim=-1)
    x, y = torch.where(swap, y, x), torch.where(swap, x, y)
    return torch.cat([torch.where(flip_x, -x, x), torch.where(flip_y, -y, y)], dim=-1)


def box_symmetries(trajectories: torch.Tensor) -> list[torch.Tensor]:
    """The eight images of ``trajectories`` [..., 2 * frames] under D4, the identity first."""
    maps = [(swap, flip_x, flip_y) for swap in (False, True) for flip_x in (False, True) for flip_y in (False, True)]
    return [_mapped(trajectories, *(torch.tensor(flag, device=trajectories.device) for flag in flags))
            for flags in maps]


def random_box_symmetry(trajectories: torch.Tensor) -> torch.Tensor:
    """Each example [B, ...] under a map of D4 drawn for it (from torch's global random stream, as
    dropout draws)."""
    flags = torch.rand(3, trajectories.shape[0], device=trajectories.device) < 0.5
    shape = (trajectories.shape[0],) + (1,) * (trajectories.dim() - 1)
    return _mapped(trajectories, *(flag.view(shape) for flag in flags))


def symmetrized(model: Callable[[torch.Tensor], torch.Tensor], trajectories: torch.Tensor, symmetries: str,
                training: bool) -> torch.Tensor:
    """``model(trajectories)`` made to respect ``symmetries`` ("none" or "d4"): in training on a
    random map of each example, in evaluation the mean of its outputs over all eight maps."""
    if symmetries == "none":
        return model(trajectories)
    if training:
        return model(random_box_symmetry(trajectories))
    return torch.stack([model(image) for image in box_symmetries(trajectories)]).mean(0)
