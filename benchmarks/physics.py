"""Reproduce the physics table of docs/benchmarks.md: simulate the data, train the RNs and the MLP
baselines within their time budgets, and print one results table.

    python benchmarks/physics.py --out bench/physics --precision bf16   # ~3.5 hours on a 2-core CPU
    python benchmarks/physics.py --out /tmp/smoke --smoke               # seconds: checks the script runs

The data is `relnet data physics --out OUT/data --scenes 500000` (100,000 scenes overfit: see
docs/benchmarks.md). Each run is exactly `relnet train --preset NAME --data OUT/data --out OUT/NAME
--max-minutes M [--precision P]`, followed by `relnet eval OUT/NAME --data OUT/data`, which also
draws OUT/NAME/scenes_test.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import add_precision_option, run, train_presets

# preset -> training time budget in minutes
BUDGETS = {
    "physics-connections": 95,
    "physics-count": 95,
    "physics-mlp-connections": 5,
    "physics-mlp-count": 5,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data and the runs")
    parser.add_argument("--presets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--scenes", type=int, default=500_000, help="training scenes to simulate (default 500000)")
    add_precision_option(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny data, one epoch each, to check the script runs")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "test.npz").exists():
        sizes = ["--scenes", "64", "--test-scenes", "32"] if args.smoke else ["--scenes", str(args.scenes)]
        run(["data", "physics", "--out", str(data), "--no-progress", *sizes])
    summary = train_presets(BUDGETS, args.presets, data, args.out, args.smoke, evaluate=True,
                            train_options=["--precision", args.precision])

    print(f"\n{'preset':<26}{'exact match':>12}{'pairs':>9}{'count':>9}{'train s':>9}{'samples/s':>11}")
    for preset, metrics in summary.items():
        scores = metrics.get("scores", {})
        cells = [f"{100 * scores['exact_match']:>11.2f}%" if scores else f"{'-':>12}",
                 f"{100 * scores['pair_accuracy']:>8.2f}%" if scores else f"{'-':>9}",
                 f"{100 * metrics['overall']:>8.2f}%" if not scores else f"{'-':>9}"]
        print(f"{preset:<26}{''.join(cells)}{metrics['train_seconds']:>9.0f}{metrics['train_samples_per_second']:>11}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
