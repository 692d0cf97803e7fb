"""Image encoders whose feature-map cells become the RN's objects."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


CONV_ORDERS = ("bn-relu", "relu-bn")


class AddCoordinates(nn.Module):
    """Appends two channels, each pixel's x and y in [-1, 1], to [B, C, H, W] maps (CoordConv,
    Liu et al. 2018): a convolution reading them can tell where in the image it is, which plain
    convolutions, being translation-equivariant, cannot."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = maps.shape
        coords = cell_coordinates(height, width, maps.device, maps.dtype).T.reshape(1, 2, height, width)
        return torch.cat([maps, coords.expand(batch, -1, -1, -1)], dim=1)


def conv_stack(in_channels: int, channels: Sequence[int], stride: int = 2, order: str = "bn-relu",
               coord_conv: bool = False) -> nn.Sequential:
    """3x3 convolutions with stride, each followed by batch norm and ReLU (the paper's visual front
    end). ``order="relu-bn"`` normalizes after the ReLU instead, so the cells handed on have zero
    mean and unit variance per channel (as in the most used public Sort-of-CLEVR code).
    ``coord_conv`` gives every convolution the pixel coordinates as two more input channels."""
    if order not in CONV_ORDERS:
        raise ValueError(f"conv order must be one of {CONV_ORDERS}, got {order!r}")
    layers: list[nn.Module] = []
    for width in channels:
        if coord_conv:
            layers.append(AddCoordinates())
            in_channels += 2
        # A conv followed directly by batch norm needs no bias; one followed by ReLU does.
        layers.append(nn.Conv2d(in_channels, width, kernel_size=3, stride=stride, padding=1, bias=order == "relu-bn"))
        norm_and_activation = [nn.BatchNorm2d(width), nn.ReLU()]
        layers += norm_and_activation if order == "bn-relu" else norm_and_activation[::-1]
        in_channels = width
    return nn.Sequential(*layers)


def cell_coordinates(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """(x, y) of every cell of a height x width map, scaled to [-1, 1], row-major: [H*W, 2]."""
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype) if height > 1 else torch.zeros(1, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype) if width > 1 else torch.zeros(1, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(height * width, 2)


def image_to_float(images: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """uint8 [B, H, W, C] images (as stored) to float [B, C, H, W] in [0, 1]; ``invert`` gives
    1 - x, so that a white background is 0 like the convolutions' zero padding (else the image
    border looks like an edge to every filter)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images [B, H, W, C], got {images.dtype} {tuple(images.shape)}")
    pixels = images.permute(0, 3, 1, 2).float().div_(255)
    return pixels.neg_().add_(1) if invert else pixels


class ConvObjects(nn.Module):
    """A CNN whose output cells, each tagged with its (x, y) coordinates, are objects.

    Input float images [B, C, H, W]; output objects [B, H'*W', channels[-1] + 2].
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (24, 24, 24, 24), stride: int = 2,
                 order: str = "bn-relu", coord_conv: bool = False):
        super().__init__()
        self.convs = conv_stack(in_channels, channels, stride, order, coord_conv)
        self.object_dim = channels[-1] + 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.convs(images)
        batch, channels, height, width = features.shape
        cells = features.flatten(2).transpose(1, 2)  # [B, H'*W', C]
        coords = cell_coordinates(height, width, features.device, cells.dtype)
        return torch.cat([cells, coords.expand(batch, -1, -1)], dim=-1)
