"""The paper's CLEVR claim at a size a CPU can train: the pixel RN against CNN+LSTM, stacked
attention and the question alone, on the same generated data for the same minutes.

    python benchmarks/clevr_small.py --out OUT                                  # data, then the runs
    python benchmarks/clevr_small.py --out OUT --slice-minutes 150              # one sitting; again to go on
    python benchmarks/clevr_small.py --out OUT --no-train                       # only the table
    python benchmarks/clevr_small.py --out OUT --smoke                          # seconds

Steps, each a `relnet` command (echoed): `data clevr-gen --preset small` (train, val; skipped
when present), `data clevr --image-size 80`, then every preset's `train --max-minutes M` (its
whole horizon), --parallel at a time on one thread each so that they share the machine alike.
With --slice-minutes S each sitting trains every unfinished run for at most S more minutes and
ends it with a checkpoint (four runs two at a time: a sitting of about 2 S); running the same
command again resumes each run where it stopped, on the schedule of its whole horizon. Writes OUT/summary.json (final metrics and validation curves),
OUT/curves.png, and prints the Table-1 layout of every run side by side (every run in OUT, whichever
call trained it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import add_precision_option, run, run_side_by_side, run_state  # noqa: E402
from relnet.figures import save_figure  # noqa: E402
from relnet.io import write_json  # noqa: E402
from relnet.tasks.clevr.schema import CATEGORIES, CATEGORY_TITLES  # noqa: E402

PRESETS = ["clevr-small-pixels", "clevr-small-cnn-lstm", "clevr-small-cnn-lstm-sa", "clevr-small-question"]
IMAGE_SIZE = 80


def make_data(args) -> Path:
    raw, cache = args.out / "data", args.out / "cache"
    for split, images in (("train", args.images), ("val", args.val_images)):
        if not (raw / "questions" / f"CLEVR_{split}_questions.json").exists():
            run(["data", "clevr-gen", "--preset", "small", "--out", str(raw), "--split", split, "--images", str(images),
                 "--seed", str(args.seed), "--workers", str(args.workers), "--no-progress"])
    if not (cache / "cache.json").exists():
        run(["data", "clevr", "--clevr-dir", str(raw), "--out", str(cache), "--image-size", str(IMAGE_SIZE),
             "--workers", str(args.workers), "--no-progress"])
    return cache


def commands_for(cache: Path, args) -> dict[str, list[str]]:
    """The `relnet train` command of every run not yet finished (`--resume` goes on from a
    checkpoint where there is one and starts afresh where there is none)."""
    commands = {}
    for preset in args.presets:
        run_dir = args.out / preset
        if run_state(run_dir) == "finished":
            continue
        budget = ["--epochs", "1"] if args.smoke else ["--epochs", "1000", "--max-minutes", str(args.minutes)]
        commands[preset] = [sys.executable, "-m", "relnet.cli", "train", "--preset", preset, "--data", str(cache),
                            "--out", str(run_dir), "--no-progress", "--eval-every", str(args.eval_every),
                            "--precision", args.precision, "--seed", str(args.seed), *budget,
                            *(["--slice-minutes", str(args.slice_minutes)] if args.slice_minutes else [])]
    return commands


def summarize(out: Path) -> dict:
    """Every run in ``out``, whichever call trained it: two calls, one preset each, side by side
    write the same full table."""
    summary = {}
    for preset in PRESETS:
        run_dir = out / preset
        if not (run_dir / "metrics.json").exists():
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        summary[preset] = {
            "state": run_state(run_dir), "overall": metrics["overall"], "by_category": metrics["by_category"],
            "train_minutes": round(metrics["train_seconds"] / 60, 1), "questions_seen": history[-1]["questions_seen"],
            "curve": [[entry["questions_seen"], entry["train_seconds"], entry["eval"]["overall"]]
                      for entry in [entry for entry in history if entry["subset"]] or history]}
    return summary


def table(summary: dict) -> str:
    columns = ["overall", *CATEGORIES]
    lines = ["| preset | " + " | ".join(["Overall", *(CATEGORY_TITLES[c] for c in CATEGORIES)])
             + " | trained | questions seen |", "|---|" + "---:|" * (len(columns) + 2)]
    for preset, result in summary.items():
        cells = [f"{100 * result['by_category'][c]:.1f}" if c in result["by_category"] else "-" for c in columns]
        lines.append(f"| {preset} | " + " | ".join(cells) + f" | {result['train_minutes']:g} min"
                     f"{'' if result['state'] == 'finished' else ' (so far)'} | {result['questions_seen'] / 1e6:.2f} M |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for index, (preset, result) in enumerate(summary.items()):
        points = result["curve"]
        axes[0].plot([p[1] / 60 for p in points], [p[2] for p in points], label=preset, color=f"C{index}")
        axes[1].plot([p[0] / 1e6 for p in points], [p[2] for p in points], label=preset, color=f"C{index}")
    axes[0].set(xlabel="training minutes (one thread each, side by side)", ylabel="val accuracy (evaluation subset)")
    axes[1].set(xlabel="training questions seen (millions)")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    save_figure(figure, path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data, the cache and the runs")
    parser.add_argument("--images", type=int, default=20_000, help="training scenes (default 20000: 200,000 questions)")
    parser.add_argument("--val-images", type=int, default=2_000, help="validation scenes (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every run (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="rendering and caching processes (default 1)")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--minutes", type=float, default=150, help="training minutes of every run (default 150)")
    parser.add_argument("--slice-minutes", type=float, help="train at most this long in this sitting")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2: one per core here)")
    parser.add_argument("--eval-every", type=int, default=50_000, help="questions between evaluations (default 50000)")
    add_precision_option(parser)
    parser.add_argument("--no-train", action="store_true", help="only summarize the runs already in OUT")
    parser.add_argument("--smoke", action="store_true", help="tiny data, one epoch each, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.val_images, args.eval_every = 6, 3, 20
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        run_side_by_side(commands_for(make_data(args), args), args.out, args.parallel, resume=True)
    summary = summarize(args.out)
    write_json(args.out / "summary.json", summary)
    plot(summary, args.out / "curves.png")
    print(table(summary))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
