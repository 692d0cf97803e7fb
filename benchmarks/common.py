"""What the benchmark scripts share: running `relnet` commands and training presets in turn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from relnet.cli import main as relnet


def run(args: list[str]) -> None:
    """`relnet ARGS`, echoed; a failure stops the benchmark."""
    print("$ relnet " + " ".join(args), flush=True)
    code = relnet(args)
    if code:
        raise SystemExit(f"relnet {args[0]} failed with exit code {code}")


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """--precision, passed on to every `relnet train` of the benchmark."""
    parser.add_argument("--precision", default="auto", help="fp32, bf16 or auto, passed to `relnet train` "
                        "(bf16 trains 2 to 2.4x as fast on CPUs with avx512_bf16; 9x slower without)")


def train_presets(budgets: dict[str, float], presets: list[str], data: Path, out: Path, smoke: bool,
                  evaluate: bool = False, train_options: list[str] | None = None) -> dict[str, dict]:
    """Train each preset into OUT/PRESET within its budget in minutes (one epoch when ``smoke``),
    with any further `relnet train` options, optionally `relnet eval` it too; returns each run's
    metrics.json."""
    summary = {}
    for preset in presets:
        run_dir = out / preset
        budget = ["--epochs", "1"] if smoke else ["--max-minutes", str(budgets[preset])]
        run(["train", "--preset", preset, "--data", str(data), "--out", str(run_dir), "--no-progress", *budget,
             *(train_options or [])])
        if evaluate:
            run(["eval", str(run_dir), "--data", str(data), "--no-progress"])
        summary[preset] = json.loads((run_dir / "metrics.json").read_text())
    return summary
