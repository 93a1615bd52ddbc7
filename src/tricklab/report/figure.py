"""Shared by every plot: a headless matplotlib and atomic PNG files."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; chosen before pyplot is imported
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from tricklab import atomic

__all__ = ["plt", "png_bytes", "save_png"]


def save_png(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Render `figure` to a PNG written atomically at `path`, then close it.

    Args:
        figure: The matplotlib figure.
        path: Destination file.
        dpi: Resolution. Defaults to `100`.
    """
    data = png_bytes(figure, dpi)
    atomic.write_with(path, lambda file: file.write(data))
    return Path(path)


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """Render `figure` to PNG bytes in memory (e.g. to inline in HTML), then close it.

    Args:
        figure: The matplotlib figure.
        dpi: Resolution. Defaults to `100`.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()
