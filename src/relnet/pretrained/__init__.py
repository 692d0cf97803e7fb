"""Trained models that ship inside the package, loadable by name without training.

Each model is two files in this folder: ``NAME.safetensors`` (the weights: a format that holds
tensors only and cannot execute code) and ``NAME.json``, its card: the preset it was trained with,
the sizes its model builder needs, the exact command, the data seed, the commit and the measured
metrics. ``relnet export RUN --name NAME --dir DIR`` writes both from a run directory; such an
exported pair loads by its path, as a shipped one loads by its name.

    from relnet import pretrained
    model, card = pretrained.load("sort-of-clevr-pixels")          # shipped, by name
    model, card = pretrained.load("models/mine.safetensors")       # exported, by path (card beside it)
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from relnet.errors import ConfigError, shown
from relnet.io import atomic_write, read_json_file, write_json
from relnet.preset import Preset
from relnet.train.checkpoint import StartingWeights, build_checked, load_checkpoint, weights_mismatch

FOLDER = Path(__file__).resolve().parent
PREFIX = "pretrained:"


def names() -> list[str]:
    """The shipped models, by name."""
    return sorted(path.stem for path in FOLDER.glob("*.safetensors") if path.with_suffix(".json").exists())


def is_path(spec: str) -> bool:
    """Whether ``spec`` names an exported model's file rather than a shipped model."""
    return spec.endswith((".safetensors", ".json"))


def files(spec: str) -> tuple[Path, Path]:
    """(weights, card) of a shipped model's name or of an exported model's path (NAME.safetensors
    or NAME.json, the other file beside it)."""
    if is_path(spec):
        weights = Path(spec).with_suffix(".safetensors")
        for path in (weights, weights.with_suffix(".json")):
            if not path.is_file():
                raise ConfigError(f"{path}: no such file (an exported model is NAME.safetensors with its card "
                                  f"NAME.json beside it, as `relnet export` writes them)")
        return weights, weights.with_suffix(".json")
    if spec not in names():
        shipped = ", ".join(names()) or "none"
        raise ConfigError(f"no pretrained model {shown(spec)}: expected one of {shipped}, or the path of an exported "
                          f"NAME.safetensors")
    return FOLDER / f"{spec}.safetensors", FOLDER / f"{spec}.json"


def card(spec: str) -> dict:
    """The card (preset, info, command, data seed, commit, metrics) of a shipped model's name or an
    exported model's path."""
    _, card_path = files(spec)
    model_card = read_json_file(card_path, "pretrained model card")
    if not isinstance(model_card, dict) or not all(
            isinstance(model_card.get(key), dict) for key in ("preset", "info", "metrics")):
        raise ConfigError(f"{card_path}: not a model card (preset, info and metrics objects)")
    return model_card


def load(spec: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """A shipped model (by name) or an exported one (by path), built from its card's preset and
    loaded with its weights, in eval mode; returns (model, card)."""
    from relnet.tasks import get_task

    weights_path, card_path = files(spec)
    model_card = card(spec)
    preset = Preset.from_dict(model_card["preset"], str(card_path))
    model = build_checked(get_task(preset.task), preset, model_card["info"], card_path)
    try:
        weights = load_file(weights_path)
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ConfigError(f"{weights_path}: not readable weights ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ConfigError(f"{weights_path}: weights do not fit preset {preset.name!r}: "
                          f"{weights_mismatch(error)}") from None
    return model.to(device).eval(), model_card


def load_trained(spec: str, device: torch.device | str = "cpu"):
    """A trained model, in eval mode on ``device``, from ``pretrained:NAME``, an exported model's
    path (NAME.safetensors or NAME.json) or a run directory: returns (task, preset, info, model)."""
    from relnet.tasks import get_task

    if spec.startswith(PREFIX) or is_path(spec):
        model, model_card = load(spec[len(PREFIX):] if spec.startswith(PREFIX) else spec, device)
        preset = Preset.from_dict(model_card["preset"], f"model card of {spec}")
        return get_task(preset.task), preset, model_card["info"], model
    run = Path(spec)
    state = load_checkpoint(run / "checkpoint.pt")
    preset, info = Preset.from_dict(state["preset"], str(run / "checkpoint.pt")), state["info"]
    task = get_task(preset.task)
    model = build_checked(task, preset, info, run / "checkpoint.pt")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ConfigError(f"{run / 'checkpoint.pt'}: weights do not fit preset {preset.name!r}: "
                          f"{weights_mismatch(error)}") from None
    return task, preset, info, model.to(device).eval()


def source_name(spec: str) -> str:
    """How a run records where its weights came from: ``pretrained:NAME`` as it is, a path absolute."""
    return spec if spec.startswith(PREFIX) else str(Path(spec).resolve())


def starting_weights(spec: str) -> StartingWeights:
    """A trained model (as ``load_trained`` reads ``spec``) as the weights a new run starts from
    (``relnet train --init-from``)."""
    task, _, info, model = load_trained(spec)
    return StartingWeights(source=source_name(spec), task=task.name, weights=model.state_dict(), info=info)


def export(state: dict, metrics: dict, name: str, folder: Path, command: str, commit: str) -> list[Path]:
    """Write ``folder/NAME.safetensors`` and ``folder/NAME.json`` from a training checkpoint's
    ``state`` and the ``metrics`` of its weights (the checkpoint's last full evaluation)."""
    from relnet.tasks import get_task

    folder = Path(folder)
    preset = Preset.from_dict(state["preset"], "the run's checkpoint")
    model = build_checked(get_task(preset.task), preset, state["info"], "the run's checkpoint")
    # A copy per key: safetensors refuses tensors that share memory (bAbI's two encoders share one embedding).
    weights = {key: tensor.detach().clone().contiguous() for key, tensor in state["model"].items()}
    weights_path, card_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    model_card = {
        # The preset with the horizon the run trained to (--epochs may differ from the preset's).
        "name": name, "preset": {**state["preset"], "epochs": state["options"]["epochs"]}, "info": state["info"],
        "command": command,
        # A run trained over several sittings (--resume): each one's command and the step it began at.
        "sittings": state["options"].get("sittings"),
        "data_seed": metrics.get("data_seed", 0), "training_seed": state["options"]["seed"],
        "device": state["options"]["device"], "precision": state["options"]["precision"], "commit": commit,
        # The model its training started from (relnet train --init-from), or None: its seed's weights.
        "init_from": state["options"].get("init_from"),
        # Trainable parameters, each once (not batch norm's running statistics; a shared embedding once).
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        # Every task's summary figures (accuracies by kind, by task, by count...); no per-example lists.
        "metrics": {key: value for key, value in metrics.items() if key != "data_seed" and not isinstance(value, list)},
    }
    # The card is built before anything is written; the weights go first and the card last, so a
    # model is never a new card beside old weights.
    atomic_write(weights_path, lambda file: file.write(save(weights)))
    write_json(card_path, model_card)
    return [weights_path, card_path]
