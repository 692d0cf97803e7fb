"""Presets: an experiment's hyperparameters as plain data."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from relnet.errors import ConfigError, shown

SCHEDULES = ("cosine", "doubling", "constant")
MAX_BATCH = 1_000_000  # examples in a batch (of training or of evaluation)
MAX_EPOCHS = 1_000_000
MAX_EXAMPLES = 10**12  # examples in a training split
MAX_STEPS = 1_000_000_000  # warm-up steps
MAX_BATCH_NORM_EXAMPLES = 10_000_000  # training examples over which batch-norm statistics are recomputed
# Fields that shape only how a run is evaluated, never its weights: a resumed run takes them from the
# command (and the current preset), not from its checkpoint.
EVALUATION_FIELDS = ("eval_batch_size",)
# Learning rates and weight decay: float32 holds up to 3.4e38, but no run learns anything above this.
MAX_RATE = 1e4
MAX_GRAD_NORM = 1e9


def is_whole(value, low: int, high: int) -> bool:
    """Whether ``value`` is a whole number (not a bool) from ``low`` to ``high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value, low: float, high: float, above: bool = False, below: bool = False) -> bool:
    """Whether ``value`` is a number (not a bool) from ``low`` to ``high``, either end excluded with
    ``above``/``below``. NaN and infinities fall outside every range; an integer of thousands of
    digits is compared exactly, never turned into a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (low < value if above else low <= value) and (value < high if below else value <= high)


def _whole(low: int, high: int):
    """A field's range as (test, what it expects): a whole number from ``low`` to ``high``."""
    return lambda value: is_whole(value, low, high), f"a whole number from {low:,} to {high:,}"


def _real(low: float, high: float, above: bool = False, below: bool = False):
    """A field's range as (test, what it expects): a number from ``low`` to ``high``."""
    return (lambda value: is_number(value, low, high, above, below),
            f"a number {'>' if above else '>='} {low:g} and {'<' if below else '<='} {high:g}")


# The range of every number field: a value outside it is refused before anything is built.
NUMBER_FIELDS = {
    "batch_size": _whole(1, MAX_BATCH), "eval_batch_size": _whole(1, MAX_BATCH), "epochs": _whole(1, MAX_EPOCHS),
    "warmup_steps": _whole(0, MAX_STEPS), "lr": _real(0, MAX_RATE, above=True), "lr_start": _real(0, MAX_RATE),
    "weight_decay": _real(0, MAX_RATE), "grad_clip": _real(0, MAX_GRAD_NORM, above=True),
    "min_lr_ratio": _real(0, 1), "decay_start": _real(0, 1, below=True), "lr_double_every": _real(0, MAX_EPOCHS),
    "batch_norm_examples": _whole(0, MAX_BATCH_NORM_EXAMPLES), "planned_train_examples": _whole(0, MAX_EXAMPLES),
}


def _field_problem(name: str, value) -> str | None:
    """What the preset field ``name`` expects when ``value`` does not fit its type and range, else None."""
    if name in ("name", "task", "description", "schedule"):
        return None if isinstance(value, str) else "a string"
    if name in ("model", "data"):
        return None if isinstance(value, dict) else "an object"
    if name == "grad_clip" and value is None:
        return None
    fits, expected = NUMBER_FIELDS[name]
    return None if fits(value) else expected


