"""What `relnet train` gains by keeping freed memory (train.memory.keep_freed_memory): a preset's
training step in fresh processes, with glibc's defaults and with the setting, taking turns.

    python benchmarks/malloc_reuse.py --data DATA                       # the pixel RN, one thread
    python benchmarks/malloc_reuse.py --data DATA --preset sort-of-clevr-state --rounds 5
    python benchmarks/malloc_reuse.py --data DATA --smoke               # seconds

The setting is one of the whole process, so each measurement is a process of its own: the two
kinds alternate for --rounds rounds (a shared machine's noise falls on both alike), each timing
--steps steps after a few untimed ones. Prints milliseconds and page faults a step, and the
median ratio of step times (default / kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

MEASURE = """
import json, resource, sys, time
import torch
sys.path[:0] = {paths!r}
from common import preset_batch, train_step
from relnet.tasks import get_preset
from relnet.train.memory import keep_freed_memory
applied = keep_freed_memory() if {keep!r} else False
torch.set_num_threads({threads})
task, model, inputs, targets = preset_batch(get_preset({preset!r}), {data!r}, {batch}, "cpu")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
for _ in range(3):
    train_step(task, model, optimizer, inputs, targets, "fp32")
faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
for _ in range({steps}):
    train_step(task, model, optimizer, inputs, targets, "fp32")
seconds = time.perf_counter() - start
print(json.dumps({{"applied": applied, "ms_per_step": 1000 * seconds / {steps},
                  "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / {steps}}}))
"""


def measure(keep: bool, args) -> dict:
    here = Path(__file__).resolve().parent
    code = MEASURE.format(paths=[str(here), str(here.parent / "src")], keep=keep, threads=args.threads,
                          preset=args.preset, data=str(args.data), batch=args.batch_size, steps=args.steps)
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the measuring process failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the preset's data (its train split)")
    parser.add_argument("--preset", default="sort-of-clevr-pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per process")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--smoke", action="store_true", help="one round of two steps on batch 4 (no timing claim)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps, args.batch_size = 1, 2, 4
    runs = {"default": [], "kept": []}
    for _ in range(args.rounds):
        for kind in runs:
            runs[kind].append(measure(kind == "kept", args))
            print(kind, json.dumps(runs[kind][-1]), flush=True)
    ratio = statistics.median(default["ms_per_step"] / kept["ms_per_step"]
                              for default, kept in zip(runs["default"], runs["kept"]))
    print(f"median step time, glibc's default / freed memory kept: {ratio:.2f}x "
          f"({args.preset}, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "ratio": ratio, "options": {
            key: str(value) for key, value in vars(args).items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
