"""Looking inside a trained RN: one example, its answer and the pairs that carried it, as a
picture (`relnet explain`) or on a local web page (`relnet serve`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path

import numpy as np
import torch
from torch import nn

from relnet.errors import ConfigError
from relnet.preset import Preset
from relnet.tasks.base import RelationMap, Split, Task, View


@dataclass
class Explained:
    view: View
    relation: RelationMap
    unknown_words: list[str] = field(default_factory=list)  # words of an asked question the model does not know


def explain_example(task: Task, preset: Preset, info: dict, model: nn.Module, split: Split, index: int,
                    question: str | None = None, image: np.ndarray | None = None) -> Explained:
    """Example ``index`` of ``split`` (asked ``question`` instead of its own, and about ``image``
    [H, W, 3] uint8 instead of its own, if given): what the model answers and which objects and
    pairs carried the answer."""
    if not 0 <= index < len(split):
        raise ConfigError(f"example {index} is out of range: the {split.name} split has {len(split)} (0 to {len(split) - 1})")
    inputs, _ = split.batch(torch.tensor([index], device=_device(split)))
    view = task.view(split, index, preset, info)
    unknown: list[str] = []
    if image is not None:
        if "images" not in inputs:
            raise ConfigError(f"preset {preset.name!r} reads no images (its inputs: {', '.join(sorted(inputs))})")
        pixels = torch.tensor(np.asarray(image, dtype=np.uint8), device=inputs["images"].device)
        inputs = {**inputs, "images": pixels.unsqueeze(0)}
        inputs.pop("image_index", None)
        view.image, view.truth = image, None
    if question is not None:
        inputs, unknown = task.ask(inputs, question, preset, info)
        view.question = " ".join(question.split())
        # Another question's truth follows from the example's scene where the task knows it; not from an upload.
        view.truth = None if image is not None else task.asked_truth(split, index, view.question, preset)
    return Explained(view, task.relation_map(model, inputs, info), unknown)


def object_labels(view: View, count: int) -> list[str]:
    """A name per object: the view's own, or a CNN cell's (row, column)."""
    if view.labels:
        return view.labels
    side = round(count ** 0.5)
    return [f"cell ({k // side}, {k % side})" if view.grid else f"object {k}" for k in range(count)]


GENERATED_EXAMPLES = 20  # scenes generated when no data directory is given


def example_split(task: Task, preset: Preset, info: dict, data_dir: Path | None, split: str | None,
                  seed: int = 0) -> Split:
    """The examples to look at: a split of ``data_dir``, or freshly generated scenes."""
    if data_dir is not None:
        return task.load(data_dir, split or task.eval_split, preset, info)
    if split is not None:
        raise ConfigError(f"--split {split} needs --data: without it, examples are generated")
    return task.generated_split(preset, info, GENERATED_EXAMPLES, seed)


def _device(split: Split) -> torch.device:
    return next(iter(split.tensors.values())).device


__all__ = ["Explained", "example_split", "explain_example", "object_labels"]
