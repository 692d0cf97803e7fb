"""What a benchmark provides to the shared trainer: data, a model wiring, and metrics."""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from relnet.errors import ConfigError, DataError, shown
from relnet.explain import find_relation_network, pair_attribution
from relnet.nn.conv import CONV_ORDERS
from relnet.nn.symmetry import SYMMETRIES
from relnet.nn.text import SENTENCE_ENCODERS
from relnet.preset import Preset, is_number, is_whole
from relnet.rn import AGGREGATIONS

# The ranges of model options, checked before a model is built (docs/reliability.md).
MAX_WIDTH = 16_384  # the widest layer, channel count, embedding or LSTM state
MAX_LAYERS = 64  # the most layers in a list of widths, and the most attention hops
MAX_SCALE = 1e4  # a real-valued option other than dropout (CLEVR's position_scale), from 0
MAX_DATA_SIZE = 10_000_000  # a size the data gives the model: a vocabulary, the answers, an image's side
NONEMPTY = ("g_widths", "conv_channels")  # an empty list of these builds no model
COUNTS = ("hops", "sentence_words")  # options that count steps or slots: at most MAX_LAYERS
CHOICES = {"aggregation": AGGREGATIONS, "conv_order": CONV_ORDERS, "sentence_encoder": SENTENCE_ENCODERS,
           "symmetries": SYMMETRIES}


def option_problem(name: str, default, value) -> str | None:
    """What the model option ``name`` expects when ``value`` is out of its range, else None; the
    option's default (a list of widths, a whole number, a real number, a flag) says its kind."""
    if name in CHOICES:
        return None if isinstance(value, str) and value in CHOICES[name] else f"one of {', '.join(CHOICES[name])}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, (list, tuple)):
        least = 1 if name in NONEMPTY else 0
        fits = isinstance(value, (list, tuple)) and least <= len(value) <= MAX_LAYERS and all(
            is_whole(width, 1, MAX_WIDTH) for width in value)
        return None if fits else f"a list of {least} to {MAX_LAYERS} whole numbers from 1 to {MAX_WIDTH:,}"
    if isinstance(default, int):
        high = MAX_LAYERS if name in COUNTS else MAX_WIDTH
        return None if is_whole(value, 1, high) else f"a whole number from 1 to {high:,}"
    if isinstance(default, float) and name == "dropout":
        return None if is_number(value, 0, 1, below=True) else "a number >= 0 and < 1"
    if isinstance(default, float):
        return None if is_number(value, 0, MAX_SCALE) else f"a number >= 0 and <= {MAX_SCALE:g}"
    return None


def construct(model_class: type, preset: Preset, options: dict, *args, **given) -> nn.Module:
    """``model_class(*args, **given, **options)``, where ``options`` are the preset's model entries
    and ``args``/``given`` the sizes the data gives: an entry the class does not take, or a value out
    of its range, is one ConfigError that names it (and the nearest option, or the range)."""
    parameters = inspect.signature(model_class).parameters
    takes = [name for name in list(parameters)[len(args):] if name not in given]
    unknown = [name for name in options if name not in takes]
    if unknown:
        near = difflib.get_close_matches(unknown[0], takes, n=1)
        raise ConfigError(f"preset {preset.name!r}: {model_class.__name__} has no option model.{unknown[0]}"
                          + (f"; did you mean model.{near[0]}?" if near else "")
                          + f" (its options: {', '.join(f'model.{name}' for name in takes)})")
    for name, value in options.items():
        problem = option_problem(name, parameters[name].default, value)
        if problem:
            raise ConfigError(f"preset {preset.name!r}: model.{name}={shown(value)}: expected {problem}")
    for name, size in {**dict(zip(parameters, args)), **given}.items():
        if not is_whole(size, 1, MAX_DATA_SIZE):
            raise ConfigError(f"preset {preset.name!r}: the data gives {model_class.__name__} {name}={shown(size)}; "
                              f"expected a whole number from 1 to {MAX_DATA_SIZE:,}")
    return model_class(*args, **given, **options)


