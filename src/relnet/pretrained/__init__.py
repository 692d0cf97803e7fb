"""Trained models that ship inside the package, loadable by name without training.

Each model is two files in this folder: ``NAME.safetensors`` (the weights: a format that holds
tensors only and cannot execute code) and ``NAME.json``, its card: the preset it was trained with,
the sizes its model builder needs, the exact command, the data seed, the commit and the measured
metrics. ``relnet export RUN --name NAME`` writes both from a run directory.

    from relnet import pretrained
    model, card = pretrained.load("sort-of-clevr-pixels")
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from relnet.errors import ConfigError
from relnet.io import atomic_write, read_json_file, write_json

FOLDER = Path(__file__).resolve().parent
PREFIX = "pretrained:"


def names() -> list[str]:
    """The shipped models, by name."""
    return sorted(path.stem for path in FOLDER.glob("*.safetensors") if path.with_suffix(".json").exists())


def card(name: str) -> dict:
    """The card of a shipped model (preset, info, command, data seed, commit, metrics)."""
    if name not in names():
        shipped = ", ".join(names()) or "none"
        raise ConfigError(f"no pretrained model {name!r}: expected one of {shipped}")
    model_card = read_json_file(FOLDER / f"{name}.json", "pretrained model card")
    if not isinstance(model_card, dict) or not all(
            isinstance(model_card.get(key), dict) for key in ("preset", "info", "metrics")):
        raise ConfigError(f"{FOLDER / (name + '.json')}: not a model card (preset, info and metrics objects)")
    return model_card


def load(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """A shipped model, built from its card's preset and loaded with its weights, in eval mode;
    returns (model, card)."""
    from relnet.tasks import get_task
    from relnet.train.checkpoint import build_checked
    from relnet.train.preset import Preset

    model_card = card(name)
    preset = Preset.from_dict(model_card["preset"], str(FOLDER / f"{name}.json"))
    model = build_checked(get_task(preset.task), preset, model_card["info"], FOLDER / f"{name}.json")
    try:
        weights = load_file(FOLDER / f"{name}.safetensors")
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ConfigError(f"{FOLDER / (name + '.safetensors')}: not readable weights ({type(error).__name__}: "
                          f"{error})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ConfigError(f"{FOLDER / (name + '.safetensors')}: weights do not fit preset {preset.name!r}: "
                          f"{str(error).splitlines()[0]}") from None
    return model.to(device).eval(), model_card


def export(state: dict, metrics: dict, name: str, folder: Path, command: str, commit: str) -> list[Path]:
    """Write ``folder/NAME.safetensors`` and ``folder/NAME.json`` from a training checkpoint's
    ``state`` and the ``metrics`` of its weights (the checkpoint's last full evaluation)."""
    folder = Path(folder)
    # A copy per key: safetensors refuses tensors that share memory (bAbI's two encoders share one embedding).
    weights = {key: tensor.detach().clone().contiguous() for key, tensor in state["model"].items()}
    weights_path, card_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    model_card = {
        "name": name, "preset": state["preset"], "info": state["info"], "command": command,
        "data_seed": metrics.get("data_seed", 0), "training_seed": state["options"]["seed"],
        "device": state["options"]["device"], "precision": state["options"]["precision"], "commit": commit,
        "parameters": sum(tensor.numel() for tensor in weights.values()),
        # Every task's summary figures (accuracies by kind, by task, by count...); no per-example lists.
        "metrics": {key: value for key, value in metrics.items() if key != "data_seed" and not isinstance(value, list)},
    }
    # The card is built before anything is written; the weights go first and the card last, so a
    # model is never a new card beside old weights.
    atomic_write(weights_path, lambda file: file.write(save(weights)))
    write_json(card_path, model_card)
    return [weights_path, card_path]
