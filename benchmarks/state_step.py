"""Where a `clevr-state` training step spends its time on this CPU, and how many questions a
second each way of computing it trains, side by side.

    python benchmarks/state_step.py --data CACHE --rounds 3 --steps 20 --json OUT.json
    python benchmarks/state_step.py --data CACHE --smoke          # seconds

CACHE is a CLEVR cache (`relnet data clevr --no-images` is enough). Every variant trains the same
batches (the preset's batch size, its precision) from the same weights; the variants take turns
for --rounds rounds, so the machine's noise falls on all of them alike, and each reports its
median questions per second. Then one profile of the default step: the operators that take the
most time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import interleaved_rates, train_step  # noqa: E402
from relnet.tasks import get_preset, get_task  # noqa: E402
from relnet.train.loop import resolve_precision  # noqa: E402


def one_lstm_run(model) -> None:
    """The question LSTM as it ran before length groups: once over the batch's longest question."""
    model.question.encoder.length_groups = 1


def pair_grid(model) -> None:
    """The RN's computation before it learned to skip padded pairs: the whole 10 x 10 grid, masked."""
    model.rn.pair_chunk_size = 10


# The default step first (it is profiled); ratios are to "before", the step when the issue was filed.
VARIANTS = {"now": lambda model: None, "real-pairs": one_lstm_run,
            "before": lambda model: (pair_grid(model), one_lstm_run(model))}
BASELINE = "before"


def build(preset, info, seed: int):
    torch.manual_seed(seed)
    model = get_task(preset.task).build_model(preset, info)
    return model, torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)


def step(task, model, optimizer, split, index, precision) -> None:
    train_step(task, model, optimizer, *split.batch(index), precision)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CLEVR cache directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--smoke", action="store_true", help="one round of two steps; no claims")
    args = parser.parse_args(argv)
    rounds, steps = (1, 2) if args.smoke else (args.rounds, args.steps)
    preset = get_preset("clevr-state")
    task = get_task(preset.task)
    split = task.load(Path(args.data), "train", preset)
    info = split.info()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(len(split), (preset.batch_size,), generator=generator) for _ in range(steps)]
    runs = {name: build(preset, info, 0) for name in VARIANTS}
    for name, (model, _) in runs.items():
        VARIANTS[name](model)

    def stepper(model, optimizer):
        order = itertools.cycle(batches)  # each variant trains the same batches in the same order
        return lambda: step(task, model, optimizer, split, next(order), precision)

    rates = interleaved_rates({name: stepper(*run) for name, run in runs.items()}, rounds, steps,
                              dict.fromkeys(runs, preset.batch_size))
    result = {"precision": precision, "threads": torch.get_num_threads(), "batch_size": preset.batch_size,
              "questions_per_second": rates}
    print(f"clevr-state step, batch {preset.batch_size}, {precision}, {torch.get_num_threads()} thread(s), "
          f"{rounds} interleaved rounds of {steps} steps (median questions/s):")
    for name, rate in result["questions_per_second"].items():
        print(f"  {name:12s} {rate:8.1f}  ({rate / result['questions_per_second'][BASELINE]:.2f}x {BASELINE})")
    model, optimizer = runs[next(iter(VARIANTS))]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for index in batches[:max(2, steps // 4)]:
            step(task, model, optimizer, split, index, precision)
    table = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    print(table)
    result["profile_top"] = [{"op": event.key, "self_cpu_ms": round(event.self_cpu_time_total / 1000, 1)}
                             for event in sorted(profile.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
