"""Induction heads and knowledge hijack (arXiv 2306.00802, 2412.11459; specs/knowledge_hijack.md).

Four experiments on the trigger-bigram task and the simplified two-layer model:

induction-head   global bigram loss floors early; the in-context loss plateaus, then drops; the
                 memory probes rise top-down (wo1 before wk1 and wk0).
induction-depth  a one-layer model fails on in-context (outs >= 2) positions, two layers do not.
hijack-length    APE degrades past the training length, RPE (rope1, rel_bias) does not.
hijack-prompts   on the designed prompts P1-P5 the model's choice follows the logit
                 decomposition (induction path + global-knowledge FFN path).

Thresholds (module constants; reasons next to each) decide the verdicts from the run's numbers.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from factlab.analysis.verdicts import Verdict, decide
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.attention import ABSOLUTE, POS_SCHEMES, RELATIVE
from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel
from factlab.probes.induction import (
    ablated_argmax,
    data_metrics,
    forward_with_patterns,
    loss_metrics,
    memory_metrics,
    norm_metrics,
    path_logits,
    path_metrics,
    prev_token_acc,
)
from factlab.report.style import paper_style, save_figure
from factlab.runtime import derive_seed, make_generator
from factlab.store.run_dir import read_split
from factlab.tasks.bigram_stats import BigramStats, load_stats
from factlab.tasks.trigger_bigram import (
    TriggerTaskConfig,
    make_prompts,
    peaked_queries,
    sample_batch,
    sample_from_config,
)
from factlab.train.loop import TrainConfig, train

# induction-head. "Early" compares times to a fraction of each loss's own total decrease, so it
# does not depend on how far above the oracle floor a small model stays (it cannot know the
# per-sequence triggers, and the random positional vectors leak into the FFN's input): the
# bigram loss must cover 90% of its decrease before the in-context loss covers 50% of its own.
BIGRAM_FRACTION = 0.9
HEAD_FRACTION = 0.5
# "Plateaus then drops": loss_head must end at least 0.5 nats below its value at the time the
# bigram loss got there (a formed head takes it from ~ln 65 = 4.2 towards 0; 0.5 nats is far
# above eval noise).
HEAD_DROP = 0.5
# A memory probe "has risen" once it reaches 0.5 (random chance is 1/N or 1/T, under 0.02).
PROBE_LEVEL = 0.5
# induction-depth. Two layers must solve in-context positions (acc_end >= 0.6, far above the
# 1/65 chance of uniform outputs) for the contrast to mean anything. One layer has no
# previous-token information, so it cannot tell which of the K outputs in the context belongs
# to the current trigger; guessing among the K = 5 outputs gives 1/K = 0.2, so one layer
# "fails" when its acc_end stays <= 0.2 (set before any run; frequency cues can beat it).
TWO_LAYER_MIN = 0.6
ONE_LAYER_MAX = 0.2
# hijack-length. APE "degrades" when acc_end at the longest length is >= 0.2 below its value at
# the training length; RPE "does not" when it is at most 0.1 below (sampling noise of acc_end on
# 256 test sequences is ~0.01; longer contexts hold more repeats, which helps a sound head).
# An RPE model must first reach LEARNED_MIN at 1x, else the comparison is inconclusive.
APE_DROP = 0.2
RPE_FLAT = 0.1
LEARNED_MIN = 0.5
# hijack-prompts. The two named paths (induction + FFN) ignore the direct and layer-1 paths;
# the claim holds when their preferred candidate among {o, (o2,) j*} is the model's preferred
# candidate on >= 90% of the prompts of every family (the remaining 10% allows near-ties where
# the dropped paths decide).
AGREE_MIN = 0.9


@dataclasses.dataclass
class InductionConfig(ExperimentConfig):
    """Task, model and training of one trigger-task model (hijack_base-like by default)."""

    task: TriggerTaskConfig = dataclasses.field(default_factory=TriggerTaskConfig)
    model: TwoLayerConfig = dataclasses.field(default_factory=lambda: TwoLayerConfig(d_model=128))
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=0.01, weight_decay=1e-4, steps=300, batch_size=128,
        eval_every=10))
    loss_on: str = "all"  # "all" positions, or "head" (outs >= 2 only: Birth's loss_head_only)
    eval_batch: int = 256  # test sequences used by the probes (<= task.test_batch)

    def check(self) -> None:
        super().check()
        require(self.loss_on in ("all", "head"), "loss_on", "must be 'all' or 'head'")
        require(1 <= self.eval_batch <= self.task.test_batch, "eval_batch",
                f"must be in [1, task.test_batch={self.task.test_batch}]")
        require(self.model.max_len >= self.task.seq_len, "model.max_len",
                f"must be >= task.seq_len={self.task.seq_len}")
        require(self.loss_on == "all" or self.task.n_triggers > 0, "loss_on",
                "'head' needs task.n_triggers >= 1")


@dataclasses.dataclass
class TrainedModel:
    """A trained model with the data it was trained on."""

    model: TwoLayerModel
    stats: BigramStats
    triggers: torch.Tensor | None  # fixed triggers, or None when random


def test_batch(stats: BigramStats, task: TriggerTaskConfig, n: int, T: int | None = None,
               device: torch.device | str = "cpu"):
    """The fixed test batch: `n` sequences drawn with seed 0 (CPU sampling, then moved)."""
    x, y, outs = sample_from_config(stats, task, n, make_generator(0), T=T)
    return x.to(device), y.to(device), outs.to(device)


def oracle_floor(stats: BigramStats, x: torch.Tensor, y: torch.Tensor, outs: torch.Tensor) -> float:
    """Mean -log π_b(y|x) over bigram (outs = 0) positions: the global-bigram loss floor."""
    logp = stats.bigram.to(x.device).clamp_min(1e-30).log()[x, y]
    return float(-logp[outs == 0].mean())


def train_model(cfg: InductionConfig, ctx: RunContext, tag: str,
                model_cfg: TwoLayerConfig | None = None, log: bool = True) -> TrainedModel:
    """Train one model on fresh trigger-task batches; log test probes under split `tag`."""
    stats = load_stats(None if cfg.task.stats == "shakespeare" else cfg.task.stats)
    mcfg = model_cfg or cfg.model
    T = cfg.task.seq_len
    seed = derive_seed(cfg.seed, tag)
    model = TwoLayerModel(mcfg, stats.n, make_generator(seed), train_len=T).to(ctx.device)
    triggers = (stats.top_tokens(cfg.task.n_triggers, cfg.task.trigger_offset)
                if cfg.task.fixed_triggers and cfg.task.n_triggers > 0 else None)
    data_gen = make_generator(derive_seed(seed, "data"))
    xt, yt, ot = test_batch(stats, cfg.task, cfg.eval_batch, device=ctx.device)
    pure = sample_batch(stats, 64, T, 0, gen=make_generator(1))[0].to(ctx.device)
    bigram = stats.bigram.float().to(ctx.device)
    last: dict[str, torch.Tensor] = {}

    def loss_fn(step: int) -> torch.Tensor:
        x, y, outs = sample_from_config(stats, cfg.task, cfg.train.batch_size, data_gen)
        x, y, outs = x.to(ctx.device), y.to(ctx.device), outs.to(ctx.device)
        last.update(x=x, y=y, outs=outs)
        logits = model(x)
        if cfg.loss_on == "head":
            mask = outs >= 2
            return F.cross_entropy(logits[mask], y[mask]) if mask.any() else logits.sum() * 0
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        out = data_metrics(model, xt, yt, ot)
        out.update(path_metrics(model, xt, yt, ot))
        out.update(memory_metrics(model, bigram, triggers, T=min(T, 256)))
        A1 = forward_with_patterns(model, pure)[1]
        out["prev_token_bigram_acc"] = prev_token_acc(A1)  # rope1's analogue of wk0
        if last:
            logits = model(last["x"])
            tr = loss_metrics(logits, last["y"], last["outs"])
            out.update({f"train_{k}": v for k, v in tr.items()
                        if k in ("loss_all", "loss_bigram", "loss_head", "acc_end")})
        out.update(norm_metrics(model))
        out["acc"] = out["acc_end"]
        return out

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if log:
            ctx.log(step, tag, **metrics)

    result = train(model.parameters(), loss_fn, dataclasses.replace(cfg.train, target_acc=0.0),
                   eval_fn, on_eval, show_progress=ctx.show_progress, desc=tag)
    result.raise_if_diverged()
    model.eval()
    return TrainedModel(model, stats, triggers)



def first_step(rows: list[dict[str, Any]], key: str, ok) -> float:
    """The first logged step whose `key` satisfies `ok`, else +inf."""
    for r in rows:
        v = r.get(key)
        if v is not None and v >= 0 and ok(v):
            return r["step"]
    return math.inf


def _fmt_step(s: float) -> str:
    return "never" if math.isinf(s) else str(int(s))


# --------------------------------------------------------------------------- induction-head


@dataclasses.dataclass
class InductionHeadConfig(InductionConfig):
    """One model; probes over iterations."""


def run_induction_head(cfg: InductionHeadConfig, ctx: RunContext) -> Verdict:
    """Train once; judge bigram-first, plateau-then-drop and the top-down probe order."""
    trained = train_model(cfg, ctx, "test")
    xt, yt, ot = test_batch(trained.stats, cfg.task, cfg.eval_batch, device=ctx.device)
    floor = oracle_floor(trained.stats, xt, yt, ot)
    ctx.log(0, "floor", loss_bigram_floor=floor)
    rows = read_split(ctx.store.root, "test")
    return induction_head_verdict(rows, floor)


def induction_head_verdict(rows: list[dict[str, Any]], floor: float) -> Verdict:
    """Verdict of induction-head from the logged test records and the oracle floor."""
    first, final = rows[0], rows[-1]

    def reach(key: str, fraction: float) -> float:
        level = first[key] - fraction * (first[key] - final[key])
        return first_step(rows[1:], key, lambda v: v <= level)

    t_bigram = reach("loss_bigram", BIGRAM_FRACTION)
    t_head = reach("loss_head", HEAD_FRACTION)
    at_bigram = next((r for r in rows if r["step"] == t_bigram), rows[-1])
    plateau = at_bigram["loss_head"]
    t = {k: first_step(rows, f"{k}_acc", lambda v: v >= PROBE_LEVEL)
         for k in ("wo1", "wk1", "wk0")}
    bigram_first = t_bigram < t_head
    drops = final["loss_head"] <= plateau - HEAD_DROP
    top_down = t["wo1"] < t["wk1"] and t["wo1"] < t["wk0"]
    holds = bigram_first and drops and top_down
    evidence = (f"loss_bigram {BIGRAM_FRACTION:.0%} down at step {_fmt_step(t_bigram)} vs "
                f"loss_head {HEAD_FRACTION:.0%} down at step {_fmt_step(t_head)}; loss_head "
                f"{plateau:.2f} at that point -> {final['loss_head']:.2f} (needs a drop >= "
                f"{HEAD_DROP}); probes >= {PROBE_LEVEL} at wo1 {_fmt_step(t['wo1'])}, wk1 "
                f"{_fmt_step(t['wk1'])}, wk0 {_fmt_step(t['wk0'])} (wo1 must be first); final "
                f"loss_bigram {final['loss_bigram']:.3f} vs oracle floor {floor:.3f}, "
                f"acc_end {final['acc_end']:.3f}")
    metrics = {"loss_bigram_floor": floor, "step_bigram": t_bigram, "step_head": t_head,
               "loss_head_plateau": plateau,
               "final": {k: final[k] for k in ("loss_bigram", "loss_head", "acc_end", "wk0_acc",
                                               "wk1_acc", "wo1_acc", "ff1_loss")},
               "probe_steps": t, "bigram_first": bigram_first, "head_drops": drops,
               "top_down": top_down}
    return decide(holds, evidence, metrics)


def figures_induction_head(run_dir: Path) -> list[Path]:
    """Losses (with the oracle floor) and memory probes over iterations."""
    rows = read_split(run_dir, "test")
    if not rows:
        return []
    floor = next((r["loss_bigram_floor"] for r in read_split(run_dir, "floor")), None)
    steps = [r["step"] for r in rows]
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(9.5, 2.4))
        for key, label in (("loss_bigram", "bigram (outs=0)"), ("loss_head", "in-context (outs>=2)")):
            ax1.plot(steps, [r[key] for r in rows], label=label)
        if floor is not None:
            ax1.axhline(floor, color="k", ls="--", lw=0.8, label="oracle floor")
        ax1.set(xlabel="iteration", ylabel="test loss (nats)")
        ax1.legend()
        for key in ("wo1_acc", "wk1_acc", "wk0_acc", "acc_end", "ff1_loss"):
            vals = [r[key] for r in rows]
            if all(v < 0 for v in vals):
                continue
            ax2.plot(steps, vals, label=key, ls=":" if key == "ff1_loss" else "-")
        ax2.set(xlabel="iteration", ylabel="probe")
        ax2.legend()
        for key, label in (("logit_induction_head", "induction path, outs>=2"),
                           ("logit_ffn_head", "FFN path, outs>=2"),
                           ("logit_induction_bigram", "induction path, outs=0"),
                           ("logit_ffn_bigram", "FFN path, outs=0")):
            if key in rows[0]:
                ax3.plot(steps, [r[key] for r in rows], label=label,
                         ls="-" if key.endswith("head") else "--")
        ax3.set(xlabel="iteration", ylabel="centred logit of the target")
        ax3.legend()
        return [save_figure(fig, run_dir, "probes")]


# --------------------------------------------------------------------------- induction-depth


def run_induction_depth(cfg: InductionConfig, ctx: RunContext) -> Verdict:
    """Train a one-layer and a two-layer model on the same task; compare acc_end."""
    res = {}
    for layers in (1, 2):
        tag = f"layers{layers}"
        train_model(cfg, ctx, tag, dataclasses.replace(cfg.model, n_layers=layers))
        res[layers] = read_split(ctx.store.root, tag)[-1]
    one, two = res[1]["acc_end"], res[2]["acc_end"]
    holds = one <= ONE_LAYER_MAX and two >= TWO_LAYER_MIN
    evidence = (f"acc_end on outs>=2: one layer {one:.3f} (fails if <= {ONE_LAYER_MAX}), two "
                f"layers {two:.3f} (needs >= {TWO_LAYER_MIN}); loss_head {res[1]['loss_head']:.2f}"
                f" vs {res[2]['loss_head']:.2f}; loss_bigram {res[1]['loss_bigram']:.2f} vs "
                f"{res[2]['loss_bigram']:.2f}")
    metrics = {f"layers{k}": {m: v[m] for m in ("acc_end", "loss_head", "loss_bigram", "acc_tot")}
               for k, v in res.items()}
    return decide(holds, evidence, metrics)


def figures_induction_depth(run_dir: Path) -> list[Path]:
    """acc_end and loss_head over iterations for one vs two layers."""
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.5, 2.4))
        any_rows = False
        for layers in (1, 2):
            rows = read_split(run_dir, f"layers{layers}")
            if not rows:
                continue
            any_rows = True
            steps = [r["step"] for r in rows]
            ax1.plot(steps, [r["acc_end"] for r in rows], label=f"{layers} layer(s)")
            ax2.plot(steps, [r["loss_head"] for r in rows], label=f"{layers} layer(s)")
        if not any_rows:
            plt.close(fig)
            return []
        ax1.set(xlabel="iteration", ylabel="acc_end (outs>=2)")
        ax2.set(xlabel="iteration", ylabel="loss_head")
        ax1.legend()
        return [save_figure(fig, run_dir, "depth")]


# --------------------------------------------------------------------------- hijack-length


@dataclasses.dataclass
class LengthConfig(InductionConfig):
    """Schemes to train at task.seq_len and the length multiples to evaluate at."""

    schemes: tuple[str, ...] = ("ape_random", "rope1", "rel_bias")
    factors: tuple[int, ...] = (1, 2, 4)

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schemes if s not in POS_SCHEMES]
        require(not bad, "schemes", f"unknown scheme {bad[0] if bad else ''!r}; allowed: "
                f"{', '.join(POS_SCHEMES)}")
        require(any(s in ABSOLUTE for s in self.schemes) and
                any(s in RELATIVE for s in self.schemes), "schemes",
                "needs at least one absolute and one relative scheme")
        require(len(self.factors) >= 2 and min(self.factors) >= 1, "factors",
                "needs >= 2 length multiples, all >= 1")
        need = max(self.factors) * self.task.seq_len
        require(self.model.max_len >= need, "model.max_len",
                f"must be >= {need} (the longest evaluation length)")


@torch.no_grad()
def length_metrics(trained: TrainedModel, task: TriggerTaskConfig, T: int, T_train: int,
                   n: int, device: torch.device) -> dict[str, float]:
    """acc_end / loss_head at length T and the previous-token accuracy past T_train."""
    x, y, outs = test_batch(trained.stats, task, n, T=T, device=device)
    logits, A1, _ = forward_with_patterns(trained.model, x)
    out = loss_metrics(logits, y, outs)
    late = outs.clone()
    late[:, :T_train] = -1
    correct = logits.argmax(-1) == y
    out["acc_end_late"] = float(correct[late >= 2].float().mean()) if (late >= 2).any() else -1.0
    out["prev_token_acc"] = prev_token_acc(A1)
    out["prev_token_acc_late"] = prev_token_acc(A1, start=T_train) if T_train < T else -1.0
    return out


def run_hijack_length(cfg: LengthConfig, ctx: RunContext) -> Verdict:
    """Train each scheme at T_train; evaluate at every length multiple."""
    T0 = cfg.task.seq_len
    table: dict[str, dict[int, dict[str, float]]] = {}
    for scheme in cfg.schemes:
        trained = train_model(cfg, ctx, f"train_{scheme}",
                              dataclasses.replace(cfg.model, pos=scheme))
        table[scheme] = {}
        for f in cfg.factors:
            m = length_metrics(trained, cfg.task, f * T0, T0, cfg.eval_batch, ctx.device)
            table[scheme][f] = m
            ctx.log(f, "length", scheme=scheme, length=f * T0, **m)
    return length_verdict(table, cfg.factors)


def length_verdict(table: dict[str, dict[int, dict[str, float]]],
                   factors: tuple[int, ...]) -> Verdict:
    """APE drops by >= APE_DROP at the longest length; every RPE by <= RPE_FLAT."""
    lo, hi = min(factors), max(factors)
    drops = {s: table[s][lo]["acc_end"] - table[s][hi]["acc_end"] for s in table}
    ape = [s for s in table if s in ABSOLUTE]
    learned = [s for s in table if s not in ABSOLUTE and table[s][lo]["acc_end"] >= LEARNED_MIN]
    unlearned = [s for s in table if s not in ABSOLUTE and s not in learned]
    ape_ok = all(drops[s] >= APE_DROP for s in ape)
    # an RPE model that never learned the task at 1x says nothing about length; it is reported
    # as inconclusive, and at least one RPE model must have learned
    rpe_ok = bool(learned) and all(drops[s] <= RPE_FLAT for s in learned)
    parts = [f"{s}: acc_end " + " / ".join(f"{table[s][f]['acc_end']:.2f}" for f in factors)
             + f" at {'x/'.join(str(f) for f in factors)}x (prev-token late "
             f"{table[s][hi]['prev_token_acc_late']:.2f})" for s in table]
    evidence = ("; ".join(parts) + f"; APE must drop >= {APE_DROP}, RPE <= {RPE_FLAT} "
                f"(RPE below {LEARNED_MIN} at {lo}x is inconclusive: "
                f"{', '.join(unlearned) or 'none'})")
    metrics = {"acc_end": {s: {str(f): table[s][f]["acc_end"] for f in factors} for s in table},
               "prev_token_acc_late": {s: table[s][hi]["prev_token_acc_late"] for s in table},
               "drop": drops, "inconclusive": unlearned}
    return decide(ape_ok and rpe_ok, evidence, metrics)


def figures_hijack_length(run_dir: Path) -> list[Path]:
    """acc_end and previous-token accuracy vs evaluation length, one line per scheme."""
    rows = read_split(run_dir, "length")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.5, 2.4))
        for scheme in dict.fromkeys(r["scheme"] for r in rows):
            sel = [r for r in rows if r["scheme"] == scheme]
            lens = [r["length"] for r in sel]
            ax1.plot(lens, [r["acc_end"] for r in sel], marker="o", ms=3, label=scheme)
            ax2.plot(lens, [r["prev_token_acc"] for r in sel], marker="o", ms=3, label=scheme)
        t0 = min(r["length"] for r in rows)
        for ax in (ax1, ax2):
            ax.axvline(t0, color="k", ls="--", lw=0.8)
            ax.set(xscale="log", xlabel="evaluation length")
        ax1.set(ylabel="acc_end (outs>=2)")
        ax2.set(ylabel="previous-token acc (layer 1)")
        ax1.legend()
        return [save_figure(fig, run_dir, "length")]


# --------------------------------------------------------------------------- hijack-prompts


@dataclasses.dataclass
class PromptsConfig(InductionConfig):
    """Models per scheme and the P1-P5 grids (lengths in tokens; paper sizes for T_train 256)."""

    schemes: tuple[str, ...] = ("ape_random", "rel_bias")
    n_prompts: int = 500  # per cell and model
    min_peak: float = 0.3  # q needs max_j π_b(j|q) >= min_peak
    query_weights: str = "unigram"  # draw q ∝ π_u (the training trigger law) or "uniform"
    p1_len: int = 128
    p1_n: tuple[int, ...] = (1, 2, 4, 8)
    p2_lens: tuple[int, ...] = (64, 128, 256)
    p3_len: int = 128
    p3_a: tuple[int, ...] = (1, 2, 1, 3, 1)  # a:b = o1 pairs : o2 pairs
    p3_b: tuple[int, ...] = (1, 1, 2, 1, 3)
    p4_lens: tuple[int, ...] = (64, 128, 256, 512, 1024)
    p4_region: int = 32  # the 2 evidence pairs lie in the first p4_region positions
    p5_len: int = 256
    p5_dist: tuple[int, ...] = (8, 32, 64, 128, 240)

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schemes if s not in POS_SCHEMES]
        require(self.schemes and not bad, "schemes",
                f"needs schemes from {', '.join(POS_SCHEMES)}")
        require(self.n_prompts >= 1, "n_prompts", "must be >= 1")
        require(self.query_weights in ("unigram", "uniform"), "query_weights",
                "must be 'unigram' or 'uniform'")
        require(len(self.p3_a) == len(self.p3_b), "p3_b", "must have as many entries as p3_a")
        longest = max(self.p1_len, self.p3_len, self.p5_len, *self.p2_lens, *self.p4_lens)
        require(self.model.max_len >= longest, "model.max_len", f"must be >= {longest}")
        require(max(self.p1_n) <= (self.p1_len // 2) // 2, "p1_n",
                f"at most {(self.p1_len // 2) // 2} pairs fit in the first half of p1_len")
        require(max(a + b for a, b in zip(self.p3_a, self.p3_b)) <= (self.p3_len // 2) // 2,
                "p3_a", "too many evidence pairs for the first half of p3_len")
        require(all(2 <= dd < self.p5_len - 1 for dd in self.p5_dist), "p5_dist",
                "every distance must be in [2, p5_len - 2]")
        require(self.p4_region >= 4 and self.p4_region <= min(self.p4_lens) - 2, "p4_region",
                "must be in [4, min(p4_lens) - 2]")


def prompt_cells(cfg: PromptsConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, cell label, make_prompts kwargs) for every cell of P1-P5."""
    cells = []
    for n in cfg.p1_n:
        cells.append(("P1", f"n={n}", dict(L=cfg.p1_len, n_o=n)))
    for L in cfg.p2_lens:
        cells.append(("P2", f"L={L}", dict(L=L, n_o=0)))
    for a, b in zip(cfg.p3_a, cfg.p3_b):
        for is_j in (False, True):
            cells.append(("P3", f"{a}:{b}{' o1=j*' if is_j else ''}",
                          dict(L=cfg.p3_len, n_o=a, n_o2=b, o_is_jstar=is_j)))
    for L in cfg.p4_lens:
        cells.append(("P4", f"L={L}", dict(L=L, n_o=2, region=(0, cfg.p4_region))))
    for dist in cfg.p5_dist:
        cells.append(("P5", f"delta={dist}", dict(L=cfg.p5_len, n_o=1, distance=dist)))
    return cells


