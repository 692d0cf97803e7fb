"""bAbI as a benchmark of the shared trainer: the 20 tasks jointly, a per-task table, the paper's pass mark."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from relnet.errors import ConfigError, DataError, shown
from relnet.nn.text import WordPermutation
from relnet.preset import Preset
from relnet.tasks.babi.data import MAX_STORY, TASK_NAMES, UNK, build_vocabularies, encode, read_tasks, tokenize
from relnet.tasks.babi.models import SENTENCE_WORDS, TextRN
from relnet.tasks.base import Split, Task, View, construct, word_ids

# A task counts as passed above 95% accuracy (Weston et al., 2015; the RN paper's criterion).
PASS_ACCURACY = 0.95
PAPER_TASKS_PASSED = 18


class BabiSplit(Split):
    """Questions of one split; a batch gathers its stories' sentences from the sentence table and
    trims the padding that no example of the batch needs."""

    shared = ("sentences", "sentence_lengths")

    def __init__(self, name: str, tensors: dict[str, torch.Tensor], info: dict, oversample: dict[int, int] | None = None):
        self.name = name
        self.tensors = tensors
        self._info = info
        self.oversample = oversample or {}  # task -> how many times as often its questions are drawn

    def __len__(self) -> int:
        return len(self.tensors["answers"])

    def batch(self, index):
        t = self.tensors
        story_lengths = t["story_lengths"][index]
        stories = t["stories"][index, :max(1, int(story_lengths.max()))]  # [B, S] rows of the sentence table
        sentence_lengths = t["sentence_lengths"][stories]
        story = t["sentences"][stories, :max(1, int(sentence_lengths.max()))]
        question_lengths = t["question_lengths"][index]
        question = t["questions"][index, :max(1, int(question_lengths.max()))]
        story_mask = torch.arange(stories.shape[1], device=stories.device) < story_lengths.unsqueeze(1)
        inputs = {"story": story, "sentence_lengths": sentence_lengths, "story_mask": story_mask,
                  "question": question, "question_length": question_lengths}
        return inputs, t["answers"][index]

    def epoch_order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        """Shuffled, then bucketed: within pools of 50 batches, examples are sorted by story length
        so that each batch pads little (an RN's cost grows with the square of the story length);
        the batches are then shuffled."""
        order = super().epoch_order(seed, epoch, batch_size) if not self.oversample else \
            self._oversampled_order(seed, epoch)
        pool = 50 * batch_size
        lengths = self.tensors["story_lengths"].cpu()[order]
        for start in range(0, len(order), pool):
            by_length = torch.argsort(lengths[start:start + pool], stable=True)
            order[start:start + pool] = order[start:start + pool][by_length]
        full = len(order) // batch_size
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
        batches = order[:full * batch_size].view(full, batch_size)[torch.randperm(full, generator=generator)]
        return torch.cat([batches.flatten(), order[full * batch_size:]])

    def _oversampled_order(self, seed: int, epoch: int) -> torch.Tensor:
        """An epoch of the usual length drawn from a pool where each question of an oversampled task
        appears ``factor`` times: those tasks get ``factor`` times their share of the steps (hard
        tasks that learn late get there sooner), the others a little less."""
        tasks = self.tensors["tasks"].cpu()
        every = torch.arange(len(tasks))
        pool = torch.cat([every] + [every[tasks == task].repeat(factor - 1) for task, factor in self.oversample.items()])
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 2)
        return pool[torch.randperm(len(pool), generator=generator)[:len(tasks)]]

    def eval_order(self) -> torch.Tensor:
        return torch.argsort(self.tensors["story_lengths"].cpu(), stable=True)

    def info(self) -> dict:
        return self._info


class Babi(Task):
    name = "babi"
    curve_group = "by_task"
    data_entries = ("tasks", "max_story", "oversample")
    # The official test files are for the final table; training watches the validation split.
    eval_split = "valid"
    typed_questions = True
    presets = {
        preset.name: preset for preset in (
            Preset(
                name="babi",
                task="babi",
                description="text RN of the paper (LSTM 32, g 4x256, f 256-512), all 20 tasks jointly",
                model={"embedding_dim": 32, "sentence_dim": 32, "question_dim": 32, "g_widths": [256] * 4,
                       "f_widths": [256, 512], "dropout": 0.0},
                data={"tasks": list(TASK_NAMES), "max_story": MAX_STORY},
                # The paper used Adam at 2e-4; 1e-3 with warm-up and cosine decay learns faster here
                # (docs/babi.md).
                batch_size=64, epochs=20, lr=1e-3, warmup_steps=300),
        )
    }

    def load(self, data_dir: Path, split: str, preset: Preset, info: dict | None = None) -> BabiSplit:
        tasks = preset.data.get("tasks", list(TASK_NAMES))
        if not isinstance(tasks, list) or not tasks or not all(
                isinstance(task, int) and not isinstance(task, bool) and task in TASK_NAMES for task in tasks):
            raise ConfigError(f"preset {preset.name!r}: data.tasks {tasks!r} must be a non-empty list of tasks 1 to 20")
        max_story = preset.data.get("max_story", MAX_STORY)
        if isinstance(max_story, bool) or not isinstance(max_story, int) or not 1 <= max_story <= 1000:
            raise ConfigError(f"preset {preset.name!r}: data.max_story must be a whole number from 1 to 1000")
        oversample = self._oversample(preset, tasks)
        examples = read_tasks(Path(data_dir), split, tasks, max_story)
        if info is None:  # vocabularies always come from the training files
            train_examples = examples if split == "train" else read_tasks(Path(data_dir), "train", tasks, max_story)
            info = self.vocabulary_info(train_examples, tasks, max_story)
        elif info["max_story"] != max_story:  # (a model's, as --init-from gives: its position tags are fixed)
            raise ConfigError(f"preset {preset.name!r}: data.max_story={max_story}, but the model reads "
                              f"{info['max_story']} statements")
        elif info["tasks"] != tasks:  # a model trained on other tasks, now trained or evaluated on these
            info = {**info, "tasks": tasks}
        tensors, unknown_counts = encode(examples, info, max_story)
        if split == "train" and unknown_counts["answers"]:
            raise DataError(f"{data_dir}: {unknown_counts['answers']} training answers are not among the model's "
                            f"{info['num_answers']} answers (it was built on other data): train on data whose "
                            f"answers it knows, or start a model of its own")
        if unknown_counts["words"] or unknown_counts["answers"]:
            print(f"warning: bAbI {split} split of {data_dir}: {unknown_counts['words']} words mapped to <unk>, "
                  f"{unknown_counts['answers']} answers never seen in training (counted as wrong)", file=sys.stderr)
        _warn_of_unseen_words(preset, tensors["sentence_lengths"], f"bAbI {split} split of {data_dir}")
        return BabiSplit(split, tensors, info, oversample if split == "train" else None)

    @staticmethod
    def _oversample(preset: Preset, tasks: list[int]) -> dict[int, int]:
        """``data.oversample`` ({"19": 4, ...}): validated task -> whole factor >= 1."""
        given = preset.data.get("oversample") or {}
        if not isinstance(given, dict):
            raise ConfigError(f"preset {preset.name!r}: data.oversample must map tasks to factors, e.g. {{\"19\": 4}}; "
                              f"got {shown(given)}")
        oversample = {}
        for task, factor in given.items():
            if not str(task).isascii() or not str(task).isdigit() or int(task) not in tasks:
                raise ConfigError(f"preset {preset.name!r}: data.oversample names task {task!r}, not one of the tasks trained")
            if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
                raise ConfigError(f"preset {preset.name!r}: data.oversample factor of task {task} must be a whole number "
                                  f">= 1, got {shown(factor)}")
            oversample[int(task)] = factor
        return oversample

    @staticmethod
    def vocabulary_info(examples, tasks: list[int], max_story: int) -> dict:
        vocabularies = build_vocabularies(examples)
        return {**vocabularies, "num_words": len(vocabularies["words"]), "num_answers": len(vocabularies["answers"]),
                "tasks": tasks, "max_story": max_story}

    def answer_names(self, info: dict) -> list[str]:
        return list(info["answers"])

    def view(self, split: BabiSplit, index: int, preset: Preset, info: dict) -> View:
        t, words = split.tensors, info["words"]

        def text(tokens, length) -> str:
            return " ".join(words[int(token)] for token in tokens[:int(length)])

        rows = t["stories"][index, :int(t["story_lengths"][index])]
        sentences = [text(t["sentences"][row], t["sentence_lengths"][row]) for row in rows]
        answer = int(t["answers"][index])
        return View(text(t["questions"][index], t["question_lengths"][index]) + "?",
                    info["answers"][answer] if answer >= 0 else None,
                    labels=[f"statement {k + 1}" for k in range(len(sentences))], sentences=sentences)

    def ask(self, inputs: dict, question: str, preset: Preset, info: dict) -> dict:
        ids, unknown = word_ids(question, tokenize(question), info["words"], UNK)
        ids = ids.to(inputs["question"].device)
        return {**inputs, "question": ids, "question_length": torch.tensor([ids.shape[1]], device=ids.device)}, unknown

    def build_model(self, preset: Preset, info: dict):
        options = dict(preset.model)
        if "sentence_words" in options and options.get("sentence_encoder", "lstm") != "words":
            raise ConfigError(f"preset {preset.name!r}: model.sentence_words is read by the words encoder only; "
                              f"set model.sentence_encoder=words with it, or leave it out")
        classes = options.pop("permute_words", [])
        model = construct(TextRN, preset, options, info["num_words"], info["num_answers"], info["max_story"])
        if classes:
            model.word_permutation = word_permutation(classes, info, preset)
        return model

    def metrics(self, split: BabiSplit, predictions: torch.Tensor) -> dict:
        """Accuracy per task, tasks passed (> 95%) and mean error over the tasks present."""
        tasks, answers = split.tensors["tasks"].cpu(), split.tensors["answers"].cpu()
        correct = (predictions.cpu() == answers).double()
        hits = torch.bincount(tasks, weights=correct, minlength=21)
        counts = torch.bincount(tasks, minlength=21)
        by_task = {str(task): hits[task].item() / counts[task].item() for task in TASK_NAMES if counts[task]}
        return {"split": split.name, "questions": len(correct), "overall": correct.mean().item(), "by_task": by_task,
                "task_counts": {task: counts[int(task)].item() for task in by_task},
                "tasks_passed": sum(accuracy > PASS_ACCURACY for accuracy in by_task.values()),
                "mean_error": 1 - sum(by_task.values()) / len(by_task)}

    def format_metrics(self, metrics: dict) -> str:
        lines = [f"bAbI, {metrics['split']} split: {metrics['questions']:,} questions",
                 f"{'task':<30}{'accuracy':>9}{'pass':>6}{'count':>8}"]
        for task, accuracy in metrics["by_task"].items():
            label = f"{task:>2} {TASK_NAMES[int(task)]}"
            lines.append(f"{label:<30}{100 * accuracy:>8.2f}%{'yes' if accuracy > PASS_ACCURACY else 'no':>6}"
                         f"{metrics['task_counts'][task]:>8,}")
        lines.append(f"tasks passed (> 95%): {metrics['tasks_passed']}/{len(metrics['by_task'])} "
                     f"(paper, joint training: {PAPER_TASKS_PASSED}/20); mean error {100 * metrics['mean_error']:.2f}%")
        return "\n".join(lines)


def word_permutation(classes, info: dict, preset: Preset) -> WordPermutation:
    """``model.permute_words`` (lists of interchangeable words, e.g. ``[["greg","lily"],["white","gray"]]``)
    checked against the vocabulary and made a WordPermutation. A class's words must all be answers
    or all not, so that a permuted story's answer is permuted with it."""
    where = f"preset {preset.name!r}: model.permute_words"
    if not isinstance(classes, list) or not all(
            isinstance(words, list) and len(words) >= 2 and all(isinstance(word, str) for word in words) for words in classes):
        raise ConfigError(f"{where}={shown(classes)}: expected a list of word classes, each a list of two or more "
                          f'words, e.g. [["greg","lily","brian"],["white","gray"]]')
    word_id = {word: index for index, word in enumerate(info["words"])}
    answer_id = {answer: index for index, answer in enumerate(info["answers"])}
    seen, word_classes, answer_classes = set(), [], []
    for words in classes:
        for word in words:
            if word not in word_id or word_id[word] < 2:  # 0 and 1 are padding and <unk>
                raise ConfigError(f"{where}: {shown(word)} is not a word of the training stories and questions")
            if word in seen:
                raise ConfigError(f"{where}: {shown(word)} is in two classes (or twice in one)")
            seen.add(word)
        answers = [word in answer_id for word in words]
        if any(answers) and not all(answers):
            raise ConfigError(f"{where}: class {shown(words)} mixes answers ({', '.join(w for w, a in zip(words, answers) if a)}) "
                              f"and words that never answer; a class's words must all be answers or none")
        word_classes.append([word_id[word] for word in words])
        answer_classes.append([answer_id[word] for word in words] if all(answers) else None)
    return WordPermutation(word_classes, answer_classes)


def _warn_of_unseen_words(preset: Preset, sentence_lengths: torch.Tensor, where: str) -> None:
    """The words encoder reads a statement's first model.sentence_words words: say when some are longer."""
    if preset.model.get("sentence_encoder") != "words":
        return
    slots = preset.model.get("sentence_words", SENTENCE_WORDS)
    longer = int((sentence_lengths > slots).sum())
    if longer:
        print(f"warning: {where}: {longer} statements are longer than model.sentence_words={slots} words; the words "
              f"encoder does not see the words after the first {slots}", file=sys.stderr)
