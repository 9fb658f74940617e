"""reproduce, the HTML/Markdown report, the Python API, the TensorBoard sink and the style."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ConfigError, ExperimentConfig
from factlab.experiments.base import Experiment, RunContext, run_experiment
from factlab.report.collect import collect, summary_line
from factlab.report.html import write_report
from factlab.report.papers import paper_of
from factlab.report.style import BAND_ALPHA, band, paper_style, save_figure
from factlab.runs.reproduce import reproduce, select


# Three instant toy claims, one per verdict state, each with a figure (importable by workers).
@dataclasses.dataclass
class ToyConfig(ExperimentConfig):
    """offset moves the measured value; the claim is value > 1."""

    offset: float = 0.0  # added to every seed's value


def _toy(base: float, state: str):
    def run(cfg: ToyConfig, ctx: RunContext) -> Verdict:
        values = []
        for s in cfg.seeds:
            value = base + cfg.offset + 0.01 * s
            values.append(value)
            for step in range(3):
                ctx.log(step, "test", seed=s, value=value * (step + 1) / 3, stage="fit")
        per = [decide(v > 1, f"{v:.2f}") if state != "inconclusive"
               else inconclusive("planted: budget spent while improving") for v in values]
        mean = per[0] if state == "inconclusive" else decide(sum(values) / len(values) > 1, "")
        return combine_seeds(mean, per, f"value {spread(values, '.2f')}", {"value": values[0]})
    return run


def _figures(run_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    with paper_style():
        fig, ax = plt.subplots()
        band(ax, [1, 2, 3], [[1, 2, 3], [1.5, 2.5, 3.5]], "toy")
        return [save_figure(fig, run_dir, "toy")]


TOY_HOLDS = Experiment("toy-holds", "value > 1 for a large base", ToyConfig, _toy(2.0, "holds"),
                       _figures, paper=("0000.00001", "A toy paper"))
TOY_FAILS = Experiment("toy-fails", "value > 1 for a small base", ToyConfig, _toy(0.2, "fails"),
                       _figures, paper=("0000.00001", "A toy paper"), reconstruction=True)
TOY_UNSURE = Experiment("toy-unsure", "an undecidable toy", ToyConfig,
                        _toy(1.0, "inconclusive"), _figures)
TOYS = [f"test_report:{n}" for n in ("TOY_HOLDS", "TOY_FAILS", "TOY_UNSURE")]


@dataclasses.dataclass
class NeedsInputConfig(ToyConfig):
    """A claim with an input only the user has (like popqa-extraction's model=)."""

    model: str = ""  # planted: the claim cannot run without it


TOY_NEEDS = Experiment("toy-needs", "value > 1 on the user's model", NeedsInputConfig,
                       _toy(2.0, "holds"), _figures, requires={"model": "a planted model path"})


@pytest.fixture
def user_modules(monkeypatch):
    monkeypatch.setenv("FACTLAB_ALLOW_MODULES", "1")


class _Page(HTMLParser):
    """Rows, images, links and scripts of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows, self.imgs, self.links, self.scripts = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "claim":
            self.rows.append(a)
        elif tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag in ("script", "link", "iframe"):
            self.scripts += 1


def _parse(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text())
    return parsed


def test_reproduce_report_resume_and_rebuild(tmp_path, user_modules, capsys):
    out = tmp_path / "rep"
    result = reproduce(out, only=TOYS, launcher="serial", quiet=True)
    assert result.summary == "3 claims: 1 holds, 1 fails, 1 inconclusive"
    page = _parse(result.report)
    assert [(r["data-experiment"], r["data-verdict"]) for r in page.rows] == [
        ("toy-fails", "fails"), ("toy-holds", "holds"), ("toy-unsure", "inconclusive")]
    assert page.scripts == 0  # self-contained: no JavaScript, stylesheet or frame
    for src in page.imgs:  # every figure beside the page, relative, on disk
        assert not re.match(r"[a-z]+:", src) and (out / src).is_file()
    assert all(href.startswith("https://arxiv.org/abs/") or (out / href).exists()
               for href in page.links)
    html = result.report.read_text()
    assert "A toy paper" in html and "arXiv 0000.00001" in html and "Other claims" in html
    assert html.count('class="recon"') == 2  # the legend and toy-fails
    md = result.markdown.read_text()
    assert "**3 claims: 1 holds, 1 fails, 1 inconclusive**" in md and "`toy-fails` (R)" in md
    claims = (out / "claims.csv").read_text().splitlines()
    assert len(claims) == 4 and claims[0].startswith("experiment,arxiv,reconstruction,verdict")
    # Resume: finished claims are not run again.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    again = reproduce(out, only=TOYS, launcher="serial", quiet=True)
    assert again.summary == result.summary
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    # `factlab report DIR` rebuilds the same page from the stored files alone.
    from factlab.cli import main

    before = result.report.read_text()
    result.report.unlink()
    assert main(["report", str(out)]) == 0
    assert "1 holds, 1 fails, 1 inconclusive" in capsys.readouterr().out
    assert result.report.read_text() == before


def test_reproduce_skips_a_claim_that_needs_user_input(tmp_path, user_modules):
    out = tmp_path / "rep"
    result = reproduce(out, only=["test_report:TOY_NEEDS"], launcher="serial", quiet=True)
    assert result.summary == "1 claim: 0 holds, 0 fails, 0 inconclusive, 1 skipped"
    [row] = collect(out)
    assert row.experiment == "toy-needs" and row.verdict == "skipped"
    assert "needs model=: a planted model path" in row.reason
    assert row.claim == TOY_NEEDS.claim and not list(out.rglob("summary.json"))
    ran = reproduce(tmp_path / "given", only=["test_report:TOY_NEEDS"], overrides=["model=x"],
                    launcher="serial", quiet=True)
    assert ran.summary == "1 claim: 1 holds, 0 fails, 0 inconclusive"


def test_report_takes_a_run_dir_and_a_sweep_dir(tmp_path, user_modules):
    from factlab.runs.sweep import plan_sweep, run_sweep

    run_experiment(TOY_HOLDS, TOY_HOLDS.make_config({}), out=tmp_path / "one",
                   show_progress=False)
    page, _ = write_report(tmp_path / "one")
    assert len(_parse(page).rows) == 1
    sweep = plan_sweep("test_report:TOY_FAILS", ["offset=0,1"], out=tmp_path / "sw")
    run_sweep(sweep, launcher="serial", quiet=True, figure=False)
    rows = collect(tmp_path / "sw")
    assert [r.label for r in rows] == ["offset=0", "offset=1"]
    assert [r.verdict for r in rows] == ["fails", "holds"]
    assert summary_line(rows) == "2 claims: 1 holds, 1 fails, 0 inconclusive"


def test_select_by_name_family_and_arxiv_id():
    assert select(["capacity"]) == ["capacity-linear", "capacity-mlp"]
    assert "recall-tradeoff" in select(["2412.06538"]) and "bios" not in select(["2412.06538"])
    assert select(["bios", "bios"]) == ["bios"]
    assert len(select(None)) >= 20
    with pytest.raises(ConfigError, match="did you mean induction-head"):
        select(["induction-haed"])


def test_paper_table_and_declared_paper():
    paper, recon = paper_of("ic-recall-samples")
    assert paper.arxiv == "2605.27774" and recon
    assert paper_of("capacity-mlp")[0].arxiv == "2412.06538"
    assert paper_of("toy-fails", TOY_FAILS) == (paper_of("x", TOY_HOLDS)[0], True)
    assert paper_of("nothing-known")[0].arxiv == ""


def test_api_run_load_runs_and_load_metrics(tmp_path, user_modules):
    import factlab
    from factlab.api import Summary, load_metrics, load_runs

    reproduce(tmp_path, only=TOYS, launcher="serial", quiet=True)
    runs = factlab.load_runs(tmp_path)
    assert runs.groupby("verdict").size().to_dict() == {"fails": 1, "holds": 1,
                                                         "inconclusive": 1}
    assert {"experiment", "verdict", "config.offset", "config.seeds", "metrics.value",
            "wall_time_s"} <= set(runs.columns)
    run_dir = runs.loc[runs.experiment == "toy-holds", "run_dir"].item()
    curves = load_metrics(run_dir)
    assert list(curves.columns[:4]) == ["step", "split", "metric", "value"]
    assert len(curves) == 9 and set(curves.seed) == {0, 1, 2} and set(curves.stage) == {"fit"}
    assert Summary.read(run_dir).verdict == "holds"
    assert load_runs(tmp_path / "nothing-here").empty
    with pytest.raises(ConfigError, match="no metrics.jsonl"):
        load_metrics(tmp_path)


def test_api_run_reads_back_a_finished_run_unless_forced(tmp_path):
    import factlab

    knobs = dict(d=(6,), seeds=(0,), train__steps=50, tolerance=1.5)
    first = factlab.run("capacity-linear", out=tmp_path / "c", **knobs)
    assert first.experiment == "capacity-linear" and first.run_dir == tmp_path / "c"
    stamp = (tmp_path / "c" / "summary.json").stat().st_mtime_ns
    assert factlab.run("capacity-linear", out=tmp_path / "c", **knobs).verdict == first.verdict
    assert (tmp_path / "c" / "summary.json").stat().st_mtime_ns == stamp
    factlab.run("capacity-linear", out=tmp_path / "c", force=True, **knobs)
    assert (tmp_path / "c" / "summary.json").stat().st_mtime_ns != stamp


def test_import_factlab_is_cheap():
    code = ("import sys, factlab; bad = [m for m in ('torch', 'pandas', 'matplotlib', "
            "'transformers', 'tensorboard') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0); ")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    proc = subprocess.run([sys.executable, "-c", "import factlab; factlab.nope"],
                          capture_output=True, text=True)
    assert "has no attribute 'nope'" in proc.stderr


def test_tensorboard_sink_streams_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_experiment(TOY_HOLDS, TOY_HOLDS.make_config({"seeds": "0"}), out=tmp_path,
                   show_progress=False, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["test/value"] or "test/value" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("test/value")] == [0, 1, 2]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # metrics.jsonl is unchanged by the sink


def test_no_sink_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("FACTLAB_TENSORBOARD", raising=False)
    run_experiment(TOY_HOLDS, TOY_HOLDS.make_config({"seeds": "0"}), out=tmp_path,
                   show_progress=False)
    assert not (tmp_path / "tensorboard").exists()


def test_style_pdf_beside_png_no_minor_ticks_visible_bands(tmp_path):
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with paper_style():
        fig, ax = plt.subplots()
        band(ax, [1, 10, 100], [[1, 2, 3], [2, 3, 4]], "two seeds")
        ax.set_xscale("log")
        ax.set_xlabel(r"$d^2$")
        png = save_figure(fig, tmp_path, "f")
    assert png.is_file() and (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    assert isinstance(ax.xaxis.get_minor_locator(), matplotlib.ticker.NullLocator)
    assert ax.collections[0].get_alpha() == BAND_ALPHA >= 0.25
    assert json.dumps(plt.rcParams["xtick.minor.visible"]) == "false"  # outside the block


def test_figures_are_drawn_after_the_verdict_is_stored(tmp_path):
    """A figure annotates the verdict's numbers, so summary.json exists when it is drawn."""
    seen = {}

    def figures(run_dir: Path) -> list[Path]:
        seen.update(json.loads((run_dir / "summary.json").read_text()))
        return _figures(run_dir)

    exp = dataclasses.replace(TOY_HOLDS, figures=figures)
    summary = run_experiment(exp, exp.make_config({}), out=tmp_path / "run", show_progress=False)
    assert seen["verdict"] == "holds" and seen["figures"] == []
    stored = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stored["figures"] == summary["figures"] == ["toy.png"]


def test_report_of_one_run_redraws_and_records_its_figures(tmp_path, capsys):
    """A run whose figures failed to draw (summary "figures": []) gets them back from
    `factlab report RUN`, and summary.json lists them again."""
    from factlab.cli import main

    run = tmp_path / "run"
    assert main(["run", "capacity-linear", "d=8", "seeds=0", "--out", str(run),
                 "--no-progress"]) == 0
    stored = json.loads((run / "summary.json").read_text())
    assert stored["figures"]
    (run / "summary.json").write_text(json.dumps({**stored, "figures": []}))
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "figure:" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["figures"] == stored["figures"]


def _sweep_run(root, name, cells):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"experiment": name}))
    with open(run / "metrics.jsonl", "w") as f:
        for i, c in enumerate(cells):
            f.write(json.dumps({"step": i, "split": "cell", "seed": 0, **c}) + "\n")