@torch.no_grad()
def score_prompts(model: TwoLayerModel, batch, T_train: int) -> dict[str, float]:
    """Choice rates, decomposition agreement, path logits and previous-token accuracy."""
    device = model.W_E.device
    tokens = batch.tokens.to(device)
    paths = path_logits(model, tokens)
    pred = paths["logits"].argmax(-1)
    o, o2, js = batch.o.to(device), batch.o2.to(device), batch.jstar.to(device)
    rows = torch.arange(len(pred), device=device)
    # the decision among the candidates {o, (o2,) j*}: the model's logits vs the two paths
    cand = torch.stack([o, js] + ([o2] if batch.n_o2 > 0 else []), 1)  # [n, C]
    two = (paths["induction"] + paths["ffn"]).gather(1, cand).argmax(-1)
    full = paths["logits"].gather(1, cand).argmax(-1)
    two_path_all = (paths["induction"] + paths["ffn"]).argmax(-1)
    out = {
        "in_context_wins": float((pred == o).float().mean()),
        "o2_wins": float((pred == o2).float().mean()),
        "global_wins": float((pred == js).float().mean()),
        "agreement": float((cand[rows, two] == cand[rows, full]).float().mean()),
        "agreement_all_tokens": float((two_path_all == pred).float().mean()),
        "induction_ablated_global": float((ablated_argmax(model, tokens, "induction") == js)
                                          .float().mean()),
        "ffn_ablated_in_context": float((ablated_argmax(model, tokens, "ffn") == o)
                                        .float().mean()),
    }
    out["other_wins"] = 1.0 - out["in_context_wins"] - out["o2_wins"] - out["global_wins"]
    if bool((o == js).all()):
        out["other_wins"] = 1.0 - out["in_context_wins"] - out["o2_wins"]
    # the share of the FFN path's logit of o that a linear FFN relays from the induction output
    out["ffn_of_induction_logit_o"] = float(paths["ffn_of_induction"][rows, o].mean())
    for name in ("induction", "ffn", "direct", "layer1"):
        out[f"{name}_logit_o"] = float(paths[name][rows, o].mean())
        out[f"{name}_logit_jstar"] = float(paths[name][rows, js].mean())
    _, A1, _ = forward_with_patterns(model, tokens)
    out["prev_token_acc"] = prev_token_acc(A1)
    out["prev_token_acc_late"] = (prev_token_acc(A1, start=T_train)
                                  if tokens.shape[1] > T_train else -1.0)
    return out