@dataclass(frozen=True)
class Preset:
    """Everything needed to reproduce an experiment except the data and the seed.

    ``model`` is passed as-is to the task's model builder and ``data`` to its loader
    (e.g. which question kinds to train on); the rest drives the trainer.
    With ``schedule="cosine"`` the learning rate warms up linearly over ``warmup_steps`` and
    then follows a cosine from ``lr`` down to ``lr * min_lr_ratio`` over the run (its epochs, or
    its time budget when ``--max-minutes`` is given); with ``decay_start`` s > 0 it stays at
    ``lr`` for the first share s of the run and the cosine takes the rest. With ``schedule="doubling"`` (the recipe
    public CLEVR reproductions needed) it starts at ``lr_start``, doubles every
    ``lr_double_every`` of the preset's ``epochs`` and stays at ``lr`` once there; a shorter run
    (``--epochs``, ``--max-minutes``) goes through the same schedule in proportion. With
    ``schedule="constant"`` it warms up over ``warmup_steps`` and then stays at ``lr``.
    Before every evaluation (so also before every checkpoint that follows one) the model's
    batch-norm statistics are recomputed at its current weights over ``batch_norm_examples``
    training examples (0: the running averages of the last steps are kept).
    ``planned_train_examples`` (0: any) is the size of the training split that the epochs (and so
    the horizon, curriculum and schedule) are planned for; a run on a split of another size is told
    so when it starts.
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
    decay_start: float = 0.0
    grad_clip: float | None = None
    schedule: str = "cosine"
    lr_start: float = 0.0
    lr_double_every: float = 0.0
    eval_batch_size: int = 1024
    batch_norm_examples: int = 2048
    planned_train_examples: int = 0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"preset {self.name!r}: unknown schedule {shown(self.schedule)}; expected one of "
                              f"{', '.join(SCHEDULES)}")
        if self.schedule == "doubling" and not (self.lr_double_every > 0 and self.lr_start > 0):
            raise ConfigError(f"preset {self.name!r}: the doubling schedule needs lr_start > 0 and lr_double_every > 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields, where: str) -> "Preset":
        """A preset stored in a checkpoint or card (``where`` names it), or a ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if not isinstance(fields, dict) or not {"name", "task"} <= set(fields):
            raise ConfigError(f"{where}: no preset with a name and a task stored there")
        missing = [name for name in required if name not in fields]
        if missing:
            raise ConfigError(f"{where}: the stored preset lacks {', '.join(missing)}")
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"{where}: the stored preset has fields this relnet does not know: {', '.join(unknown)}")
        wrong = {name: problem for name, value in fields.items() if (problem := _field_problem(name, value))}
        if wrong:
            first = next(iter(wrong))
            raise ConfigError(f"{where}: the preset has values of the wrong type or out of range for "
                              f"{', '.join(wrong)}; {first}={shown(fields[first])}, expected {wrong[first]}")
        return cls(**fields)

    def with_settings(self, settings, where: str) -> "Preset":
        """A copy with the settings of a config file (``relnet train --config``) applied: an object
        of fields (``{"lr": 1e-4}``) whose ``model`` and ``data`` objects change those entries."""
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: expected an object of preset fields, e.g. {{\"lr\": 1e-4, \"model\": "
                              f"{{\"g_widths\": [256, 256]}}}}")
        assignments = []
        for key, value in settings.items():
            if key in ("model", "data") and isinstance(value, dict):
                assignments += [f"{key}.{entry}={json.dumps(item)}" for entry, item in value.items()]
            else:
                assignments.append(f"{key}={json.dumps(value)}")
        return self.with_overrides(assignments, where)

    def with_overrides(self, assignments: Sequence[str], where: str = "--set") -> "Preset":
        """A copy with ``KEY=VALUE`` assignments applied (``relnet train --set``): KEY is a field
        (``lr``) or an entry of ``model``/``data`` (``model.g_widths``); VALUE is JSON
        (``1e-4``, ``[256,256]``, ``"relu-bn"``), or else taken as a plain string."""
        fields = {f.name for f in dataclasses.fields(self)} - {"name", "task", "description"}
        changes: dict = {"model": dict(self.model), "data": dict(self.data)}
        for assignment in assignments:
            key, equals, text = assignment.partition("=")
            if not equals or not key:
                raise ConfigError(f"{where} {shown(assignment)}: expected KEY=VALUE, e.g. lr=1e-4 or "
                                  f"model.g_widths=[256,256]")
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):  # not JSON, a number of over 4300 digits, or nested too deep
                value = text
            group, dot, entry = key.partition(".")
            if dot and group in ("model", "data") and entry:
                changes[group][entry] = value
            elif not dot and key in fields - {"model", "data"}:
                changes[key] = value
            else:
                raise ConfigError(f"{where}: unknown key {shown(key)}; expected one of "
                                  f"{', '.join(sorted(fields - {'model', 'data'}))}, model.NAME or data.NAME")
        # Checked as a stored preset is: a value of the wrong type or range is one clear error.
        return Preset.from_dict({**self.to_dict(), **changes}, where)
