"""Checkpoints: full training state, written atomically, loadable without running code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
``torch.load(path, weights_only=True)`` reads it (no pickle of arbitrary objects).
"""

from __future__ import annotations

from pathlib import Path

import torch

from relnet.errors import ConfigError
from relnet.io import atomic_write

FORMAT = "relnet-checkpoint"
# 2: loss_log rows are [examples seen, loss, accuracy] (1: [epoch, running loss]).
VERSION = 2


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
    return state
