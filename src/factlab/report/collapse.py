"""One collapse across every extraction sweep (arXiv 2508.00901's bound variable).

The held-out error bound of the extraction paper depends on the fine-tuning set size Ñ_f,
the multiplicity K and the relation-template universe |R| only through
x = Ñ_f K² log|R| / (2|R|²). If the bound's shape is right, the cells of the multiplicity,
universe, coverage and size sweeps, each varying a different factor, fall on one line
log(error) = a - b x. `extraction-size` fits its own cells; this pools the "cell" records of
every sweep run found under a directory (a `factlab reproduce` output), draws one figure and
returns the fit. It is descriptive: no rule fixed in advance judges the pooled R².
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factlab.report.collect import iter_run_dirs, read_json
from factlab.report.extraction import collapse_panel
from factlab.report.plots import subplots
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split

# the sweeps whose cells vary the bound's factors (K, |R|, the covered share of Ñ_f, Ñ_f)
SWEEPS = ("extraction-multiplicity", "extraction-universe", "extraction-coverage",
          "extraction-size")
FIGURE = "collapse_all"


def pooled_cells(root: str | Path) -> list[dict[str, Any]]:
    """Every sweep cell under `root` (random coverage only), tagged with its experiment."""
    rows: list[dict[str, Any]] = []
    for run_dir in iter_run_dirs(Path(root)):
        name = (read_json(run_dir / "config.json") or {}).get("experiment")
        if name not in SWEEPS:  # an unreadable config is not a sweep we can pool
            continue
        rows += [dict(r, experiment=name) for r in read_split(run_dir, "cell")
                 if r.get("mode", "random") == "random" and "bound_x" in r
                 and r.get("test_acc") is not None]
    return rows


def draw_pooled_collapse(root: str | Path, rows: list[dict[str, Any]] | None = None
                         ) -> tuple[Path, dict[str, float]] | None:
    """<root>/collapse_all.png (and .pdf) and the pooled fit of `rows` (default: the
    `pooled_cells` of `root`), or None without sweep cells."""
    rows = pooled_cells(root) if rows is None else rows
    if not rows:
        return None
    with paper_style():
        fig, ax = subplots(1, 1, figsize=(4.2, 3.2))
        fit = collapse_panel(ax, rows, group="experiment")
        ax.set_title(f"every extraction sweep pooled ({len(rows)} cells, each seed)", fontsize=7)
        return save_figure(fig, root, FIGURE), fit
