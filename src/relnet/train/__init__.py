"""The training engine shared by every benchmark: loop, schedule, checkpoints, plots."""

from relnet.preset import Preset
from relnet.train.loop import evaluate, train

__all__ = ["Preset", "evaluate", "train"]
