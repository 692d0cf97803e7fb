"""Training steps with the text LSTMs run in length groups (the default) against one LSTM run
over the batch's longest sequence and against packed sequences, side by side, on one real batch
of a preset.

    python benchmarks/lstm_groups.py --preset babi --data BABI_DIR --set 'data.tasks=[1,2,16,19]' --rounds 5
    python benchmarks/lstm_groups.py --preset clevr-state --data CACHE
    python benchmarks/lstm_groups.py --preset babi --data BABI_DIR --smoke     # seconds

All three compute the same states (tests/test_babi.py for the groups); the model starts each
turn from the same weights, the ways take turns for --rounds rounds so that the machine's noise
falls on all alike, and each reports its median questions per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import interleaved_rates, preset_batch, train_step  # noqa: E402
from relnet.nn.text import SequenceEncoder  # noqa: E402
from relnet.tasks import get_preset  # noqa: E402
from relnet.train.loop import resolve_precision  # noqa: E402


def packed_final_states(encoder: SequenceEncoder, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The encoder's final states through a packed sequence: the LSTM steps each sequence only
    through its own words."""
    packed = pack_padded_sequence(encoder.embedding(tokens), lengths.clamp(min=1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    _, (hidden, _) = encoder.lstm(packed)
    return hidden[0] * (lengths > 0).unsqueeze(-1).to(hidden.dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="babi", help="a preset whose model reads text (default babi)")
    parser.add_argument("--data", required=True, help="the preset's data directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a change to the preset")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per way and round")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--smoke", action="store_true", help="one round of two steps; no claims")
    args = parser.parse_args(argv)
    rounds, steps = (1, 2) if args.smoke else (args.rounds, args.steps)
    preset = get_preset(args.preset).with_overrides(args.set)
    precision = resolve_precision(args.precision, torch.device("cpu"))
    task, model, inputs, targets = preset_batch(preset, Path(args.data), preset.batch_size, "cpu")
    encoders = [module for module in model.modules() if isinstance(module, SequenceEncoder)]
    if not encoders:
        raise SystemExit(f"preset {args.preset}: its model reads no text")
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr)
    start_state = {key: value.clone() for key, value in model.state_dict().items()}

    def step() -> None:
        train_step(task, model, optimizer, inputs, targets, precision)

    default_groups = encoders[0].length_groups

    def start_as(way: str) -> None:
        model.load_state_dict(start_state)
        for encoder in encoders:
            encoder.length_groups = default_groups if way == "length-groups" else 1
            if way == "packed":
                encoder._final_states = types.MethodType(packed_final_states, encoder)
            else:
                encoder.__dict__.pop("_final_states", None)  # the class's own

    ways = ("length-groups", "one-run", "packed")
    rates = interleaved_rates(dict.fromkeys(ways, step), rounds, steps, dict.fromkeys(ways, preset.batch_size),
                              before=start_as)
    result = {"preset": args.preset, "precision": precision, "threads": torch.get_num_threads(),
              "batch_size": preset.batch_size, "shapes": {key: list(value.shape) for key, value in inputs.items()},
              "questions_per_second": rates}
    rate = result["questions_per_second"]
    print(f"{args.preset} step, batch {preset.batch_size}, {precision}, {torch.get_num_threads()} thread(s), {rounds} "
          f"interleaved rounds of {steps} steps (median questions/s): length groups {rate['length-groups']}, one LSTM "
          f"run {rate['one-run']}, packed {rate['packed']} (groups {rate['length-groups'] / rate['one-run']:.2f}x one "
          f"run)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
