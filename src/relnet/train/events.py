"""TensorBoard event files in RUN/tensorboard/, written beside train_log.jsonl and history.json
when the optional ``tensorboard`` package is installed (``pip install 'relnet[tensorboard]'``).

The x axis is questions (examples) seen, as in history.json, so runs of different batch sizes
line up. A resumed run drops the events written after its checkpoint, as it does its log lines.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = "tensorboard"


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is not installed: the JSON logs are the record
        return None
    return SummaryWriter


class EventLog:
    """Training and evaluation scalars of one run; does nothing without tensorboard."""

    def __init__(self, out_dir: Path, resumed_at: int):
        writer = _writer_class()
        # purge_step: events after the checkpoint's position are of steps trained again, so dropped.
        self._writer = writer(str(Path(out_dir) / FOLDER), purge_step=resumed_at + 1 if resumed_at else None) \
            if writer else None

    def train(self, row: dict) -> None:
        """One train_log.jsonl row: the loss, accuracy and learning rate of the steps it covers."""
        if self._writer:
            for name in ("loss", "accuracy", "lr"):
                self._writer.add_scalar(f"train/{name}", row[name], row["questions_seen"])

    def evaluation(self, entry: dict) -> None:
        """One history.json entry: overall accuracy and every group of the task's metrics
        (by_kind, by_category, by_task, ...); the fixed subset's go under eval_subset/."""
        if not self._writer:
            return
        prefix, metrics, seen = "eval_subset" if entry["subset"] else "eval", entry["eval"], entry["questions_seen"]
        self._writer.add_scalar(f"{prefix}/overall", metrics["overall"], seen)
        for group, values in metrics.items():
            if group.startswith("by_") and isinstance(values, dict):
                for name, value in values.items():
                    if isinstance(value, float):
                        self._writer.add_scalar(f"{prefix}/{group}/{name}", value, seen)
        self._writer.flush()

    def close(self) -> None:
        if self._writer:
            self._writer.close()
            self._writer = None
