"""Sequential learning and the hallucination plateau (arXiv 2412.06538 Fig. 5; spec §8.5).

A one-hot, linear-attention model (§4.3) learns the structured table a*(s, r) = floor(s/2) + D r
with SGD. The claim is that it learns the relation before the subject: a plateau where the
relation-only loss is near 0 while the total loss sits near log D (a uniform guess inside the
right answer block, i.e. a confident-looking "hallucination"), before everything converges.

Judged from the logged test losses (seed-free thresholds, stated here):
- plateau: evaluations with relation-only loss <= PLATEAU_REL_LOSS and total loss within
  PLATEAU_BAND x log D; the longest run of such consecutive evaluations must last at least
  PLATEAU_MIN_FRACTION of training (a passing transient is not a plateau);
- convergence: the final total loss <= CONVERGED_LOSS_FRACTION x log D.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from factlab.analysis.verdicts import Verdict, decide
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.knowledge import make_knowledge_base
from factlab.models.linear_attention import LinearAttentionRecall
from factlab.probes.metrics import accuracy, relation_only, subject_only
from factlab.report.style import paper_style, save_figure
from factlab.runtime import make_generator
from factlab.store.run_dir import read_split
from factlab.tasks.factual_recall import RecallTaskConfig, sample_factual_recall
from factlab.train.loop import TrainConfig, train

PLATEAU_REL_LOSS = 0.15  # nats; "relation-only loss ~ 0" (log R = 1.39 at R = 4)
PLATEAU_BAND = (0.75, 1.25)  # total loss within this factor of log D
PLATEAU_MIN_FRACTION = 0.05  # of all training steps
CONVERGED_LOSS_FRACTION = 0.1  # final total loss below 0.1 log D


@dataclasses.dataclass
class SequentialConfig(ExperimentConfig):
    """Task, model init, optimisation and test-set size of the sequential-learning run."""

    task: RecallTaskConfig = dataclasses.field(default_factory=lambda: RecallTaskConfig(
        n_subjects=16, n_relations=4, n_answers=8, n_noise=20, seq_len=32,
        kb_kind="structured"))
    init: float = 1e-5  # A = V = init * 1 at the start
    n_test: int = 4096  # fresh test prompts, fixed for the run
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="sgd", lr=0.1, steps=8192, batch_size=1024, eval_every=64))

    def check(self) -> None:
        super().check()
        require(self.n_test >= 1, "n_test", "must be >= 1")
        require(self.init > 0, "init", "must be > 0")


def run(cfg: SequentialConfig, ctx: RunContext) -> Verdict:
    """Train with SGD on fresh batches; log total/relation/subject losses at every eval."""
    task = cfg.task
    kb = make_knowledge_base(task.n_subjects, task.n_relations, task.n_answers,
                             task.kb_seed, task.kb_kind)
    model = LinearAttentionRecall(task.vocab_size, kb.n_outputs, cfg.init).to(ctx.device)
    structured = task.kb_kind == "structured"
    sample_args = dict(seq_len=task.seq_len, n_noise=task.noise, eos=task.eos,
                       subject_zipf=task.subject_zipf, relation_zipf=task.relation_zipf,
                       device=ctx.device)
    train_gen = make_generator(cfg.seed)
    test = sample_factual_recall(kb, cfg.n_test, make_generator(cfg.seed + 1), **sample_args)

    def loss_fn(step: int) -> torch.Tensor:
        tokens, answer, _, _ = sample_factual_recall(kb, cfg.train.batch_size, train_gen,
                                                     **sample_args)
        return F.cross_entropy(model(tokens), answer)

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        tokens, answer, subject, _ = test
        logits = model(tokens)
        return {"loss": F.cross_entropy(logits, answer).item(), "acc": accuracy(logits, answer),
                **relation_only(logits, answer, kb),
                **subject_only(logits, answer, subject, kb, structured)}

    result = train(model.parameters(), loss_fn, cfg.train, eval_fn,
                   on_eval=lambda step, m: ctx.log(step, "test", **m),
                   show_progress=ctx.show_progress, desc="recall-sequential")
    result.raise_if_diverged()
    ctx.store.save_checkpoint("model", model.state_dict())
    records = read_split(ctx.store.root, "test")
    return judge(records, math.log(task.n_answers), cfg.train.steps)


def find_plateau(records: list[dict], log_d: float) -> tuple[int, int] | None:
    """(first, last) step of the longest run of evaluations in the plateau, or None."""
    lo, hi = PLATEAU_BAND
    best, start, prev = None, None, None
    for r in records:
        inside = r["loss_relation"] <= PLATEAU_REL_LOSS and lo * log_d <= r["loss"] <= hi * log_d
        if inside:
            start = r["step"] if start is None else start
            prev = r["step"]
            if best is None or prev - start > best[1] - best[0]:
                best = (start, prev)
        else:
            start = None
    return best


def judge(records: list[dict], log_d: float, total_steps: int) -> Verdict:
    """The verdict from the logged test curve."""
    plateau = find_plateau(records, log_d)
    final = records[-1]
    length = 0 if plateau is None else plateau[1] - plateau[0]
    long_enough = length >= PLATEAU_MIN_FRACTION * total_steps
    converged = final["loss"] <= CONVERGED_LOSS_FRACTION * log_d
    metrics = {"plateau_start": plateau and plateau[0], "plateau_end": plateau and plateau[1],
               "plateau_steps": length, "final_loss": final["loss"], "final_acc": final["acc"],
               "final_loss_relation": final["loss_relation"],
               "final_loss_subject": final["loss_subject"], "log_D": log_d,
               "steps": final["step"]}
    where = "no plateau" if plateau is None else f"plateau steps {plateau[0]}-{plateau[1]}"
    evidence = (f"{where} ({length} steps; needs >= {PLATEAU_MIN_FRACTION:.0%} of "
                f"{total_steps}) with relation-only loss <= {PLATEAU_REL_LOSS} and total loss "
                f"within {PLATEAU_BAND} x log D = {log_d:.2f}; final loss "
                f"{final['loss']:.3f} (converged needs <= {CONVERGED_LOSS_FRACTION * log_d:.2f}),"
                f" final acc {final['acc']:.3f}")
    return decide(long_enough and converged, evidence, metrics)


def figures(run_dir: Path) -> list[Path]:
    """Losses and accuracies over steps with log(RD) and log D guides and the plateau shaded."""
    import matplotlib.pyplot as plt

    records = read_split(run_dir, "test")
    if not records:
        return []
    cfg = __import__("json").loads((run_dir / "config.json").read_text())
    D, R = cfg["task"]["n_answers"], cfg["task"]["n_relations"]
    steps = np.array([r["step"] for r in records])
    plateau = find_plateau(records, math.log(D))
    with paper_style():
        fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(6.75, 2.4))
        for key, label in (("loss", "total"), ("loss_relation", "relation-only"),
                           ("loss_subject", "subject-only")):
            ax_l.plot(steps, [r[key] for r in records], label=label)
            ax_a.plot(steps, [r[key.replace("loss", "acc")] for r in records], label=label)
        ax_l.axhline(math.log(R * D), color="k", ls="--", lw=0.8)
        ax_l.axhline(math.log(D), color="gray", ls="--", lw=0.8)
        ax_l.text(steps[-1], math.log(R * D), f"log {R * D}", ha="right", va="bottom")
        ax_l.text(steps[-1], math.log(D), f"log {D}", ha="right", va="bottom")
        for ax in (ax_l, ax_a):
            if plateau is not None:
                ax.axvspan(*plateau, color="tab:red", alpha=0.15, lw=0)
            ax.set_xlabel("step")
        ax_l.set(ylabel="test loss (nats)", title="losses")
        ax_a.set(ylabel="test accuracy", title="accuracies", ylim=(0, 1.02))
        ax_l.legend(loc="center right")
        return [save_figure(fig, run_dir, "sequential")]


RECALL_SEQUENTIAL = Experiment(
    name="recall-sequential",
    claim="Trained by SGD, the one-layer linear-attention model learns the relation before the "
          "subject: it passes through a hallucination plateau (relation-only loss ~ 0, total "
          "loss ~ log D) before converging.",
    config=SequentialConfig,
    run=run,
    figures=figures,
    presets={"paper": {"n_test": 65536}},
)
