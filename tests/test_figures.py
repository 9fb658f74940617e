"""Every figure draws the verdict's threshold and writes its deciding number (no training).

Each test plants a run directory by hand (config.json, metrics.jsonl, summary.json in the
format the figure functions read), draws its figures with `save_figure` swapped for a catcher,
and inspects the matplotlib objects: the threshold lines (tagged gid "threshold") at the
verdict's value and the note (gid "decide") holding the number summary.json stores.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factlab.experiments import get_experiment
from factlab.report.style import DECIDE_GID, THRESHOLD_GID


def plant(run_dir: Path, config: dict[str, Any], records: list[dict[str, Any]],
          summary: dict[str, Any] | None) -> Path:
    """A run directory holding exactly these files (no summary.json when `summary` is None)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def caught(monkeypatch) -> list:
    """The figures the report modules save, kept open for inspection."""
    figs: list = []

    def catch(fig, out_dir, name):
        figs.append(fig)
        return Path(out_dir) / f"{name}.png"

    import factlab.report.extraction as ext
    import factlab.report.factual_recall as fr
    import factlab.report.ic_recall as ic
    import factlab.report.induction as ind
    import factlab.report.realmodels as rm

    for module in (ext, fr, ic, ind, rm):
        monkeypatch.setattr(module, "save_figure", catch)
    yield figs
    import matplotlib.pyplot as plt

    for fig in figs:
        plt.close(fig)


def thresholds(fig) -> list:
    """Every threshold line of the figure, colour bars included."""
    return [line for ax in fig.axes for line in ax.lines if line.get_gid() == THRESHOLD_GID]


def horizontal_at(fig, value: float) -> bool:
    """Some threshold line is horizontal at `value`."""
    return any(np.allclose(np.asarray(line.get_ydata(), float), value)
               for line in thresholds(fig))


def notes(fig) -> str:
    """The text of every deciding-number note of the figure."""
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts
                     if t.get_gid() == DECIDE_GID)


def all_text(fig) -> list[str]:
    """Titles, axis labels, legend entries and notes of the figure."""
    out = [t.get_text() for ax in fig.axes for t in ax.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return out


def assert_clean_labels(fig) -> None:
    """No plain-text caret, '>=' or '<=' outside mathtext (write $d^2$, $\\geq$ or ≥)."""
    for text in all_text(fig):
        plain = re.sub(r"\$[^$]*\$", "", text)
        assert "^" not in plain and ">=" not in plain and "<=" not in plain, text


def summary(state: str, metrics: dict[str, Any], reason: str = "") -> dict[str, Any]:
    """A summary.json with the verdict fields the figures read."""
    return {"verdict": state, "reason": reason, "evidence": "planted", "metrics": metrics}


# ------------------------------------------------------------------ factual recall


def test_capacity_draws_the_slope_bounds_and_the_stored_slope(tmp_path, caught):
    from factlab.report.factual_recall import capacity_figures

    rows = [{"split": "capacity", "step": 0, "seed": s, "ratio": 1.0, "d": d, "params": d * d,
             "capacity": d ** 1.5 * (1 + 0.05 * s)} for s in (0, 1) for d in (8, 16, 32)]
    run = plant(tmp_path / "cap", {"experiment": "capacity-linear", "threshold": 0.99}, rows,
                summary("holds", {"slope": {"linear": 0.7431},
                                  "slope_per_seed": {"0": {"linear": 0.731},
                                                     "1": {"linear": 0.752}},
                                  "slope_range": [0.7, 1.1]}))
    capacity_figures(run, "linear", (0.7, 1.1))
    (fig,) = caught
    slopes = []
    for line in thresholds(fig):
        x, y = (np.asarray(v, float) for v in line.get_data())
        slopes.append(math.log(y[-1] / y[0]) / math.log(x[-1] / x[0]))
    assert sorted(round(s, 6) for s in slopes) == [0.7, 1.1]
    text = notes(fig)
    assert "holds" in text and "0.74 [0.73, 0.75]" in text and "0.70–1.10" in text
    assert any("$d^2$" in t for t in all_text(fig))
    assert_clean_labels(fig)


def test_tradeoff_marks_the_threshold_on_the_colour_bar(tmp_path, caught):

    rows = [{"split": "grid", "step": 0, "seed": 0, "heads": h, "width": m,
             "acc": 1.0 if h * m >= 64 else 0.5, "starved": False}
            for h in (1, 2, 4, 8) for m in (8, 16, 32, 64)]
    cfg = {"experiment": "recall-tradeoff", "model": {"d_model": 32, "d_head": 8},
           "task": {"n_subjects": 16, "n_relations": 16}}
    run = plant(tmp_path / "trade", cfg, rows,
                summary("holds", {"spearman": -0.95, "mlp_span": 8.0,
                                  "spearman_per_seed": [-0.95], "span_per_seed": [8.0]}))
    get_experiment("recall-tradeoff").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, 0.99)
    assert "Spearman -0.95" in notes(fig) and "8.0×" in notes(fig)
    assert_clean_labels(fig)


