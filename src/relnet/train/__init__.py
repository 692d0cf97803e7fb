"""The training engine shared by every benchmark: loop, schedule, checkpoints, plots."""

from relnet.train.loop import evaluate, train
from relnet.train.preset import Preset

__all__ = ["Preset", "evaluate", "train"]
