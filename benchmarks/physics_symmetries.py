"""How much does respecting the box's symmetries add to a trained physics RN? The model evaluated
on the scenes as they are, then as the mean of its logits over the eight mirrors and turns of the
box (what `model.symmetries=d4` does at evaluation; relnet.nn.symmetry), on the same test scenes,
whichever setting it was trained with.

    relnet data physics --out fresh --scenes 1 --test-scenes 10000 --seed 20261207
    python benchmarks/physics_symmetries.py --data fresh                          # pretrained:physics-connections
    python benchmarks/physics_symmetries.py --data fresh --model RUN --json out.json

Also prints each single map's figure: the task is the same under every one, so they should agree
with the identity's within the noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402

from relnet.io import write_json  # noqa: E402
from relnet.nn.symmetry import box_symmetries  # noqa: E402
from relnet.pretrained import load_trained  # noqa: E402
from relnet.train.loop import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="physics data directory with a test split")
    parser.add_argument("--model", default="pretrained:physics-connections",
                        help="a physics RN: pretrained:NAME, an exported file or a run directory")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    task, preset, info, model = load_trained(args.model)
    if not hasattr(model, "symmetries"):
        parser.error(f"{args.model} is a {type(model).__name__}, not a physics RN (ConnectionRN or CountRN)")
    split = task.load(args.data, "test", preset, info)

    def score(symmetries: str) -> float:
        model.symmetries = symmetries
        return evaluate(task, model, split, args.batch_size, torch.device("cpu"), "fp32", progress=False)["overall"]

    figures = {"model": args.model, "scenes": len(split), "trained_with": model.symmetries,
               "none": score("none"), "d4": score("d4")}
    model.symmetries = "none"
    with torch.no_grad():
        figures["single_maps"] = [task.metrics(split, _predictions(task, model, image, args.batch_size))["overall"]
                                  for image in box_symmetries(split.tensors["trajectories"])]
    print(f"{args.model} (model.symmetries={figures['trained_with']}) on {len(split):,} test scenes of {args.data}: "
          f"the scenes as they are {100 * figures['none']:.2f}%, the mean over the box's 8 symmetries "
          f"{100 * figures['d4']:.2f}%")
    print("each map alone: " + ", ".join(f"{100 * value:.2f}%" for value in figures["single_maps"]))
    if args.json:
        write_json(args.json, figures)
    return 0


def _predictions(task, model, trajectories: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([task.predict(model(trajectories[start:start + batch_size]))
                      for start in range(0, len(trajectories), batch_size)])


if __name__ == "__main__":
    sys.exit(main())
