"""A strip of test scenes: each ball's path over the 16 frames, the true springs and the predicted ones."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib import pyplot as plt

from relnet.figures import save_figure
from relnet.tasks.physics.models import upper_pairs
from relnet.tasks.physics.simulate import NUM_BALLS, NUM_FRAMES

SCENES_SHOWN = 4


def draw_scenes(split, predictions: torch.Tensor, target: str, path: Path) -> None:
    """Write ``path`` (PNG): the first scenes of ``split`` with their true structure (green) and,
    for connection inference, the predicted springs (red, dashed) or, for counting, the counts."""
    shown = min(SCENES_SHOWN, len(split))
    figure, axes = plt.subplots(1, shown, figsize=(3.6 * shown, 3.8), squeeze=False)
    first, second = upper_pairs(NUM_BALLS)
    for scene, axis in enumerate(axes[0]):
        paths = split.tensors["trajectories"][scene].cpu().view(NUM_BALLS, 2, NUM_FRAMES)  # [ball, (x, y), frame]
        start = paths[:, :, 0]
        for ball in range(NUM_BALLS):
            axis.plot(paths[ball, 0], paths[ball, 1], "-", color="0.6", linewidth=1)
            axis.plot(paths[ball, 0, -1], paths[ball, 1, -1], "o", color="0.3", markersize=4)
        truth = split.tensors["connections"][scene].cpu()
        for pair in range(len(first)):
            a, b = first[pair], second[pair]
            if truth[pair]:
                axis.plot(start[[a, b], 0], start[[a, b], 1], "-", color="tab:green", linewidth=3, alpha=0.6)
            if target == "connections" and predictions[scene, pair]:
                axis.plot(start[[a, b], 0], start[[a, b], 1], "--", color="tab:red", linewidth=1.5)
        if target == "connections":
            right = bool((predictions[scene] == truth).all())
            title = f"scene {scene}: {'all pairs right' if right else 'some pairs wrong'}"
        else:
            title = f"scene {scene}: {int(split.tensors['num_systems'][scene])} systems, predicted {int(predictions[scene])}"
        axis.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xticks=[], yticks=[], title=title)
    figure.suptitle("paths over 16 frames (gray, dot = last frame); springs at frame 0: "
                    "true (green)" + (", predicted (red dashed)" if target == "connections" else ""), fontsize=9)
    save_figure(figure, path, dpi=90)
