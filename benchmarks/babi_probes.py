"""Probes of the text RN on the bAbI tasks it fails: is a failing task learnt alone (its own
training file, the same model)? If so, the joint mix or the capacity is what fails it; if not,
the encoding is. Then one change at a time to a task alone.

    python benchmarks/babi_probes.py --data DIR --out OUT --probes t16 t19
    python benchmarks/babi_probes.py --data DIR --out OUT --probes t16 t19 --no-train

Each probe is `relnet train --preset babi --set data.tasks=[T] --set ...`, run --parallel at a
time on one thread each (so their minutes compare within one invocation), evaluated on the valid
split every --eval-every questions. Writes OUT/probes.json (each probe's curve of its task's valid
accuracy) and prints a Markdown table: the accuracy at the end, the best, and the questions and
minutes to 95% (the paper's pass mark).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import add_side_by_side_options, run_side_by_side, run_state  # noqa: E402

PAPER_LR = ["lr=2e-4", "schedule=constant", "warmup_steps=0"]
WIDE = ["model.sentence_dim=64", "model.question_dim=64"]
# Against memorizing (tasks 16 and 17 reach 96-100% train accuracy alone, 48% and 89% valid).
DROPOUT, DECAY = ["model.dropout=0.5"], ["weight_decay=0.01"]
# Batch norm after every layer of g and f, as in the most used public code (it passes task 17).
BATCH_NORM = ["model.batch_norm=true"]
# Against memorizing task 16's 9,000 stories (benchmarks/babi_task16.py: on new stories the model
# picks among the story's colours at chance): its names, kinds and colours permuted afresh for
# every example in training.
PERMUTE_16 = ['model.permute_words=[["bernhard","brian","greg","julius","lily"],["frog","lion","rhino","swan"],'
              '["gray","green","white","yellow"]]']
# Task 17's 9,000 training questions hold 994 distinct stories of six objects (four colours, four
# shapes); permuted afresh, each story is one of many.
PERMUTE_17 = ['model.permute_words=[["blue","pink","red","yellow"],["rectangle","sphere","square","triangle"]]']
# Each statement as its words side by side (nn.text.WordSlotEncoder) instead of an LSTM's final state:
# task 16's names are then read where they stand, not carried through the statement by the LSTM.
WORDS = ["model.sentence_encoder=words"]
# probe -> (task, changes to the babi preset besides data.tasks)
PROBES = {
    "t14": (14, []),
    "t16": (16, []),
    "t16-paper-lr": (16, PAPER_LR),
    "t16-wide": (16, WIDE),
    "t16-dropout": (16, DROPOUT),
    "t16-decay": (16, DECAY),
    "t16-batch-norm": (16, BATCH_NORM),
    "t16-permute": (16, PERMUTE_16),
    # Does the rule come after a plateau, as task 19's does? The same at a constant lr, for longer.
    "t16-permute-constant": (16, PERMUTE_16 + ["schedule=constant"]),
    "t16-batch-norm-permute": (16, BATCH_NORM + PERMUTE_16),
    "t16-words": (16, WORDS),
    "t16-words-permute": (16, WORDS + PERMUTE_16),
    # The same at a constant lr for as long as it takes: does the rule come after a long plateau?
    "t16-words-permute-constant": (16, WORDS + PERMUTE_16 + ["schedule=constant"]),
    "t17": (17, []),
    "t17-paper-lr": (17, PAPER_LR),
    "t17-dropout": (17, DROPOUT),
    "t17-decay": (17, DECAY),
    "t17-batch-norm": (17, BATCH_NORM),
    "t17-permute": (17, PERMUTE_17),
    "t19": (19, []),
    "t19-paper-lr": (19, PAPER_LR),
    "t19-wide": (19, WIDE),
}
PASS = 0.95


def command(probe: str, args) -> list[str]:
    task, changes = PROBES[probe]
    sets = [item for change in [f"data.tasks=[{task}]", *changes] for item in ("--set", change)]
    budget = ["--epochs", "1"] if args.smoke else ["--epochs", str(args.epochs), "--max-minutes", str(args.max_minutes)]
    return [sys.executable, "-m", "relnet.cli", "train", "--preset", "babi", "--data", str(args.data), "--out",
            str(args.out / probe), "--no-progress", "--eval-every", str(args.eval_every), "--precision",
            args.precision, *budget, *sets]


def summarize(probes: list[str], args) -> dict:
    summary = {}
    for probe in probes:
        task = str(PROBES[probe][0])
        if not (args.out / probe / "history.json").exists():
            continue
        history = json.loads((args.out / probe / "history.json").read_text())
        curve = [[entry["questions_seen"], entry["train_seconds"], entry["eval"]["by_task"][task]] for entry in history]
        passed = next(({"questions": seen, "minutes": round(seconds / 60, 1)} for seen, seconds, accuracy in curve
                       if accuracy >= PASS), None)
        summary[probe] = {"task": int(task), "changes": PROBES[probe][1], "command": " ".join(command(probe, args)[3:]),
                          "curve": curve, "final": curve[-1][2], "best": max(point[2] for point in curve),
                          "to_pass": passed, "questions_seen": curve[-1][0], "train_seconds": curve[-1][1]}
    return summary


def table(summary: dict) -> str:
    lines = ["| probe | task | changes | valid acc. at the end | best | to 95% | at |", "|---|---|---|---|---|---|---|"]
    for probe, result in summary.items():
        reached = result["to_pass"]
        to_pass = "not reached" if reached is None else f"{reached['minutes']:g} min / {reached['questions'] / 1e3:.0f} k"
        lines.append(f"| {probe} | {result['task']} | {' '.join(result['changes']) or 'none (the babi preset)'} | "
                     f"{100 * result['final']:.1f}% | {100 * result['best']:.1f}% | {to_pass} | "
                     f"{result['train_seconds'] / 60:.0f} min / {result['questions_seen'] / 1e3:.0f} k |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="bAbI directory with train and valid files (en-valid-10k)")
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--epochs", type=int, default=100, help="epochs per probe (default 100)")
    parser.add_argument("--max-minutes", type=float, default=12, help="time budget per probe (default 12)")
    add_side_by_side_options(parser, "probes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        unfinished = [probe for probe in args.probes if run_state(args.out / probe) != "finished"]
        run_side_by_side({probe: command(probe, args) for probe in unfinished}, args.out, args.parallel, args.resume)
    summary = summarize(args.probes, args)
    (args.out / "probes.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    print(f"wrote {args.out / 'probes.json'}")


if __name__ == "__main__":
    main()
