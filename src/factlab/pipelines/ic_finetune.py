"""Fine-tuning the IC-recall attention on N fixed prompts, measured on what it never saw.

One run (`fine_tune`) trains W_QK (and W_OV, or the control's value table) with the shared loop
(`factlab.train.loop.train`, minibatches from `EpochBatches`) on N prompts drawn over the
fine-tuning subjects only. Three disjoint kinds of prompts:

* train: the N fixed prompts; queries and contexts use the fine-tuning subjects only;
* validation: `n_val` fresh prompts over the fine-tuning subjects (own generator). Early
  stopping (patience on the validation loss), the best checkpoint and the lr choice read it;
  it never contains a held-out subject;
* test, read once at the best-validation checkpoint: every triplet of the fine-tuning subjects
  in a fresh context, and every triplet of the held-out subjects (~20%, in no train or
  validation prompt) in `heldout_contexts` fresh contexts each, enumerated in large chunks.

`probe_n` is one N_min probe: the lr grid at one N, the lr chosen on validation, the outcome
success / fail / inconclusive (ended on its budget while still improving).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

from factlab.models.ic_model import ICModelConfig, ICRecallModel
from factlab.pipelines.ic_memories import Setup
from factlab.probes.ic_recall import isotropic_qk, recall_metrics, role_masses, swapped_qk
from factlab.probes.metrics import forward_chunks
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.ic_recall import enumerate_triplets, sample_ic_recall, split_subjects
from factlab.train.loop import EpochBatches, TrainConfig, train

PATTERN_HOOK = "blocks.0.attn.hook_pattern"


@dataclasses.dataclass
class Protocol:
    """How one fine-tuning run is fed, stopped and tested (shared by every IC experiment)."""

    heldout_frac: float = 0.2  # subjects kept out of every train and validation prompt
    n_val: int = 1024  # validation prompts (fine-tuning subjects only)
    heldout_contexts: int = 4  # random contexts per held-out triplet in the test
    epochs: int = 30  # step budget: max(epochs * batches per epoch, min_steps)
    min_steps: int = 4096
    max_steps: int = 1 << 20  # cap for huge N (a starved run is reported, never judged)
    patience: int = 8  # evaluations without a validation-loss gain before stopping
    min_delta: float = 1e-3  # smaller gains (nats, or accuracy) count as converged
    # what early stopping, the best checkpoint and the lr choice read on validation: "loss",
    # or "acc" where the claim is an accuracy target and the loss is not monotone in it
    monitor: Literal["loss", "acc"] = "loss"
    eval_chunk: int = 4096  # prompts per evaluation forward pass


@dataclasses.dataclass
class Splits:
    """The three kinds of prompts of one (setup, seed, N) on the run's device."""

    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    test_seen: dict[str, torch.Tensor]  # all triplets of the fine-tuning subjects
    test_heldout: dict[str, torch.Tensor] | None  # all triplets of held-out subjects, repeated
    n_heldout_subjects: int


def make_splits(setup: Setup, proto: Protocol, n_prompts: int, seed: int,
                device: torch.device) -> Splits:
    """Held-out subjects, the N train prompts, validation and test prompts (seeded by `seed`)."""
    task, kb = setup.task, setup.kb
    sgen = make_generator(derive_seed(seed, "heldout", task.n_subjects))
    pool, held = split_subjects(task.n_subjects, proto.heldout_frac, sgen)
    if len(pool) < task.k + 1:  # too few subjects to hold any out: keep them all in
        pool, held = torch.arange(task.n_subjects), torch.zeros(0, dtype=torch.long)
    tgen = make_generator(derive_seed(seed, "train", task.n_subjects, n_prompts))
    train_set = sample_ic_recall(kb, task, n_prompts, tgen, pool=pool)
    vgen = make_generator(derive_seed(seed, "val", task.n_subjects))
    val = sample_ic_recall(kb, task, proto.n_val, vgen, pool=pool)
    egen = make_generator(derive_seed(seed, "test", task.n_subjects))
    s, r = enumerate_triplets(pool, kb.n_relations)
    seen = sample_ic_recall(kb, task, 0, egen, s, r, pool=pool)
    heldout = None
    if len(held):
        s, r = enumerate_triplets(held, kb.n_relations, proto.heldout_contexts)
        heldout = sample_ic_recall(kb, task, 0, egen, s, r)  # contexts from all subjects

    def to(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in b.items()}

    return Splits(to(train_set), to(val), to(seen), None if heldout is None else to(heldout),
                  len(held))


