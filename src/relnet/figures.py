"""Matplotlib for files only: the Agg backend (no display is needed or wanted) and an atomic PNG
writer, for every package that draws (training curves, benchmark scenes, relation maps)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from relnet.io import atomic_write  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(figure, path: Path, dpi: int) -> None:
    """Write ``figure`` as a PNG atomically (a reader never sees half a file) and close it."""
    figure.tight_layout()
    buffer = io.BytesIO()  # rendered in memory, then written under a fresh temporary name (never through a link)
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))
