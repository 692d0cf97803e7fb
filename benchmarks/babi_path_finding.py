"""Which move of bAbI task 19's two-move answers a trained bAbI run gets right.

    python benchmarks/babi_path_finding.py RUN --data DIR [--split valid]

Task 19 (path finding) answers "How do you go from A to B?" with two moves (`s,e`), one answer
class of 12. Scoring the first and the second move of each prediction separately tells a model
that has learned one hop (the other guessed: about 1/3 of answers right) from one that has learned
none (1/12).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from relnet.preset import Preset
from relnet.tasks import get_task
from relnet.train.checkpoint import load_checkpoint
from relnet.train.loop import predict

TASK = 19


def move_accuracy(run: Path, data: Path, split: str = "valid") -> dict:
    state = load_checkpoint(run / "checkpoint.pt")
    preset = Preset(**state["preset"])
    task = get_task(preset.task)
    examples = task.load(data, split, preset, state["info"])
    mine = (examples.tensors["tasks"] == TASK).nonzero().flatten()
    if not len(mine):
        raise SystemExit(f"{data}: no task-{TASK} questions in the {split} split")
    model = task.build_model(preset, state["info"])
    model.load_state_dict(state["model"])
    questions = examples.subset(mine)
    names = state["info"]["answers"]
    predicted = [names[i].split(",") for i in predict(task, model, questions, 512, torch.device("cpu"), "fp32",
                                                       progress=False).tolist()]
    truth = [names[i].split(",") for i in questions.tensors["answers"].tolist()]
    count = len(truth)
    return {"questions": count,
            "first_move": sum(p[0] == t[0] for p, t in zip(predicted, truth)) / count,
            "second_move": sum(p[1:2] == t[1:2] for p, t in zip(predicted, truth)) / count,
            "both": sum(p == t for p, t in zip(predicted, truth)) / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory of a bAbI run that trained on task 19")
    parser.add_argument("--data", type=Path, required=True, help="bAbI directory")
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    print(json.dumps(move_accuracy(args.run, args.data, args.split), indent=2))


if __name__ == "__main__":
    main()