def test_pooled_collapse_fits_every_sweep_and_lands_in_the_report(tmp_path):
    """Planted cells on log(err) = -0.5 - 2x from two sweeps: the pooled fit recovers b = 2 with
    R² = 1; a non-sweep run and relation-mode coverage cells are left out."""
    from factlab.report.collapse import pooled_cells

    def cell(x, **kw):
        return {"bound_x": x, "test_acc": 1 - math.exp(-0.5 - 2 * x), **kw}

    _sweep_run(tmp_path, "extraction-size", [cell(x) for x in (0.1, 0.4, 0.8)])
    _sweep_run(tmp_path, "extraction-coverage", [cell(x, mode="random") for x in (0.2, 0.6)]
               + [{"bound_x": 0.3, "test_acc": 0.0, "mode": "relations"}])
    _sweep_run(tmp_path, "extraction-repeats", [{"bound_x": 0.5, "test_acc": 0.0}])
    rows = pooled_cells(tmp_path)
    assert sorted({r["experiment"] for r in rows}) == ["extraction-coverage", "extraction-size"]
    assert len(rows) == 5
    page, md = write_report(tmp_path)
    html = page.read_text()
    assert "every sweep on the bound variable" in html and "b = 2, R^2 = 1.00" in html
    assert (tmp_path / "collapse_all.png").is_file() and "collapse_all.png" in md.read_text()


def test_report_without_sweeps_has_no_collapse(tmp_path):
    _sweep_run(tmp_path, "extraction-repeats", [{"bound_x": 0.5, "test_acc": 0.5}])
    page, _ = write_report(tmp_path)
    assert "bound variable" not in page.read_text()
    assert not (tmp_path / "collapse_all.png").exists()


def test_pooled_collapse_skips_an_unreadable_config(tmp_path):
    from factlab.report.collapse import pooled_cells

    _sweep_run(tmp_path, "extraction-size", [{"bound_x": 0.1, "test_acc": 0.5}])
    bad = tmp_path / "torn"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert [r["experiment"] for r in pooled_cells(tmp_path)] == ["extraction-size"]
