"""Does bf16 autocast train as well as fp32? The same preset, data and seeds, a fixed number of steps.

    python benchmarks/precision.py --out bench/precision            # ~5 min on one CPU core (bf16 is slow on CPUs without bf16 matmul)
    python benchmarks/precision.py --out /tmp/smoke --smoke         # seconds

Trains `sort-of-clevr-state` for one epoch of a 500-image training set (15,000 questions, 234
steps) with seeds 0 and 1 in each precision, and prints the test accuracy of each run: the spread
between the two fp32 seeds is the noise against which bf16 is judged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import run

SEEDS = (0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the data and the runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny data, to check the script runs")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "test.npz").exists():
        sizes = ["--train-images", "20", "--test-images", "10"] if args.smoke else ["--train-images", "500"]
        run(["data", "sort-of-clevr", "--out", str(data), "--no-progress", *sizes])
    results = {}
    for precision in ("fp32", "bf16"):
        for seed in SEEDS:
            out = args.out / f"{precision}-seed{seed}"
            run(["train", "--preset", "sort-of-clevr-state", "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--seed", str(seed), "--precision", precision, "--device", args.device, "--no-progress"])
            metrics = json.loads((out / "metrics.json").read_text())
            results[f"{precision}-seed{seed}"] = {key: metrics[key] for key in
                                                  ("overall", "by_kind", "steps", "train_samples_per_second")}
    print(f"\n{'run':<14}{'overall':>9}{'non-rel':>9}{'binary':>9}{'ternary':>9}{'steps':>7}{'samples/s':>11}")
    for name, metrics in results.items():
        kinds = metrics["by_kind"]
        print(f"{name:<14}{100 * metrics['overall']:>8.2f}%" + "".join(
            f"{100 * kinds[kind]:>8.2f}%" for kind in ("non_relational", "binary", "ternary"))
            + f"{metrics['steps']:>7}{metrics['train_samples_per_second']:>11}")
    (args.out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
