"""What does a text RN answer on bAbI task 16 (basic induction), where it fails? Its answers on
the task's questions beside rules that need no reasoning, and beside the rule that solves it.

    python benchmarks/babi_task16.py --data ../shared/data/babi/en-valid-10k                 # pretrained:babi
    python benchmarks/babi_task16.py --data ../shared/data/babi/en-valid-10k --model RUN_DIR

A task-16 story says what kind of animal each of five people is ("Greg is a swan") and the colour
of four of them ("Greg is white"); the question asks the colour of the fifth ("What color is
Brian?"), who shares a kind with someone whose colour is told. The rule: the colour last told of
another person of the asked one's kind. The rules that need no reasoning: the story's most
frequent, last and first colour, and a guess among the story's colours. For each rule the script prints how often it is right and how
often the model gives its answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import babi_answers  # noqa: E402
from relnet.tasks.babi.data import read_tasks  # noqa: E402

TASK = 16


def kinds(story) -> dict[str, str]:
    """person -> kind, from the story's "X is a K" statements."""
    return {words[0]: words[3] for words in story if len(words) == 4 and words[2] == "a"}


def colours(story) -> list[tuple[str, str]]:
    """(person, colour) of the story's "X is C" statements, in order."""
    return [(words[0], words[2]) for words in story if len(words) == 3]


def induction(story, person: str) -> str | None:
    """The colour last told of another person of ``person``'s kind (None if none is told)."""
    kind, answer = kinds(story), None
    for other, colour in colours(story):
        if other != person and kind.get(other) == kind.get(person):
            answer = colour
    return answer


RULES = {
    "induction: last colour of another of the asked one's kind": induction,
    "the story's most frequent colour": lambda story, person: Counter(c for _, c in colours(story)).most_common(1)[0][0],
    "the story's last colour": lambda story, person: colours(story)[-1][1],
    "the story's first colour": lambda story, person: colours(story)[0][1],
}


def compare(examples, answers: list[str]) -> dict:
    """For each rule, the share of questions it answers right and the share the model answers as it does;
    and how often the model's answer is one of the story's colours."""
    if len(examples) != len(answers) or not examples:
        raise ValueError(f"{len(answers)} model answers for {len(examples)} questions")
    told = [{c for _, c in colours(e.story)} for e in examples]  # each story's colours
    report = {"questions": len(examples),
              "model_right": sum(a == e.answer for a, e in zip(answers, examples)) / len(examples),
              "model_answers_a_story_colour": sum(a in t for a, t in zip(answers, told)) / len(examples),
              # A guess among the story's colours, each alike: right 1/k of the time with k colours.
              "story_colour_guess_right": sum((e.answer in t) / len(t) for e, t in zip(examples, told)) / len(examples),
              "rules": {}}
    for name, rule in RULES.items():
        said = [rule(e.story, e.question[-1]) for e in examples]
        report["rules"][name] = {"right": sum(s == e.answer for s, e in zip(said, examples)) / len(examples),
                                 "model_agrees": sum(s == a for s, a in zip(said, answers)) / len(examples)}
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="bAbI directory (en-valid-10k)")
    parser.add_argument("--model", default="pretrained:babi", help="pretrained:NAME, an exported model or a run "
                        "directory of the babi preset (default pretrained:babi)")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    examples = read_tasks(args.data, args.split, [TASK])
    report = {"model": args.model, "split": args.split, **compare(examples, babi_answers(args.model, args.data, args.split, [TASK]))}
    print(f"task {TASK}, {args.split} split, {report['questions']} questions; {args.model} answers "
          f"{100 * report['model_right']:.1f}% right, one of the story's colours {100 * report['model_answers_a_story_colour']:.1f}% of the time; "
          f"a guess among the story's colours would be right {100 * report['story_colour_guess_right']:.1f}% of the time")
    print("| rule | right | the model answers as it does |\n|---|---|---|")
    for name, row in report["rules"].items():
        print(f"| {name} | {100 * row['right']:.1f}% | {100 * row['model_agrees']:.1f}% |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
