"""A matplotlib figure on the Agg canvas (no pyplot, no display) and an atomic PNG write."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cltdr.utils.io import atomic_write

DPI = 110
# One colour per error type of cltdr.evaluation.diagnosis.ERROR_TYPES (DETAD's palette).
ERROR_COLORS = ("#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3")
CHARACTERISTIC_COLORS = ("#386cb0", "#f0027f", "#bf5b17")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically)."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight"), mode="wb")
