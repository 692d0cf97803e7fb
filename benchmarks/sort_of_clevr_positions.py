"""How precisely a Sort-of-CLEVR pixel model's CNN cells say where each object is.

    python benchmarks/sort_of_clevr_positions.py pretrained:sort-of-clevr-pixels --data DATA
    python benchmarks/sort_of_clevr_positions.py RUN_DIR --data DATA --capacity-steps 3000

Each object's place in its cell (its centre in pixels, less the centre of the cell that holds it
on a grid of 75 / 5 = 15 px) is read from the CNN objects (features and coordinate tags) of that
cell, which is what g reads of an object, and of the 3x3 cells around it, by
read-outs fitted on the objects of --train-images training images, their CNN frozen, and
measured on those of --test-images test images: least squares (linear), and an MLP (2 x 256,
Adam, --mlp-steps). With --capacity-steps N, a fresh copy of the model's CNN is first trained
with an MLP on its 3x3 cells for N steps of 64 training images to give the places, then read
out the same way: what the architecture can encode when positions are what it is trained for,
beside what answering questions made it encode. Closest and furthest questions need distances
ordered to within the margins of docs/benchmarks.md. Prints a Markdown table; --json writes it.
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

BATCH = 64  # images a step when the CNN is trained for positions
ENCODE_CHUNK = 500  # images a forward pass when the CNN is frozen
REACHES = {0: "its cell", 1: "3x3 cells"}


def neighbourhoods(objects: torch.Tensor, xy: torch.Tensor, reach: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """CNN objects [N, cells, D] (features, then the cell's coordinate tags) and object centres
    [N, K, 2] (x, y pixels) -> the objects of the cells within ``reach`` cells of the one holding
    each centre on the grid of IMAGE_SIZE / side pixels (reach 0: that cell alone), [N * K,
    (2 reach + 1)^2 D], zeros beyond the border, and each centre's place in that cell (less the
    cell's centre), [N * K, 2]. (The CNN's cells are centred on a 16 px grid, not 15: the tags
    let a read-out tell the cells apart.)"""
    n, cells, width = objects.shape
    side = math.isqrt(cells)
    if side * side != cells:
        raise ValueError(f"expected a square grid of cells, got {cells}")
    grid = nn.functional.pad(objects.reshape(n, side, side, width), (0, 0, reach, reach, reach, reach))
    column = (xy[..., 0] * side / IMAGE_SIZE).long().clamp(max=side - 1)
    row = (xy[..., 1] * side / IMAGE_SIZE).long().clamp(max=side - 1)
    image = torch.arange(n)[:, None].expand_as(row)
    around = range(-reach, reach + 1)
    parts = [grid[image, row + reach + dy, column + reach + dx] for dy in around for dx in around]
    cell = IMAGE_SIZE / side
    place = xy - (torch.stack([column, row], -1).to(xy.dtype) * cell + cell / 2)
    return torch.cat(parts, -1).flatten(0, 1), place.flatten(0, 1)


def errors(predicted: torch.Tensor, target: torch.Tensor) -> dict:
    """RMSE of each coordinate, and the shares of coordinates off by more than 1 and 2 pixels."""
    error = (predicted - target).abs()
    return {"rmse_x": float(error[:, 0].pow(2).mean().sqrt()), "rmse_y": float(error[:, 1].pow(2).mean().sqrt()),
            "beyond_1px": float((error > 1).float().mean()), "beyond_2px": float((error > 2).float().mean())}


def read_out(inputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))


def adam(parameters, batch_loss, steps: int) -> None:
    """``steps`` Adam steps at 1e-3 with a cosine to zero, each on ``batch_loss()``."""
    optimizer = torch.optim.Adam(parameters, 1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    for _ in range(steps):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def fit_linear(features: torch.Tensor, places: torch.Tensor):
    """Least squares with a bias and a little ridge (float64); returns the fitted map."""
    def design(x):
        return torch.cat([x.double(), x.new_ones(len(x), 1).double()], 1)

    train = design(features)
    weights = torch.linalg.solve(train.T @ train + 1e-3 * torch.eye(train.shape[1], dtype=torch.float64),
                                 train.T @ places.double())
    return lambda x: (design(x) @ weights).float()


def fit_mlp(features: torch.Tensor, places: torch.Tensor, steps: int, seed: int):
    """The MLP read-out on standardized features, ``steps`` batches of 256; returns the fitted map."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    torch.manual_seed(seed)
    mlp = read_out(features.shape[1])
    generator = torch.Generator().manual_seed(seed)

    def batch_loss():
        index = torch.randint(len(features), (256,), generator=generator)
        return (mlp((features[index] - mean) / scale) - places[index]).pow(2).mean()

    adam(mlp.parameters(), batch_loss, steps)
    return lambda x: mlp((x - mean) / scale).detach()


