"""The benchmarks. Each adds its data, its model wiring and its metrics to the shared trainer."""

from relnet.errors import ConfigError, shown
from relnet.preset import Preset
from relnet.tasks.babi import Babi
from relnet.tasks.base import Split, Task
from relnet.tasks.clevr import Clevr
from relnet.tasks.physics import PhysicsConnections, PhysicsCount
from relnet.tasks.sort_of_clevr import SortOfClevr
from relnet.tasks.tensors import TensorSplit, TensorTask

TASKS: dict[str, Task] = {task.name: task for task in (SortOfClevr(), Babi(), PhysicsConnections(), PhysicsCount(), Clevr())}
PRESETS: dict[str, Preset] = {name: preset for task in TASKS.values() for name, preset in task.presets.items()}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {shown(name)}: expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {shown(name)}: expected one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


__all__ = ["PRESETS", "TASKS", "Preset", "Split", "Task", "TensorSplit", "TensorTask", "get_preset", "get_task"]
