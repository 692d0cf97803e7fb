"""Sort-of-CLEVR as a benchmark of the shared trainer: splits as tensors, models, metrics, presets."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from relnet.errors import ConfigError, DataError, shown
from relnet.preset import Preset, is_number
from relnet.tasks.base import Split, Task, View, construct, filled
from relnet.tasks.sort_of_clevr.data import load_split
from relnet.tasks.sort_of_clevr.generate import (ANSWERS, COLORS, IMAGE_SIZE, KINDS, NUM_OBJECTS, SHAPES, SUBTYPES,
                                                  answer, generate, question_text, render)
from relnet.tasks.sort_of_clevr.models import CNNMLP, PixelRN, StateMLP, StateRN

NUM_COLORS = len(COLORS)
# Question vector: one-hot color of X, of Y (zeros when unused), kind, subtype.
QUESTION_DIM = 2 * NUM_COLORS + len(KINDS) + 3
# State object vector: one-hot color, one-hot shape, (x, y) scaled to [-1, 1].
OBJECT_DIM = NUM_COLORS + len(SHAPES) + 2
# Each question subtype's (kind, subtype) numbers, by its name.
SUBTYPE_NUMBERS = {name: (kind, number) for kind, key in enumerate(KINDS) for number, name in enumerate(SUBTYPES[key])}
# The paper's Sort-of-CLEVR asks non-relational and binary relational questions only.
PAPER_KINDS = ["non_relational", "binary"]


def encode_questions(q_color: torch.Tensor, q_kind: torch.Tensor, q_subtype: torch.Tensor) -> torch.Tensor:
    """[Q, QUESTION_DIM] float question vectors from the stored question table."""
    color_x = F.one_hot(q_color[:, 0].long(), NUM_COLORS)
    # -1 (no second color) becomes an all-zero row.
    color_y = F.one_hot((q_color[:, 1].long() + 1), NUM_COLORS + 1)[:, 1:]
    kind = F.one_hot(q_kind.long(), len(KINDS))
    subtype = F.one_hot(q_subtype.long(), 3)
    return torch.cat([color_x, color_y, kind, subtype], dim=1).float()


def decode_question(vector: torch.Tensor) -> tuple[int, int, tuple[int, int]]:
    """(kind, subtype, (color x, color y or -1)) of one question vector."""
    color_x = int(vector[:NUM_COLORS].argmax())
    color_y = int(vector[NUM_COLORS:2 * NUM_COLORS].argmax()) if vector[NUM_COLORS:2 * NUM_COLORS].any() else -1
    kind = int(vector[2 * NUM_COLORS:2 * NUM_COLORS + len(KINDS)].argmax())
    return kind, int(vector[-3:].argmax()), (color_x, color_y)


def all_questions(kinds) -> dict[str, tuple[int, int, tuple[int, int]]]:
    """Every question of the given kinds, by its text."""
    found = {}
    for kind in (KINDS.index(name) for name in kinds):
        seconds = range(NUM_COLORS) if KINDS[kind] == "ternary" else [-1]
        for subtype in range(3):
            for x in range(NUM_COLORS):
                for y in seconds:
                    if y != x:
                        found[question_text(kind, subtype, (x, y))] = (kind, subtype, (x, y))
    return found


def encode_objects(object_color: torch.Tensor, object_shape: torch.Tensor, object_xy: torch.Tensor) -> torch.Tensor:
    """[N, 6, OBJECT_DIM] float object tables (state descriptions)."""
    center = (IMAGE_SIZE - 1) / 2
    position = (object_xy.float() - center) / center
    return torch.cat([F.one_hot(object_color.long(), NUM_COLORS).float(),
                      F.one_hot(object_shape.long(), len(SHAPES)).float(), position], dim=-1)


class SortOfClevrSplit(Split):
    """All questions of one split; a batch gathers each question's image or object table.

    With ``questions_per_image`` k > 1 an epoch's batches are made of groups of k questions about
    the same image, and a pixel batch holds each of its images once (``images``) with, per
    question, the one it asks about (``image_index``): the CNN runs once per image.
    With ``non_relational_epochs`` e > 0 (a curriculum) the first e epochs ask non-relational
    questions only: each of them twice (the paper's mix is half of each), in two shuffles, so that
    an epoch keeps its length. A fractional e ends the curriculum within an epoch (0.6: its first
    60% of questions), so that it spans the same number of questions on a larger training split. With ``relational_share`` s, every later epoch is that share of
    relational questions and the rest non-relational ones, each kind drawn in shuffles of its own
    questions: once non-relational questions are learnt, more of an epoch goes to those left. With
    ``relational_mix`` too ({subtype: share}), the relational part is made of those subtypes in
    those shares, each drawn in shuffles of its own questions: more of it to the subtypes still
    being learnt (closest and furthest) than to those learnt early (count).
    """

    shared = ("scene",)

    def __init__(self, arrays: dict, use_pixels: bool, name: str, kinds: tuple[str, ...] = KINDS,
                 questions_per_image: int = 1, non_relational_epochs: int = 0, relational_share: float | None = None,
                 relational_mix: dict[str, float] | None = None):
        self.name = name
        self.use_pixels = use_pixels
        self.questions_per_image = questions_per_image
        self.non_relational_epochs = non_relational_epochs
        self.relational_share = relational_share
        self.relational_mix = relational_mix
        scene = torch.from_numpy(arrays["images"]) if use_pixels else encode_objects(
            torch.from_numpy(arrays["object_color"]), torch.from_numpy(arrays["object_shape"]),
            torch.from_numpy(arrays["object_xy"]))
        self.tensors = {
            "scene": scene,
            "question": encode_questions(*(torch.from_numpy(arrays[key]) for key in ("q_color", "q_kind", "q_subtype"))),
            "image": torch.from_numpy(arrays["q_image"]).long(),
            "answer": torch.from_numpy(arrays["answer"]).long(),
            "kind": torch.from_numpy(arrays["q_kind"]).long(),
            "subtype": torch.from_numpy(arrays["q_subtype"]).long(),
        }
        # Keep only the questions of the requested kinds (the paper asked no ternary questions).
        keep = torch.isin(self.tensors["kind"], torch.tensor([KINDS.index(kind) for kind in kinds]))
        if not keep.all():
            self.tensors = {name: tensor if name == "scene" else tensor[keep] for name, tensor in self.tensors.items()}
        self.num_answers = len(arrays["answers"])
        for name in relational_mix or {}:
            if not self._of_subtype(torch.arange(len(self)), name).numel():
                raise DataError(f"{name}: the {self.name} split has no such questions, which data.relational_mix "
                                f"asks for")
        # Each image's object table, kept beside the tensors (a pixel split's are images only): the truth of a
        # question the image was not asked about.
        self.objects = (arrays["object_shape"], arrays["object_xy"])

    def __len__(self) -> int:
        return len(self.tensors["answer"])

    def batch(self, index):
        t = self.tensors
        image = t["image"][index]
        if self.use_pixels and self.questions_per_image > 1:
            unique, image_index = torch.unique(image, return_inverse=True)
            inputs = {"images": t["scene"][unique], "image_index": image_index}
        else:  # random batches rarely repeat an image: no need for (a device sync of) torch.unique
            inputs = {"images" if self.use_pixels else "objects": t["scene"][image]}
        return {**inputs, "question": t["question"][index]}, t["answer"][index]

    def epoch_order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        """Shuffled questions; with ``questions_per_image`` k > 1, shuffled groups of k questions
        that share an image (an image's leftover questions form a smaller group)."""
        order = super().epoch_order(seed, epoch, batch_size)
        # How many of this epoch's questions the curriculum still asks: all, none, or its first part.
        curriculum = round(min(max(self.non_relational_epochs - epoch, 0), 1) * len(order))
        if curriculum == len(order):
            return self._non_relational_only(order, seed, epoch)
        later = self._after_curriculum(order, seed, epoch)
        if curriculum:
            return torch.cat([self._non_relational_only(order, seed, epoch)[:curriculum], later[curriculum:]])
        return later

    def _after_curriculum(self, order: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """An epoch's order once the curriculum is over: the relational share, or (grouped) shuffles."""
        if self.relational_share is not None:
            return self._relational_share_of(order, seed, epoch)
        k = self.questions_per_image
        if k == 1:
            return order
        image = self.tensors["image"].cpu()[order]
        by_image = order[torch.argsort(image, stable=True)]  # each image's questions together, in shuffled order
        image = self.tensors["image"].cpu()[by_image]
        starts = torch.ones(len(image), dtype=torch.bool)
        starts[1:] = image[1:] != image[:-1]
        first = torch.cummax(torch.where(starts, torch.arange(len(image)), 0), 0).values
        group = torch.cumsum(starts | ((torch.arange(len(image)) - first) % k == 0), 0) - 1
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
        rank = torch.randperm(int(group[-1]) + 1, generator=generator)[group]
        return by_image[torch.argsort(rank, stable=True)]

    def _non_relational_only(self, order: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """As many questions as ``order``: its non-relational ones in its order, then in further
        shuffles of them until the epoch's length is filled."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
        return filled(order[self._is_non_relational(order)], len(order), generator)

    def _relational_share_of(self, order: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """As many questions as ``order``, ``relational_share`` of them relational: each kind's
        questions in its order, then in further shuffles, the two kinds shuffled together."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
        non_relational = self._is_non_relational(order)
        relational = round(self.relational_share * len(order))
        parts = (self._relational_mix_of(order, relational, generator) if self.relational_mix
                 else [filled(order[~non_relational], relational, generator)])
        mixed = torch.cat([*parts, filled(order[non_relational], len(order) - relational, generator)])
        return mixed[torch.randperm(len(mixed), generator=generator)]

    def _relational_mix_of(self, order: torch.Tensor, count: int, generator: torch.Generator) -> list[torch.Tensor]:
        """``count`` relational questions of ``order``, each subtype of ``relational_mix`` its share
        (rounded at the running totals, so that the parts add up to ``count``)."""
        ends = [round(min(total, 1.0) * count) for total in itertools.accumulate(self.relational_mix.values())]
        ends[-1] = count
        return [filled(self._of_subtype(order, name), end - start, generator)
                for name, start, end in zip(self.relational_mix, [0, *ends], ends)]

    def _of_subtype(self, order: torch.Tensor, name: str) -> torch.Tensor:
        """The questions of ``order`` of the subtype ``name`` (e.g. closest_shape), in their order."""
        kind, subtype = SUBTYPE_NUMBERS[name]
        questions = order.cpu()
        return order[(self.tensors["kind"].cpu()[questions] == kind) & (self.tensors["subtype"].cpu()[questions] == subtype)]

    def _is_non_relational(self, order: torch.Tensor) -> torch.Tensor:
        return self.tensors["kind"].cpu()[order] == KINDS.index("non_relational")

    def info(self) -> dict:
        return {"num_answers": self.num_answers, "question_dim": QUESTION_DIM, "object_dim": OBJECT_DIM,
                "image_size": IMAGE_SIZE, "num_objects": NUM_OBJECTS}


def _checked_relational_mix(preset: Preset, kinds: list[str], share: float | None) -> dict[str, float] | None:
    """``data.relational_mix`` checked: {relational subtype of data.kinds: its share of the
    relational questions}, the shares summing to 1, in the subtypes' own order; None when unset."""
    mix = preset.data.get("relational_mix")
    if mix is None:
        return None
    subtypes = [name for kind in KINDS if kind in kinds and kind != "non_relational" for name in SUBTYPES[kind]]
    shares = list(mix.values()) if isinstance(mix, dict) else []
    if (share is None or not shares or set(mix) - set(subtypes) or not all(is_number(value, 0, 1) for value in shares)
            or abs(sum(shares) - 1) > 1e-6):
        raise ConfigError(f"preset {preset.name!r}: data.relational_mix must map relational question subtypes of "
                          f"data.kinds ({', '.join(subtypes)}) to their shares of the relational questions, summing "
                          f"to 1, and needs data.relational_share; got {shown(mix)}")
    return {name: float(mix[name]) for name in subtypes if mix.get(name)}


class SortOfClevr(Task):
    name = "sort-of-clevr"
    curve_group = "by_kind"
    data_entries = ("kinds", "questions_per_image", "non_relational_epochs", "relational_share", "relational_mix")
    presets = {
        preset.name: preset for preset in (
            Preset(
                name="sort-of-clevr-state",
                task="sort-of-clevr",
                description="RN over state descriptions (the object table); all question kinds",
                model={"input": "state", "architecture": "rn", "g_widths": [128] * 4, "f_widths": [128, 128],
                       "dropout": 0.0},
                batch_size=64, epochs=10, lr=2e-3, warmup_steps=500),
            Preset(
                name="sort-of-clevr-state-mlp",
                task="sort-of-clevr",
                description="baseline: the flattened object table with the question into a 4x256 MLP",
                model={"input": "state", "architecture": "mlp", "widths": [256] * 4, "dropout": 0.0},
                batch_size=64, epochs=10, lr=1e-3, warmup_steps=500),
            # The public recipe (conv -> ReLU -> BN, f 256-256, batch 64, Adam) with what the study
            # found (docs/benchmarks.md): no dropout, lr 3e-4, g 4x128 (as sample-efficient as 4x256 at a
            # quarter of the pair cost), three epochs of non-relational questions first (no plateau),
            # 80% relational questions after them, and the lr held for half the run, then decayed; 20
            # epochs (4 M questions), the horizon of the shipped model's run.
            Preset(
                name="sort-of-clevr-pixels",
                task="sort-of-clevr",
                description="RN over CNN cells tagged with coordinates; the paper's question kinds; one epoch of "
                            "200,000 training images (relnet data sort-of-clevr --train-images 200000)",
                model={"input": "pixels", "architecture": "rn", "conv_channels": [24] * 4, "conv_order": "relu-bn",
                       "g_widths": [128] * 4, "f_widths": [256, 256], "dropout": 0.0},
                # 4 M questions, each seen about once: on the paper's 10,000 images, seen 27 times each, the
                # same horizon fitted them (99.2% binary) and reached 92.9% on test (docs/benchmarks.md, rounds 4
                # and 5). The first 600,000 questions are non-relational, then 80% relational.
                data={"kinds": PAPER_KINDS, "non_relational_epochs": 0.15, "relational_share": 0.8},
                # Evaluated 32 at a time: on one CPU thread 1,024 images' 625 pairs each overflow the caches
                # and evaluate 3-4x slower per question (docs/benchmarks.md).
                batch_size=64, epochs=1, lr=3e-4, schedule="cosine", decay_start=0.5, eval_batch_size=32,
                planned_train_examples=4_000_000),
            Preset(
                name="sort-of-clevr-cnn-mlp",
                task="sort-of-clevr",
                description="baseline: the same CNN, flattened, with the question into a 4x256 MLP",
                model={"input": "pixels", "architecture": "cnn-mlp", "conv_channels": [24] * 4,
                       "widths": [256] * 4, "dropout": 0.5},
                data={"kinds": PAPER_KINDS},
                batch_size=64, epochs=10, lr=1e-3, warmup_steps=1000),
        )
    }

    def load(self, data_dir: Path, split: str, preset: Preset, info: dict | None = None) -> SortOfClevrSplit:
        kinds = preset.data.get("kinds", list(KINDS))
        if not isinstance(kinds, list) or not kinds or not all(isinstance(kind, str) for kind in kinds):
            raise ConfigError(f"preset {preset.name!r}: data.kinds must be a non-empty list of {list(KINDS)}")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ConfigError(f"preset {preset.name!r}: unknown question kinds {unknown}; expected some of {list(KINDS)}")
        per_image = preset.data.get("questions_per_image", 1)
        if isinstance(per_image, bool) or not isinstance(per_image, int) or not 1 <= per_image <= 1000:
            raise ConfigError(f"preset {preset.name!r}: data.questions_per_image must be a whole number from 1 to 1000")
        curriculum = preset.data.get("non_relational_epochs", 0)
        if isinstance(curriculum, bool) or not isinstance(curriculum, (int, float)) or not 0 <= curriculum <= 1000:
            raise ConfigError(f"preset {preset.name!r}: data.non_relational_epochs must be a number of epochs from 0 "
                              f"to 1000 (0.6: the first 60% of the first epoch), got {shown(curriculum)}")
        if curriculum and ("non_relational" not in kinds or per_image > 1):
            raise ConfigError(f"preset {preset.name!r}: data.non_relational_epochs needs non-relational questions "
                              f"among data.kinds and data.questions_per_image 1")
        share = preset.data.get("relational_share")
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1):
            raise ConfigError(f"preset {preset.name!r}: data.relational_share must be a number between 0 and 1 "
                              f"(the share of relational questions in an epoch), got {shown(share)}")
        if share is not None and ("non_relational" not in kinds or not set(kinds) - {"non_relational"} or per_image > 1):
            raise ConfigError(f"preset {preset.name!r}: data.relational_share needs non-relational and relational "
                              f"questions among data.kinds and data.questions_per_image 1")
        mix = _checked_relational_mix(preset, kinds, share)
        arrays = load_split(Path(data_dir) / f"{split}.npz")
        train = split == "train"
        return SortOfClevrSplit(arrays, preset.model.get("input") == "pixels", split, tuple(kinds), per_image,
                                curriculum if train else 0, share if train else None, mix if train else None)

    def build_model(self, preset: Preset, info: dict):
        config = dict(preset.model)
        inputs, architecture = config.pop("input"), config.pop("architecture")
        common = {"num_answers": info["num_answers"], "question_dim": info["question_dim"]}
        if architecture == "rn" and inputs == "pixels":
            return construct(PixelRN, preset, config, **common)
        if architecture == "rn" and inputs == "state":
            return construct(StateRN, preset, config, **common, object_dim=info["object_dim"])
        if architecture == "mlp" and inputs == "state":
            return construct(StateMLP, preset, config, **common, object_dim=info["object_dim"],
                             num_objects=info["num_objects"])
        if architecture == "cnn-mlp" and inputs == "pixels":
            return construct(CNNMLP, preset, config, **common, image_size=info["image_size"])
        raise ConfigError(f"preset {preset.name!r}: no Sort-of-CLEVR model for architecture {architecture!r} on {inputs!r}")

    def metrics(self, split: SortOfClevrSplit, predictions: torch.Tensor) -> dict:
        """Accuracy overall, by kind and by subtype, over the kinds present in the split."""
        kind, subtype, answer = (split.tensors[name].cpu() for name in ("kind", "subtype", "answer"))
        correct = (predictions.cpu() == answer).double()
        group = kind * 3 + subtype
        hits = torch.bincount(group, weights=correct, minlength=3 * len(KINDS))
        counts = torch.bincount(group, minlength=3 * len(KINDS))
        by_kind, by_subtype, subtype_counts = {}, {}, {}
        for k, kind_name in enumerate(KINDS):
            kind_count = counts[3 * k:3 * k + 3].sum().item()
            if not kind_count:
                continue
            by_kind[kind_name] = hits[3 * k:3 * k + 3].sum().item() / kind_count
            for s, subtype_name in enumerate(SUBTYPES[kind_name]):
                key = f"{kind_name}/{subtype_name}"
                subtype_counts[key] = counts[3 * k + s].item()
                by_subtype[key] = hits[3 * k + s].item() / max(subtype_counts[key], 1)
        return {"split": split.name, "questions": len(correct), "overall": correct.mean().item(),
                "by_kind": by_kind, "by_subtype": by_subtype, "subtype_counts": subtype_counts}

    def answer_names(self, info: dict) -> list[str]:
        return list(ANSWERS)

    def view(self, split: SortOfClevrSplit, index: int, preset: Preset, info: dict) -> View:
        image = int(split.tensors["image"][index])
        kind, subtype, colors = decode_question(split.tensors["question"][index])
        scene = split.tensors["scene"][image].cpu()
        if split.use_pixels:
            return View(question_text(kind, subtype, colors), ANSWERS[int(split.tensors["answer"][index])],
                        image=scene.numpy(), grid=True)
        # A state model's objects are the table's rows: drawn where the table puts them.
        color = scene[:, :NUM_COLORS].argmax(1)
        shape = scene[:, NUM_COLORS:NUM_COLORS + len(SHAPES)].argmax(1)
        center = (IMAGE_SIZE - 1) / 2
        xy = (scene[:, -2:] * center + center).round().long()
        order = torch.argsort(color)  # render() draws object k in color k
        picture = render(shape[order].numpy()[None], xy[order].numpy()[None])[0]
        labels = [f"{COLORS[int(c)]} {SHAPES[int(s)]}" for c, s in zip(color, shape)]
        return View(question_text(kind, subtype, colors), ANSWERS[int(split.tensors["answer"][index])],
                    labels=labels, image=picture, points=xy.numpy().astype(float))

    def generated_split(self, preset: Preset, info: dict, count: int, seed: int) -> SortOfClevrSplit:
        return SortOfClevrSplit(generate(count, np.random.SeedSequence([seed, 7])), preset.model["input"] == "pixels",
                                "generated", tuple(preset.data.get("kinds", KINDS)))

    def questions(self, preset: Preset) -> list[str]:
        return list(all_questions(preset.data.get("kinds", KINDS)))

    def asked_truth(self, split: SortOfClevrSplit, index: int, question: str, preset: Preset) -> str:
        kind, subtype, colors = all_questions(preset.data.get("kinds", KINDS))[" ".join(question.split())]
        shapes, centers = split.objects
        image = int(split.tensors["image"][index])
        return ANSWERS[answer(shapes[image], centers[image], kind, subtype, colors)]

    def ask(self, inputs: dict, question: str, preset: Preset, info: dict) -> dict:
        known = all_questions(preset.data.get("kinds", KINDS))
        text = " ".join(question.split())
        if text not in known:
            raise ConfigError(f"question {shown(question)} is not one of this model's {len(known)} questions "
                              f"(e.g. {next(iter(known))!r})")
        kind, subtype, (x, y) = known[text]
        vector = encode_questions(torch.tensor([[x, y]]), torch.tensor([kind]), torch.tensor([subtype]))
        return {**inputs, "question": vector.to(inputs["question"].device)}, []

    def format_metrics(self, metrics: dict) -> str:
        lines = [f"Sort-of-CLEVR, {metrics['split']} split: {metrics['questions']:,} questions",
                 f"{'question':<34}{'accuracy':>9}{'count':>9}"]
        for kind in metrics["by_kind"]:
            lines.append(f"{kind:<34}{100 * metrics['by_kind'][kind]:>8.2f}%")
            for subtype in SUBTYPES[kind]:
                key = f"{kind}/{subtype}"
                lines.append(f"  {subtype:<32}{100 * metrics['by_subtype'][key]:>8.2f}%"
                             f"{metrics['subtype_counts'][key]:>9,}")
        lines.append(f"{'overall':<34}{100 * metrics['overall']:>8.2f}%")
        return "\n".join(lines)
