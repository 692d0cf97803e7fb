"""How precisely a Sort-of-CLEVR pixel model's CNN cells say where each object is.

    python benchmarks/sort_of_clevr_positions.py pretrained:sort-of-clevr-pixels --data DATA
    python benchmarks/sort_of_clevr_positions.py RUN_DIR --data DATA --capacity-steps 3000

Each object's place in its cell (its centre in pixels, less the centre of the cell that holds it)
is read from the CNN features of that cell alone (as g sees an object) and of the 3x3 cells
around it, by a read-out fitted on the objects of --train-images training images and measured on
those of --test-images test images: least squares (linear), and an MLP (2 x 256, Adam,
--mlp-steps). With --capacity-steps N, the same CNN architecture, freshly initialized, is trained
with the 3x3 MLP read-out for N steps of 64 training images to give those places: what the CNN
can encode when positions are what it is trained for, beside what answering questions made it
encode. Closest and furthest questions need distances ordered to within the margins of
docs/benchmarks.md. Prints a Markdown table; --json writes it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from relnet.nn.conv import ConvObjects, image_to_float  # noqa: E402
from relnet.pretrained import load_trained  # noqa: E402
from relnet.tasks.sort_of_clevr.generate import IMAGE_SIZE  # noqa: E402

BATCH = 64


def neighbourhoods(objects: torch.Tensor, xy: torch.Tensor, reach: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """CNN objects [N, cells, C + 2] (the last two: the cell's coordinate tag) and centres [N, K, 2]
    (x, y pixels) -> the features of the cells within ``reach`` cells of the one holding each centre
    (reach 1: the 3x3 around it; 0: that cell alone, as g sees an object), [N * K, (2 reach + 1)^2 C],
    zeros beyond the border, and each centre's place in its cell, [N * K, 2]."""
    n, cells, width = objects.shape
    side = math.isqrt(cells)
    if side * side != cells:
        raise ValueError(f"expected a square grid of cells, got {cells}")
    cell = IMAGE_SIZE / side
    grid = nn.functional.pad(objects[..., :-2].reshape(n, side, side, width - 2), (0, 0, reach, reach, reach, reach))
    column = (xy[..., 0] / cell).long().clamp(max=side - 1)
    row = (xy[..., 1] / cell).long().clamp(max=side - 1)
    image = torch.arange(n)[:, None].expand_as(row)
    around = range(-reach, reach + 1)
    parts = [grid[image, row + reach + dy, column + reach + dx] for dy in around for dx in around]
    centre = torch.stack([column, row], -1).to(xy.dtype) * cell + cell / 2
    return torch.cat(parts, -1).flatten(0, 1), (xy - centre).flatten(0, 1)


def errors(predicted: torch.Tensor, target: torch.Tensor) -> dict:
    """RMSE of each coordinate and the shares of coordinates off by more than 1 and 2 pixels."""
    error = (predicted - target).abs()
    return {"rmse_x": float(error[:, 0].pow(2).mean().sqrt()), "rmse_y": float(error[:, 1].pow(2).mean().sqrt()),
            "beyond_1px": float((error > 1).float().mean()), "beyond_2px": float((error > 2).float().mean())}


def read_out(inputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))


def fit_linear(features: torch.Tensor, places: torch.Tensor):
    """Least squares with a bias and a little ridge (float64); returns the fitted map."""
    design = torch.cat([features.double(), features.new_ones(len(features), 1).double()], 1)
    weights = torch.linalg.solve(design.T @ design + 1e-3 * torch.eye(design.shape[1], dtype=torch.float64),
                                 design.T @ places.double())
    return lambda x: (torch.cat([x.double(), x.new_ones(len(x), 1).double()], 1) @ weights).float()


