"""Dynamic physical systems as benchmarks of the shared trainer: which balls are joined by
springs (every pair at once), and how many systems there are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from relnet.errors import ConfigError
from relnet.preset import Preset
from relnet.tasks.base import RelationMap, Split, Task, View, construct
from relnet.tasks.physics.data import load_split
from relnet.tasks.physics.figures import draw_scenes
from relnet.tasks.physics.models import ConnectionRN, CountRN, TrajectoryMLP, upper_pairs
from relnet.tasks.physics.simulate import MAX_SYSTEMS, NUM_BALLS, NUM_FRAMES, count_systems, generate

# A ball as an object: its 16 x positions, then its 16 y positions.
OBJECT_DIM = 2 * NUM_FRAMES
NUM_PAIRS = NUM_BALLS * (NUM_BALLS - 1) // 2
PAPER_CONNECTIONS, PAPER_COUNT = 0.93, 0.95


def systems_from_pairs(pairs: torch.Tensor) -> torch.Tensor:
    """Connected systems of the graph given by each scene's 45 unordered-pair springs [S, 45]."""
    first, second = upper_pairs(NUM_BALLS)
    adjacency = torch.zeros(len(pairs), NUM_BALLS, NUM_BALLS, dtype=torch.bool)
    adjacency[:, first, second] = pairs.bool()
    return torch.from_numpy(count_systems((adjacency | adjacency.transpose(1, 2)).numpy()))


class PhysicsSplit(Split):
    def __init__(self, name: str, arrays: dict, target: str):
        self.name = name
        trajectories = torch.from_numpy(arrays["trajectories"])  # [S, frames, balls, 2]
        first, second = upper_pairs(NUM_BALLS)
        self.tensors = {
            "trajectories": trajectories.permute(0, 2, 3, 1).reshape(len(trajectories), NUM_BALLS, OBJECT_DIM),
            "connections": torch.from_numpy(arrays["connections"])[:, first, second].float(),
            "num_systems": torch.from_numpy(arrays["num_systems"]).long(),
        }
        self.target = target

    def __len__(self) -> int:
        return len(self.tensors["num_systems"])

    def batch(self, index):
        return {"trajectories": self.tensors["trajectories"][index]}, self.tensors[self.target][index]

    def info(self) -> dict:
        return {"num_pairs": NUM_PAIRS, "num_classes": MAX_SYSTEMS + 1}


class PhysicsTask(Task):
    target = ""
    data_entries = ()  # every scene is read as it is

    def rn(self, preset: Preset, info: dict, config: dict):
        raise NotImplementedError

    def outputs(self, info: dict) -> int:
        raise NotImplementedError

    def build_model(self, preset: Preset, info: dict):
        config = dict(preset.model)
        architecture = config.pop("architecture")
        if architecture == "rn":
            return self.rn(preset, info, config)
        if architecture == "mlp":
            return construct(TrajectoryMLP, preset, config, self.outputs(info))
        raise ConfigError(f"preset {preset.name!r}: unknown architecture {architecture!r}; expected rn or mlp")

    def load(self, data_dir: Path, split: str, preset: Preset, info: dict | None = None) -> PhysicsSplit:
        return PhysicsSplit(split, load_split(Path(data_dir) / f"{split}.npz"), self.target)

    def generated_split(self, preset: Preset, info: dict, count: int, seed: int) -> PhysicsSplit:
        return PhysicsSplit("generated", generate(count, np.random.SeedSequence([seed, 7])), self.target)

    def view(self, split: PhysicsSplit, index: int, preset: Preset, info: dict) -> View:
        paths = split.tensors["trajectories"][index].cpu().view(NUM_BALLS, 2, NUM_FRAMES).numpy()
        first, second = upper_pairs(NUM_BALLS)
        springs = split.tensors["connections"][index].cpu().nonzero().flatten()
        return View(self.question, self.truth(split, index), labels=[f"ball {ball}" for ball in range(NUM_BALLS)],
                    trajectories=paths, true_pairs=[(int(first[k]), int(second[k])) for k in springs])

    def figures(self, split: PhysicsSplit, predictions: torch.Tensor, out_dir: Path) -> list[Path]:
        """A picture of the first test scenes with their true and predicted structure."""
        path = Path(out_dir) / f"scenes_{split.name}.png"
        draw_scenes(split, predictions.cpu(), self.target, path)
        return [path]


