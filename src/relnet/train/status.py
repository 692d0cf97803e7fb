"""Where a run stands, read from its directory: for runs trained over many sittings
(``relnet status RUN``). Nothing is written, and a run in training is read as its last
checkpoint left it."""

from __future__ import annotations

import json
from pathlib import Path

from relnet.errors import ConfigError
from relnet.io import lock_holder
from relnet.train.checkpoint import load_checkpoint
from relnet.train.loop import where_in_horizon


def run_status(run_dir: str | Path) -> dict:
    """The state of the run in ``run_dir`` ("training", "stopped" or "finished", and who trains it),
    its place in its horizon, its last evaluations and the command that resumes it."""
    run_dir = Path(run_dir)
    holder = lock_holder(run_dir)
    if not (run_dir / "checkpoint.pt").is_file():
        if holder and (run_dir / "config.json").is_file():
            return {"run": str(run_dir), "state": "training", "holder": holder, "checkpoint": False}
        raise ConfigError(f"{run_dir}: no run there (no checkpoint.pt; `relnet train --out {run_dir}` writes one)")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    options, progress = state["options"], state["progress"]
    train_examples = options.get("train_examples")
    if not isinstance(train_examples, int) or train_examples < 1:
        raise ConfigError(f"{run_dir / 'checkpoint.pt'}: its options lack the training split's size")
    steps_per_epoch = max(train_examples // min(state["preset"]["batch_size"], train_examples), 1)
    full = [entry for entry in state["history"] if not entry.get("subset")]
    ended_by = _ended_by(run_dir, progress["step"])
    command = options.get("command")
    return {"run": str(run_dir), "preset": state["preset"]["name"],
            "state": "training" if holder else "finished" if ended_by in ("epochs", "time budget") else "stopped",
            "holder": holder, "checkpoint": True, "ended_by": ended_by,
            "horizon": where_in_horizon(progress["step"], steps_per_epoch, options["epochs"],
                                        progress["train_seconds"], options["max_minutes"]),
            "last_full_evaluation": _evaluation(full[-1]) if full else None,
            "last_evaluation": _evaluation(state["history"][-1]) if state["history"] else None,
            "resume": None if not command else command if "--resume" in command.split() else f"{command} --resume"}


def _ended_by(run_dir: Path, step: int) -> str | None:
    """What ended the run's last sitting, when metrics.json speaks of the checkpoint's step."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics.get("ended_by") if isinstance(metrics, dict) and metrics.get("steps") == step else None


def _evaluation(entry: dict) -> dict:
    return {"epoch": entry["epoch"], "questions_seen": entry["questions_seen"],
            "subset": bool(entry.get("subset")), "summary": metrics_summary(entry["eval"])}


def metrics_summary(metrics: dict) -> str:
    """One line of a task's metrics: the split, accuracy by kind (or overall), bAbI's tasks passed."""
    summary = ", ".join(f"{kind} {100 * value:.2f}%" for kind, value in metrics.get("by_kind", {}).items()) \
        or (f"{100 * metrics['overall']:.2f}%" if "overall" in metrics else "no overall accuracy")
    if "tasks_passed" in metrics:
        summary += f", {metrics['tasks_passed']}/{len(metrics['by_task'])} tasks passed"
    return f"{metrics['split']} split: {summary}" if "split" in metrics else summary


def format_status(status: dict) -> str:
    state = status["state"]
    if not status["checkpoint"]:
        return f"{status['run']}: training ({status['holder']}), no checkpoint yet"
    head = {"training": f"training now ({status['holder']})", "stopped": "stopped",
            "finished": f"finished (ended by {status['ended_by']})"}[state]
    lines = [f"{status['run']}: {status['preset']}, {head}", f"  {status['horizon']}"]
    for key, label in (("last_full_evaluation", "last full evaluation"), ("last_evaluation", "last evaluation")):
        entry = status[key]
        if entry and (key == "last_full_evaluation" or entry["subset"]):
            subset = " (subset)" if entry["subset"] else ""
            lines.append(f"  {label}: epoch {entry['epoch']:.2f}, {entry['questions_seen']:,} questions seen: "
                         f"{entry['summary']}{subset}")
    if state == "stopped" and status["resume"]:
        lines.append(f"  resume: {status['resume']}")
    return "\n".join(lines)
