"""Reproduce the CLEVR section of docs/benchmarks.md on generated data: render a CLEVR-format
dataset, verify every question's program, cache it, train presets within their time budgets,
and print the paper's Table 1 layout for each.

    python benchmarks/clevr.py --out bench/clevr                      # hours on a 2-core CPU
    python benchmarks/clevr.py --out /tmp/smoke --smoke               # seconds: checks the script runs

Steps, each a `relnet` command (echoed): `data clevr-gen` (train, val), `data clevr-verify`,
`data clevr`, then `train --preset NAME --max-minutes M` and `eval` per preset. Rendering speed is
measured separately on one process (`--render-images`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import add_precision_option, run, train_presets

# preset -> training time budget in minutes
BUDGETS = {"clevr-state": 60, "clevr-pixels": 20, "clevr-cnn-lstm-sa": 8, "clevr-cnn-lstm": 8}


def render_speed(images: int) -> float:
    """Images per second of one process rendering scenes (no PNG writing)."""
    from relnet.tasks.clevr.generate import GeneratorOptions, make_scene

    options = GeneratorOptions(split="speed")
    make_scene(0, options)  # warm-up
    start = time.perf_counter()
    for index in range(1, images + 1):
        make_scene(index, options)
    return images / (time.perf_counter() - start)


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    run(args)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data, the cache and the runs")
    parser.add_argument("--images", type=int, default=10_000, help="training images (default 10000)")
    parser.add_argument("--val-images", type=int, default=1_000, help="validation images (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="rendering and caching processes (default 2)")
    parser.add_argument("--presets", nargs="*", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--render-images", type=int, default=50, help="images for the one-process render timing")
    add_precision_option(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, one epoch each, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.val_images, args.render_images = 6, 3, 2

    clevr, cache = args.out / "data", args.out / "cache"
    summary: dict = {"seconds": {}}
    for split, images in (("train", args.images), ("val", args.val_images)):
        if not (clevr / "questions" / f"CLEVR_{split}_questions.json").exists():
            summary["seconds"][f"generate_{split}"] = timed(
                ["data", "clevr-gen", "--out", str(clevr), "--split", split, "--images", str(images),
                 "--workers", str(args.workers), "--no-progress"])
        summary["seconds"][f"verify_{split}"] = timed(["data", "clevr-verify", "--clevr-dir", str(clevr), "--split", split])
    if not (cache / "val_images.npy").exists():
        summary["seconds"]["cache"] = timed(["data", "clevr", "--clevr-dir", str(clevr), "--out", str(cache),
                                             "--workers", str(args.workers), "--no-progress"])
    summary["render_images_per_second_one_process"] = round(render_speed(args.render_images), 2)
    summary["runs"] = train_presets(BUDGETS, args.presets, cache, args.out, args.smoke, evaluate=True,
                                     train_options=["--precision", args.precision])

    from relnet.tasks import get_task

    task = get_task("clevr")
    for preset, metrics in summary["runs"].items():
        print(f"\n{preset}: {metrics['train_seconds']:.0f} s of training, {metrics['train_samples_per_second']} samples/s")
        print(task.format_metrics(metrics))
    print(f"\nrendering: {summary['render_images_per_second_one_process']} images/s on one process; "
          f"seconds per step: {summary['seconds']}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