class PhysicsConnections(PhysicsTask):
    """Predict the 45 unordered pairs' springs; a scene counts as right when all 45 are."""

    name = "physics-connections"
    target = "connections"
    curve_group = "scores"
    presets = {
        preset.name: preset for preset in (
            Preset(name="physics-connections", task="physics-connections",
                   description="RN: each pair's spring read from g(o_i, o_j) over the balls' 16-frame trajectories",
                   model={"architecture": "rn", "g_widths": [256] * 4},
                   batch_size=64, epochs=20, lr=1e-3, warmup_steps=300),
            Preset(name="physics-mlp-connections", task="physics-connections",
                   description="baseline: all trajectories concatenated into a 4x256 MLP, 45 outputs",
                   model={"architecture": "mlp", "widths": [256] * 4},
                   batch_size=64, epochs=20, lr=1e-3, warmup_steps=300),
        )
    }

    question = "Which balls are joined by springs?"

    def rn(self, preset: Preset, info: dict, config: dict):
        return construct(ConnectionRN, preset, config)

    @staticmethod
    def springs(pairs: torch.Tensor) -> str:
        """'0-3, 2-5' for the unordered pairs set in a [45] vector."""
        first, second = upper_pairs(NUM_BALLS)
        return ", ".join(f"{int(first[k])}-{int(second[k])}" for k in pairs.nonzero().flatten()) or "none"

    def truth(self, split: PhysicsSplit, index: int) -> str:
        return self.springs(split.tensors["connections"][index].cpu())

    def relation_map(self, model, inputs: dict, info: dict) -> RelationMap:
        """The RN's answer is itself per pair: each pair's spring probability (no attribution needed)."""
        if not isinstance(model, ConnectionRN):
            raise ConfigError(f"{type(model).__name__} has no RelationNetwork: {self.name} baselines have no pairs to show")
        with torch.no_grad():
            probabilities = torch.sigmoid(model.eval()(**inputs).float())[0].cpu()
        first, second = upper_pairs(NUM_BALLS)
        pairs = torch.zeros(NUM_BALLS, NUM_BALLS)
        pairs[first, second] = pairs[second, first] = probabilities / 2  # c_ij + c_ji = p
        best = probabilities.topk(5)
        sure = torch.where(probabilities > 0.5, probabilities, 1 - probabilities).prod()
        return RelationMap(answer=self.springs(probabilities > 0.5), probability=float(sure),
                           top=[(f"{int(first[k])}-{int(second[k])}", float(p)) for p, k in zip(best.values, best.indices)],
                           objects=2 * pairs.sum(1).numpy(), pairs=pairs.numpy(), meaning="spring probability",
                           threshold=0.5)

    def outputs(self, info: dict) -> int:
        return info["num_pairs"]

    def loss(self, outputs, targets):
        return F.binary_cross_entropy_with_logits(outputs.float(), targets)

    def predict(self, outputs):
        return (outputs > 0).float()

    def count_correct(self, outputs, targets):
        return (self.predict(outputs) == targets).all(-1).sum()

    def metrics(self, split: PhysicsSplit, predictions: torch.Tensor) -> dict:
        truth = split.tensors["connections"].cpu()
        right = predictions.cpu() == truth
        exact = right.all(-1).double().mean().item()
        springs = truth.sum().item()
        found = (predictions.cpu() * truth).sum().item()
        claimed = predictions.sum().item()
        counted = systems_from_pairs(predictions.cpu()) == split.tensors["num_systems"].cpu()
        return {"split": split.name, "scenes": len(truth), "overall": exact,
                "scores": {"exact_match": exact, "pair_accuracy": right.double().mean().item()},
                "spring_recall": found / max(springs, 1), "spring_precision": found / max(claimed, 1),
                "count_from_springs": counted.double().mean().item()}

    def format_metrics(self, metrics: dict) -> str:
        scores = metrics["scores"]
        return "\n".join([
            f"Physics, connection inference, {metrics['split']} split: {metrics['scenes']:,} scenes",
            f"{'scenes with all 45 pairs right':<34}{100 * scores['exact_match']:>8.2f}%   (paper: {PAPER_CONNECTIONS:.0%})",
            f"{'pairs right':<34}{100 * scores['pair_accuracy']:>8.2f}%",
            f"{'springs found (recall)':<34}{100 * metrics['spring_recall']:>8.2f}%",
            f"{'predicted springs real (precision)':<34}{100 * metrics['spring_precision']:>8.2f}%",
            f"{'systems counted from the springs':<34}{100 * metrics['count_from_springs']:>8.2f}%   "
            f"(paper's counting RN: {PAPER_COUNT:.0%})"])


class PhysicsCount(PhysicsTask):
    """Count the connected systems (groups of 2 or more balls joined by springs)."""

    name = "physics-count"
    target = "num_systems"
    curve_group = "by_count"
    presets = {
        preset.name: preset for preset in (
            Preset(name="physics-count", task="physics-count",
                   description="RN (f over the summed relations): how many systems of connected balls",
                   model={"architecture": "rn", "g_widths": [256] * 4, "f_widths": [256, 256]},
                   batch_size=64, epochs=20, lr=1e-3, warmup_steps=300),
            Preset(name="physics-mlp-count", task="physics-count",
                   description="baseline: all trajectories concatenated into a 4x256 MLP, softmax over counts",
                   model={"architecture": "mlp", "widths": [256] * 4},
                   batch_size=64, epochs=20, lr=1e-3, warmup_steps=300),
        )
    }

    question = "How many systems of balls joined by springs are there?"

    def rn(self, preset: Preset, info: dict, config: dict):
        return construct(CountRN, preset, config, info["num_classes"])

    def truth(self, split: PhysicsSplit, index: int) -> str:
        return str(int(split.tensors["num_systems"][index]))

    def answer_names(self, info: dict) -> list[str]:
        return [str(count) for count in range(info["num_classes"])]

    def outputs(self, info: dict) -> int:
        return info["num_classes"]

    def metrics(self, split: PhysicsSplit, predictions: torch.Tensor) -> dict:
        truth = split.tensors["num_systems"].cpu()
        right = (predictions.cpu() == truth).double()
        by_count = {str(count): right[truth == count].mean().item() for count in range(1, MAX_SYSTEMS + 1)
                    if (truth == count).any()}
        return {"split": split.name, "scenes": len(truth), "overall": right.mean().item(), "by_count": by_count,
                "count_scenes": {str(count): int((truth == count).sum()) for count in range(1, MAX_SYSTEMS + 1)}}

    def format_metrics(self, metrics: dict) -> str:
        lines = [f"Physics, counting systems, {metrics['split']} split: {metrics['scenes']:,} scenes",
                 f"{'true number of systems':<26}{'accuracy':>9}{'scenes':>9}"]
        for count, accuracy in metrics["by_count"].items():
            lines.append(f"{count:<26}{100 * accuracy:>8.2f}%{metrics['count_scenes'][count]:>9,}")
        lines.append(f"{'overall':<26}{100 * metrics['overall']:>8.2f}%   (paper: {PAPER_COUNT:.0%})")
        return "\n".join(lines)