def run_hijack_prompts(cfg: PromptsConfig, ctx: RunContext) -> Verdict:
    """Train one model per scheme; score every P1-P5 cell; judge the agreement per family."""
    per_family: dict[str, list[float]] = {}
    wins: dict[str, list[float]] = {}
    for scheme in cfg.schemes:
        trained = train_model(cfg, ctx, f"train_{scheme}",
                              dataclasses.replace(cfg.model, pos=scheme))
        queries = peaked_queries(trained.stats, cfg.min_peak, trained.triggers)
        require(len(queries) > 0, "min_peak", "no query token has a peaked bigram row")
        weights = (trained.stats.unigram[queries].float() if cfg.query_weights == "unigram"
                   else None)
        for i, (family, label, kw) in enumerate(prompt_cells(cfg)):
            gen = make_generator(derive_seed(cfg.seed, "prompts", family, label))
            batch = make_prompts(trained.stats, cfg.n_prompts, queries=queries,
                                 query_weights=weights, gen=gen, **kw)
            m = score_prompts(trained.model, batch, cfg.task.seq_len)
            ctx.log(i, "prompts", scheme=scheme, family=family, cell=label, **m)
            per_family.setdefault(family, []).append(m["agreement"])
            wins.setdefault(f"{family}/{scheme}", []).append(m["in_context_wins"])
    agree = {f: sum(v) / len(v) for f, v in per_family.items()}
    holds = all(a >= AGREE_MIN for a in agree.values())
    evidence = ("agreement of the induction + FFN paths with the model's choice among "
                "{o, (o2,) j*}: "
                + ", ".join(f"{f} {a:.2f}" for f, a in sorted(agree.items()))
                + f" (needs >= {AGREE_MIN} each); in-context win rate: "
                + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(wins.items())))
    metrics = {"agreement": agree,
               "in_context_wins": {k: sum(v) / len(v) for k, v in wins.items()}}
    return decide(holds, evidence, metrics)


