"""The clevr-state recipe study: several `relnet train --preset clevr-state` variants run side by
side (one thread each, the same budget, data and evaluation subset), then their val accuracy
against questions seen: a Markdown table of the final figures, study.json and study.png.

    python benchmarks/clevr_state_study.py --data CACHE --out DIR --minutes 8
    python benchmarks/clevr_state_study.py --data CACHE --out DIR --variants small small-no-warmup small-lstm256
    python benchmarks/clevr_state_study.py --out DIR --plot-only      # redraw from DIR/*/history.json

CACHE is a CLEVR cache (a state-only one is enough: `relnet data clevr --no-images`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
sys.path.insert(0, SRC)

from relnet.figures import save_figure  # noqa: E402

SMALL = ["model.g_widths=[256,256,256,256]", "model.f_widths=[256,256]", "model.lstm=128",
         "model.position_scale=0.3333", "batch_size=256", "warmup_steps=100", "lr=1e-3"]
# Each variant: the `--set` values it gives the preset of the code it runs with (a later value of a key wins).
VARIANTS = {
    "paper-size": ["model.g_widths=[512,512,512,512]", "model.f_widths=[512,1024]", "model.lstm=256",
                   "model.position_scale=1.0", "batch_size=64", "lr=2.5e-4", "warmup_steps=300"],
    "small": SMALL,
    "small-lr3e-4": [*SMALL, "lr=3e-4"],
    "small-no-warmup": [*SMALL, "warmup_steps=0"],
    "small-lstm256": [*SMALL, "model.lstm=256"],
}
DEFAULT_VARIANTS = ["paper-size", "small", "small-lr3e-4"]


def command(variant: str, data: Path, out: Path, minutes: float, smoke: bool = False) -> list[str]:
    sets = [arg for value in VARIANTS[variant] for arg in ("--set", value)]
    budget = ["--epochs", "1", "--eval-every", "64", "--precision", "fp32"] if smoke else \
        ["--max-minutes", str(minutes), "--eval-every", "100000", "--precision", "bf16"]
    return [sys.executable, "-m", "relnet.cli", "train", "--preset", "clevr-state", "--data", str(data), "--out", str(out / variant),
            *budget, "--no-progress", *sets]


def run_all(variants: list[str], data: Path, out: Path, minutes: float, smoke: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    processes = []
    for variant in variants:
        args = command(variant, data, out, minutes, smoke)
        print("$ OMP_NUM_THREADS=1 relnet " + " ".join(args[3:]), flush=True)
        with open(out / f"{variant}.log", "w") as log:  # the child keeps its own handle
            processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env))
    if any(process.wait() for process in processes):
        raise SystemExit(f"a variant failed; see the logs in {out}")


def summarize(variants: list[str], out: Path) -> dict:
    summary = {}
    for variant in variants:
        run = out / variant
        if not (run / "metrics.json").exists():
            continue
        history = json.loads((run / "history.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        summary[variant] = {"curve": [(row["questions_seen"], row["eval"]["overall"]) for row in history if "eval" in row],
                            "final": metrics["by_category"], "questions_seen": metrics["questions_seen"],
                            "samples_per_second": metrics["train_samples_per_second"],
                            "sets": VARIANTS[variant]}
    return summary


def plot(summary: dict, path: Path) -> None:
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for variant, row in summary.items():
        if not row["curve"]:
            continue
        seen, accuracy = zip(*row["curve"])
        axis.plot([s / 1e6 for s in seen], [100 * a for a in accuracy], marker=".", label=variant)
    axis.set_xlabel("training questions seen (millions)")
    axis.set_ylabel("val accuracy, %")
    axis.set_title("clevr-state recipes, side by side (one thread each)")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="CLEVR cache (needed unless --plot-only)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the variants' runs")
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget of each variant (default 8)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS,
                        help=f"which to run side by side (default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--plot-only", action="store_true", help="only redraw the table and picture")
    parser.add_argument("--smoke", action="store_true", help="one epoch each, fp32 (a check that it runs)")
    args = parser.parse_args()
    if not args.plot_only:
        if args.data is None:
            parser.error("--data is required unless --plot-only")
        run_all(args.variants, args.data, args.out, args.minutes, args.smoke)
    summary = summarize(args.variants, args.out)
    (args.out / "study.json").write_text(json.dumps(summary, indent=2))
    plot(summary, args.out / "study.png")
    categories = list(next(iter(summary.values()))["final"]) if summary else []
    print("| variant | questions seen | questions/s | " + " | ".join(categories) + " |")
    print("|---|---:|---:|" + "---:|" * len(categories))
    for variant, row in summary.items():
        final = " | ".join(f"{100 * row['final'][k]:.1f}" for k in categories)
        print(f"| {variant} | {row['questions_seen']:,} | {row['samples_per_second']:.0f} | {final} |")


if __name__ == "__main__":
    main()