def validation_rank(m: dict[str, float], monitor: str) -> tuple[float, float]:
    """Sort key of a validation record, lower is better: the monitored metric, then the other."""
    if monitor == "acc":
        return -m["acc"], m["loss"]
    return m["loss"], -m["acc"]


def step_budget(proto: Protocol, n_prompts: int, batch_size: int) -> int:
    """max(epochs over the N prompts, min_steps), capped at max_steps."""
    per_epoch = math.ceil(n_prompts / min(batch_size, n_prompts))
    return min(proto.max_steps, max(proto.epochs * per_epoch, proto.min_steps))


@dataclasses.dataclass
class FineTuneResult:
    """One run: test numbers at the best-validation checkpoint, and how training ended."""

    test: dict[str, Any]
    best_val: dict[str, float]
    history: list[dict[str, float]]
    steps: int
    stop_reason: str
    still_improving: bool
    lr: float
    model: ICRecallModel | None = None  # at its best-validation checkpoint
    state: list[torch.Tensor] | None = None  # that checkpoint (the control's shared table too)


def _evaluate(model: ICRecallModel, batch: dict[str, torch.Tensor], setup: Setup, chunk: int
              ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Recall metrics and role masses on `batch`; also returns logits and attention rows."""
    logits, cache = forward_chunks(lambda t: model.run_with_cache(t, PATTERN_HOOK),
                                   batch["tokens"], chunk)
    pattern = cache[PATTERN_HOOK][:, 0, 0]
    m = recall_metrics(logits, batch["answer"], batch["subjects"][:, -1], setup.kb,
                       setup.task.answer_sets == "disjoint")
    m.update(role_masses(pattern, setup.task.k))
    return m, logits, pattern


def fine_tune(setup: Setup, model_cfg: ICModelConfig, tcfg: TrainConfig, proto: Protocol,
              splits: Splits, lr: float, seed: int, device: torch.device,
              on_eval: Callable[[int, dict, ICRecallModel], None] | None = None,
              learn_values: bool = False, track_null: bool = False,
              show_progress: bool = False, test: bool = True) -> FineTuneResult:
    """Fine-tune on `splits.train`; stop on validation; test once at the best checkpoint.

    `test=False` skips the test (left to the caller, e.g. after an lr is chosen: `retest`).
    `track_null` also measures, at every evaluation, the null model (W_QK projected on c I).
    Test metrics: acc_all (every triplet, held-out ones included), acc_seen (fine-tuning
    subjects), acc_heldout with its hit/trial counts, role masses of the model and of its null.
    """
    if learn_values:  # a fresh, empty value table for every control run
        setup.memory.values.data.zero_()
    model = ICRecallModel(model_cfg, setup.W_E, setup.W_U, setup.memory,
                          make_generator(derive_seed(seed, "init")),
                          n_pos=setup.task.seq_len).to(device)
    n = len(splits.train["answer"])
    batches = EpochBatches(n, tcfg.batch_size, make_generator(derive_seed(seed, "order", n)))
    tokens, answers = splits.train["tokens"], splits.train["answer"]

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step).to(device)
        return F.cross_entropy(model(tokens[idx]), answers[idx])

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"rank": (math.inf, math.inf)}
    val_rank = functools.partial(validation_rank, monitor=proto.monitor)

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        m, _, _ = _evaluate(model, splits.val, setup, proto.eval_chunk)
        if track_null:
            with swapped_qk(model, isotropic_qk(model.blocks[0].attn.W_QK.detach())):
                null, _, _ = _evaluate(model, splits.val, setup, proto.eval_chunk)
            m.update({f"null_{k}": null[k] for k in ("acc", "alpha_q", "A_S", "A_A", "asym",
                                                     "spread")})
        return m

    def log_eval(step: int, m: dict) -> None:
        history.append(dict(m, step=step))
        rank = val_rank(m)
        if rank < best["rank"]:  # best checkpoint on the monitored validation metric
            best.update(rank=rank, metrics=dict(m, step=step),
                        state=[p.detach().clone() for p in model.trainable()])
        if on_eval is not None:
            on_eval(step, m, model)

    run_cfg = dataclasses.replace(
        tcfg, lr=lr, steps=step_budget(proto, n, tcfg.batch_size), target_acc=0.0,
        patience=proto.patience, monitor=proto.monitor,
        monitor_mode="min" if proto.monitor == "loss" else "max", min_delta=proto.min_delta)
    result = train(model.trainable(), loss_fn, run_cfg, eval_fn, log_eval,
                   show_progress=show_progress, desc=f"N={n} lr={lr:g}")
    with torch.no_grad():
        for p, saved in zip(model.trainable(), best["state"]):
            p.copy_(saved)
    return FineTuneResult(test_metrics(model, setup, splits, proto) if test else {},
                          best["metrics"], history, result.steps, result.stop_reason,
                          result.still_improving, lr, model, best["state"])


def retest(res: FineTuneResult, setup: Setup, splits: Splits, proto: Protocol,
           null: bool = True) -> FineTuneResult:
    """Restore `res`'s best checkpoint into its model (the control's value table is shared by
    every run of a grid, so a later run overwrote it) and fill in its test numbers."""
    assert res.model is not None and res.state is not None
    with torch.no_grad():
        for p, saved in zip(res.model.trainable(), res.state):
            p.copy_(saved)
    res.test = test_metrics(res.model, setup, splits, proto, null)
    return res


@torch.no_grad()
def test_metrics(model: ICRecallModel, setup: Setup, splits: Splits, proto: Protocol,
                 null: bool = True) -> dict[str, Any]:
    """The test numbers (see `fine_tune`), with `null` the null's pattern on the same prompts."""
    seen, lg_seen, _ = _evaluate(model, splits.test_seen, setup, proto.eval_chunk)
    hits_seen = int((lg_seen.argmax(-1) == splits.test_seen["answer"]).sum())
    out: dict[str, Any] = {f"seen_{k}": v for k, v in seen.items()}
    out.update(acc_seen=seen["acc"], n_seen=len(lg_seen), hits_seen=hits_seen)
    hits, trials = hits_seen, len(lg_seen)
    out.update(acc_heldout=float("nan"), hits_heldout=0, n_heldout=0,
               n_heldout_subjects=splits.n_heldout_subjects)
    if splits.test_heldout is not None:
        held, lg, _ = _evaluate(model, splits.test_heldout, setup, proto.eval_chunk)
        h = int((lg.argmax(-1) == splits.test_heldout["answer"]).sum())
        out.update(acc_heldout=held["acc"], hits_heldout=h, n_heldout=len(lg),
                   heldout_loss=held["loss"])
        # all triplets: the held-out ones counted once per context
        hits, trials = hits + h, trials + len(lg)
    out["acc_all"] = hits / trials
    for k in ("alpha_q", "A_S", "A_A", "A_other", "asym", "spread"):
        out[k] = seen[k]
    if not null:
        return out
    with swapped_qk(model, isotropic_qk(model.blocks[0].attn.W_QK.detach())):
        base, _, _ = _evaluate(model, splits.test_seen, setup, proto.eval_chunk)
    out.update({f"null_{k}": base[k] for k in ("acc", "alpha_q", "A_S", "A_A", "asym",
                                               "spread")})
    return out


def probe_n(setup: Setup, model_cfg: ICModelConfig, tcfg: TrainConfig, proto: Protocol,
            n_prompts: int, lr_grid: tuple[float, ...], seed: int, device: torch.device,
            target: float, metric: str = "acc_seen", learn_values: bool = False
            ) -> tuple[str, FineTuneResult]:
    """One N_min probe: every lr of the grid at N, the lr with the best validation record kept
    and only that run tested (without the null pattern, which the sweep does not read).

    Outcome: "success" if its test `metric` >= target; "inconclusive" if not and it ended on
    its budget while still improving on validation; "fail" otherwise (converged below target).
    """
    splits = make_splits(setup, proto, n_prompts, seed, device)
    runs = []
    for lr in lr_grid:
        res = fine_tune(setup, model_cfg, tcfg, proto, splits, lr, seed, device,
                        learn_values=learn_values, test=False)
        runs.append(res)
    best = retest(min(runs, key=lambda r: validation_rank(r.best_val, proto.monitor)), setup,
                  splits, proto, null=False)
    for r in runs:  # free the grid's models
        r.model = r.state = None
    if best.test[metric] >= target:
        return "success", best
    return ("inconclusive" if best.still_improving else "fail"), best