def figures_hijack_prompts(run_dir: Path) -> list[Path]:
    """Per family: in-context / global win rates and agreement across cells, per scheme."""
    rows = read_split(run_dir, "prompts")
    if not rows:
        return []
    families = list(dict.fromkeys(r["family"] for r in rows))
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    with paper_style():
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(families), figsize=(2.2 * len(families), 2.6),
                                 sharey=True, squeeze=False)
        for ax, fam in zip(axes[0], families):
            for j, scheme in enumerate(schemes):
                sel = [r for r in rows if r["family"] == fam and r["scheme"] == scheme]
                xs = range(len(sel))
                ls = "-" if j == 0 else "--"
                ax.plot(xs, [r["in_context_wins"] for r in sel], ls, color="C0", marker="o",
                        ms=2, label=f"o wins ({scheme})")
                ax.plot(xs, [r["global_wins"] for r in sel], ls, color="C1", marker="s", ms=2,
                        label=f"j* wins ({scheme})")
                ax.plot(xs, [r["agreement"] for r in sel], ls, color="C2", lw=0.8,
                        label=f"agreement ({scheme})")
                ax.set_xticks(list(xs), [r["cell"] for r in sel], rotation=60, fontsize=5)
            ax.set(title=fam, ylim=(-0.02, 1.02))
        axes[0][0].set(ylabel="fraction of prompts")
        axes[0][-1].legend(fontsize=5)
        return [save_figure(fig, run_dir, "prompts")]


