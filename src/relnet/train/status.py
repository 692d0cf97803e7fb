"""Where a run stands, read from its directory: for runs trained over many sittings
(``relnet status RUN``). Nothing is written, and a run in training is read as its last
checkpoint left it. The horizon line is the one ``relnet train`` prints after each evaluation."""

from __future__ import annotations

import shlex
from pathlib import Path

from relnet.errors import ConfigError
from relnet.io import lock_holder
from relnet.train.checkpoint import load_checkpoint

# What a resume takes from the checkpoint when the command leaves it out: the horizon the run
# reached (a later --epochs or --max-minutes may have moved it), so the resume command drops them.
HORIZON_FLAGS = ("--epochs", "--max-minutes", "--resume")


def run_status(run_dir: str | Path) -> dict:
    """The state of the run in ``run_dir`` ("training", "stopped" or "finished"; who trains it), its
    place in its horizon, its last evaluations and the command that resumes it."""
    run_dir = Path(run_dir)
    holder = lock_holder(run_dir)
    if not (run_dir / "checkpoint.pt").is_file():
        if holder:
            return {"run": str(run_dir), "state": "training", "holder": holder, "checkpoint": False}
        if (run_dir / "config.json").is_file():
            raise ConfigError(f"{run_dir}: a run that stopped before its first checkpoint; start it again")
        raise ConfigError(f"{run_dir}: no run there (no checkpoint.pt; `relnet train --out {run_dir}` writes one)")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    options, progress = state["options"], state["progress"]
    train_examples = options.get("train_examples")
    if not isinstance(train_examples, int) or train_examples < 1:
        raise ConfigError(f"{run_dir / 'checkpoint.pt'}: its options lack the training split's size")
    steps_per_epoch = max(train_examples // min(state["preset"]["batch_size"], train_examples), 1)
    ended_by = _ended_by(progress, steps_per_epoch, options, state["history"])
    full = [entry for entry in state["history"] if not entry.get("subset")]
    return {"run": str(run_dir), "preset": state["preset"]["name"], "checkpoint": True, "holder": holder,
            "state": "training" if holder else "finished" if ended_by else "stopped", "ended_by": ended_by,
            "horizon": where_in_horizon(progress["step"], steps_per_epoch, options["epochs"],
                                        progress["train_seconds"], options["max_minutes"]),
            "last_full_evaluation": _evaluation(full[-1]) if full else None,
            "last_evaluation": _evaluation(state["history"][-1]) if state["history"] else None,
            "resume": resume_command(options)}


def is_evaluated_at(history: list[dict], step: int) -> bool:
    """Whether the last evaluation in ``history`` is a full one at ``step`` (how every finished run ends)."""
    return bool(history) and not history[-1].get("subset") and history[-1]["step"] == step


def _ended_by(progress: dict, steps_per_epoch: int, options: dict, history: list[dict]) -> str | None:
    """What ended the run for good, as its checkpoint says: all its epochs or its time budget, and
    the full evaluation after them; None for a run that a slice, a signal or a crash stopped before
    (a stop during that last evaluation included: a resume evaluates)."""
    if not is_evaluated_at(history, progress["step"]):
        return None
    if progress["step"] >= options["epochs"] * steps_per_epoch:
        return "epochs"
    if options["max_minutes"] and progress["train_seconds"] >= options["max_minutes"] * 60:
        return "time budget"
    return None


def resume_command(options: dict) -> str | None:
    """The command that started the run, without the horizon (a resume keeps the run's own) and with
    --resume; under torchrun, with the run's number of processes; None when no command was recorded."""
    command = options.get("command")
    if not command:
        return None
    words, kept = shlex.split(command), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in HORIZON_FLAGS:
            skip = word != "--resume"  # the flags with a value drop it too
        elif not word.startswith(tuple(f"{flag}=" for flag in HORIZON_FLAGS)):
            kept.append(word)
    if kept[:1] == ["relnet"] and options.get("processes", 1) > 1:
        kept = ["torchrun", f"--nproc_per_node={options['processes']}", "-m", "relnet.cli", *kept[1:]]
    resume = shlex.join(kept + ["--resume"])
    return f"cd {shlex.quote(options['cwd'])} && {resume}" if options.get("cwd") else resume


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


def where_in_horizon(step: int, steps_per_epoch: int, epochs: int, seconds: float, max_minutes: float | None) -> str:
    """How far a run is through its epochs (and budget), and the training time left at its pace."""
    total = epochs * steps_per_epoch
    left = (total - step) * seconds / step if step else None
    if max_minutes:
        budget = max_minutes * 60
        left = min(left, budget - seconds) if left is not None else budget - seconds
    of_budget = f" of the {max_minutes:g} min budget" if max_minutes else ""
    return (f"horizon: {step / steps_per_epoch:.2f} of {epochs} epoch{'s' * (epochs != 1)} "
            f"({step / max(total, 1):.0%}); {_duration(seconds)} trained{of_budget}"
            + (f", about {_duration(max(left, 0.0))} of training left" if left is not None else ""))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"


def format_status(status: dict) -> str:
    if not status["checkpoint"]:
        return f"{status['run']}: training ({status['holder']}), no checkpoint yet"
    head = {"training": f"training now ({status['holder']})", "stopped": "stopped",
            "finished": f"finished (ended by {status['ended_by']})"}[status["state"]]
    lines = [f"{status['run']}: {status['preset']}, {head}", f"  {status['horizon']}"]
    for key, label in (("last_full_evaluation", "last full evaluation"), ("last_evaluation", "last evaluation")):
        entry = status[key]
        if entry and (key == "last_full_evaluation" or entry["subset"]):
            subset = " (subset)" if entry["subset"] else ""
            lines.append(f"  {label}: epoch {entry['epoch']:.2f}, {entry['questions_seen']:,} questions seen: "
                         f"{entry['summary']}{subset}")
    if status["state"] == "stopped" and status["resume"]:
        lines.append(f"  resume: {status['resume']}")
    return "\n".join(lines)
