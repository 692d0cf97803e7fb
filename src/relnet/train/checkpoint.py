"""Checkpoints: full training state, written atomically, loadable without running code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
``torch.load(path, weights_only=True)`` reads it (no pickle of arbitrary objects).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from relnet.errors import ConfigError
from relnet.io import atomic_write
from relnet.preset import is_number, is_whole
from relnet.train.memory import check_fits, is_out_of_memory

FORMAT = "relnet-checkpoint"
# 2: loss_log rows are [examples seen, loss, accuracy] (1: [epoch, running loss]).
VERSION = 2


# What every checkpoint holds, and of which type.
REQUIRED = {"preset": dict, "info": dict, "options": dict, "model": dict, "optimizer": dict, "progress": dict,
            "rng": dict, "history": list, "loss_log": list}


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint there (expected a file written by `relnet train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ConfigError(f"{path}: not a readable relnet checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a relnet checkpoint (missing format tag {FORMAT!r})")
    if state.get("version") != VERSION:
        raise ConfigError(f"{path}: checkpoint version {state.get('version')} is not supported (expected {VERSION})")
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(state.get(key), kind)]
    wrong = wrong or [key for key, check in PARTS.items() if not check(state[key])]
    if wrong:
        raise ConfigError(f"{path}: damaged checkpoint: {', '.join(wrong)} missing or of the wrong type")
    return state


@dataclass(frozen=True)
class StartingWeights:
    """The weights a new run starts from instead of its seed's (``relnet train --init-from``): a
    trained model's state dict, the task it was trained on, and the ``info`` its data was encoded
    with, which the new run's data is encoded with too, so that a word keeps its number. ``source``
    names the model (``pretrained:NAME``, or the absolute path of an exported file or a run
    directory) in messages and, with the weights' digest, in the run's options."""

    source: str
    task: str
    weights: dict
    info: dict

    def record(self) -> dict:
        """What a run's options and its exported card keep of where its weights came from."""
        digest = hashlib.sha256()
        for key in sorted(self.weights):
            digest.update(key.encode())
            digest.update(self.weights[key].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return {"source": self.source, "weights_sha256": digest.hexdigest()}


def other_starting_weights(stored: dict | None, source: str, run_dir: Path) -> str | None:
    """Why --init-from ``source`` does not apply to the run in ``run_dir``, which started from
    ``stored`` (its options' init_from; None: its seed's weights), or None when it is the same."""
    if stored and stored.get("source") == source:
        return None
    started = f"from {stored['source']}" if stored else "from its seed's weights"
    return (f"{run_dir}: the run there started {started}; --resume goes on from its checkpoint, so "
            f"--init-from {source} does not apply (leave it out, or choose another --out)")


def weights_mismatch(error: Exception) -> str:
    """What ``load_state_dict``'s error says is wrong: its first specific line (the first line only
    names the module), for messages that name the file the weights came from."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__


def _number(value, low=0.0) -> bool:
    return is_number(value, low, sys.float_info.max)  # the largest float: finite, so inf is refused


def _whole(value, low=0) -> bool:
    return is_whole(value, low, math.inf)


# What each part holds, beyond its type: a hand-edited checkpoint is refused here, not deep in a run.
PARTS = {
    "model": lambda weights: all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()),
    "progress": lambda progress: set(progress) == {"epoch", "batch_in_epoch", "step", "train_seconds"} and all(
        _whole(progress[key]) for key in ("epoch", "batch_in_epoch", "step")) and _number(progress["train_seconds"]),
    "options": lambda options: _whole(options.get("seed")) and _whole(options.get("epochs"), 1)
    and isinstance(options.get("device"), str) and isinstance(options.get("precision"), str)
    and (options.get("max_minutes") is None or _number(options["max_minutes"], 1e-9))
    and (options.get("eval_every") is None or _whole(options["eval_every"], 1)),
    "history": lambda history: all(isinstance(entry, dict) and _whole(entry.get("step")) and isinstance(entry.get("eval"), dict)
                                   and _number(entry.get("epoch")) and _whole(entry.get("questions_seen"))
                                   and _number(entry.get("train_seconds")) for entry in history),
    # (a diverged run logs NaN losses: numbers, not necessarily finite)
    "loss_log": lambda rows: all(isinstance(row, list) and len(row) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in row) for row in rows),
}


def build_checked(task, preset, info: dict, where=None, copies: int = 1, device="cpu") -> torch.nn.Module:
    """The task's model for ``preset`` and ``info``, on the CPU; or a ConfigError when they describe
    no model (a damaged or foreign checkpoint, an option out of range) or a model whose ``copies``
    (1 to use it, memory.TRAINING_COPIES to train it) would not fit in the memory ``device`` has
    left. Both are found on a sketch of the model on the meta device, before any weight is
    allocated. ``where`` names the checkpoint or card the preset was read from; None for a preset
    of the command line."""
    source = where or f"preset {preset.name!r} with its --set changes"
    with _described(preset, where, source):
        task.check_preset(preset)
        if not task.builds_on_meta:
            return task.build_model(preset, info)
        with torch.device("meta"):
            sketch = task.build_model(preset, info)
    check_fits(sketch, copies, torch.device(device), source)
    return task.build_model(preset, info)  # (what fails from here on is the machine: out of memory)


@contextlib.contextmanager
def _described(preset, where, source: str):
    """Errors of building a model as ConfigErrors that name the checkpoint or card (``where``) or
    the preset (``source``) the model was described by."""
    try:
        yield
    except ConfigError as error:
        if where is None:
            raise
        raise ConfigError(f"{where}: {error}") from None
    # RuntimeError, OverflowError: negative or huge sizes; IndexError: an empty list of layers
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, IndexError) as error:
        if is_out_of_memory(error):
            raise
        text = (str(error).splitlines() or [""])[0][:200]
        raise ConfigError(f"{source}: its preset and sizes do not describe a {preset.name} model "
                          f"({type(error).__name__}: {text})") from None
