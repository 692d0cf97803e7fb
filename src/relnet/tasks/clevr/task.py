"""CLEVR as a benchmark of the shared trainer: the paper's Table 1 per category and per family."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from relnet.errors import ConfigError, DataError, shown
from relnet.preset import Preset, is_number, is_whole
from relnet.tasks.base import Split, Task, View, construct, filled, word_ids
from relnet.tasks.clevr.data import (MAX_OBJECTS, OBJECT_FEATURES, UNK, encode_questions, load_cache, object_table,
                                     read_vocab, tokenize)
from relnet.tasks.clevr.models import CNNLSTM, PixelRN, QuestionOnly, StackedAttention, StateRN
from relnet.tasks.clevr.scene import SCENE_PRESETS
from relnet.tasks.clevr.schema import ANSWERS, ATTRIBUTES, CATEGORIES, CATEGORY_TITLES

# Paper, Table 1 (test split), and its state-description figure.
PAPER = {"clevr-pixels": {"overall": 0.955, "count": 0.901, "exist": 0.978, "compare_numbers": 0.936,
                          "query_attribute": 0.979, "compare_attribute": 0.971},
         "clevr-state": {"overall": 0.964},
         "clevr-cnn-lstm": {"overall": 0.523, "count": 0.437, "exist": 0.652, "compare_numbers": 0.671,
                            "query_attribute": 0.493, "compare_attribute": 0.530},
         "clevr-cnn-lstm-sa": {"overall": 0.766, "count": 0.644, "exist": 0.827, "compare_numbers": 0.774,
                               "query_attribute": 0.826, "compare_attribute": 0.754}}


def reverse_words(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``length`` tokens in reverse order, padding left in place."""
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    source = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return tokens.gather(1, source)


class ClevrSplit(Split):
    """All questions of one split; a batch gathers each question's image or object table.

    With ``curriculum_epochs`` e > 0 the first e epochs ask only the questions of the families
    ``curriculum_families`` (each epoch keeps its length: they are asked again, in further
    shuffles); a fractional e ends the curriculum within an epoch.
    """

    shared = ("images", "objects", "object_count")

    def __init__(self, name: str, tensors: dict[str, torch.Tensor], info: dict, inputs: str,
                 curriculum_families: tuple[int, ...] = (), curriculum_epochs: float = 0):
        self.name = name
        self.tensors = tensors
        self._info = info
        self.inputs = inputs
        self.curriculum_families = curriculum_families
        self.curriculum_epochs = curriculum_epochs

    def __len__(self) -> int:
        return len(self.tensors["answer"])

    def batch(self, index):
        t = self.tensors
        lengths = t["lengths"][index]
        inputs = {"question": t["tokens"][index, :max(1, int(lengths.max()))], "question_length": lengths}
        if self.inputs == "pixels":
            inputs["images"] = t["images"][t["image_index"][index]]
        elif self.inputs == "state":
            image = t["image_index"][index]
            inputs["objects"] = t["objects"][image]
            inputs["object_mask"] = torch.arange(MAX_OBJECTS, device=image.device) < t["object_count"][image].unsqueeze(1)
        return inputs, t["answer"][index]

    def epoch_order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        order = super().epoch_order(seed, epoch, batch_size)
        # How many of this epoch's questions the curriculum still asks: all, none, or its first part.
        asked = round(min(max(self.curriculum_epochs - epoch, 0), 1) * len(order))
        if not asked:
            return order
        family = self.tensors["family"].cpu()[order]
        chosen = order[torch.isin(family, torch.tensor(self.curriculum_families, dtype=family.dtype))]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
        return torch.cat([filled(chosen, asked, generator), order[asked:]])

    def info(self) -> dict:
        return self._info

    def scorable(self) -> bool:
        return bool((self.tensors["answer"] >= 0).all())


# The families of relnet's CLEVR templates that ask about one object found by its attributes (count,
# exist, and query color, shape, size, material): the attribute-first curriculum of the CPU-sized
# presets, as Sort-of-CLEVR's non-relational epochs.
ONE_OBJECT_FAMILIES = (7, 13, 18, 20, 22, 24)

# The CNN of the CPU-sized presets: no augmentation (the scenes are many for the steps a CPU
# affords), the public Sort-of-CLEVR order of ReLU and batch norm.
SMALL_CNN = {"conv_channels": [24] * 4, "conv_order": "relu-bn", "augment": False}


