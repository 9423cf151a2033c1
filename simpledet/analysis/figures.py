"""Figures drawn without a display and without pyplot's global state: a matplotlib `Figure` on
its own Agg canvas, so drawing here never changes the backend of the program that imports us."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from simpledet.errors import UserError
from simpledet.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EXTRA = "plots"


def require_matplotlib() -> None:
    """Refuses, naming the extra to install, when matplotlib is missing; called before any work
    so that a long evaluation does not end in this message."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"drawing plots needs matplotlib, which is not installed: "
                        f"pip install 'simpledet-torch[{EXTRA}]'") from None


def new_figure(width: float, height: float) -> Figure:
    """A figure of width x height inches on an Agg canvas."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Renders the figure to PNG in memory, then writes the file whole."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
