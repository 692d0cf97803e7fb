"""On-disk format of Sort-of-CLEVR: one byte-deterministic .npz file per split (see docs/sort-of-clevr.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from relnet.errors import DataError
from relnet.io import load_npz, save_npz
from relnet.tasks.sort_of_clevr.generate import (
    ANSWERS,
    FORMAT_VERSION,
    IMAGE_SIZE,
    KINDS,
    NUM_OBJECTS,
    OBJECT_HALF_SIZE,
    SHAPES,
    SUBTYPES,
    generate,
    vocabulary_arrays,
)

_TERNARY = KINDS.index("ternary")


def save_split(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one split's arrays, atomically and byte-identically for identical arrays."""
    save_npz(path, arrays)


def load_split(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a split written by `save_split`; raise DataError on anything unexpected."""
    path = Path(path)
    arrays = load_npz(path, _expected_keys(), "generate it with `relnet data sort-of-clevr --out DIR`")
    _check_layout(path, arrays)
    _check_values(path, arrays)
    return arrays


def write_dataset(
    out_dir: str | os.PathLike,
    train_images: int = 10000,
    test_images: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Generate and write `out_dir/train.npz` and `out_dir/test.npz`; return their paths.

    Train and test use different seeds derived from `seed`, so their images differ.
    """
    for name, value in (("train_images", train_images), ("test_images", test_images)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split_index, (split, num_images) in enumerate((("train", train_images), ("test", test_images))):
        path = out_dir / f"{split}.npz"
        if progress:
            with tqdm(total=2, desc=f"{split} ({num_images} images)", unit="step") as bar:
                bar.set_postfix_str("generating")
                arrays = generate(num_images, np.random.SeedSequence([seed, split_index]))
                bar.update()
                bar.set_postfix_str(f"writing {path}")
                save_split(path, arrays)
                bar.update()
        else:
            save_split(path, generate(num_images, np.random.SeedSequence([seed, split_index])))
        paths.append(path)
    return paths[0], paths[1]


def _expected_layout(num_images: int, num_questions: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Key -> (dtype, shape); the vocabularies accept unicode string arrays of any width."""
    vocabularies = {key: (np.dtype(np.str_), value.shape) for key, value in vocabulary_arrays().items()}
    return {
        "images": (np.dtype(np.uint8), (num_images, IMAGE_SIZE, IMAGE_SIZE, 3)),
        "object_color": (np.dtype(np.int8), (num_images, NUM_OBJECTS)),
        "object_shape": (np.dtype(np.int8), (num_images, NUM_OBJECTS)),
        "object_xy": (np.dtype(np.int16), (num_images, NUM_OBJECTS, 2)),
        "q_image": (np.dtype(np.int32), (num_questions,)),
        "q_kind": (np.dtype(np.int8), (num_questions,)),
        "q_subtype": (np.dtype(np.int8), (num_questions,)),
        "q_color": (np.dtype(np.int8), (num_questions, 2)),
        "answer": (np.dtype(np.int8), (num_questions,)),
        **vocabularies,
        "format_version": (np.dtype(np.int32), ()),
    }


def _expected_keys() -> list[str]:
    return list(_expected_layout(0, 0))


def _check_layout(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Every key has its expected dtype and shape (N from images, Q from q_image)."""

    def leading(key: str) -> int:
        return arrays[key].shape[0] if arrays[key].ndim else 0

    for key, (dtype, shape) in _expected_layout(leading("images"), leading("q_image")).items():
        found = arrays[key]
        dtype_ok = found.dtype.kind == "U" if dtype.kind == "U" else found.dtype == dtype
        if not dtype_ok:
            expected = "a unicode string dtype" if dtype.kind == "U" else dtype
            raise DataError(f"{path}: key '{key}' has dtype {found.dtype}, expected {expected}")
        if found.shape != shape:
            raise DataError(f"{path}: key '{key}' has shape {found.shape}, expected {shape}")


def _check_values(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Format version, vocabularies and every index are what this version of relnet understands."""
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: key 'format_version' is {version}, expected {FORMAT_VERSION}")
    for key, expected in vocabulary_arrays().items():
        if not np.array_equal(arrays[key], expected):
            raise DataError(f"{path}: key '{key}' is {arrays[key].tolist()}, expected {expected.tolist()}")
    low_xy, high_xy = OBJECT_HALF_SIZE, IMAGE_SIZE - 1 - OBJECT_HALF_SIZE
    ternary = arrays["q_kind"] == _TERNARY
    for key, where, values, low, high in (
        ("object_color", "", arrays["object_color"], 0, NUM_OBJECTS - 1),
        ("object_shape", "", arrays["object_shape"], 0, len(SHAPES) - 1),
        ("object_xy", "", arrays["object_xy"], low_xy, high_xy),
        ("q_image", "", arrays["q_image"], 0, arrays["images"].shape[0] - 1),
        ("q_kind", "", arrays["q_kind"], 0, len(KINDS) - 1),
        ("q_subtype", "", arrays["q_subtype"], 0, len(SUBTYPES[KINDS[0]]) - 1),
        ("q_color", " in column 0", arrays["q_color"][:, 0], 0, NUM_OBJECTS - 1),
        ("q_color", " in column 1 of a ternary question", arrays["q_color"][ternary, 1], 0, NUM_OBJECTS - 1),
        ("q_color", " in column 1 of a non-ternary question", arrays["q_color"][~ternary, 1], -1, -1),
        ("answer", "", arrays["answer"], 0, len(ANSWERS) - 1),
    ):
        bad = values[(values < low) | (values > high)]
        if bad.size:
            raise DataError(f"{path}: key '{key}' holds {bad[0]}{where}, expected values in [{low}, {high}]")
