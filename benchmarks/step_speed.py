"""Training questions per second of presets on their data, side by side: one real training batch
each, stepped in turns (--rounds interleaved rounds, median), so that the ratios hold on a shared
machine. For choosing a configuration by its cost before training it.

    python benchmarks/step_speed.py --data CACHE --presets clevr-small-pixels clevr-small-cnn-lstm
    python benchmarks/step_speed.py --data CACHE-64 CACHE-80 --presets clevr-small-pixels   # every pair
    python benchmarks/step_speed.py --data CACHE --presets clevr-small-pixels --smoke    # seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import interleaved_rates, preset_batch, train_step  # noqa: E402
from relnet.tasks import get_preset  # noqa: E402
from relnet.train.loop import resolve_precision  # noqa: E402


def training_step(preset, data: Path, precision: str):
    task, model, inputs, targets = preset_batch(preset, data, preset.batch_size, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr)
    return lambda: train_step(task, model, optimizer, inputs, targets, precision)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="the presets' data directories (each preset "
                        "runs on each)")
    parser.add_argument("--presets", nargs="+", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per preset and round")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--smoke", action="store_true", help="one round of two steps; no claims")
    args = parser.parse_args(argv)
    rounds, steps = (1, 2) if args.smoke else (args.rounds, args.steps)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    names = [Path(data).name for data in args.data]
    if len(set(names)) < len(names) or len(set(args.presets)) < len(args.presets):
        raise SystemExit(f"each preset and each data directory once, by its name: got {args.presets} on {names}")
    runs = {f"{name} @ {Path(data).name}" if len(args.data) > 1 else name: (get_preset(name), Path(data))
            for data in args.data for name in args.presets}
    rates = interleaved_rates({run: training_step(preset, data, precision) for run, (preset, data) in runs.items()},
                              rounds, steps, {run: preset.batch_size for run, (preset, _) in runs.items()})
    print(f"training questions/s, {precision}, {torch.get_num_threads()} thread(s), median of {rounds} interleaved "
          f"rounds of {steps} steps:")
    for name, rate in rates.items():
        print(f"  {name:40s} {rate:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"precision": precision, "threads": torch.get_num_threads(),
                                               "questions_per_second": rates}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