# What the CPU-sized pixel presets read: 80x80 images, and for their first four epochs (800,000
# questions) only the one-object families, so that the CNN learns to see before it learns relations.
SMALL_CURRICULUM = {"image_size": 80, "curriculum_families": list(ONE_OBJECT_FAMILIES), "curriculum_epochs": 4}


def _preset(name, description, **fields) -> Preset:
    return Preset(name=name, task="clevr", description=description, **fields)


class Clevr(Task):
    name = "clevr"
    curve_group = "by_category"
    eval_split = "val"
    typed_questions = True
    data_entries = ("inputs", "reverse_question", "scenes", "image_size", "curriculum_families", "curriculum_epochs")
    # The data.inputs each model kind reads.
    kind_inputs = {"pixel-rn": "pixels", "state-rn": "state", "cnn-lstm": "pixels", "cnn-lstm-sa": "pixels",
                   "question-only": "question"}
    presets = {p.name: p for p in [
        _preset("clevr-pixels", "CLEVR from 128x128 pixels: CNN cells as objects, LSTM question, RN (paper's model)",
                model={"kind": "pixel-rn"}, data={"inputs": "pixels", "reverse_question": True},
                batch_size=640, epochs=200, lr=5e-4, schedule="doubling", lr_start=5e-6, lr_double_every=20,
                grad_clip=50.0, weight_decay=1e-4, eval_batch_size=512),
        # Half the paper's widths and four times its batch: 2.7x the questions per second on a CPU,
        # so more accuracy per minute (benchmarks/clevr_state_study.py, docs/benchmarks.md).
        _preset("clevr-state", "CLEVR from state descriptions: the scene's object table as objects, RN",
                model={"kind": "state-rn", "g_widths": [256] * 4, "f_widths": [256, 256], "lstm": 128,
                       "position_scale": 1 / 3},
                data={"inputs": "state", "reverse_question": True},
                batch_size=256, epochs=50, lr=1e-3, warmup_steps=1000, weight_decay=1e-4, grad_clip=50.0),
        _preset("clevr-cnn-lstm", "CLEVR baseline: CNN feature map + LSTM question into an MLP",
                model={"kind": "cnn-lstm"}, data={"inputs": "pixels", "reverse_question": True},
                batch_size=64, epochs=50, lr=2.5e-4, warmup_steps=1000, weight_decay=1e-4, grad_clip=50.0,
                eval_batch_size=512),
        _preset("clevr-cnn-lstm-sa", "CLEVR baseline: CNN + LSTM with two rounds of stacked attention",
                model={"kind": "cnn-lstm-sa"}, data={"inputs": "pixels", "reverse_question": True},
                batch_size=64, epochs=50, lr=2.5e-4, warmup_steps=1000, weight_decay=1e-4, grad_clip=50.0,
                eval_batch_size=512),
        # CLEVR sized for a CPU (docs/clevr.md): scenes of `relnet data clevr-gen --preset small` cached at
        # 80x80, so four stride-2 convolutions leave 5x5 cells as in Sort-of-CLEVR, and that study's recipe
        # (g 4x128, ReLU before batch norm, no dropout, batch 64, lr 3e-4 held, then decayed, the
        # one-object questions first). The baselines read the same CNN and train on the same data and
        # curriculum for the same minutes.
        *[_preset(f"clevr-small-{name}", f"CPU-sized CLEVR: {description}", model={"kind": kind, **model},
                  data={"inputs": "question" if kind == "question-only" else "pixels", "reverse_question": True,
                        "scenes": "small", **({} if kind == "question-only" else SMALL_CURRICULUM)},
                  batch_size=64, epochs=30, lr=lr, schedule="cosine", decay_start=0.5, warmup_steps=500,
                  grad_clip=50.0, eval_batch_size=512)
          for name, kind, description, model, lr in (
              ("pixels", "pixel-rn", "RN over 5x5 CNN cells with coordinates (the paper's model, Sort-of-CLEVR's recipe)",
               {**SMALL_CNN, "g_widths": [128] * 4, "f_widths": [256, 256], "dropout": 0.0}, 3e-4),
              ("cnn-lstm", "cnn-lstm", "baseline: the same CNN's flattened cells + LSTM question into an MLP",
               {**SMALL_CNN, "widths": [512, 512], "dropout": 0.5}, 3e-4),
              ("cnn-lstm-sa", "cnn-lstm-sa", "baseline: the same CNN + LSTM with two rounds of stacked attention",
               {**SMALL_CNN, "widths": [512], "dropout": 0.5}, 3e-4),
              ("question", "question-only", "baseline: the LSTM question alone into an MLP (the answer prior)",
               {"widths": [256]}, 1e-3))],
    ]}

    def check_preset(self, preset: Preset) -> None:
        """Also a ConfigError for data.inputs that the model kind does not read (a state model fed
        images would fail at its first step)."""
        super().check_preset(preset)
        kind, inputs = preset.model.get("kind"), preset.data.get("inputs")
        if isinstance(kind, str) and kind in self.kind_inputs and inputs != self.kind_inputs[kind]:
            raise ConfigError(f"preset {preset.name!r}: the {kind} model reads data.inputs="
                              f"{self.kind_inputs[kind]!r}, not {shown(inputs)}")
        families, epochs = preset.data.get("curriculum_families", []), preset.data.get("curriculum_epochs", 0)
        if not is_number(epochs, 0, 10 ** 6):
            raise ConfigError(f"preset {preset.name!r}: data.curriculum_epochs must be a number of epochs from 0 (no "
                              f"curriculum) up, not {shown(epochs)}")
        if not isinstance(families, list) or not all(is_whole(family, 0, 10 ** 4) for family in families) or \
                (epochs and not families):
            raise ConfigError(f"preset {preset.name!r}: data.curriculum_families must be a list of question family "
                              f"numbers (the cache's family of each question; with relnet's templates "
                              f"{list(ONE_OBJECT_FAMILIES)} ask about one object), not empty while "
                              f"data.curriculum_epochs is above 0; got {shown(families)}")

    def load(self, data_dir: Path, split: str, preset: Preset, info: dict | None = None) -> ClevrSplit:
        inputs = preset.data.get("inputs")
        if inputs not in ("pixels", "state", "question") or \
                not isinstance(preset.data.get("reverse_question", False), bool):
            raise ConfigError(f"preset {preset.name!r}: data.inputs must be pixels, state or question and "
                              f"data.reverse_question true or false")
        scenes = preset.data.get("scenes", "clevr")
        if not isinstance(scenes, str) or scenes not in SCENE_PRESETS:
            raise ConfigError(f"preset {preset.name!r}: data.scenes (the scenes `relnet data clevr-gen --preset` makes "
                              f"for new examples) must be one of {', '.join(SCENE_PRESETS)}, not "
                              f"{shown(scenes)}")
        vocab = read_vocab(data_dir)
        self._check_image_size(preset, data_dir, vocab, trained=info is not None)
        if info is not None and "words" not in info and info["vocab_size"] != len(vocab["words"]):
            raise ConfigError(f"{data_dir / 'vocab.json'} holds another vocabulary ({len(vocab['words'])} words) than "
                              f"the run was trained with ({info['vocab_size']}), and the run predates relnet storing "
                              f"its words, so they cannot be matched: evaluate it on the cache it trained on")
        arrays = load_cache(data_dir, split, with_images=inputs == "pixels", with_objects=inputs == "state")
        if split == "train" and (arrays["answer"] < 0).any():
            raise DataError(f"{data_dir / 'train_questions.npz'}: {int((arrays['answer'] < 0).sum())} training "
                            f"questions have no answer; a training split needs every answer")
        families = preset.data.get("curriculum_families", [])
        if split == "train" and preset.data.get("curriculum_epochs", 0) and not np.isin(arrays["family"], families).any():
            raise DataError(f"{data_dir / 'train_questions.npz'}: no training question is of the families "
                            f"{families} that data.curriculum_families asks first")
        if info is not None and inputs == "pixels" and vocab["image_size"] != info["image_size"]:
            raise ConfigError(f"{data_dir / 'vocab.json'}: the cache holds {vocab['image_size']}-pixel images; the "
                              f"model reads {info['image_size']}-pixel ones (`relnet data clevr --image-size "
                              f"{info['image_size']}`)")
        if info is not None and info.get("words", vocab["words"]) != vocab["words"]:
            # A trained model reads any CLEVR cache: its words are re-numbered into the model's vocabulary.
            arrays["tokens"] = self._renumber(data_dir, split, arrays["tokens"], vocab["words"], self._words(info))
            return self._split(split, arrays, preset, info)
        info = {"vocab_size": len(vocab["words"]), "answers": len(ANSWERS), "image_size": vocab["image_size"],
                "words": vocab["words"]}
        return self._split(split, arrays, preset, info)

    @staticmethod
    def _check_image_size(preset: Preset, data_dir: Path, vocab: dict, trained: bool) -> None:
        """A preset sized for one image side (data.image_size) refuses to train on caches of
        another: its CNN would train without error on a different grid of cells, at another cost
        and accuracy. (A trained model is checked against the size it was trained on.)"""
        size = preset.data.get("image_size")
        if size is None:
            return
        if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
            raise ConfigError(f"preset {preset.name!r}: data.image_size must be a whole number of pixels from 8 to "
                              f"1024, not {shown(size)}")
        if not trained and preset.data.get("inputs") == "pixels" and vocab["image_size"] != size:
            raise ConfigError(f"{data_dir / 'vocab.json'}: the cache holds {vocab['image_size']}-pixel images; preset "
                              f"{preset.name!r} is sized for {size}-pixel ones (`relnet data clevr --image-size {size}`, "
                              f"or --set data.image_size={vocab['image_size']} to train on these)")

    @staticmethod
    def _renumber(data_dir: Path, split: str, tokens: np.ndarray, cache_words: list[str], model_words: list[str]):
        index = {word: i for i, word in enumerate(model_words)}
        mapping = np.array([index.get(word, 1) for word in cache_words], dtype=tokens.dtype)
        mapping[0] = 0
        renumbered = mapping[tokens]
        unknown = int(((renumbered == 1) & (tokens != 1)).sum())
        if unknown:
            print(f"warning: {data_dir} {split}: {unknown} question words are not in the model's vocabulary; read as "
                  f"{UNK}", file=sys.stderr)
        return renumbered

    @staticmethod
    def _split(name: str, arrays: dict, preset: Preset, info: dict) -> ClevrSplit:
        # Indices as int64 for gathering; images stay uint8 and objects float32.
        tensors = {key: torch.from_numpy(array) if key in ("images", "objects") else torch.from_numpy(array).long()
                   for key, array in arrays.items()}
        if preset.data.get("reverse_question"):
            tensors["tokens"] = reverse_words(tensors["tokens"], tensors["lengths"])
        if name != "train":
            return ClevrSplit(name, tensors, info, preset.data["inputs"])
        return ClevrSplit(name, tensors, info, preset.data["inputs"], tuple(preset.data.get("curriculum_families", [])),
                          preset.data.get("curriculum_epochs", 0))

    def generated_split(self, preset: Preset, info: dict, count: int, seed: int) -> ClevrSplit:
        """New scenes rendered and asked questions from the built-in templates, as `relnet data
        clevr-gen` writes them, encoded with the run's vocabulary."""
        from relnet.tasks.clevr.generate import GeneratorOptions, QuestionWriter, make_scene
        from relnet.tasks.clevr.questions import builtin_templates_dir, load_synonyms, load_templates

        options = GeneratorOptions(images=count, split="generated", seed=seed,
                                   scene=SCENE_PRESETS[preset.data.get("scenes", "clevr")])
        writer = QuestionWriter(load_templates(builtin_templates_dir()), load_synonyms(None), options)
        pixels = preset.data["inputs"] == "pixels"  # a state model needs no render
        scenes, images = [], []
        for index in range(count):
            scene, image = make_scene(index, options, with_image=pixels)
            writer.add(scene)
            scenes.append(scene)
            if pixels:
                size = info["image_size"]
                images.append(np.asarray(Image.fromarray(image).convert("RGB").resize((size, size),
                                                                                      Image.Resampling.BILINEAR)))
        source = Path("<generated scenes>")
        rows = [scene["image_index"] for scene in scenes]
        arrays, _ = encode_questions(source, writer.questions, {word: i for i, word in enumerate(self._words(info))}, rows)
        arrays.pop("image_ids")
        arrays.update(object_table(source, scenes, rows))
        if pixels:
            arrays["images"] = np.stack(images)
        return self._split("generated", arrays, preset, info)

    @staticmethod
    def _words(info: dict) -> list[str]:
        if "words" not in info:
            raise ConfigError("this run's checkpoint holds no question vocabulary (it predates relnet storing it); "
                              "retrain it to ask it new questions")
        return info["words"]

    def view(self, split: ClevrSplit, index: int, preset: Preset, info: dict) -> View:
        t, words = split.tensors, split.info().get("words") or self._words(info)
        tokens = t["tokens"][index:index + 1]
        if preset.data.get("reverse_question"):
            tokens = reverse_words(tokens, t["lengths"][index:index + 1])
        question = " ".join(words[int(token)] for token in tokens[0, :int(t["lengths"][index])])
        answer = int(t["answer"][index])
        truth = ANSWERS[answer] if answer >= 0 else None
        image = int(t["image_index"][index])
        if split.inputs == "pixels":
            return View(question, truth, image=t["images"][image].cpu().numpy(), grid=True)
        if split.inputs == "question":
            return View(question, truth)
        objects = t["objects"][image, :int(t["object_count"][image])].cpu()
        labels, offset = [" "] * len(objects), 3
        for attribute, values in ATTRIBUTES.items():  # size, color, material, shape
            chosen = objects[:, offset:offset + len(values)].argmax(1)
            labels = [f"{label} {values[int(k)]}".strip() for label, k in zip(labels, chosen)]
            offset += len(values)
        # Seen from above: the ground plane's x to the right, y up (drawn with the image convention).
        return View(question, truth, labels=labels, points=torch.stack([objects[:, 0], -objects[:, 1]], 1).numpy())

    def ask(self, inputs: dict, question: str, preset: Preset, info: dict) -> tuple[dict, list[str]]:
        ids, unknown = word_ids(question, tokenize(question), self._words(info), UNK)
        ids, length = ids.to(inputs["question"].device), torch.tensor([ids.shape[1]], device=inputs["question"].device)
        if preset.data.get("reverse_question"):
            ids = reverse_words(ids, length)
        return {**inputs, "question": ids, "question_length": length}, unknown

    def build_model(self, preset: Preset, info: dict) -> torch.nn.Module:
        """The preset's model; entries of ``model`` other than ``kind`` are its constructor's options."""
        options = dict(preset.model)
        kind = options.pop("kind")
        if kind == "pixel-rn":
            return construct(PixelRN, preset, options, info["vocab_size"], info["answers"])
        if kind == "state-rn":
            return construct(StateRN, preset, options, info["vocab_size"], info["answers"], OBJECT_FEATURES)
        if kind == "cnn-lstm":
            return construct(CNNLSTM, preset, options, info["vocab_size"], info["answers"], info["image_size"])
        if kind == "cnn-lstm-sa":
            return construct(StackedAttention, preset, options, info["vocab_size"], info["answers"])
        if kind == "question-only":
            return construct(QuestionOnly, preset, options, info["vocab_size"], info["answers"])
        raise ConfigError(f"unknown CLEVR model kind {shown(kind)}; expected one of {', '.join(self.kind_inputs)}")

    def answer_names(self, info: dict) -> list[str]:
        return list(ANSWERS)

    def metrics(self, split: ClevrSplit, predictions: torch.Tensor) -> dict:
        answers = split.tensors["answer"].cpu()
        if (answers < 0).any():
            raise DataError(f"the {split.name} split has no answers to score (CLEVR's test split does not publish "
                            f"them); write predictions with `relnet predict` instead")
        correct = (predictions == answers).float()
        category = split.tensors["category"].cpu()
        family = split.tensors["family"].cpu()
        by_category = {name: round(correct[category == i].mean().item(), 6)
                       for i, name in enumerate(CATEGORIES) if (category == i).any()}
        by_category["overall"] = round(correct.mean().item(), 6)
        by_family = {str(int(f)): round(correct[family == f].mean().item(), 6) for f in family.unique() if f >= 0}
        questions = {name: int((category == i).sum()) for i, name in enumerate(CATEGORIES)}
        return {"split": split.name, "questions": len(answers), "overall": by_category["overall"],
                "by_category": by_category, "questions_by_category": questions, "by_family": by_family}

    def format_metrics(self, metrics: dict) -> str:
        columns = ["overall", *CATEGORIES]
        titles = ["Overall", *(CATEGORY_TITLES[c] for c in CATEGORIES)]
        widths = [max(len(t), 7) for t in titles]
        lines = [f"{'':<14}" + "  ".join(f"{t:>{w}}" for t, w in zip(titles, widths))]

        def row(label, values):
            cells = [f"{100 * values[c]:.1f}" if values.get(c) is not None else "-" for c in columns]
            return f"{label:<14}" + "  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths))

        lines.append(row(f"relnet ({metrics.get('split', '?')})", metrics["by_category"]))
        paper = PAPER.get(metrics.get("preset", ""))
        if paper:
            lines.append(row("paper", paper))
        lines.append(f"{metrics['questions']} questions; accuracy per question family: by_family in the metrics JSON "
                     f"(a run's metrics.json, eval_SPLIT.json of `relnet eval` with a run or --out, or --json)")
        return "\n".join(lines)
