"""What a benchmark provides to the shared trainer: data, a model wiring, and metrics."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from relnet.errors import ConfigError
from relnet.train.preset import Preset


class Split:
    """One split of a benchmark, held as tensors in memory.

    Subclasses fill ``tensors`` (all moved together by ``to``) and implement ``batch``,
    which builds a batch by indexing: no per-sample Python.
    """

    name: str  # "train", "test", ...
    tensors: dict[str, torch.Tensor]
    # Tensors that examples index into (images, sentence tables) rather than one row per example.
    shared: tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model inputs (keyword arguments) and targets for the examples ``index``."""
        raise NotImplementedError

    def epoch_order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        """The example order of one epoch, read in consecutive batches of ``batch_size``.

        A function of (seed, epoch) only, so a resumed run continues it exactly.
        """
        return torch.randperm(len(self), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))

    def eval_order(self) -> torch.Tensor:
        """The order in which evaluation visits the examples (any order gives the same metrics)."""
        return torch.arange(len(self))

    def subset(self, index: torch.Tensor) -> "Split":
        """The examples ``index`` as a split of their own (sharing the tables they index into)."""
        part = copy.copy(self)
        part.tensors = {name: tensor if name in self.shared else tensor[index] for name, tensor in self.tensors.items()}
        return part

    def info(self) -> dict:
        """Sizes the model builder needs (vocabularies, feature sizes): plain data."""
        return {}

    def to(self, device: torch.device) -> "Split":
        self.tensors = {name: tensor.to(device) for name, tensor in self.tensors.items()}
        return self


class Task:
    """A benchmark. Subclasses set ``name`` and ``presets`` and implement the methods."""

    name: str = ""
    presets: dict[str, Preset] = {}
    # The metrics group (a dict of accuracies) drawn in the learning-curve plot.
    curve_group: str = ""
    # The split evaluated after every epoch of training.
    eval_split: str = "test"

    def load(self, data_dir: Path, split: str, preset: Preset, info: dict | None = None) -> Split:
        """One split as tensors. ``info`` (from the train split or a checkpoint) fixes the
        vocabularies, so that every split of a run is encoded the same way."""
        raise NotImplementedError

    def build_model(self, preset: Preset, info: dict) -> nn.Module:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(-1)

    def count_correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Examples answered right in a batch (the training accuracy's numerator)."""
        return (self.predict(outputs) == targets).sum()

    def metrics(self, split: Split, predictions: torch.Tensor) -> dict:
        """Accuracy overall and by group; ``predictions`` covers the whole split in order."""
        raise NotImplementedError

    def answer_names(self, info: dict) -> list[str]:
        """The answer each output class stands for (what `relnet predict` writes)."""
        raise ConfigError(f"`relnet predict` writes answers for tasks with an answer vocabulary; {self.name} has none")

    def figures(self, split: Split, predictions: torch.Tensor, out_dir: Path) -> list[Path]:
        """Pictures of predictions that ``relnet eval`` writes into the run (none by default)."""
        return []

    def format_metrics(self, metrics: dict) -> str:
        """The results table printed at the end of training and by ``relnet eval``."""
        raise NotImplementedError
