"""A run's checkpoint evaluated with the batch-norm running averages it holds, then with its
batch-norm statistics recomputed at its weights over N training examples (what `relnet train`
now does before every evaluation: Preset.batch_norm_examples).

    python benchmarks/batch_norm_recompute.py RUN --data DIR --examples 512 2048 8192 --every 5
    python benchmarks/batch_norm_recompute.py RUN --data DIR --smoke        # seconds

--every K evaluates every K-th question of the evaluation split (the whole split by default).
Each N is recomputed with two seeds of the examples drawn, to show how much the draw matters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from relnet.preset import Preset  # noqa: E402
from relnet.tasks import get_task  # noqa: E402
from relnet.train.checkpoint import load_checkpoint  # noqa: E402
from relnet.train.loop import evaluate, recompute_batch_norm, resolve_precision  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `relnet train` run directory")
    parser.add_argument("--data", type=Path, required=True, help="the run's data directory")
    parser.add_argument("--examples", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--every", type=int, default=1, help="evaluate every K-th question (default 1: all)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--smoke", action="store_true", help="one small N; no claims")
    args = parser.parse_args(argv)
    state = load_checkpoint(args.run / "checkpoint.pt")
    preset = Preset.from_dict(state["preset"], str(args.run / "checkpoint.pt"))
    task = get_task(preset.task)
    train = task.load(args.data, "train", preset, state["info"])
    split = task.load(args.data, task.eval_split, preset, state["info"])
    split = split.subset(torch.arange(0, len(split), args.every))
    model = task.build_model(preset, state["info"])
    model.load_state_dict(state["model"])
    precision = resolve_precision(args.precision, torch.device("cpu"))

    def score() -> dict:
        metrics = evaluate(task, model, split, preset.eval_batch_size, "cpu", precision, progress=False)
        return {"overall": metrics["overall"], **metrics.get("by_kind", {})}

    results = {"questions": len(split), "running averages": score()}
    print(f"{args.run}: {len(split):,} {split.name} questions, {precision}")
    print(f"  running averages: {results['running averages']}")
    for examples in [8] if args.smoke else args.examples:
        for seed in (1, 2):
            recompute_batch_norm(model, train, examples, preset.batch_size, "cpu", precision, seed)
            results[f"recomputed over {examples} (seed {seed})"] = score()
            print(f"  recomputed over {examples:,} examples (seed {seed}): {results[f'recomputed over {examples} (seed {seed})']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