# --------------------------------------------------------------------------- registry

# quick (the defaults): d = 128, T = 64, K = 5 random triggers, batch 128, AdamW lr 0.01,
# 300 steps (about 1-1.5 min per model on one CPU core).
_QUICK: dict[str, Any] = {}
# paper (hijack_base, spec §4): d = 256, T = 256, K = 5 random triggers, SGD momentum 0.9,
# lr 0.2 (chosen from {0.03, 0.1, 0.2}), wd 1e-4, batch 512, 3000 iterations, eval every 5 steps.
_PAPER = {"model.d_model": 256, "task.seq_len": 256, "train.optimizer": "sgd", "train.lr": 0.2,
          "train.momentum": 0.9, "train.weight_decay": 1e-4, "train.batch_size": 512,
          "train.steps": 3000, "train.eval_every": 5, "eval_batch": 512}

INDUCTION_HEAD = Experiment(
    name="induction-head",
    claim="A two-layer transformer learns the global bigram first (loss at its floor early); the "
          "in-context loss plateaus then drops, and the memory probes rise top-down (W_O2 "
          "before the key-query memories W_K2, W_K1).",
    config=InductionHeadConfig,
    run=run_induction_head,
    figures=figures_induction_head,
    presets={"quick": _QUICK, "paper": _PAPER},
)

