"""Figures: one style, applied by a context manager, and saved as PNG (200 dpi) and PDF."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt
import numpy as np

STYLES: dict[str, dict] = {
    "paper": {"font.family": "serif", "font.size": 9, "axes.titlesize": 9,
              "axes.labelsize": 9, "legend.fontsize": 7, "figure.figsize": (3.25, 2.4)},
    "talk": {"font.family": "serif", "font.size": 16, "axes.titlesize": 20,
             "axes.labelsize": 16, "legend.fontsize": 12, "figure.figsize": (6.4, 4.8)},
}
_COMMON = {"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
           "axes.spines.right": False, "savefig.bbox": "tight", "text.usetex": False}


@contextlib.contextmanager
def paper_style(preset: str = "paper") -> Iterator[None]:
    """Apply the named rcParams preset inside the block only."""
    with plt.rc_context({**_COMMON, **STYLES[preset]}):
        yield


def save_figure(fig: plt.Figure, out_dir: str | Path, name: str) -> Path:
    """Save `fig` as <name>.png (200 dpi) and <name>.pdf; close it; return the PNG path."""
    out_dir = Path(out_dir)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=200)
    fig.savefig(out_dir / f"{name}.pdf")
    plt.close(fig)
    return png


def band(ax: plt.Axes, x: Sequence[float], ys: np.ndarray, label: str, **kw) -> None:
    """Mean over seeds (rows of `ys`) as a line with a min-max band."""
    ys = np.asarray(ys, dtype=float)
    line, = ax.plot(x, np.nanmean(ys, axis=0), marker="o", ms=3, label=label, **kw)
    if ys.shape[0] > 1:
        ax.fill_between(x, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0),
                        color=line.get_color(), alpha=0.2, lw=0)