def test_a_figure_drawn_before_the_summary_still_draws_the_threshold(tmp_path, caught):

    rows = [{"split": "grid", "step": 0, "seed": 0, "heads": h, "width": m, "acc": 1.0,
             "starved": False} for h in (1, 2) for m in (8, 16)]
    cfg = {"experiment": "recall-tradeoff", "model": {"d_model": 32, "d_head": 8},
           "task": {"n_subjects": 16, "n_relations": 16}}
    get_experiment("recall-tradeoff").figures(plant(tmp_path / "early", cfg, rows, None))
    (fig,) = caught
    assert horizontal_at(fig, 0.99)
    assert "no verdict stored yet" in notes(fig)


# ------------------------------------------------------------------ induction


def test_induction_depth_draws_both_bars_on_the_stored_null(tmp_path, caught):
    from factlab.experiments.induction import ONE_LAYER_SLACK, TWO_LAYER_GAIN

    rec = {"acc1": 0.23, "acc2": 0.85, "null_best": 0.5, "null_over_represented": 0.39,
           "null_count_match": 0.5, "null_shuffled_prefix": 0.17}
    rows = [{"split": "test", "step": 0, "seed": s, **rec} for s in (0, 1)]
    run = plant(tmp_path / "depth", {"experiment": "induction-depth"}, rows,
                summary("holds", {"mean": rec, "per_seed": [rec, rec]}))
    get_experiment("induction-depth").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, 0.5 + ONE_LAYER_SLACK) and horizontal_at(fig, 0.5 + TWO_LAYER_GAIN)
    assert "1 layer 0.230" in notes(fig) and "needs ≥ 0.800" in notes(fig)
    assert_clean_labels(fig)


def test_hijack_length_notes_the_seed_mean_of_the_stored_records(tmp_path, caught):
    from factlab.experiments.hijack import LOST, SHARP

    rows = [{"split": "length", "step": f, "seed": s, "scheme": sch, "length": 64 * f,
             "acc_end": 0.5, "prev_token_in": 0.95, "prev_token_late": -1.0 if f == 1 else late}
            for s in (0, 1) for sch, late in (("ape_random", 0.1), ("rel_bias", 0.9))
            for f in (1, 2)]
    rows += [{"split": "profile", "step": k * 8, "seed": s, "scheme": sch, "train_len": 64,
              "length": 128, "acc": 1.0 if k < 4 or sch == "rel_bias" else 0.0}
             for s in (0, 1) for sch in ("ape_random", "rel_bias") for k in range(16)]
    per = [{sch: {"x1": {"prev_token_in": 0.95},
                  "x2": {"prev_token_in": 0.95, "prev_token_late": late + 0.02 * s}}
            for sch, late in (("ape_random", 0.1), ("rel_bias", 0.9))} for s in (0, 1)]
    run = plant(tmp_path / "len", {"experiment": "hijack-length", "factors": [1, 2]}, rows,
                summary("holds", {"per_seed": per}))
    get_experiment("hijack-length").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, SHARP) and horizontal_at(fig, LOST)
    assert "ape_random: inside 0.95, past 0.11" in notes(fig)
    # the third panel: where along the positions the head holds, T_train / 2 and T_train marked
    assert len(fig.axes) == 3 and "$T_{train}/2$" in [t.get_text() for t in fig.axes[2].texts]
    assert_clean_labels(fig)


# ------------------------------------------------------------------ in-context recall


def test_ic_recall_draws_the_target_and_the_stored_intervals(tmp_path, caught):
    from factlab.experiments.ic_recall import ACC_TARGET

    rows = [{"split": "best", "step": 0, "seed": 0, "lr": 0.01}]
    rows += [{"split": "train", "step": t, "seed": 0, "lr": 0.01, "acc": 0.5 + 0.1 * t,
              **{k: 0.1 for k in ("null_acc", "alpha_q", "A_S", "A_A", "null_A_S", "null_A_A",
                                  "asym", "spread", "null_asym", "null_spread")}}
             for t in range(4)]
    run = plant(tmp_path / "ic", {"experiment": "ic-recall"}, rows,
                summary("fails", {"acc_interval": [0.9774, 0.9814],
                                  "heldout_interval": [0.965, 0.9719], "asym_limit": 0.5007,
                                  "spread_limit": 0.506,
                                  "per_seed": [{"asym": 0.126, "spread": 0.633}]}))
    get_experiment("ic-recall").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, ACC_TARGET) and horizontal_at(fig, 0.5007)
    assert "[0.9774, 0.9814]" in notes(fig) and "needs ≤ 0.501" in notes(fig)
    assert_clean_labels(fig)


# ------------------------------------------------------------------ extraction