def fit_mlp(features: torch.Tensor, places: torch.Tensor, steps: int, seed: int):
    """The MLP read-out on standardized features, Adam 1e-3 with a cosine over ``steps`` of 256."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    torch.manual_seed(seed)
    mlp = read_out(features.shape[1])
    optimizer = torch.optim.Adam(mlp.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(features), (256,), generator=generator)
        loss = (mlp((features[index] - mean) / scale) - places[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return lambda x: mlp((x - mean) / scale).detach()


def load_images(data: Path, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = np.load(data / f"{split}.npz")
    return (torch.from_numpy(arrays["images"][:count]),
            torch.from_numpy(arrays["object_xy"][:count].astype(np.float32)))


@torch.no_grad()
def encode(encoder: nn.Module, invert: bool, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder(image_to_float(images[start:start + 500], invert)) for start in range(0, len(images), 500)])


def probe(model: nn.Module, data: Path, train_images: int, test_images: int, mlp_steps: int, seed: int) -> dict:
    """Read-outs of the trained model's cells, from the cell holding each object and from the 3x3
    around it: {"linear, 3x3 cells": errors, ...}."""
    train_images_, train_xy = load_images(data, "train", train_images)
    test_images_, test_xy = load_images(data, "test", test_images)
    train_objects = encode(model.encoder, model.invert, train_images_)
    test_objects = encode(model.encoder, model.invert, test_images_)
    rows = {}
    for reach, cells in ((0, "its cell"), (1, "3x3 cells")):
        train = neighbourhoods(train_objects, train_xy, reach)
        test = neighbourhoods(test_objects, test_xy, reach)
        rows[f"linear, {cells}"] = errors(fit_linear(*train)(test[0]), test[1])
        rows[f"MLP, {cells}"] = errors(fit_mlp(*train, mlp_steps, seed)(test[0]), test[1])
    return rows


def capacity(model: nn.Module, data: Path, steps: int, test_images: int, seed: int) -> dict:
    """The model's CNN, freshly initialized, trained with the MLP read-out to give each object's
    place in its cell: its errors on the test images."""
    torch.manual_seed(seed)
    encoder = copy.deepcopy(model.encoder)
    for module in encoder.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # batch norm's running statistics too
    encoder.train()
    mlp = read_out(9 * (encoder.object_dim - 2))
    optimizer = torch.optim.Adam([*encoder.parameters(), *mlp.parameters()], 1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    images, xy = load_images(data, "train", None)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(images), (BATCH,), generator=generator)
        features, places = neighbourhoods(encoder(image_to_float(images[index], model.invert)), xy[index])
        loss = (mlp(features) - places).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    encoder.eval()
    test_images_, test_xy = load_images(data, "test", test_images)
    features, places = neighbourhoods(encode(encoder, model.invert, test_images_), test_xy)
    with torch.no_grad():
        return errors(mlp(features), places)


def markdown(rows: dict) -> str:
    lines = ["| read-out | RMSE x (px) | RMSE y (px) | off by > 1 px | off by > 2 px |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['rmse_x']:.2f} | {row['rmse_y']:.2f} | {100 * row['beyond_1px']:.1f}% | "
                     f"{100 * row['beyond_2px']:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="pretrained:NAME, an exported NAME.safetensors or a run directory")
    parser.add_argument("--data", type=Path, required=True, help="Sort-of-CLEVR directory (relnet data sort-of-clevr)")
    parser.add_argument("--train-images", type=int, default=5000, help="images whose objects fit the read-outs")
    parser.add_argument("--test-images", type=int, default=2000, help="images whose objects measure them")
    parser.add_argument("--mlp-steps", type=int, default=6000, help="Adam steps of the MLP read-out (batch 256)")
    parser.add_argument("--capacity-steps", type=int, default=0,
                        help="also train the architecture's CNN for positions this many steps of 64 images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    _, _, _, model = load_trained(args.model)
    if not isinstance(getattr(model, "encoder", None), ConvObjects):
        parser.error(f"{args.model}: not a pixel model (its objects do not come from a CNN)")
    model.eval()
    rows = {f"{name} of the trained model": row for name, row in
            probe(model, args.data, args.train_images, args.test_images, args.mlp_steps, args.seed).items()}
    if args.capacity_steps:
        rows[f"MLP, 3x3 cells of the CNN trained for positions ({args.capacity_steps} steps)"] = capacity(
            model, args.data, args.capacity_steps, args.test_images, args.seed)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
