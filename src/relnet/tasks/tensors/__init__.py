"""Your own data in the shared trainer: examples as tensors in memory, any model.

    from relnet.tasks import TensorSplit, TensorTask
    from relnet.train import Preset, train

    task = TensorTask("my-task", build_model=lambda preset, info: MyModel(**preset.model),
                      splits={"train": TensorSplit("train", {"objects": x}, y), "test": TensorSplit("test", ...)})
    train(task, Preset(name="mine", task="my-task", description="...", model={...}), None, "runs/mine")

A split is a dict of input tensors (the model's keyword arguments), each with one row per
example, and a target tensor; a batch indexes every one of them. The trainer's loss and metrics
are those of a classifier (cross-entropy over the model's logits, accuracy), unless a subclass
overrides ``loss``, ``predict`` and ``metrics`` as the benchmarks do (relnet.tasks.base.Task).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from relnet.errors import ConfigError, DataError
from relnet.preset import Preset
from relnet.tasks.base import Split, Task


class TensorSplit(Split):
    """Examples as tensors: ``inputs`` (name -> [E, ...]) are the model's keyword arguments and
    ``targets`` [E] what it should answer; ``info`` (plain data) reaches the model builder."""

    def __init__(self, name: str, inputs: dict[str, torch.Tensor], targets: torch.Tensor, info: dict | None = None):
        if not inputs or "target" in inputs:
            raise DataError(f"split {name!r}: give the model's inputs as a non-empty dict of tensors (no key 'target')")
        sizes = {key: len(value) for key, value in inputs.items()}
        if any(size != len(targets) for size in sizes.values()):
            raise DataError(f"split {name!r}: every input needs one row per target ({len(targets)}); got {sizes}")
        self.name = name
        self.tensors = {**inputs, "target": targets}
        self._info = dict(info or {})

    def __len__(self) -> int:
        return len(self.tensors["target"])

    def batch(self, index: torch.Tensor):
        inputs = {key: value[index] for key, value in self.tensors.items() if key != "target"}
        return inputs, self.tensors["target"][index]

    def info(self) -> dict:
        return self._info


class TensorTask(Task):
    """A task of your own: named splits of a :class:`TensorSplit` each and a model builder
    ``build_model(preset, info) -> nn.Module``. It trains with ``relnet.train.train`` like the
    benchmarks (checkpoints, --resume, curves, metrics.json), evaluating ``eval_split``."""

    builds_on_meta = False  # the builder is yours: it is called once, on the CPU

    def __init__(self, name: str, splits: dict[str, TensorSplit], build_model: Callable[[Preset, dict], nn.Module],
                 eval_split: str = "test"):
        if "train" not in splits or eval_split not in splits:
            raise ConfigError(f"task {name!r}: needs a 'train' split and the evaluation split {eval_split!r}; "
                              f"got {sorted(splits)}")
        self.name, self.splits, self.builder, self.eval_split = name, splits, build_model, eval_split

    def load(self, data_dir: Path | None, split: str, preset: Preset, info: dict | None = None) -> TensorSplit:
        if split not in self.splits:
            raise DataError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def build_model(self, preset: Preset, info: dict) -> nn.Module:
        return self.builder(preset, info)

    def metrics(self, split: TensorSplit, predictions: torch.Tensor) -> dict:
        correct = (predictions.cpu() == split.tensors["target"].cpu()).float()
        return {"split": split.name, "questions": len(correct), "overall": correct.mean().item()}

    def format_metrics(self, metrics: dict) -> str:
        return f"{self.name}, {metrics['split']} split: {100 * metrics['overall']:.2f}% of {metrics['questions']:,}"
