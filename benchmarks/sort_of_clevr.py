"""Reproduce the Sort-of-CLEVR table of docs/benchmarks.md: generate the data, train each preset
within its time budget, and print one results table.

    python benchmarks/sort_of_clevr.py --out bench/sort-of-clevr            # the full runs (hours: below)
    python benchmarks/sort_of_clevr.py --out /tmp/smoke --smoke             # seconds: checks the script runs

Each run is exactly `relnet train --preset NAME --data DATA --out OUT/NAME --max-minutes M`, or
without --max-minutes for a preset trained to its own horizon (the pixel RN: 4 M questions, 2 to 5
hours on one thread of a 2-core CPU), on the training images the preset is planned for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import run, train_presets

# preset -> training time budget in minutes (the acceptance budgets of the foundation issue), or None:
# the preset's own horizon
BUDGETS = {
    "sort-of-clevr-state": 10,
    "sort-of-clevr-pixels": None,
    "sort-of-clevr-cnn-mlp": 15,
    "sort-of-clevr-state-mlp": 10,
}
# preset -> its training images, where not the generator's 10,000 (`relnet data sort-of-clevr --train-images`)
TRAIN_IMAGES = {"sort-of-clevr-pixels": 200_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data and the runs")
    parser.add_argument("--presets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--smoke", action="store_true", help="tiny data and budgets, to check the script runs")
    args = parser.parse_args()

    summary = {}
    for images in sorted({TRAIN_IMAGES.get(preset, 10_000) for preset in args.presets}):
        data = args.out / ("data" if images == 10_000 else f"data-{images}")
        if not (data / "test.npz").exists():
            sizes = ["--train-images", "20", "--test-images", "10"] if args.smoke else ["--train-images", str(images)]
            run(["data", "sort-of-clevr", "--out", str(data), "--no-progress", *sizes])
        presets = [preset for preset in args.presets if TRAIN_IMAGES.get(preset, 10_000) == images]
        summary.update(train_presets(BUDGETS, presets, data, args.out, args.smoke, evaluate=False))

    print(f"\n{'preset':<26}{'non-rel':>9}{'binary':>9}{'ternary':>9}{'train s':>9}{'samples/s':>11}")
    for preset, metrics in summary.items():
        kinds = metrics["by_kind"]
        cells = [f"{100 * kinds[k]:>8.2f}%" if k in kinds else f"{'-':>9}" for k in ("non_relational", "binary", "ternary")]
        print(f"{preset:<26}{''.join(cells)}{metrics['train_seconds']:>9.0f}{metrics['train_samples_per_second']:>11}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
