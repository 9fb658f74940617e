"""`factlab reproduce`: every registered claim in one command, then one report.

    factlab reproduce --scale quick --out runs/reproduce            # every claim
    factlab reproduce --only 2412.06538 --only induction --workers 2 --out runs/r

Each selected claim becomes a one-cell sweep in <out>/<experiment>/ (the same machinery as
`factlab sweep`: sweep.json, the run directory <run_id>/, results.csv), and all cells of all
claims go to one launcher, so claims run in parallel (`--workers`). Resuming is skipping: a
claim whose run directory holds summary.json is not run again, so rerunning the same command
after an interruption runs only what is left; a failed claim keeps its error.json and is
retried. At the end <out>/reproduce.json records what was asked, <out>/claims.csv holds one row
per claim, and <out>/report.html and report.md are rebuilt from the stored files
(`factlab report DIR` rebuilds them again).

`--only` takes an experiment name, a family (a name prefix such as `capacity` or `ic-recall`),
or a paper's arXiv id (`2412.06538`); it is repeatable. Overrides (`key=value`) apply to every
selected claim, so they are meant for a selection whose configs share the key.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factlab.config import ConfigError
from factlab.experiments import REGISTRY
from factlab.launchers import make_launcher
from factlab.report.collect import collect, summary_line
from factlab.report.html import write_report
from factlab.report.papers import paper_of
from factlab.runs.sweep import Sweep, load_experiment, plan_sweep, run_cell, write_manifest
from factlab.store.run_dir import summary_ok, write_json_atomic
from factlab.store.table import write_table

MANIFEST = "reproduce.json"
CLAIMS = "claims.csv"
SKIPPED = "skipped.json"  # read by report.collect: a claim that needs input only a user has
# Quick-scale seconds per claim, from the last timed `factlab reproduce --scale quick --workers 2`
# (README: 42 min for all 26 claims on 2 idle cores),
# used only to start the longest claims first (LPT order) so that no long claim is left
# running alone at the end; a claim not listed counts as 60 s.
EXPECTED_S = {"bios": 1009, "capacity-mlp": 584, "induction-standard": 383,
              "extraction-size": 282, "ic-recall-pretrained": 270, "ic-recall-samples": 254,
              "recall-tradeoff": 244, "extraction-schedule": 204, "extraction-coverage": 193,
              "extraction-lora": 171, "hijack-prompts": 163, "hijack-length": 141,
              "extraction-universe": 135, "extraction-multiplicity": 128, "capacity-linear": 122,
              "ic-recall-shared-pool": 106, "extraction-attention-only": 104,
              "induction-head": 96, "induction-depth": 89, "extraction-question": 73,
              "extraction-repeats": 70, "recall-sequential": 44, "extraction": 41,
              "ic-recall": 38, "extraction-acquisition": 32,
              "ic-recall-m2": 201, "ic-recall-context": 409,
              "ic-recall-init": 51}  # measured alone, after the timed reproduce


def select(only: Sequence[str] | None = None) -> list[str]:
    """The registered experiments matching any of `only` (all when empty), sorted by name.

    A term matches an experiment by exact name, by name prefix (a family), or by the arXiv
    id of its paper; a term matching nothing is a `ConfigError` with the closest names.
    """
    names = sorted(REGISTRY)
    if not only:
        return names
    chosen: set[str] = set()
    for term in only:
        if ":" in term:  # "module:attribute" of an unregistered experiment (tests, plugins)
            chosen.add(term)
            continue
        hits = {n for n in names if n == term or n.startswith(term)
                or paper_of(n)[0].arxiv == term.removeprefix("arXiv:")}
        if not hits:
            near = difflib.get_close_matches(term, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"--only {term!r} matches no experiment, family or arXiv id"
                              f"{hint} (see `factlab list`)")
        chosen |= hits
    return sorted(chosen)


@dataclasses.dataclass
class ReproduceResult:
    """What a reproduce run ended with."""

    out: Path
    sweeps: list[Sweep]
    report: Path
    markdown: Path
    summary: str  # e.g. "20 claims: 12 holds, 3 fails, 5 inconclusive"
    wall_time_s: float


def plan(out: str | Path, scale: str = "quick", only: Sequence[str] | None = None,
         overrides: Sequence[str] = ()) -> list[Sweep]:
    """One single-cell sweep per selected claim, all validated before anything runs."""
    out = Path(out)
    # every override is one value per claim (d=8,11 is the tuple, not two cells)
    fixed = [f"{k}=[{v}]" if "," in v and not v.startswith("[") else f"{k}={v}"
             for k, _, v in (o.partition("=") for o in overrides)]
    sweeps = []
    for target in select(only):
        name = load_experiment(target).name
        sweeps.append(plan_sweep(target, [f"scale={scale}", *fixed], out=out / name))
    return sweeps


def mark_skipped(run_dir: Path, config: dict[str, Any], claim: str, reason: str) -> None:
    """Record a claim that cannot run without user input: config.json and skipped.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config)
    write_json_atomic(run_dir / SKIPPED, {"status": "skipped", "claim": claim, "reason": reason})


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def reproduce(out: str | Path, scale: str = "quick", only: Sequence[str] | None = None,
              overrides: Sequence[str] = (), workers: int | None = None,
              launcher: str = "local", quiet: bool = False, **options: Any) -> ReproduceResult:
    """Run every selected claim (skipping finished ones) and write the report."""
    start = time.perf_counter()
    out = Path(out)
    sweeps = plan(out, scale, only, overrides)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MANIFEST, {
        "scale": scale, "only": list(only or []), "overrides": list(overrides),
        "claims": [{"experiment": s.name, "target": s.target,
                    "run_dir": f"{s.name}/{c.run_id}"} for s in sweeps for c in s.cells]})
    tasks = []
    for sweep in sweeps:
        write_manifest(sweep)
        exp = load_experiment(sweep.target)
        for c in sweep.cells:
            missing = [k for k in exp.requires if not c.config.get(k)]
            if missing:  # an input only the user can give: a skipped row, not an error
                mark_skipped(sweep.run_dir(c), {"experiment": exp.name, **c.config}, exp.claim,
                             "; ".join(f"needs {k}=: {exp.requires[k]}" for k in missing))
            elif not summary_ok(sweep.run_dir(c)):
                tasks.append({"target": sweep.target, "overrides": c.overrides,
                              "run_id": c.run_id, "run_dir": str(sweep.run_dir(c).resolve()),
                              "experiment": sweep.name})
    tasks.sort(key=lambda t: -EXPECTED_S.get(t["experiment"], 60))  # longest first (stable)
    total = sum(len(s.cells) for s in sweeps)
    runner = make_launcher(launcher, workers, **options)
    _log(f"reproduce: {len(sweeps)} claims at scale {scale} in {out} ({total - len(tasks)} "
         f"already done, {len(tasks)} to run; workers "
         f"{getattr(runner, 'workers', None) or 'auto'})", quiet)
    try:
        for k, (task, result) in enumerate(runner.run(run_cell, tasks), 1):
            note = result.get("error") or (f"{result['wall_time_s']:.1f} s"
                                           if "wall_time_s" in result else "")
            _log(f"  [{k}/{len(tasks)}] {task['experiment']} {result['status']} {note}".rstrip(),
                 quiet)
    finally:  # also on Ctrl-C: tables and report show what finished
        for sweep in sweeps:
            write_table(sweep.out)
        write_claims_table(out)
        page, md = write_report(out, title=f"factlab reproduce ({scale})")
    rows = collect(out)
    return ReproduceResult(out, sweeps, page, md, summary_line(rows),
                           round(time.perf_counter() - start, 2))


def write_claims_table(root: str | Path) -> Path:
    """<root>/claims.csv: one tidy row per claim (paper, verdict, evidence, wall time, dir)."""
    root = Path(root)
    columns = ["experiment", "arxiv", "reconstruction", "verdict", "reason", "evidence",
               "seeds", "wall_time_s", "run_dir"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in collect(root):
        writer.writerow([r.experiment, r.paper.arxiv, str(r.reconstruction).lower(), r.verdict,
                         r.reason, r.evidence, r.seeds,
                         "" if r.wall_time_s is None else r.wall_time_s, r.run_dir])
    path = root / CLAIMS
    path.write_text(buf.getvalue())
    return path


def closing_lines(result: ReproduceResult) -> list[str]:
    """What `factlab reproduce` prints at the end."""
    return [f"reproduce directory: {result.out}  ({result.wall_time_s:.1f} s)",
            f"verdicts: {result.summary}",
            f"report:   {result.report}",
            f"markdown: {result.markdown}"]
