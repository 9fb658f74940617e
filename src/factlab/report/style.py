"""Figures: one style, applied by a context manager, and saved as PNG (200 dpi) and PDF.

The style is for figures that go into a paper: serif text with mathtext for formulas (write
`r"$d^2$"`, never a bare caret), no minor ticks (a log axis gets labelled decades only), seed
bands drawn strongly enough to see with two seeds, and a vector PDF beside every PNG.
`threshold` draws the line a verdict compares against and `annotate` writes the deciding
number, so every figure shows what its verdict read.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # figures are files; never open a window (a notebook
    matplotlib.use("Agg")            # keeps its inline backend, or its plots would vanish)
import matplotlib.pyplot as plt
import numpy as np

STYLES: dict[str, dict] = {
    "paper": {"font.family": "serif", "font.size": 9, "axes.titlesize": 9,
              "axes.labelsize": 9, "legend.fontsize": 7, "figure.figsize": (3.25, 2.4)},
    "talk": {"font.family": "serif", "font.size": 16, "axes.titlesize": 20,
             "axes.labelsize": 16, "legend.fontsize": 12, "figure.figsize": (6.4, 4.8)},
}
_COMMON = {"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
           "axes.spines.right": False, "savefig.bbox": "tight", "text.usetex": False,
           "mathtext.fontset": "dejavuserif", "xtick.minor.visible": False,
           "ytick.minor.visible": False, "axes.formatter.use_mathtext": True,
           "pdf.fonttype": 42, "legend.frameon": False}
BAND_ALPHA = 0.3  # visible with two seeds, still lets overlapping bands be told apart


@contextlib.contextmanager
def paper_style(preset: str = "paper") -> Iterator[None]:
    """Apply the named rcParams preset inside the block only."""
    with plt.rc_context({**_COMMON, **STYLES[preset]}):
        yield


def _no_minor_log_ticks(fig: plt.Figure) -> None:
    """Log axes get labelled decades and no minor ticks (matplotlib adds them per axis)."""
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_locator(matplotlib.ticker.NullLocator())


def save_figure(fig: plt.Figure, out_dir: str | Path, name: str) -> Path:
    """Save `fig` as <name>.png (200 dpi) and <name>.pdf; close it; return the PNG path."""
    out_dir = Path(out_dir)
    _no_minor_log_ticks(fig)
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
                        color=line.get_color(), alpha=BAND_ALPHA, lw=0)


def threshold(ax: plt.Axes, value: float, label: str, axis: str = "y") -> None:
    """The verdict's threshold as a dashed grey line, labelled (e.g. r"$\\geq 0.99$")."""
    draw = ax.axhline if axis == "y" else ax.axvline
    draw(value, color="0.35", ls="--", lw=0.8, label=label, zorder=1)


def annotate(ax: plt.Axes, text: str, loc: str = "lower right") -> None:
    """The deciding number in a corner of the axes, in a small boxed note."""
    x, ha = (0.97, "right") if "right" in loc else (0.03, "left")
    y, va = (0.04, "bottom") if "lower" in loc else (0.96, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize="small",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "lw": 0.5})


LABELS = {"d": "$d$", "seeds": "seed", "train.lr": "learning rate", "n": "$N$",
          "holds": "claim holds (1) / fails (0)"}


def pretty_label(key: str) -> str:
    """An axis label for a dotted config or metric key: 'metrics.capacity.linear' ->
    'capacity (linear)', 'train.lr' -> 'learning rate'."""
    key = key.removeprefix("metrics.")
    if key in LABELS:
        return LABELS[key]
    head, *rest = key.replace("_", " ").split(".")
    return f"{head} ({', '.join(rest)})" if rest else head
