"""Sort-of-CLEVR models: an RN over CNN cells (pixels), an RN over the object table
(state descriptions), and the paper's CNN+MLP baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from relnet.nn import ConvObjects, conv_stack, image_to_float, mlp
from relnet.rn import RelationNetwork


class PixelRN(nn.Module):
    """CNN feature-map cells tagged with coordinates are the objects; the question conditions every pair."""

    def __init__(self, num_answers: int, question_dim: int, conv_channels: Sequence[int] = (24, 24, 24, 24),
                 g_widths: Sequence[int] = (256,) * 4, f_widths: Sequence[int] = (256, 256), dropout: float = 0.5,
                 aggregation: str = "sum", conv_order: str = "bn-relu", invert: bool = False,
                 coord_conv: bool = False):
        super().__init__()
        self.invert = invert
        self.encoder = ConvObjects(3, conv_channels, order=conv_order, coord_conv=coord_conv)
        self.rn = RelationNetwork(self.encoder.object_dim, num_answers, question_dim, g_widths, f_widths, dropout,
                                  aggregation)

    def forward(self, images: torch.Tensor, question: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """``images`` [I, H, W, 3] uint8; question q asks about image ``image_index[q]`` (default: image q)."""
        objects = self.encoder(image_to_float(images, self.invert))
        return self.rn(objects if image_index is None else objects[image_index], question)


class StateRN(nn.Module):
    """The object table (color, shape, position per object) is the set of objects."""

    def __init__(self, num_answers: int, question_dim: int, object_dim: int, g_widths: Sequence[int] = (256,) * 4,
                 f_widths: Sequence[int] = (256, 256), dropout: float = 0.0, aggregation: str = "sum"):
        super().__init__()
        self.rn = RelationNetwork(object_dim, num_answers, question_dim, g_widths, f_widths, dropout, aggregation)

    def forward(self, objects: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.rn(objects, question)


class CNNMLP(nn.Module):
    """The paper's baseline: the same CNN, its flattened feature map and the question into an MLP."""

    def __init__(self, num_answers: int, question_dim: int, image_size: int, conv_channels: Sequence[int] = (24, 24, 24, 24),
                 widths: Sequence[int] = (256,) * 4, dropout: float = 0.5, conv_order: str = "bn-relu",
                 invert: bool = False):
        super().__init__()
        self.invert = invert
        self.convs = conv_stack(3, conv_channels, order=conv_order)
        with torch.no_grad():
            flat_dim = self.convs(torch.zeros(1, 3, image_size, image_size)).numel()
        self.mlp = mlp(flat_dim + question_dim, widths, out_dim=num_answers, dropout=dropout)

    def forward(self, images: torch.Tensor, question: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        features = self.convs(image_to_float(images, self.invert)).flatten(1)
        if image_index is not None:
            features = features[image_index]
        return self.mlp(torch.cat([features, question], dim=1))


class StateMLP(nn.Module):
    """A baseline on state descriptions: the flattened object table and the question into an MLP."""

    def __init__(self, num_answers: int, question_dim: int, object_dim: int, num_objects: int,
                 widths: Sequence[int] = (256,) * 4, dropout: float = 0.0):
        super().__init__()
        self.mlp = mlp(num_objects * object_dim + question_dim, widths, out_dim=num_answers, dropout=dropout)

    def forward(self, objects: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([objects.flatten(1), question], dim=1))
