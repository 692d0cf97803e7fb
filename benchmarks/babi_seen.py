"""Does a text RN answer bAbI questions it has seen better than new ones? For each task, how many
distinct stories its training file holds, how many of the evaluated questions repeat a training
story (and question) exactly, and the model's accuracy on those and on the rest.

    python benchmarks/babi_seen.py --data ../shared/data/babi/en-valid-10k --tasks 16 17
    python benchmarks/babi_seen.py --data ../shared/data/babi/en-valid-10k --tasks 17 --model RUN_DIR

A model that generalizes answers both alike; one that remembers is right on the repeats and worse
on the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import babi_answers  # noqa: E402
from relnet.tasks.babi.data import TASK_NAMES, read_tasks  # noqa: E402


def seen_report(train, evaluated, answers: list[str]) -> dict:
    """Repeats of training stories among ``evaluated`` examples of one task, and accuracy on each part."""
    stories = {tuple(e.story) for e in train}
    questions = {(tuple(e.story), e.question) for e in train}
    seen = [(tuple(e.story), e.question) in questions for e in evaluated]
    right = [answer == e.answer for answer, e in zip(answers, evaluated)]

    def accuracy(flag):
        part = [r for r, s in zip(right, seen) if s == flag]
        return sum(part) / len(part) if part else None

    return {"training_questions": len(train), "distinct_training_stories": len(stories),
            "questions": len(evaluated), "story_seen": sum(tuple(e.story) in stories for e in evaluated) / len(evaluated),
            "question_seen": sum(seen) / len(evaluated), "accuracy": sum(right) / len(right),
            "accuracy_seen": accuracy(True), "accuracy_unseen": accuracy(False)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="bAbI directory (en-valid-10k)")
    parser.add_argument("--tasks", type=int, nargs="+", required=True, choices=list(TASK_NAMES), metavar="TASK")
    parser.add_argument("--model", default="pretrained:babi", help="pretrained:NAME, an exported model or a run "
                        "directory of the babi preset (default pretrained:babi)")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    report = {}
    for task in args.tasks:
        evaluated = read_tasks(args.data, args.split, [task])
        report[task] = seen_report(read_tasks(args.data, "train", [task]), evaluated,
                                   babi_answers(args.model, args.data, args.split, [task]))
    print(f"{args.model}, {args.split} split")
    print("| task | distinct training stories | stories seen in training | questions seen | right on those | "
          "right on the rest | all |")
    print("|---|---|---|---|---|---|---|")
    for task, row in report.items():
        shown = lambda value: "-" if value is None else f"{100 * value:.1f}%"  # noqa: E731
        print(f"| {task} {TASK_NAMES[task]} | {row['distinct_training_stories']:,} of {row['training_questions']:,} | "
              f"{shown(row['story_seen'])} | {shown(row['question_seen'])} | {shown(row['accuracy_seen'])} | {shown(row['accuracy_unseen'])} | "
              f"{shown(row['accuracy'])} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