def filled(examples: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` of ``examples``: all of them in their order, then in further shuffles (a
    curriculum or a fixed share of one kind of question fills an epoch this way)."""
    if not count:
        return examples[:0]
    if not len(examples):
        raise DataError(f"the training split has no questions of a kind its epochs must draw {count:,} of (a "
                        f"curriculum or a share of one kind of question needs questions of that kind)")
    passes = [examples] + [examples[torch.randperm(len(examples), generator=generator)]
                           for _ in range(-(-count // len(examples)) - 1)]
    return torch.cat(passes)[:count]


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

    def scorable(self) -> bool:
        """Whether every example has an answer to score against (CLEVR's test split has none)."""
        return True

    def fingerprint(self) -> str:
        """A digest of the examples that a resumed run checks against the one it started on: every
        tensor's name, shape and dtype and about a million of its values, evenly spaced."""
        digest = hashlib.sha256()
        for name in sorted(self.tensors):
            tensor = self.tensors[name].detach()
            flat = tensor.reshape(-1)
            sample = flat[::max(1, flat.numel() // 1_000_000)].cpu()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(sample.numpy().tobytes())
        return digest.hexdigest()[:16]

    def to(self, device: torch.device) -> "Split":
        self.tensors = {name: tensor.to(device) for name, tensor in self.tensors.items()}
        return self


def word_ids(question: str, tokens, words: list[str], unknown_word: str) -> tuple[torch.Tensor, list[str]]:
    """[1, L] ids of a typed question's ``tokens`` in the vocabulary ``words`` and the tokens it
    lacks (read as ``unknown_word``); a ConfigError when the model knows none of them."""
    index = {word: i for i, word in enumerate(words)}
    unknown = [token for token in tokens if token not in index]
    if len(unknown) == len(tokens):
        raise ConfigError(f"question {shown(question)} has no word the model knows")
    return torch.tensor([[index.get(token, index[unknown_word]) for token in tokens]]), unknown


@dataclass
class View:
    """One example as a person sees it (what `relnet explain` and `relnet serve` draw).

    The objects of the RN are drawn as one of: the cells of a square grid over ``image`` (``grid``:
    a CNN's feature map, row-major), ``points``
    (in image pixels when there is an image, else in the scene's own plane coordinates), the
    ``sentences`` of a story, or balls moving along ``trajectories``.
    """

    question: str
    truth: str | None  # the true answer, when the example has one
    labels: list[str] = field(default_factory=list)  # a short name per object
    image: np.ndarray | None = None  # [H, W, 3] uint8
    grid: bool = False
    points: np.ndarray | None = None  # [N, 2]
    sentences: list[str] | None = None
    trajectories: np.ndarray | None = None  # [N, 2, frames]
    true_pairs: list[tuple[int, int]] = field(default_factory=list)  # pairs the truth relates (physics: springs)


@dataclass
class RelationMap:
    """What a model answered for one example and which objects and pairs carried it."""

    answer: str
    probability: float
    top: list[tuple[str, float]]  # the most probable answers, best first
    objects: np.ndarray  # [N] each real object's share
    pairs: np.ndarray  # [N, N] the value of each ordered pair (0 for padded objects)
    meaning: str  # what the values are, for the picture's legend
    threshold: float | None = None  # draw every pair whose c_ij + c_ji exceeds this, not the strongest few
    logit: float | None = None  # the explained logit (margin) and its linearization, which the pairs add up to
    linearized: float | None = None


def nonempty(split: Split, data_dir) -> Split:
    """``split``, or a DataError when it holds no examples (for the preset's question kinds)."""
    if len(split) == 0:
        raise DataError(f"{data_dir}: the {split.name} split holds no examples (for this preset); nothing to use")
    return split


class Task:
    """A benchmark. Subclasses set ``name`` and ``presets`` and implement the methods."""

    name: str = ""
    presets: dict[str, Preset] = {}
    # The metrics group (a dict of accuracies) drawn in the learning-curve plot.
    curve_group: str = ""
    # The split evaluated after every epoch of training.
    eval_split: str = "test"
    # Whether a person can type a question of their own (text read with the model's vocabulary).
    typed_questions: bool = False
    # The entries of preset.data that ``load`` reads; None: any (not checked).
    data_entries: tuple[str, ...] | None = None
    # Whether build_model works on the meta device, so that a model is sized before it is allocated
    # (the benchmarks' models do; a builder of your own may read files or tensors).
    builds_on_meta: bool = True

    def check_preset(self, preset: Preset) -> None:
        """A ConfigError for a preset this task cannot train: here, a data entry that ``load`` does
        not read (a typo would be ignored), named with the nearest one it does read."""
        if self.data_entries is None:
            return
        unknown = [str(name) for name in preset.data if name not in self.data_entries]
        if unknown:
            near = difflib.get_close_matches(unknown[0], self.data_entries, n=1)
            raise ConfigError(f"preset {preset.name!r}: {self.name} reads no data.{unknown[0][:60]}"
                              + (f"; did you mean data.{near[0]}?" if near else "")
                              + f" (it reads {', '.join(f'data.{name}' for name in self.data_entries) or 'none'})")

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

    # Looking inside a model (relnet explain, relnet serve).

    def relation_map(self, model: nn.Module, inputs: dict[str, torch.Tensor], info: dict) -> RelationMap:
        """The pair attribution of one example (a batch of one): relnet.explain's method, on the
        margin of the answer's logit over the runner-up's."""
        try:
            find_relation_network(model)
        except ValueError as error:
            raise ConfigError(f"{error}: {self.name} baselines have no pairs to show") from None
        result = pair_attribution(model, inputs, versus="runner-up")
        names = self.answer_names(info)
        probabilities = result.probabilities[0].cpu()
        best = probabilities.topk(min(5, len(probabilities)))
        real = result.real[0].cpu()
        return RelationMap(answer=names[int(result.answer[0])], probability=float(probabilities[result.answer[0]]),
                           top=[(names[int(i)], float(p)) for p, i in zip(best.values, best.indices)],
                           objects=result.objects[0].cpu()[real].numpy(),
                           pairs=result.pairs[0].cpu()[real][:, real].numpy(),
                           meaning=f"answer's logit margin over the runner-up ({names[int(result.versus[0])]})",
                           logit=float(result.logit[0]),
                           linearized=float(result.linearized[0]))

    def view(self, split: Split, index: int, preset: Preset, info: dict) -> View:
        """Example ``index`` of ``split`` as a person sees it."""
        raise ConfigError(f"{self.name} examples cannot be shown yet")

    def generated_split(self, preset: Preset, info: dict, count: int, seed: int) -> Split:
        """``count`` freshly generated examples (new random scenes), for benchmarks with a generator."""
        raise ConfigError(f"{self.name} has no generator of new examples; give its data directory instead")

    def questions(self, preset: Preset) -> list[str]:
        """Every question the model can be asked, when they form a short list (Sort-of-CLEVR's
        templates); empty when questions are free text or the task has none."""
        return []

    def asked_truth(self, split: Split, index: int, question: str, preset: Preset) -> str | None:
        """The true answer of ``question`` (one that ``ask`` read) about example ``index``, where the
        example's scene is known and defines it; None where it is not (free text, bAbI's stories)."""
        return None

    def ask(self, inputs: dict[str, torch.Tensor], question: str, preset: Preset,
            info: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
        """The inputs of one example (a batch of one) with ``question`` instead of its own, and the
        words of the question that the model does not know (read as unknown); a ConfigError when
        the question cannot be read at all."""
        raise ConfigError(f"{self.name} examples cannot be asked other questions")
