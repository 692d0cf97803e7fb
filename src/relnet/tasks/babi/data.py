"""Reading the official bAbI v1.2 text files (Weston et al., 2015) into tensors.

Every official layout is read: ``en/``, ``en-10k/`` (``qa{N}_{name}_{train,test}.txt``) and
``en-valid/``, ``en-valid-10k/`` (``qa{N}_{train,valid,test}.txt``). A file is a list of
stories; each line is ``ID text``, IDs restart at 1 with a new story, and question lines are
``ID question<TAB>answer<TAB>supporting ids``. Multi-word answers (tasks 8 and 19) are
comma-separated and are kept as one answer class, like the paper's single softmax.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from relnet.errors import DataError

TASK_NAMES = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}
PAD, UNK = "<pad>", "<unk>"
# The paper's RN sees at most the 20 most recent statements before a question.
MAX_STORY = 20
# The longest official line is under 200 characters; anything far longer is not bAbI (and a
# multi-megabyte line would be padded into a huge tensor).
MAX_LINE_CHARS = 2000
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class Example:
    task: int
    story: list[tuple[str, ...]]  # statements before the question, oldest first, at most max_story
    question: tuple[str, ...]
    answer: str


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-cased words; punctuation is dropped (it carries nothing in bAbI)."""
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def _candidates(data_dir: Path, task: int, split: str) -> list[Path]:
    if task not in TASK_NAMES:
        raise DataError(f"unknown bAbI task {task}: expected 1 to 20")
    return [data_dir / f"qa{task}_{TASK_NAMES[task]}_{split}.txt", data_dir / f"qa{task}_{split}.txt"]


def find_task_file(data_dir: Path, task: int, split: str) -> Path | None:
    """The file of ``task`` and ``split`` in either naming of the official layouts, if present."""
    return next((path for path in _candidates(data_dir, task, split) if path.is_file()), None)


def task_file(data_dir: Path, task: int, split: str) -> Path:
    path = find_task_file(data_dir, task, split)
    if path is None:
        names = " or ".join(candidate.name for candidate in _candidates(data_dir, task, split))
        raise DataError(f"{data_dir}: no {split} file for bAbI task {task}: expected {names}")
    return path


def read_file(path: Path, task: int, max_story: int = MAX_STORY) -> list[Example]:
    """Every question of one bAbI file with the statements of its story that precede it."""
    examples: list[Example] = []
    statements: list[tuple[str, ...]] = []
    tokenized: dict[str, tuple[str, ...]] = {}  # bAbI repeats its sentences: tokenize each once
    previous_id = 0
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {path.stat().st_size:,} bytes; a bAbI file is at most {MAX_FILE_BYTES:,}")
        # Lines end at \n (or \r\n) only: str.splitlines would also split at \v, \f and others.
        lines = path.read_bytes().decode("utf-8").replace("\r\n", "\n").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise DataError(f"{path}:{number}: line of {len(line):,} characters; bAbI lines are at most "
                            f"{MAX_LINE_CHARS:,}")
        head, _, rest = line.partition(" ")
        if not (head.isascii() and head.isdigit()) or not rest.strip():
            raise DataError(f"{path}:{number}: expected 'ID text' with a numeric ID, got {line[:60]!r}")
        sentence_id = int(head)
        if sentence_id == 1:
            statements = []
        elif sentence_id != previous_id + 1:
            raise DataError(f"{path}:{number}: sentence ID {sentence_id} does not follow {previous_id} "
                            "(IDs count up from 1 within a story)")
        previous_id = sentence_id
        if "\t" in rest:
            fields = rest.split("\t")
            supporting = fields[2].split() if len(fields) == 3 else []
            if len(fields) not in (2, 3) or not fields[1].strip() or not all(
                    token.isascii() and token.isdigit() for token in supporting):
                raise DataError(f"{path}:{number}: expected 'ID question<TAB>answer<TAB>supporting ids', "
                                f"got {line[:60]!r}")
            examples.append(Example(task, statements[-max_story:], tokenize(fields[0]), fields[1].strip().lower()))
        else:
            if rest not in tokenized:
                tokenized[rest] = tokenize(rest)
            statements.append(tokenized[rest])
    if not examples:
        raise DataError(f"{path}: no questions found; is this a bAbI file?")
    return examples


