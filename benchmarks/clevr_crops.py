"""Measure how close relnet's CLEVR renders look to real CLEVR v1.0: train an attribute classifier
on object crops of generated images, then test it on crops of real CLEVR images.

    python benchmarks/clevr_crops.py --out /work/bench/crops.json
    python benchmarks/clevr_crops.py --out /tmp/crops.json --scenes 40 --epochs 1      # seconds: checks the script runs
    python benchmarks/clevr_crops.py --picture docs/clevr-render-comparison.png --before-picture OLD.png

Each object is cut out around its ``pixel_coords`` (a square whose side shrinks with the object's
depth), resized to 32x32 and labelled with its color, shape, material and size. A small CNN with
one head per attribute trains on the crops of ``--scenes`` generated scenes (all but every tenth
scene) and is tested on the held-out generated scenes and on every object of the real sample.
A classifier that does well on generated crops but not on real ones sees objects that look
different from CLEVR's. The render speed (images/s, one process) is measured on the way.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from relnet.tasks.clevr.generate import GeneratorOptions, make_scene
from relnet.tasks.clevr.render import render, sample_lights
from relnet.tasks.clevr.scene import CAMERA_POSITION, Camera
from relnet.tasks.clevr.schema import ATTRIBUTES

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "clevr-real-sample"  # ../shared beside the repo
NAMES = ("color", "shape", "material", "size")
CROP = 32  # side of the classifier's input
REFERENCE_DEPTH = 11.0  # an object at this depth gets a crop of --crop pixels


def crop(image: np.ndarray, pixel_coords, side: int) -> np.ndarray:
    """A ``CROP``x``CROP`` float crop around the object at ``pixel_coords`` (x, y, depth); the crop's
    side on the image shrinks with depth, so near and far objects fill it alike."""
    x, y, depth = pixel_coords
    half = max(int(round(side * REFERENCE_DEPTH / depth / 2)), 8)
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="edge")
    patch = padded[y:y + 2 * half, x:x + 2 * half]
    patch = Image.fromarray(patch).resize((CROP, CROP), Image.BILINEAR)
    return np.asarray(patch, dtype=np.float32) / 255.0


def labels(obj: dict) -> list[int]:
    return [ATTRIBUTES[name].index(obj[name]) for name in NAMES]


def generated_crops(scenes: int, seed: int, side: int):
    """Crops, labels and scene indices of ``scenes`` generated scenes, and the render speed."""
    options = GeneratorOptions(split="crops", seed=seed)
    images, targets, owners = [], [], []
    start = time.perf_counter()
    for index in range(scenes):
        scene, image = make_scene(index, options)
        for obj in scene["objects"]:
            images.append(crop(image, obj["pixel_coords"], side))
            targets.append(labels(obj))
            owners.append(index)
    speed = scenes / (time.perf_counter() - start)
    return np.stack(images), np.array(targets), np.array(owners), speed


def real_crops(side: int):
    scenes = json.loads((REAL / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    images, targets = [], []
    for scene in scenes:
        image = np.asarray(Image.open(REAL / "images" / "train" / scene["image_filename"]))[..., :3]
        for obj in scene["objects"]:
            x, y, depth = obj["pixel_coords"]
            images.append(crop(np.ascontiguousarray(image), (int(x), int(y), depth), side))
            targets.append(labels(obj))
    return np.stack(images), np.array(targets)


class CropNet(nn.Module):
    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for out in (32, 64, 96):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList(nn.Linear(width, len(ATTRIBUTES[name])) for name in NAMES)

    def forward(self, x):
        features = self.body(x)
        return [head(features) for head in self.heads]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def train(images: np.ndarray, targets: np.ndarray, epochs: int, seed: int) -> CropNet:
    torch.manual_seed(seed)
    model = CropNet()
    x, y = to_tensor(images), torch.from_numpy(targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for batch in order.split(64):
            inputs = x[batch]
            # Mirror images left-right: no attribute depends on it.
            flip = torch.rand(len(batch), generator=generator) < 0.5
            inputs = torch.where(flip[:, None, None, None], inputs.flip(-1), inputs)
            loss = sum(nn.functional.cross_entropy(out, y[batch, k]) for k, out in enumerate(model(inputs)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.3f}", flush=True)
    return model


@torch.no_grad()
def accuracy(model: CropNet, images: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    model.eval()
    predicted = torch.stack([out.argmax(-1) for out in model(to_tensor(images))], dim=1).numpy()
    right = predicted == targets
    result = {name: round(float(right[:, k].mean()), 4) for k, name in enumerate(NAMES)}
    result["all_four"] = round(float(right.all(axis=1).mean()), 4)
    result["objects"] = len(targets)
    return result


def real_camera(scene: dict) -> Camera:
    """The CLEVR camera of a real scene: CLEVR jitters its camera's position and keeps it aimed at
    the origin, so search the jitter cube for the position that best projects the objects onto
    their recorded pixel coordinates."""
    steps = np.linspace(-0.5, 0.5, 21)
    coords = np.array([obj["3d_coords"] for obj in scene["objects"]])
    pixels = np.array([obj["pixel_coords"][:2] for obj in scene["objects"]], dtype=np.float64)
    best, best_error = None, np.inf
    for dx in steps:
        for dy in steps:
            for dz in steps:
                camera = Camera.looking_at(CAMERA_POSITION + [dx, dy, dz])
                error = np.square(camera.project(coords)[:, :2] - pixels).sum()
                if error < best_error:
                    best, best_error = camera, error
    return best


def picture(path: Path, before: Path | None, index: int) -> None:
    """Real image ``index`` of the sample beside relnet's render of the same scene (its objects and
    fitted camera, the default lights); with ``before``, an earlier such picture, its render
    panel goes in the middle, so the picture shows real | before | now."""
    scenes = json.loads((REAL / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    scene = scenes[index]
    real = np.asarray(Image.open(REAL / "images" / "train" / scene["image_filename"]))[..., :3]
    lights = sample_lights(np.random.default_rng(0), 0.0)
    panels = [("real CLEVR v1.0", real)]
    if before is not None:
        old = np.asarray(Image.open(before).convert("RGB"))
        panels.append(("relnet, before", old[:, -real.shape[1]:]))
    panels.append(("relnet, now", render(scene["objects"], real_camera(scene), lights)[0]))
    canvas = Image.new("RGB", (sum(p.shape[1] for _, p in panels) + 8 * (len(panels) - 1), real.shape[0]), "white")
    x = 0
    for title, panel in panels:
        canvas.paste(Image.fromarray(panel), (x, 0))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((x, 0, x + 100, 16), fill=(40, 40, 40))  # also hides an earlier picture's title
        draw.text((x + 6, 3), title, fill=(255, 255, 255))
        x += panel.shape[1] + 8
    canvas.save(path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--scenes", type=int, default=600, help="generated scenes (every tenth is held out)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--crop", type=int, default=48, help="crop side in pixels at depth 11")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture", type=Path, help="only write the real-vs-relnet comparison picture here")
    parser.add_argument("--before-picture", type=Path, help="with --picture: an earlier picture whose render goes in the middle")
    parser.add_argument("--picture-scene", type=int, default=0, help="with --picture: which real sample scene")
    args = parser.parse_args()
    torch.set_num_threads(2)

    if args.picture:
        picture(args.picture, args.before_picture, args.picture_scene)
        return
    images, targets, owners, speed = generated_crops(args.scenes, args.seed, args.crop)
    print(f"rendered {args.scenes} scenes at {speed:.1f} images/s, {len(targets)} objects", flush=True)
    held_out = owners % 10 == 9
    start = time.perf_counter()
    model = train(images[~held_out], targets[~held_out], args.epochs, args.seed)
    results = {
        "render_images_per_second": round(speed, 2),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_objects": int((~held_out).sum()),
        "generated_held_out": accuracy(model, images[held_out], targets[held_out]),
        "real": accuracy(model, *real_crops(args.crop)),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