def load_pixels(data: Path, split: str, count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` images of a split (uint8) and their objects' centres (float)."""
    arrays = np.load(data / f"{split}.npz")
    return (torch.from_numpy(arrays["images"][:count]),
            torch.from_numpy(arrays["object_xy"][:count].astype(np.float32)))


@torch.no_grad()
def encode(encoder: nn.Module, invert: bool, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encoder(image_to_float(images[start:start + ENCODE_CHUNK], invert))
                      for start in range(0, len(images), ENCODE_CHUNK)])


def read_outs(encoder: nn.Module, invert: bool, data: Path, train_images: int, test_images: int, mlp_steps: int,
              seed: int) -> dict:
    """Linear and MLP read-outs of a frozen CNN's cells, from each object's cell and from the 3x3
    around it: {"linear, its cell": errors, ...}."""
    encoder.eval()
    train_pixels, train_xy = load_pixels(data, "train", train_images)
    test_pixels, test_xy = load_pixels(data, "test", test_images)
    train_objects, test_objects = encode(encoder, invert, train_pixels), encode(encoder, invert, test_pixels)
    rows = {}
    for reach, cells in REACHES.items():
        train = neighbourhoods(train_objects, train_xy, reach)
        features, places = neighbourhoods(test_objects, test_xy, reach)
        rows[f"linear, {cells}"] = errors(fit_linear(*train)(features), places)
        rows[f"MLP, {cells}"] = errors(fit_mlp(*train, mlp_steps, seed)(features), places)
    return rows


def trained_for_positions(encoder: nn.Module, invert: bool, data: Path, steps: int, seed: int) -> nn.Module:
    """A fresh copy of ``encoder`` trained with an MLP on its 3x3 cells to give the objects' places."""
    torch.manual_seed(seed)
    fresh = copy.deepcopy(encoder)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # batch norm's running statistics too
    fresh.train()
    mlp = read_out(3 * 3 * fresh.object_dim)
    pixels, xy = load_pixels(data, "train", None)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss():
        index = torch.randint(len(pixels), (BATCH,), generator=generator)
        features, places = neighbourhoods(fresh(image_to_float(pixels[index], invert)), xy[index])
        return (mlp(features) - places).pow(2).mean()

    adam([*fresh.parameters(), *mlp.parameters()], batch_loss, steps)
    return fresh


def markdown(rows: dict) -> str:
    lines = ["| read-out | RMSE x (px) | RMSE y (px) | coordinates off by > 1 px | by > 2 px |", "|---|---|---|---|---|"]
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
    parser.add_argument("--mlp-steps", type=int, default=6000, help="Adam steps of the MLP read-outs (batch 256)")
    parser.add_argument("--capacity-steps", type=int, default=0,
                        help="also train a fresh copy of the CNN for positions this many steps of 64 images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    for name in ("train_images", "test_images", "mlp_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.capacity_steps < 0:
        parser.error("--capacity-steps must be 0 (none) or more")
    _, _, _, model = load_trained(args.model)
    if not isinstance(getattr(model, "encoder", None), ConvObjects):
        parser.error(f"{args.model}: not a pixel model (its objects do not come from a CNN)")
    sizes = (args.data, args.train_images, args.test_images, args.mlp_steps, args.seed)
    rows = {f"{name}, the model's CNN": row for name, row in read_outs(model.encoder, model.invert, *sizes).items()}
    if args.capacity_steps:
        encoder = trained_for_positions(model.encoder, model.invert, args.data, args.capacity_steps, args.seed)
        rows.update({f"{name}, its CNN trained for positions ({args.capacity_steps:,} steps)": row
                     for name, row in read_outs(encoder, model.invert, *sizes).items()})
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
