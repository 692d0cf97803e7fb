"""Presets: an experiment's hyperparameters as plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """Everything needed to reproduce an experiment except the data and the seed.

    ``model`` is passed as-is to the task's model builder and ``data`` to its loader
    (e.g. which question kinds to train on); the rest drives the trainer.
    With ``schedule="cosine"`` the learning rate warms up linearly over ``warmup_steps`` and
    then follows a cosine from ``lr`` down to ``lr * min_lr_ratio`` over the run (its epochs, or
    its time budget when ``--max-minutes`` is given). With ``schedule="doubling"`` (the recipe
    public CLEVR reproductions needed) it starts at ``lr_start``, doubles every
    ``lr_double_every`` of the preset's ``epochs`` and stays at ``lr`` once there; a shorter run
    (``--epochs``, ``--max-minutes``) goes through the same schedule in proportion.
    """

    name: str
    task: str
    description: str
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    batch_size: int = 64
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    schedule: str = "cosine"
    lr_start: float = 0.0
    lr_double_every: float = 0.0
    eval_batch_size: int = 1024

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