def test_extraction_trend_draws_the_minimum_change_from_the_first_point(tmp_path, caught):
    from factlab.experiments.extraction import MIN_EFFECT

    rows = [{"split": "cell", "step": 0, "seed": s, "K": k, "test_acc": 0.4 + 0.1 * k,
             "test_acc_cov_seen": 0.6 + 0.05 * k, "retained_acc": 0.6, "stored_acc": 1.0,
             "chance_block": 0.125, "bound_x": 10.0 * k} for s in (0, 1) for k in (1, 2, 4)]
    run = plant(tmp_path / "mult", {"experiment": "extraction-multiplicity"}, rows,
                summary("holds", {"effect": 0.3, "effect_cov_seen": 0.15, "rho": 1.0,
                                  "rho_cov_seen": 1.0,
                                  "per_seed": {"0": {"effect": 0.29}, "1": {"effect": 0.31}}}))
    get_experiment("extraction-multiplicity").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, 0.5 + MIN_EFFECT) and horizontal_at(fig, 0.65 + MIN_EFFECT)
    assert "change +0.300 [+0.290, +0.310], ρ +1.00" in notes(fig)
    assert_clean_labels(fig)


def test_extraction_size_draws_the_trend_rule_on_the_default_setup(tmp_path, caught):
    from factlab.experiments.extraction import MIN_EFFECT

    rows = [{"split": "cell", "step": 0, "seed": s, "setup": setup, "n_finetune": n,
             "test_acc": base + 0.1 * i, "bound_x": 5.0 * (i + 1)}
            for s in (0, 1) for setup, base in (("2:4", 0.5), ("1:4", 0.3))
            for i, n in enumerate((100, 300, 1000))]
    run = plant(tmp_path / "size", {"experiment": "extraction-size"}, rows,
                summary("holds", {"effect": 0.2, "rho": 1.0}))
    get_experiment("extraction-size").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, 0.5 + MIN_EFFECT)  # the first (judged) setup's first point + margin
    assert "change" in notes(fig)


def test_attention_only_draws_the_stored_minimum(tmp_path, caught):
    from factlab.pipelines.extraction import STORED_MIN
    from factlab.report.extraction import figures_attention_only

    rows = [{"split": "cell", "step": i, "seed": 0, "variant": v, "stored_acc": a}
            for i, (v, a) in enumerate((("mlp", 0.995), ("attn_1head", 0.5),
                                        ("attn_8heads", 0.993)))]
    run = plant(tmp_path / "attn", {"experiment": "extraction-attention-only"}, rows,
                summary("holds", {"one_head_stored": 0.507, "multi_head_stored": 0.993}))
    figures_attention_only(run)
    (fig,) = caught
    assert horizontal_at(fig, STORED_MIN)
    assert "1 head 0.507" in notes(fig) and "attn_8heads 0.993" in notes(fig)
    assert_clean_labels(fig)


# ------------------------------------------------------------------ real models


def test_bios_draws_the_base_accuracy_plus_the_gap(tmp_path, caught):
    from factlab.tasks.bios import ATTRIBUTES

    res = [{"split": "result", "step": 0, "seed": 0, "augment": aug,
            **{f"qa_test_acc_{a}": acc for a in ATTRIBUTES}, "qa_test_acc": acc}
           for aug, acc in (("single", 0.04), ("multi", 0.45))]
    pre = [{"split": "pretrain", "step": t, "seed": 0, "augment": "single", "train_loss": 1.0}
           for t in range(3)]
    run = plant(tmp_path / "bios", {"experiment": "bios"}, res + pre,
                summary("holds", {"gap": 0.41, "threshold": 0.3,
                                  "mean": {"single": {"qa_test_acc": 0.04},
                                           "multi": {"qa_test_acc": 0.45}}}))
    get_experiment("bios").figures(run)
    acc_fig = caught[0]
    assert horizontal_at(acc_fig, 0.34)
    assert "gap multi − single (all) 0.41" in notes(acc_fig)
    for fig in caught:
        assert_clean_labels(fig)


def test_popqa_draws_control_plus_margin_per_mode(tmp_path, caught):
    from factlab.experiments.popqa import MARGIN

    rows = [{"split": "eval", "stage": "after_full", "step": 0, "seed": 0,
             "test_covered": 0.6, "control_covered": 0.2, "test_uncovered": 0.3,
             "control_uncovered": 0.2}]
    run = plant(tmp_path / "popqa", {"experiment": "popqa-extraction"}, rows,
                summary("holds", {"modes": {"full": {"test_covered": 0.6,
                                                     "control_covered": 0.2}}}))
    get_experiment("popqa-extraction").figures(run)
    (fig,) = caught
    assert horizontal_at(fig, 0.2 + MARGIN)
    assert "gap held-out − control (covered) +0.400" in notes(fig)
    assert_clean_labels(fig)