def read_tasks(data_dir: Path, split: str, tasks: list[int], max_story: int = MAX_STORY) -> list[Example]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such bAbI directory")
    return [example for task in tasks for example in read_file(task_file(data_dir, task, split), task, max_story)]


def build_vocabularies(examples: list[Example]) -> dict:
    """Words and answers of the training examples, sorted, so the same files give the same ids."""
    sentences = {sentence for ex in examples for sentence in ex.story} | {ex.question for ex in examples}
    words = sorted({word for sentence in sentences for word in sentence})
    return {"words": [PAD, UNK] + words, "answers": sorted({ex.answer for ex in examples})}


def encode(examples: list[Example], vocabularies: dict, max_story: int = MAX_STORY) -> tuple[dict, Counter]:
    """Tensors of one split: each distinct sentence once, stories as indices into that table.

    Returns the tensors and a count of what did not fit the vocabularies (unknown words, which map
    to ``<unk>``, and unknown answers, whose target is -1 and so always counts as wrong).
    """
    word_id = {word: i for i, word in enumerate(vocabularies["words"])}
    answer_id = {answer: i for i, answer in enumerate(vocabularies["answers"])}
    unknown: Counter = Counter()
    unk = word_id[UNK]

    def ids(sentence: tuple[str, ...]) -> list[int]:
        out = [word_id.get(word, unk) for word in sentence]
        unknown["words"] += out.count(unk)
        return out

    sentence_index: dict[tuple[str, ...], int] = {(): 0}  # row 0 is the empty sentence used for padding
    sentences: list[list[int]] = [[]]
    for sentence in {sentence: None for example in examples for sentence in example.story}:  # first-seen order
        sentence_index[sentence] = len(sentences)
        sentences.append(ids(sentence))
    stories = [[sentence_index[sentence] for sentence in example.story] for example in examples]
    questions = [ids(example.question) for example in examples]
    answers = [answer_id.get(example.answer, -1) for example in examples]
    unknown["answers"] = answers.count(-1)
    return {
        "sentences": _pad(sentences), "sentence_lengths": torch.tensor([len(s) for s in sentences]),
        "stories": _pad(stories, width=max_story), "story_lengths": torch.tensor([len(s) for s in stories]),
        "questions": _pad(questions), "question_lengths": torch.tensor([len(q) for q in questions]),
        "answers": torch.tensor(answers), "tasks": torch.tensor([example.task for example in examples]),
    }, unknown


def _pad(rows: list[list[int]], width: int | None = None) -> torch.Tensor:
    """Right-padded [len(rows), width or longest] table, filled by one scatter rather than a row loop."""
    lengths = torch.tensor([len(row) for row in rows])
    values = torch.tensor([value for row in rows for value in row], dtype=torch.long)
    table = torch.zeros(len(rows), width or max(1, int(lengths.max())), dtype=torch.long)
    row_index = torch.repeat_interleave(torch.arange(len(rows)), lengths)
    starts = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    table[row_index, torch.arange(len(values)) - starts] = values
    return table


def summarize(data_dir: Path) -> list[dict]:
    """Per task and split: questions found in ``data_dir`` (a check that a download is complete)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such bAbI directory")
    rows = []
    for task in TASK_NAMES:
        row = {"task": task, "name": TASK_NAMES[task]}
        for split in ("train", "valid", "test"):
            path = find_task_file(data_dir, task, split)
            row[split] = None if path is None else len(read_file(path, task))
        rows.append(row)
    return rows
