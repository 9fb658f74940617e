"""report.html: every claim of a report directory on one self-contained page.

One file with inline CSS and no JavaScript and nothing fetched from the network: figures are
the PNGs beside it (relative links into the run directories), so the page opens from disk, from
a CI artifact or from a static file server alike. Grouped by paper (arXiv id and title), one
row per claim: the verdict as a coloured word, the evidence line, the seed spread, the wall
time, a thumbnail linking to the full figure, a link to the run directory, and an "R" mark on
claims whose setting is our reconstruction.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from factlab.report.collapse import draw_pooled_collapse, pooled_cells
from factlab.report.collect import (
    ClaimRow,
    Note,
    collect,
    counts,
    group_by_paper,
    summary_line,
)
from factlab.report.markdown import write_markdown

COLOURS = {"holds": "#1a7f37", "fails": "#cf222e", "inconclusive": "#9a6700",
           "descriptive": "#57606a", "error": "#82071e", "pending": "#8c959f",
           "skipped": "#8c959f"}

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1f2328; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d0d7de; }
h2 .arxiv { font-weight: normal; color: #57606a; }
p.summary { font-size: 1.1em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .45em .6em;
         border-bottom: 1px solid #eaeef2; }
th { font-size: .85em; color: #57606a; font-weight: 600; }
.verdict { font-weight: 700; text-transform: uppercase; letter-spacing: .03em;
           white-space: nowrap; }
.chip { display: inline-block; padding: .05em .55em; border-radius: 1em; color: #fff; }
.recon { display: inline-block; margin-left: .35em; padding: 0 .35em; border: 1px solid #8c959f;
         border-radius: .3em; font-size: .75em; color: #57606a; cursor: help; }
.claim-text { color: #57606a; font-size: .9em; }
.evidence { font-family: ui-monospace, monospace; font-size: .8em; min-width: 24em; }
.reason { color: #9a6700; font-size: .85em; }
img.thumb { width: 200px; height: auto; border: 1px solid #d0d7de; }
td.num { white-space: nowrap; text-align: right; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    return quote(Path(path).as_posix())


def _verdict_cell(row: ClaimRow) -> str:
    colour = COLOURS.get(row.verdict, "#57606a")
    cell = f'<span class="verdict chip" style="background:{colour}">{_e(row.verdict)}</span>'
    if row.reason:
        cell += f'<div class="reason">{_e(row.reason)}</div>'
    return cell


def _row_html(row: ClaimRow) -> str:
    recon = ('<span class="recon" title="our reconstruction: the paper states no exact '
             'setting, so this verdict is about our setting">R</span>'
             if row.reconstruction else "")
    label = f" <small>{_e(row.label)}</small>" if row.label else ""
    figs = "".join(f'<a href="{_href(f)}"><img class="thumb" src="{_href(f)}" '
                   f'alt="{_e(Path(f).name)}"></a>' for f in row.figures[:1])
    more = "".join(f' <a href="{_href(f)}">{_e(Path(f).stem)}</a>' for f in row.figures[1:])
    wall = f"{row.wall_time_s:.1f} s" if row.wall_time_s is not None else ""
    return (f'<tr class="claim" data-experiment="{_e(row.experiment)}" '
            f'data-verdict="{_e(row.verdict)}">'
            f'<td><b>{_e(row.experiment)}</b>{recon}{label}'
            f'<div class="claim-text">{_e(row.claim)}</div></td>'
            f"<td>{_verdict_cell(row)}</td>"
            f'<td class="evidence">{_e(row.evidence)}</td>'
            f"<td>{_e(row.seeds)}</td>"
            f'<td class="num">{wall}</td>'
            f"<td>{figs}{('<div>' + more + '</div>') if more else ''}</td>"
            f'<td><a href="{_href(row.run_dir)}/">{_e(row.run_dir)}</a></td></tr>')


def render_html(rows: list[ClaimRow], title: str = "factlab report",
                notes: Sequence[Note] = ()) -> str:
    """The page for `rows` as one HTML string; `notes` follow the claims' tables."""
    tally = counts(rows)
    chips = " ".join(f'<span class="chip" style="background:{COLOURS.get(s, "#57606a")}">'
                     f"{n} {_e(s)}</span>" for s, n in tally.items())
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f'<p class="summary" id="summary">{_e(summary_line(rows))} {chips}</p>',
             '<p class="claim-text"><span class="recon">R</span> marks a claim whose setting '
             "is our reconstruction. Each verdict combines every seed of its run: holds or "
             "fails when at least two thirds of the seeds agree with the verdict on the seed "
             "mean, inconclusive otherwise.</p>"]
    for paper, group in group_by_paper(rows):
        arxiv = (f' <span class="arxiv">(<a href="{_e(paper.url)}">arXiv {_e(paper.arxiv)}'
                 "</a>)</span>" if paper.arxiv else "")
        parts.append(f'<section class="paper"><h2>{_e(paper.title)}{arxiv}</h2>')
        parts.append("<table><tr><th>claim</th><th>verdict</th><th>evidence</th>"
                     "<th>seeds</th><th>wall</th><th>figure</th><th>run</th></tr>")
        parts += [_row_html(r) for r in group]
        parts.append("</table></section>")
    for note in notes:
        parts.append(f'<section class="paper"><h2>{_e(note.heading)}</h2>'
                     f'<p class="evidence">{_e(note.text)}</p>'
                     f'<a href="{_href(note.figure)}"><img class="thumb" style="width:360px" '
                     f'src="{_href(note.figure)}" alt="{_e(note.heading)}"></a></section>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(root: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """Rebuild <root>/report.html and <root>/report.md from the stored files alone."""
    root = Path(root)
    rows = collect(root)
    manifest = root / "reproduce.json"  # a reproduce directory keeps its own title
    if title is None and manifest.is_file():
        scale = json.loads(manifest.read_text()).get("scale", "")
        title = f"factlab reproduce ({scale})"
    title = title or f"factlab report: {root.resolve().name}"
    notes = collapse_notes(root)
    page = root / "report.html"
    page.write_text(render_html(rows, title, notes))
    return page, write_markdown(rows, root / "report.md", title, notes)


def collapse_notes(root: Path) -> list[Note]:
    """The pooled extraction collapse as a note, when the directory holds sweep runs."""
    rows = pooled_cells(root)
    drawn = draw_pooled_collapse(root, rows)
    if drawn is None:
        return []
    png, fit = drawn
    names = sorted({r["experiment"] for r in rows})
    return [Note("Extraction: every sweep on the bound variable (descriptive)",
                 f"log held-out error = a - b x with x = N_f K^2 log|R| / (2|R|^2), fitted over "
                 f"{fit['n']} cells (each seed; error > 0.01) of {', '.join(names)}: "
                 f"b = {fit['b']:.3g}, R^2 = {fit['r2']:.2f}. No rule judges it: a high R^2 "
                 "says the sweeps share the bound's variable, a low one that they do not.",
                 png.relative_to(root).as_posix())]
