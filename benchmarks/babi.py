"""Reproduce the bAbI tables of docs/benchmarks.md: joint training on all 20 tasks, per-task valid table.

    python benchmarks/babi.py --babi ../shared/data/babi --out bench/babi                 # ~2.5 h on 2 cores
    python benchmarks/babi.py --babi ../shared/data/babi --out /tmp/smoke --smoke         # seconds

`--babi` is a bAbI v1.2 root holding en-valid/ and en-valid-10k/. The copy in ../shared lacks
en-valid-10k's task-3 train file, so the 10k run reads a directory of links to en-valid-10k with
task 3 taken from en-valid (said in the results). Each run is exactly
`relnet train --preset babi --data DIR --out OUT/NAME --max-minutes M`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import run

from relnet.tasks.babi.data import TASK_NAMES, find_task_file

# run name -> (directory under --babi, training budget in minutes)
RUNS = {"en-valid-10k": ("en-valid-10k", 120), "en-valid": ("en-valid", 20)}


def complete_with_fallback(primary: Path, fallback: Path, out: Path) -> tuple[Path, list[int]]:
    """``primary`` itself when it has every task's train file; otherwise a directory of links to
    its files, with each missing train file linked from ``fallback``."""
    missing = [task for task in TASK_NAMES if find_task_file(primary, task, "train") is None]
    if not missing:
        return primary, []
    out.mkdir(parents=True, exist_ok=True)
    for file in primary.iterdir():
        link = out / file.name
        if not link.exists():
            link.symlink_to(file.resolve())
    for task in missing:
        source = find_task_file(fallback, task, "train")
        if source is None:
            raise SystemExit(f"task {task} has no train file in {primary} nor in {fallback}")
        link = out / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    return out, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--babi", type=Path, required=True, help="bAbI root with en-valid/ and en-valid-10k/")
    parser.add_argument("--out", type=Path, required=True, help="directory for the runs")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--smoke", action="store_true", help="3 s of training on the 10k set, to check the script runs")
    args = parser.parse_args()

    summary = {}
    for name in args.runs:
        directory, minutes = RUNS[name]
        data, borrowed = complete_with_fallback(args.babi / directory, args.babi / "en-valid", args.out / f"{name}-data")
        if borrowed:
            print(f"{name}: train files of tasks {borrowed} taken from {args.babi / 'en-valid'}")
        out = args.out / name
        budget = ["--max-minutes", "0.05"] if args.smoke else ["--max-minutes", str(minutes)]
        run(["train", "--preset", "babi", "--data", str(data), "--out", str(out), "--no-progress", *budget])
        summary[name] = {**json.loads((out / "metrics.json").read_text()), "borrowed_train_tasks": borrowed}
        if args.smoke:
            break

    for name, metrics in summary.items():
        print(f"\n{name}: {metrics['tasks_passed']}/20 tasks passed, mean error {100 * metrics['mean_error']:.2f}%, "
              f"{metrics['train_seconds']:.0f} s training, {metrics['train_samples_per_second']} samples/s")
        print("  " + "  ".join(f"{task}:{100 * acc:.1f}" for task, acc in metrics["by_task"].items()))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
