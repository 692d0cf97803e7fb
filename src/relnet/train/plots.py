"""Learning curves as a PNG: training loss, and accuracy per metrics group."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
from matplotlib import pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], loss_log: list[list[float]], path: Path, group: str, title: str) -> None:
    """Write ``path``: left, training loss by epoch; right, evaluation accuracy overall and by ``group``."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    if loss_log:
        epochs, losses = zip(*loss_log)
        loss_axis.plot(epochs, losses, color="tab:blue")
    loss_axis.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    loss_axis.grid(alpha=0.3)

    epochs = [entry["epoch"] for entry in history]
    accuracy_axis.plot(epochs, [entry["train_accuracy"] for entry in history], "o--", color="gray", label="train")
    accuracy_axis.plot(epochs, [entry["eval"]["overall"] for entry in history], "o-", color="black", label="eval overall")
    names = history[0]["eval"].get(group, {}) if history else {}
    for name in names:
        accuracy_axis.plot(epochs, [entry["eval"][group][name] for entry in history], "o-", label=name)
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.01), title="accuracy")
    accuracy_axis.grid(alpha=0.3)
    accuracy_axis.legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path, dpi=100)


def save_figure(figure, path: Path, dpi: int) -> None:
    """Write ``figure`` as a PNG atomically (a reader never sees half a file) and close it."""
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    tmp.replace(path)
