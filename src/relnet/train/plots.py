"""Learning curves as a PNG, against training examples seen: the training loss and accuracy
(smoothed), and the evaluation accuracy overall and by metrics group."""

from __future__ import annotations

from pathlib import Path

from relnet.figures import plt, save_figure

SMOOTHING = 0.7  # weight of the past in the exponential moving average of the logged values


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, bias-corrected so the first values are not pulled towards 0."""
    average, out = 0.0, []
    for count, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** count))
    return out


def plot_curves(history: list[dict], loss_log: list[list[float]], path: Path, group: str, title: str) -> None:
    """Write ``path``: left, training loss; right, training and evaluation accuracy; both against
    examples seen. ``loss_log`` rows are [examples seen, mean loss, accuracy] of the steps since
    the previous row; evaluations on a subset are drawn as lines, full evaluations as points."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    if loss_log:
        seen, losses, accuracies = zip(*loss_log)
        loss_axis.plot(seen, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        loss_axis.plot(seen, smoothed(losses), color="tab:blue", label="smoothed")
        accuracy_axis.plot(seen, smoothed(accuracies), color="gray", linestyle="--", label="train (smoothed)")
    loss_axis.set(xlabel="training examples seen", ylabel="training loss", yscale="log", title="loss")
    loss_axis.grid(alpha=0.3)

    full = [entry for entry in history if not entry.get("subset")]
    partial = [entry for entry in history if entry.get("subset")]
    # Every group seen in any evaluation (a small subset may lack some): missing values are left out.
    names = list(dict.fromkeys(name for entry in history for name in entry["eval"].get(group, {})))
    for index, name in enumerate([None, *names]):
        color = "black" if name is None else f"C{index - 1}"
        label = "eval overall" if name is None else name
        value = (lambda entry: entry["eval"].get("overall")) if name is None else \
            (lambda entry: entry["eval"].get(group, {}).get(name))
        for entries, style, suffix in ((partial, "-", " (subset)"), (full, "o", "")):
            points = [(e["questions_seen"], value(e)) for e in entries if value(e) is not None]
            if points:
                accuracy_axis.plot(*zip(*points), style, color=color, label=label + suffix,
                                   **({"linestyle": "none" if partial else "-"} if style == "o" else {}))
    accuracy_axis.set(xlabel="training examples seen", ylabel="accuracy", ylim=(0, 1.01), title="accuracy")
    accuracy_axis.grid(alpha=0.3)
    accuracy_axis.legend(loc="lower right", fontsize=7)
    figure.suptitle(title)
    save_figure(figure, path, dpi=100)

