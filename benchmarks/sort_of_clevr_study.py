"""Sample-efficiency study of the pixel RN on Sort-of-CLEVR: how many training questions, and how
many minutes on this machine, each recipe needs before its test accuracy crosses 99%
non-relational and 85/90/95% binary.

    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --variants preset coord-conv
    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --variants preset coord-conv --resume
    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --variants preset coord-conv --no-train
    python benchmarks/sort_of_clevr_study.py --data DATA --out OUT --smoke         # seconds

Each variant is `relnet train --preset P --set ...`: the changes of the variant on top of its base,
which is the recipe of the most used public implementation rebuilt in relnet (rounds 1 and 2:
`control`), the pixel preset as round 3 started (`preset` is that round's control), or the preset
as it is now (`final`, round 3's winner). Every run is
evaluated on a fixed subset of 4,000 test questions every --eval-every questions (and on the whole
test split after each epoch). Runs go --parallel at a time, one thread each, so their minutes are
comparable within one invocation. `--resume` continues runs stopped by Ctrl-C (SIGINT/SIGTERM) or a
crash; a run that used its --max-minutes or its epochs is finished and is not trained again, whatever
budget is asked for later. `--no-train` only summarizes the runs already in OUT.
Writes OUT/study.json (the curves), OUT/study.png (accuracy against minutes and against questions)
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import add_side_by_side_options, run_side_by_side, run_state  # noqa: E402
from relnet.figures import save_figure  # noqa: E402

# Every epoch the usual mix of questions, as before round 3's curriculum.
MIXED = ["data.non_relational_epochs=0", "data.relational_share=null"]
# The public recipe: conv -> ReLU -> BN, g 4x256, f 256-256 with dropout 0.5, Adam 1e-4 constant, batch 64.
PUBLIC = ["model.conv_order=relu-bn", "model.g_widths=[256,256,256,256]", "model.f_widths=[256,256]",
          "model.dropout=0.5", "lr=1e-4", "schedule=constant", "warmup_steps=0", "batch_size=64", *MIXED]
# The pixel preset before the first study: BN -> ReLU, g 4x128, f 128-128, batch 32, lr 3e-4, cosine to zero.
PREVIOUS = ["model.conv_order=bn-relu", "model.g_widths=[128,128,128,128]", "model.f_widths=[128,128]",
            "model.dropout=0.0", "lr=3e-4", "schedule=cosine", "decay_start=0.0", "warmup_steps=500",
            "batch_size=32", *MIXED]
# The pixel preset of round 3 (its control): constant lr 3e-4, every epoch the usual mix of questions.
ROUND_3 = [*MIXED, "schedule=constant", "decay_start=0.0", "epochs=20"]
BASES = {"public": PUBLIC, "previous": PREVIOUS, "round-3": ROUND_3, "preset": []}
PIXELS, CNN_MLP = "sort-of-clevr-pixels", "sort-of-clevr-cnn-mlp"
G_64 = "model.g_widths=[64,64,64,64]"
# variant -> (preset, base, changes applied after the base's)
VARIANTS = {
    # Rounds 1 and 2 (GPU, questions seen): one change to the public recipe, then to its best two changes.
    "control": (PIXELS, "public", []),
    "bn-before-relu": (PIXELS, "public", ["model.conv_order=bn-relu"]),
    "lr-3e-4": (PIXELS, "public", ["lr=3e-4"]),
    "lr-1e-3-warmup": (PIXELS, "public", ["lr=1e-3", "warmup_steps=1000"]),
    "batch-32": (PIXELS, "public", ["batch_size=32"]),
    "grouped-8": (PIXELS, "public", ["data.questions_per_image=8"]),
    "g-128": (PIXELS, "public", ["model.g_widths=[128,128,128,128]"]),
    "no-dropout": (PIXELS, "public", ["model.dropout=0.0"]),
    "grouped-8-lr-3e-4": (PIXELS, "public", ["data.questions_per_image=8", "lr=3e-4"]),
    "nodrop-3e-4": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4"]),
    "nodrop-3e-4-invert": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4", "model.invert=true"]),
    "nodrop-3e-4-wide-cnn": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4", "model.conv_channels=[32,64,128,256]"]),
    "nodrop-3e-4-wide-cnn-invert": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                       "model.conv_channels=[32,64,128,256]"]),
    "nodrop-1e-3-warmup-invert": (PIXELS, "public", ["model.dropout=0.0", "lr=1e-3", "warmup_steps=1000",
                                                     "model.invert=true", "grad_clip=5.0"]),
    "nodrop-3e-4-invert-bn-relu": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                      "model.conv_order=bn-relu"]),
    "nodrop-3e-4-invert-mean": (PIXELS, "public", ["model.dropout=0.0", "lr=3e-4", "model.invert=true",
                                                   "model.aggregation=mean"]),
    "cnn-mlp-invert": (CNN_MLP, "preset", ["model.invert=true"]),
    "preset-before": (PIXELS, "previous", []),
    "cnn-mlp": (CNN_MLP, "preset", []),
    # Round 3 (CPU, minutes): one change to the pixel preset that came out of rounds 1 and 2.
    "preset": (PIXELS, "round-3", []),
    "g-64": (PIXELS, "round-3", [G_64]),
    "coord-conv": (PIXELS, "round-3", ["model.coord_conv=true"]),
    "g-64-coord": (PIXELS, "round-3", [G_64, "model.coord_conv=true"]),
    "cosine": (PIXELS, "round-3", ["schedule=cosine"]),
    "hold-then-decay": (PIXELS, "round-3", ["schedule=cosine", "decay_start=0.5"]),
    "curriculum": (PIXELS, "round-3", ["data.non_relational_epochs=3"]),
    "batch-128": (PIXELS, "round-3", ["batch_size=128", "lr=6e-4"]),
    # Round 3, then: one change to the curriculum (the round's winner): the held-then-decayed schedule,
    # 80% of each later epoch relational questions (the non-relational ones are learnt by then), or
    # CoordConv (the errors left are distances: closest and furthest).
    "curriculum-decay": (PIXELS, "round-3", ["data.non_relational_epochs=3", "schedule=cosine", "decay_start=0.5"]),
    "curriculum-relational": (PIXELS, "round-3", ["data.non_relational_epochs=3", "data.relational_share=0.8"]),
    "curriculum-coord": (PIXELS, "round-3", ["data.non_relational_epochs=3", "model.coord_conv=true"]),
    # Round 3, fourth slice: one change to curriculum-relational (the third slice's winner).
    "curriculum-relational-decay": (PIXELS, "round-3", ["data.non_relational_epochs=3", "data.relational_share=0.8",
                                                       "schedule=cosine", "decay_start=0.5"]),
    "curriculum-relational-coord": (PIXELS, "round-3", ["data.non_relational_epochs=3", "data.relational_share=0.8",
                                                       "model.coord_conv=true"]),
    # The preset that came out of round 3 (curriculum-relational-decay); run it with --epochs 30, its
    # horizon (the study passes --epochs and --max-minutes to every run).
    "final": (PIXELS, "preset", []),
    # Round 5: the preset overfits its 10,000 training images (99.2% binary on them, 92.9% on test).
    # Run on 50,000 (`relnet data sort-of-clevr --train-images 50000`) with --epochs 4, the same 4 M
    # questions; its curriculum the same 600,000 questions (0.6 of an epoch of 1 M).
    "more-images": (PIXELS, "preset", ["data.non_relational_epochs=0.6"]),
    # ... and on 200,000 (--train-images 200000) with --epochs 1: each relational question seen about once.
    "more-images-200k": (PIXELS, "preset", ["data.non_relational_epochs=0.15"]),
    # Round 6, on the 200,000 images with --epochs 1: what is left is ordering distances a few pixels
    # apart (docs/benchmarks.md: g and f lose more than the cells, which place objects to 1.4 px). Two fifths of
    # the relational questions each to closest and furthest instead of a third (count is learnt early) ...
    "mix-200k": (PIXELS, "preset", ["data.non_relational_epochs=0.15",
                                    'data.relational_mix={"closest_shape": 0.4, "furthest_shape": 0.4, '
                                    '"count_same_shape": 0.2}']),
    # ... or a wider relation vector, the one summed over the pairs (g's last layer 512 instead of 128).
    "g-out-512-200k": (PIXELS, "preset", ["data.non_relational_epochs=0.15", "model.g_widths=[128,128,128,512]"]),
}
# (kind, accuracy) crossings reported: minutes and questions until the subset accuracy first reaches it.
TARGETS = [("non_relational", 0.99), ("binary", 0.85), ("binary", 0.90), ("binary", 0.95)]


def command(variant: str, data: Path, out: Path, args) -> list[str]:
    preset, base, changes = VARIANTS[variant]
    sets = [item for change in BASES[base] + changes for item in ("--set", change)]
    budget = ["--epochs", "1"] if args.smoke else ["--epochs", str(args.epochs), "--max-minutes", str(args.max_minutes)]
    return [sys.executable, "-m", "relnet.cli", "train", "--preset", preset, "--data", str(data), "--out",
            str(out / variant), "--no-progress", "--eval-every", str(args.eval_every), "--device", args.device,
            "--precision", args.precision, *budget, *sets]


def run_all(variants: list[str], args) -> None:
    unfinished = [variant for variant in variants if run_state(args.out / variant) != "finished"]
    run_side_by_side({variant: command(variant, args.data, args.out, args) for variant in unfinished}, args.out,
                     args.parallel, args.resume)


def first_crossing(curve: list[list[float]], threshold: float) -> dict | None:
    """Questions and training minutes at the first evaluation at or above ``threshold``."""
    return next(({"questions": seen, "minutes": round(seconds / 60, 1)} for seen, seconds, accuracy in curve
                 if accuracy >= threshold), None)


def summarize(variants: list[str], args) -> dict:
    summary = {}
    for variant in variants:
        if not (args.out / variant / "history.json").exists():  # stopped before its first evaluation
            continue
        history = json.loads((args.out / variant / "history.json").read_text())
        # A run stopped within its first epoch has subset evaluations only.
        last = next((entry for entry in reversed(history) if not entry["subset"]), None)
        curves = {kind: [[entry["questions_seen"], entry["train_seconds"], entry["eval"]["by_kind"][kind]]
                         for entry in history] for kind in ("non_relational", "binary")}
        seconds = history[-1]["train_seconds"]
        summary[variant] = {
            "command": "relnet " + " ".join(command(variant, Path("DATA"), Path("OUT"), args)[3:]),
            "curves": curves,
            "crossings": {f"{kind} >= {threshold:.0%}": first_crossing(curves[kind], threshold)
                          for kind, threshold in TARGETS},
            "last_full_evaluation": last and {"questions_seen": last["questions_seen"],
                                              "train_seconds": last["train_seconds"],
                                              **last["eval"]["by_kind"], **last["eval"]["by_subtype"]},
            "questions_seen": history[-1]["questions_seen"], "train_seconds": seconds,
            "samples_per_second": round(history[-1]["questions_seen"] / seconds, 1) if seconds else None,
        }
    return summary


def plot(summary: dict, path: Path) -> None:
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9), sharey=True)
    for row, (axis_of, xlabel, scale) in enumerate([(0, "training questions seen (millions)", 1e6),
                                                    (1, "training minutes (one thread each, side by side)", 60)]):
        for axis, kind in zip(axes[row], ("non_relational", "binary")):
            for index, (variant, result) in enumerate(summary.items()):
                points = result["curves"][kind]
                axis.plot([point[axis_of] / scale for point in points], [point[2] for point in points], label=variant,
                          color=f"C{index % 10}", linestyle="-" if index < 10 else "--")
            for threshold in {t for k, t in TARGETS if k == kind}:
                axis.axhline(threshold, color="gray", linewidth=0.6)
            axis.set(title=kind.replace("_", "-"), xlabel=xlabel, ylabel="test accuracy (4,000-question subset)",
                     ylim=(0.4, 1.0))
            axis.grid(alpha=0.3)
    axes[0][1].legend(fontsize=8, loc="lower right")
    save_figure(figure, path, dpi=100)


def table(summary: dict) -> str:
    def crossing(value):
        return "not reached" if value is None else f"{value['minutes']:g} min / {value['questions'] / 1e6:.2f} M"

    targets = [f"{kind} >= {threshold:.0%}" for kind, threshold in TARGETS]
    lines = ["| variant | " + " | ".join(f"to {t.replace('non_relational', 'non-rel.')}" for t in targets)
             + " | non-rel. | binary | closest | furthest | at (full test) | questions/s |",
             "|---|" + "---|" * (len(targets) + 6)]
    for variant, result in summary.items():
        final = result["last_full_evaluation"]
        if final is None:
            full = "no full evaluation yet | | | | "
        else:
            subtype = {name: final.get(f"binary/{name}_shape") for name in ("closest", "furthest")}
            percent = {name: "" if value is None else f"{100 * value:.2f}%" for name, value in subtype.items()}
            full = (f"{100 * final['non_relational']:.2f}% | {100 * final['binary']:.2f}% | {percent['closest']} | "
                    f"{percent['furthest']} | {final['train_seconds'] / 60:.0f} min / {final['questions_seen'] / 1e6:.2f} M")
        lines.append(f"| {variant} | " + " | ".join(crossing(result["crossings"][t]) for t in targets)
                     + f" | {full} | {result['samples_per_second']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Sort-of-CLEVR directory (relnet data sort-of-clevr)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20, 4 M questions)")
    parser.add_argument("--max-minutes", type=float, default=60, help="time budget per run (default 60)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    add_side_by_side_options(parser, "variants")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_train:
        run_all(args.variants, args)
    summary = summarize(args.variants, args)
    (args.out / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, args.out / "study.png")
    print(table(summary))
    print(f"wrote {args.out / 'study.json'} and {args.out / 'study.png'}")


if __name__ == "__main__":
    main()
