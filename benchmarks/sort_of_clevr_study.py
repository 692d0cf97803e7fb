"""Sample-efficiency study of the pixel RN on Sort-of-CLEVR: how many training questions each
recipe needs before the test accuracy crosses 90% on non-relational and on binary questions.

    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT                 # every variant
    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --variants control grouped-8
    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --smoke         # seconds

Each variant is `relnet train --preset sort-of-clevr-pixels --set ...` (the control is the recipe
of the most used public implementation, rebuilt in relnet), evaluated on a fixed subset of 4,000
test questions every --eval-every questions. Runs go --parallel at a time, one thread each.
Writes OUT/study.json (the curves), OUT/study.png (accuracy against questions seen) and prints a
table of questions-to-90% in Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from relnet.train.plots import save_figure  # noqa: E402

# The public recipe: conv -> ReLU -> BN, g 4x256, f 256-256 with dropout 0.5, Adam 1e-4 constant, batch 64.
CONTROL = ["model.conv_order=relu-bn", "model.g_widths=[256,256,256,256]", "model.f_widths=[256,256]",
           "model.dropout=0.5", "lr=1e-4", "schedule=constant", "warmup_steps=0", "batch_size=64"]
# variant -> (preset, --set assignments applied after the control's)
VARIANTS = {
    "control": ("sort-of-clevr-pixels", []),
    "bn-before-relu": ("sort-of-clevr-pixels", ["model.conv_order=bn-relu"]),
    "lr-3e-4": ("sort-of-clevr-pixels", ["lr=3e-4"]),
    "lr-1e-3-warmup": ("sort-of-clevr-pixels", ["lr=1e-3", "warmup_steps=1000"]),
    "batch-32": ("sort-of-clevr-pixels", ["batch_size=32"]),
    "grouped-8": ("sort-of-clevr-pixels", ["data.questions_per_image=8"]),
    "g-128": ("sort-of-clevr-pixels", ["model.g_widths=[128,128,128,128]"]),
    "no-dropout": ("sort-of-clevr-pixels", ["model.dropout=0.0"]),
    "grouped-8-lr-3e-4": ("sort-of-clevr-pixels", ["data.questions_per_image=8", "lr=3e-4"]),
    # Second round: on top of the two changes that helped most in the first (no dropout, lr 3e-4).
    "nodrop-3e-4": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4"]),
    "nodrop-3e-4-invert": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4", "model.invert=true"]),
    "nodrop-3e-4-wide-cnn": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4",
                                                      "model.conv_channels=[32,64,128,256]"]),
    "nodrop-3e-4-wide-cnn-invert": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                             "model.conv_channels=[32,64,128,256]"]),
    "nodrop-1e-3-warmup-invert": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=1e-3", "warmup_steps=1000",
                                                           "model.invert=true", "grad_clip=5.0"]),
    "nodrop-3e-4-invert-bn-relu": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                            "model.conv_order=bn-relu"]),
    "nodrop-3e-4-invert-mean": ("sort-of-clevr-pixels", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                         "model.aggregation=mean"]),
    "cnn-mlp-invert": ("sort-of-clevr-cnn-mlp", ["model.invert=true"]),
    "preset-before": ("sort-of-clevr-pixels", None),  # the preset as it was, cosine schedule included
    "cnn-mlp": ("sort-of-clevr-cnn-mlp", None),
}
PREVIOUS_PIXEL_PRESET = ["model.conv_order=bn-relu", "model.g_widths=[128,128,128,128]", "model.f_widths=[128,128]",
                         "model.dropout=0.0", "lr=3e-4", "schedule=cosine", "warmup_steps=500", "batch_size=32"]
THRESHOLD = 0.9


def command(variant: str, data: Path, out: Path, args) -> list[str]:
    preset, changes = VARIANTS[variant]
    if variant == "preset-before":
        changes = PREVIOUS_PIXEL_PRESET
    elif preset == "sort-of-clevr-cnn-mlp":
        changes = changes or []
    elif changes is not None:
        changes = CONTROL + changes
    sets = [item for change in (changes or []) for item in ("--set", change)]
    budget = ["--epochs", "1"] if args.smoke else ["--epochs", str(args.epochs), "--max-minutes", str(args.max_minutes)]
    return [sys.executable, "-m", "relnet.cli", "train", "--preset", preset, "--data", str(data), "--out",
            str(out / variant), "--no-progress", "--eval-every", str(args.eval_every), "--device", args.device,
            "--precision", args.precision, *budget, *sets]


def run_all(variants: list[str], args) -> None:
    """Start the runs --parallel at a time, each on one thread; stop on the first failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    pending, running = list(variants), {}
    while pending or running:
        while pending and len(running) < args.parallel:
            variant = pending.pop(0)
            cmd = command(variant, args.data, args.out, args)
            print("$ " + " ".join(cmd[1:]), flush=True)
            log = open(args.out / f"{variant}.log", "w")
            running[variant] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(1)
        for variant, (process, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                del running[variant]
                if process.returncode:
                    raise SystemExit(f"{variant} failed (exit {process.returncode}); see {args.out / (variant + '.log')}")


def first_crossing(curve: list[tuple[int, float]]) -> int | None:
    return next((seen for seen, accuracy in curve if accuracy >= THRESHOLD), None)


def summarize(variants: list[str], args) -> dict:
    summary = {}
    for variant in variants:
        history = json.loads((args.out / variant / "history.json").read_text())
        final = json.loads((args.out / variant / "metrics.json").read_text())
        curves = {kind: [(entry["questions_seen"], entry["eval"]["by_kind"][kind]) for entry in history]
                  for kind in ("non_relational", "binary")}
        summary[variant] = {
            "command": "relnet " + " ".join(command(variant, Path("DATA"), Path("OUT"), args)[3:]),
            "curves": curves, "to_90": {kind: first_crossing(curve) for kind, curve in curves.items()},
            "final": {"questions_seen": final["questions_seen"], "train_seconds": final["train_seconds"],
                      "samples_per_second": final["train_samples_per_second"], **final["by_kind"]},
        }
    return summary


def plot(summary: dict, path: Path) -> None:
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for axis, kind in zip(axes, ("non_relational", "binary")):
        for index, (variant, result) in enumerate(summary.items()):
            seen, accuracy = zip(*result["curves"][kind])
            axis.plot([s / 1e6 for s in seen], accuracy, label=variant, color=f"C{index % 10}",
                      linestyle="-" if index < 10 else "--")
        axis.axhline(THRESHOLD, color="gray", linewidth=0.8)
        axis.set(title=kind.replace("_", "-"), xlabel="training questions seen (millions)", ylabel="test accuracy "
                 "(4,000-question subset)", ylim=(0.4, 1.0))
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    save_figure(figure, path, dpi=100)


def table(summary: dict) -> str:
    def millions(value):
        return "not reached" if value is None else f"{value / 1e6:.2f} M"

    lines = ["| variant | to 90% non-rel. | to 90% binary | final non-rel. | final binary | questions seen | samples/s |",
             "|---|---|---|---|---|---|---|"]
    for variant, result in summary.items():
        final = result["final"]
        lines.append(f"| {variant} | {millions(result['to_90']['non_relational'])} | {millions(result['to_90']['binary'])} "
                     f"| {100 * final['non_relational']:.2f}% | {100 * final['binary']:.2f}% "
                     f"| {final['questions_seen'] / 1e6:.2f} M | {final['samples_per_second']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Sort-of-CLEVR directory (relnet data sort-of-clevr)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the runs and the results")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2: one per core here)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20, 4 M questions)")
    parser.add_argument("--max-minutes", type=float, default=60, help="time budget per run (default 60)")
    parser.add_argument("--eval-every", type=int, default=20_000, help="questions between evaluations (default 20000)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto")
    parser.add_argument("--smoke", action="store_true", help="one epoch per run, to check the script runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_all(args.variants, args)
    summary = summarize(args.variants, args)
    (args.out / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, args.out / "study.png")
    print(table(summary))
    print(f"wrote {args.out / 'study.json'} and {args.out / 'study.png'}")


if __name__ == "__main__":
    main()
