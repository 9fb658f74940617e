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
import warnings
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
    with warnings.catch_warnings():  # a cell no seed measured is a gap in the line, not news
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = np.nanmean(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
    line, = ax.plot(x, mean, marker="o", ms=3, label=label, **kw)
    if ys.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=BAND_ALPHA, lw=0)


THRESHOLD_GID, DECIDE_GID = "threshold", "decide"  # tags tests and readers find them by


def threshold(ax: plt.Axes, value: float, label: str | None = None, axis: str = "y",
              color: str = "0.2", **kw) -> None:
    """The verdict's threshold (or null) as a dashed line (`axis="y"`: horizontal; "x":
    vertical), tagged `THRESHOLD_GID`; label it with the rule, e.g. r"needs $\\geq$ 0.99"."""
    draw = ax.axhline if axis == "y" else ax.axvline
    draw(value, color=color, ls=kw.pop("ls", "--"), lw=kw.pop("lw", 0.9), label=label,
         zorder=kw.pop("zorder", 1.5), gid=THRESHOLD_GID, **kw)


def annotate(ax: plt.Axes, text: str, loc: str = "upper left",
             xy: tuple[float, float] | None = None) -> None:
    """The deciding number in a small boxed note, tagged `DECIDE_GID`: in a corner of the axes
    (`loc`, e.g. "lower right"; "below": under the x label), or with an arrow to the data
    point `xy`."""
    box = {"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.6", "lw": 0.5, "alpha": 0.9}
    if xy is not None:
        ax.annotate(text, xy=xy, xytext=(12, 12), textcoords="offset points", fontsize=6,
                    bbox=box, arrowprops={"arrowstyle": "->", "lw": 0.6}, gid=DECIDE_GID,
                    multialignment="left")
        return
    if loc == "below":  # under the x-axis label, for axes with no free corner (heat-maps)
        ax.annotate(text, xy=(0, 0), xycoords="axes fraction", xytext=(0, -32),
                    textcoords="offset points", ha="left", va="top", fontsize=6, bbox=box,
                    gid=DECIDE_GID, annotation_clip=False)
        return
    x, ha = (0.97, "right") if "right" in loc else (0.03, "left")
    y, va = (0.03, "bottom") if "lower" in loc else (0.97, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=6, bbox=box,
            zorder=5, gid=DECIDE_GID, multialignment="left")


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
