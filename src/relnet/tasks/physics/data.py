"""On-disk format of the physics data: one byte-deterministic .npz per split (see docs/physics.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from relnet.errors import DataError
from relnet.io import load_npz, save_npz
from relnet.tasks.physics.simulate import FORMAT_VERSION, MAX_SYSTEMS, NUM_BALLS, NUM_FRAMES, count_systems, generate

SPLITS = ("train", "test")


def write_dataset(out_dir: str | os.PathLike, train_scenes: int = 100_000, test_scenes: int = 10_000, seed: int = 0,
                  progress: bool = True) -> list[Path]:
    """Simulate and write ``out_dir/train.npz`` and ``out_dir/test.npz`` (different seeds from ``seed``)."""
    out_dir = Path(out_dir)
    paths = []
    for index, (split, scenes) in enumerate(zip(SPLITS, (train_scenes, test_scenes))):
        with tqdm(total=scenes, desc=f"{split} scenes", unit="scene", disable=not progress) as bar:
            arrays = generate(scenes, np.random.SeedSequence([seed, index]), progress=lambda done: bar.update(done - bar.n))
        path = out_dir / f"{split}.npz"
        save_npz(path, arrays)
        paths.append(path)
    return paths


def load_split(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a split; a DataError names the file and what is wrong."""
    path = Path(path)
    arrays = load_npz(path, ("format_version", "trajectories", "connections", "num_systems"),
                      "simulate it with `relnet data physics --out DIR`")
    if arrays["format_version"].shape != () or arrays["format_version"].dtype.kind not in "iu" \
            or int(arrays["format_version"]) != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {arrays['format_version']!r}, expected {FORMAT_VERSION}")
    scenes = len(arrays["trajectories"])
    expected = {"trajectories": (np.float32, (scenes, NUM_FRAMES, NUM_BALLS, 2)),
                "connections": (np.uint8, (scenes, NUM_BALLS, NUM_BALLS)),
                "num_systems": (np.int8, (scenes,))}
    for key, (dtype, shape) in expected.items():
        if arrays[key].dtype != dtype or arrays[key].shape != shape:
            raise DataError(f"{path}: key '{key}' is {arrays[key].dtype} {arrays[key].shape}, "
                            f"expected {np.dtype(dtype)} {shape}")
    connections = arrays["connections"]
    if scenes == 0:
        raise DataError(f"{path}: no scenes")
    if not np.isfinite(arrays["trajectories"]).all() or np.abs(arrays["trajectories"]).max() > 1:
        raise DataError(f"{path}: key 'trajectories' has values outside the box [-1, 1]")
    if connections.max() > 1 or (connections != connections.transpose(0, 2, 1)).any() \
            or connections[:, np.arange(NUM_BALLS), np.arange(NUM_BALLS)].any():
        raise DataError(f"{path}: key 'connections' must be symmetric 0/1 matrices with a zero diagonal")
    if (arrays["num_systems"] != count_systems(connections)).any() or arrays["num_systems"].max() > MAX_SYSTEMS:
        raise DataError(f"{path}: key 'num_systems' disagrees with the connected systems of 'connections'")
    return arrays
