"""The picture of one explained example: the scene with each object shaded by its share and arcs
for the strongest pairs (left), the most probable answers (right), the question above."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import FancyArrowPatch

from relnet.figures import plt
from relnet.look import Explained

SIZE_INCHES, DPI = (10.0, 5.0), 100  # every picture is 1000 x 500 pixels
STRONGEST_PAIRS = 5
COLORMAP = colormaps["RdBu_r"]  # red: pushes towards the answer; blue: against it


def draw(explained: Explained, path: str | Path | None = None) -> bytes:
    """The PNG of ``explained``; also written to ``path`` when given."""
    view, relation = explained.view, explained.relation
    figure = plt.figure(figsize=SIZE_INCHES, dpi=DPI)
    scene_axis = figure.add_axes((0.02, 0.04, 0.56, 0.78))
    answers_axis = figure.add_axes((0.72, 0.18, 0.25, 0.5))
    scale = float(np.abs(relation.objects).max(initial=0) or 1.0)
    norm = TwoSlopeNorm(0.0, -scale, scale)
    if view.sentences is not None:
        _draw_story(scene_axis, view, relation, norm)
    elif view.trajectories is not None:
        _draw_balls(scene_axis, view, relation, norm)
    else:
        _draw_scene(scene_axis, view, relation, norm)
    _draw_answers(answers_axis, view, relation)
    truth = "" if view.truth is None else f"   true answer: {view.truth}"
    figure.text(0.02, 0.97, "\n".join(textwrap.wrap(view.question, 110)), va="top", fontsize=12, weight="bold")
    figure.text(0.02, 0.88, f"answer: {relation.answer} (p = {relation.probability:.2f}){truth}", va="top", fontsize=11)
    arcs = f"the {STRONGEST_PAIRS} strongest pairs" if relation.threshold is None else \
        f"the pairs above {relation.threshold:g}"
    if view.true_pairs:
        arcs += "; green dashed: the true ones"
    figure.text(0.60, 0.08, "\n".join(textwrap.wrap(f"shading: each object's share of the {relation.meaning}; "
                                                     f"arcs: {arcs}", 52)),
                fontsize=8, color="0.3", va="top")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    png = buffer.getvalue()
    if path is not None:
        from relnet.io import atomic_write

        atomic_write(path, lambda file: file.write(png))
    return png


def strongest_pairs(pairs: np.ndarray, count: int = STRONGEST_PAIRS) -> list[tuple[int, int, float]]:
    """The unordered pairs of two different objects with the largest |c_ij + c_ji|, strongest first."""
    both = pairs + pairs.T
    first, second = np.triu_indices(len(pairs), k=1)
    values = both[first, second]
    order = np.argsort(-np.abs(values), kind="stable")[:count]
    return [(int(first[k]), int(second[k]), float(values[k])) for k in order]


def shown_pairs(relation) -> list[tuple[int, int, float]]:
    """The pairs drawn as arcs: the strongest few, or all above the map's threshold."""
    if relation.threshold is None:
        return strongest_pairs(relation.pairs)
    return [pair for pair in strongest_pairs(relation.pairs, len(relation.pairs) ** 2) if pair[2] > relation.threshold]


def _arcs(axis, positions: np.ndarray, relation, bend: float = 0.25) -> None:
    pairs = shown_pairs(relation)
    if not pairs:
        return
    largest = max(abs(value) for _, _, value in pairs) or 1.0
    for i, j, value in pairs:
        axis.add_patch(FancyArrowPatch(positions[i], positions[j], connectionstyle=f"arc3,rad={bend}",
                                       arrowstyle="-", linewidth=1 + 4 * abs(value) / largest,
                                       color=COLORMAP(0.9 if value > 0 else 0.1), alpha=0.8, zorder=3))


def _draw_scene(axis, view, relation, norm) -> None:
    """An image with CNN cells (grid) or objects at points, or objects on the scene's ground plane."""
    if view.image is not None:
        axis.imshow(view.image)
    if view.grid:
        side = int(round(len(relation.objects) ** 0.5))
        height, width = view.image.shape[:2]
        axis.imshow(relation.objects.reshape(side, side), cmap=COLORMAP, norm=norm, alpha=0.55,
                    extent=(0, width, height, 0), interpolation="nearest")
        cell = np.array([width / side, height / side])
        positions = (np.stack(np.unravel_index(np.arange(side * side), (side, side)), 1)[:, ::-1] + 0.5) * cell
    else:
        positions = view.points
        sizes = 80 + 900 * np.abs(relation.objects) / (norm.vmax or 1.0)
        axis.scatter(positions[:, 0], positions[:, 1], s=sizes, c=relation.objects, cmap=COLORMAP, norm=norm,
                     edgecolors="black", linewidths=1, alpha=0.7, zorder=2)
        for label, (x, y) in zip(view.labels, positions):
            axis.annotate(label, (x, y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
        if view.image is None:
            axis.set_aspect("equal")
            axis.margins(0.15)
            axis.invert_yaxis()
    _arcs(axis, positions, relation)
    axis.set_xticks([])
    axis.set_yticks([])


def _draw_story(axis, view, relation, norm) -> None:
    """bAbI: the statements top to bottom, each shaded by its share, arcs between them on the left."""
    count = len(view.sentences)
    axis.set(xlim=(0, 1), ylim=(max(count, 8) - 0.5, -0.5))  # short stories keep their line spacing
    axis.axis("off")
    fontsize = 10 if count <= 12 else max(5, int(120 / count))
    for row, sentence in enumerate(view.sentences):
        shade = norm(relation.objects[row])
        axis.text(0.12, row, f"{row + 1}. {sentence}", va="center", fontsize=fontsize,
                  color="white" if abs(shade - 0.5) > 0.3 else "black",
                  bbox={"facecolor": COLORMAP(shade), "edgecolor": "none", "pad": 2})
    positions = np.stack([np.full(count, 0.1), np.arange(count, dtype=float)], 1)
    _arcs(axis, positions, relation, bend=0.6)


def _draw_balls(axis, view, relation, norm) -> None:
    """Physics: each ball's path; pairs joined at the first frame (true springs: green, dashed)."""
    start = view.trajectories[:, :, 0]
    for i, j in view.true_pairs:
        axis.plot(start[[i, j], 0], start[[i, j], 1], "--", color="tab:green", linewidth=2, zorder=4)
    for ball, path in enumerate(view.trajectories):
        axis.plot(path[0], path[1], "-", color="0.6", linewidth=1)
        axis.annotate(str(ball), start[ball], textcoords="offset points", xytext=(5, 5), fontsize=8)
    axis.scatter(start[:, 0], start[:, 1], s=120, c=relation.objects, cmap=COLORMAP, norm=norm, edgecolors="black",
                 zorder=2)
    _arcs(axis, start, relation, bend=0.0)
    axis.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xticks=[], yticks=[])


def _draw_answers(axis, view, relation) -> None:
    names = [name for name, _ in relation.top][::-1]
    values = [value for _, value in relation.top][::-1]
    true = set((view.truth or "").split(", "))  # a truth may list several items (physics: the springs)
    axis.barh(range(len(names)), values, color=["tab:green" if name in true else "tab:gray" for name in names])
    axis.set_yticks(range(len(names)), [f"{name} (true)" if name in true else name for name in names])
    axis.set(xlim=(0, 1), title="most probable answers" if relation.threshold is None else "most probable pairs")
