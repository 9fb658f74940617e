"""The rows of a report, read from stored files alone.

A report directory is anything that holds run directories: one run directory, a sweep
directory (one run per cell), or a `factlab reproduce` directory (one sweep per claim). Every
folder under it with a config.json is a run; its summary.json (or error.json) says how it
ended. Nothing is recomputed and no experiment code is imported, so a report can be rebuilt on
a machine without the extras the runs needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factlab.report.papers import Paper, paper_of

_SPREAD = re.compile(r"[-+\d.eE]+ \[[^\]]+\] over \d+ seeds")


@dataclasses.dataclass
class ClaimRow:
    """One run of one claim, as the report shows it."""

    experiment: str
    claim: str
    status: str  # done | error | skipped | pending
    verdict: str  # holds | fails | inconclusive | descriptive | error | skipped | pending
    reason: str
    evidence: str
    seeds: str  # the seed spread and per-seed tally
    wall_time_s: float | None
    figures: list[str]  # paths relative to the report directory
    run_dir: str  # relative to the report directory
    paper: Paper
    reconstruction: bool
    label: str = ""  # what sets this run apart within a sweep (e.g. "d=8")


@dataclasses.dataclass
class Note:
    """A section after the claims' tables: an analysis across runs, with its figure."""

    heading: str
    text: str
    figure: str  # relative to the report directory


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when it is missing, torn or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def iter_run_dirs(root: Path) -> Iterator[Path]:
    """Every directory under `root` (itself included) that holds a config.json, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "config.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a run directory holds no runs
    yield from sorted(found)


def seed_text(summary: dict[str, Any], config: dict[str, Any]) -> str:
    """'0.91 [0.88, 0.95] over 3 seeds; 3 holds' from the evidence and the seed verdicts."""
    parts = []
    match = _SPREAD.search(summary.get("evidence") or "")
    if match:
        parts.append(match.group(0))
    states = (summary.get("metrics") or {}).get("seed_verdicts")
    if isinstance(states, list) and states:
        parts.append(", ".join(f"{states.count(s)} {s}" for s in
                               ("holds", "fails", "inconclusive") if s in states))
    if not parts:
        seeds = config.get("seeds")
        n = len(seeds) if isinstance(seeds, list) else 1
        parts.append(f"{n} seed{'s' * (n != 1)}")
    return "; ".join(parts)


def _labels(root: Path) -> dict[str, str]:
    """run_id -> 'key=value ...' of the swept axes, from every sweep.json under `root`."""
    labels: dict[str, str] = {}
    for manifest_path in sorted(root.rglob("sweep.json")):
        manifest = read_json(manifest_path) or {}
        axes = list(manifest.get("axes") or {})
        for cell in manifest.get("cells") or []:
            over = cell.get("overrides") or {}
            labels[cell.get("run_id", "")] = " ".join(f"{k}={over[k]}" for k in axes if k in over)
    return labels


def read_row(run_dir: Path, root: Path, label: str = "") -> ClaimRow:
    """The report row of one run directory (paths relative to `root`)."""
    config = read_json(run_dir / "config.json") or {}
    summary = read_json(run_dir / "summary.json")
    name = str(config.get("experiment") or (summary or {}).get("experiment") or run_dir.name)
    paper, recon = paper_of(name)
    declared = (summary or {}).get("paper")
    if isinstance(declared, dict) and declared.get("title"):
        paper = Paper(str(declared.get("arxiv", "")), str(declared["title"]))
    if isinstance((summary or {}).get("reconstruction"), bool):
        recon = summary["reconstruction"]
    rel = os.path.relpath(run_dir, root)
    if summary is not None:
        figures = [os.path.relpath(run_dir / f, root) for f in summary.get("figures") or []
                   if str(f).endswith(".png")]
        wall = summary.get("wall_time_s")
        return ClaimRow(name, str(summary.get("claim", "")), "done",
                        str(summary.get("verdict") or "descriptive"),
                        str(summary.get("reason") or ""), str(summary.get("evidence") or ""),
                        seed_text(summary, config),
                        float(wall) if isinstance(wall, (int, float)) else None,
                        figures, rel, paper, recon, label)
    error = read_json(run_dir / "error.json")
    if error is not None:
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}".splitlines()[0]
        return ClaimRow(name, "", "error", "error", message, message, "", None, [], rel,
                        paper, recon, label)
    skipped = read_json(run_dir / "skipped.json")  # written by `factlab reproduce`
    if skipped is not None:
        reason = str(skipped.get("reason", "needs input"))
        return ClaimRow(name, str(skipped.get("claim", "")), "skipped", "skipped", reason,
                        reason, "", None, [], rel, paper, recon, label)
    return ClaimRow(name, "", "pending", "pending", "not finished", "", "", None, [], rel,
                    paper, recon, label)


def collect(root: str | Path) -> list[ClaimRow]:
    """Every run under `root` as a report row, sorted by paper, experiment and label."""
    root = Path(root)
    labels = _labels(root)
    rows = [read_row(d, root, labels.get(d.name, "")) for d in iter_run_dirs(root)]
    return sorted(rows, key=lambda r: (r.paper.arxiv == "", r.paper.arxiv, r.experiment,
                                       r.label, r.run_dir))


def group_by_paper(rows: list[ClaimRow]) -> list[tuple[Paper, list[ClaimRow]]]:
    """Rows grouped by paper, in the order `collect` sorted them."""
    groups: dict[Paper, list[ClaimRow]] = {}
    for row in rows:
        groups.setdefault(row.paper, []).append(row)
    return list(groups.items())


def counts(rows: list[ClaimRow]) -> dict[str, int]:
    """verdict -> number of rows, holds/fails/inconclusive always present."""
    out = {"holds": 0, "fails": 0, "inconclusive": 0}
    for row in rows:
        out[row.verdict] = out.get(row.verdict, 0) + 1
    return out


def summary_line(rows: list[ClaimRow]) -> str:
    """'20 claims: 12 holds, 3 fails, 5 inconclusive' (and any other states)."""
    tally = counts(rows)
    text = ", ".join(f"{n} {state}" for state, n in tally.items())
    return f"{len(rows)} claim{'s' * (len(rows) != 1)}: {text}"
