"""report.md: the same rows as report.html, as Markdown tables grouped by paper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from factlab.report.collect import ClaimRow, Note, group_by_paper, summary_line


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[ClaimRow], title: str = "factlab report",
                    notes: Sequence[Note] = ()) -> str:
    """The report as Markdown: a summary line, one table per paper, then the `notes`."""
    lines = [f"# {title}", "", f"**{summary_line(rows)}**", "",
             "(R) marks a claim whose setting is our reconstruction.", ""]
    for paper, group in group_by_paper(rows):
        head = f"## {paper.title}" + (f" (arXiv {paper.arxiv})" if paper.arxiv else "")
        lines += [head, "", "| claim | verdict | evidence | seeds | wall | figure | run |",
                  "|---|---|---|---|---|---|---|"]
        for r in group:
            name = f"`{r.experiment}`" + (" (R)" if r.reconstruction else "") + \
                (f" {r.label}" if r.label else "")
            verdict = f"**{r.verdict.upper()}**" + (f" ({r.reason})" if r.reason else "")
            fig = " ".join(f"[{Path(f).stem}]({quote(Path(f).as_posix())})" for f in r.figures)
            wall = f"{r.wall_time_s:.1f} s" if r.wall_time_s is not None else ""
            lines.append("| " + " | ".join(_cell(c) for c in (
                name, verdict, r.evidence, r.seeds, wall, fig,
                f"[{r.run_dir}]({quote(Path(r.run_dir).as_posix())}/)")) + " |")
        lines.append("")
    for note in notes:
        lines += [f"## {note.heading}", "", note.text, "",
                  f"![{note.heading}]({quote(note.figure)})", ""]
    return "\n".join(lines)


def write_markdown(rows: list[ClaimRow], path: str | Path, title: str = "factlab report",
                   notes: Sequence[Note] = ()) -> Path:
    """Write `render_markdown(rows, title, notes)` to `path`; return it."""
    path = Path(path)
    path.write_text(render_markdown(rows, title, notes))
    return path
