"""Reproduce the Sort-of-CLEVR table of docs/benchmarks.md: generate the data, train each preset
within its time budget, and print one results table.

    python benchmarks/sort_of_clevr.py --out bench/sort-of-clevr            # the full runs (~2 h on 2 cores)
    python benchmarks/sort_of_clevr.py --out /tmp/smoke --smoke             # seconds: checks the script runs

Each run is exactly `relnet train --preset NAME --data DATA --out OUT/NAME --max-minutes M`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import run, train_presets

# preset -> training time budget in minutes (the acceptance budgets of the foundation issue)
BUDGETS = {
    "sort-of-clevr-state": 10,
    "sort-of-clevr-pixels": 95,
    "sort-of-clevr-cnn-mlp": 15,
    "sort-of-clevr-state-mlp": 10,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data and the runs")
    parser.add_argument("--presets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--smoke", action="store_true", help="tiny data and budgets, to check the script runs")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "test.npz").exists():
        sizes = ["--train-images", "20", "--test-images", "10"] if args.smoke else []
        run(["data", "sort-of-clevr", "--out", str(data), "--no-progress", *sizes])
    summary = train_presets(BUDGETS, args.presets, data, args.out, args.smoke, evaluate=False)

    print(f"\n{'preset':<26}{'non-rel':>9}{'binary':>9}{'ternary':>9}{'train s':>9}{'samples/s':>11}")
    for preset, metrics in summary.items():
        kinds = metrics["by_kind"]
        cells = [f"{100 * kinds[k]:>8.2f}%" if k in kinds else f"{'-':>9}" for k in ("non_relational", "binary", "ternary")]
        print(f"{preset:<26}{''.join(cells)}{metrics['train_seconds']:>9.0f}{metrics['train_samples_per_second']:>11}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