INDUCTION_DEPTH = Experiment(
    name="induction-depth",
    claim="A one-layer model fails on in-context (repeated-trigger) positions that a two-layer "
          "model solves.",
    config=InductionConfig,
    run=run_induction_depth,
    figures=figures_induction_depth,
    presets={"quick": _QUICK, "paper": _PAPER},
)

HIJACK_LENGTH = Experiment(
    name="hijack-length",
    claim="Trained at one length, absolute positional encoding degrades at 2x and 4x that length "
          "while relative encoding (RoPE, relative bias) does not.",
    config=LengthConfig,
    run=run_hijack_length,
    figures=figures_hijack_length,
    presets={"quick": _QUICK,
             "paper": {**_PAPER, "schemes": "ape_random,rope1,rel_bias"}},
)

HIJACK_PROMPTS = Experiment(
    name="hijack-prompts",
    claim="On designed prompts (P1-P5) the model's choice between the in-context answer and the "
          "global bigram favourite follows the logit decomposition (induction vs FFN path).",
    config=PromptsConfig,
    run=run_hijack_prompts,
    figures=figures_hijack_prompts,
    presets={"quick": {"n_prompts": 200, "p1_len": 64, "p2_lens": "32,64", "p3_len": 64,
                       "p3_a": "1,2,1,3,1", "p3_b": "1,1,2,1,3", "p4_lens": "32,64,128,256",
                       "p4_region": 16, "p5_len": 64, "p5_dist": "4,8,16,32,60"},
             "paper": {**_PAPER, "schemes": "ape_random,rope1,rel_bias"}},
)
