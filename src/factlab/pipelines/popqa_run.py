"""One seed of the real-model extraction protocol (steps in `factlab.pipelines.popqa`).

`run_protocol` loads the model afresh, probes what it knows, continues pre-training on K
statements per fact of the P_train and P_test subjects, then fine-tunes on covered Q&A once per
fine-tuning mode from the same pre-trained weights (LoRA first: peft leaves the base weights
untouched and `unload` restores the plain model, so full fine-tuning starts from the same
state), and measures every group. It returns plain numbers; the experiment judges them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from factlab.config import require
from factlab.models.hf import HFModel, load_causal_lm
from factlab.pipelines import popqa as P
from factlab.pipelines.hf_lm import Batch, encode_pairs, lora_wrap, train_lm
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.popqa import PopQARow, qa_prompt
from factlab.train.loop import TrainConfig

Log = Callable[..., None]  # log(step, split, **fields)


@dataclasses.dataclass
class ProtocolSpec:
    """Everything one seed of the protocol needs (the experiment config, flattened)."""

    model: str
    rows: list[PopQARow]  # the protocol's facts
    probe_rows: list[PopQARow]  # the real facts probed before training
    finetune: tuple[str, ...]
    rank: int
    target_modules: tuple[str, ...]
    coverage: float
    K: int
    test_frac: float
    control_frac: float
    fewshot_k: int
    max_new_tokens: int
    n_pop_bins: int
    drop_known: bool
    pretrain: TrainConfig
    qa: TrainConfig
    max_eval_train: int = 64  # P_train Q&A rows scored after fine-tuning (a fit check)
    lora_lr: float = 0.0  # LoRA's Q&A learning rate; 0 = qa.lr


@torch.no_grad()
def answer_token_acc(model: torch.nn.Module, batch: Batch, device: torch.device) -> float:
    """Fraction of rows whose every labelled token is the teacher-forced argmax."""
    model.eval()
    ids, mask, labels = (t.to(device) for t in (batch.ids, batch.mask, batch.labels))
    pred = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.argmax(-1)
    target = labels[:, 1:]
    ok = (pred[:, :-1] == target) | (target == -100)
    model.train()
    return float(ok.all(-1).float().mean())


def _subset(batch: Batch, n: int) -> Batch:
    return Batch(batch.ids[:n], batch.mask[:n], batch.labels[:n])


def _qa(net: torch.nn.Module, hf: HFModel, rows: Sequence[PopQARow], n_new: int) -> list[bool]:
    return P.evaluate_qa(net, hf, rows, P.qa_prompts(rows), n_new)["correct"] if rows else []


def _by_cover(values: Sequence[bool], rows: Sequence[PopQARow], covered: frozenset[int],
              prefix: str) -> dict[str, Any]:
    cov = [v for v, r in zip(values, rows) if r.prop_id in covered]
    unc = [v for v, r in zip(values, rows) if r.prop_id not in covered]
    return {f"{prefix}_covered": P.mean(cov), f"{prefix}_uncovered": P.mean(unc),
            f"n_{prefix}_covered": len(cov), f"n_{prefix}_uncovered": len(unc)}


def run_probe(hf: HFModel, spec: ProtocolSpec, seed: int, log: Log) -> dict[str, Any]:
    """The knowledge probe on `spec.probe_rows`, logged per relation and popularity bin."""
    rows = spec.probe_rows
    if not rows:
        return {}
    res = P.knowledge_probe(hf.model, hf, rows, rows, spec.fewshot_k,
                            derive_seed(seed, "probe"), spec.max_new_tokens)
    values = {"zero_shot": res["zero"], **({"few_shot": res["few"]} if "few" in res else {})}
    for rec in P.grouped_accuracy(rows, values, spec.n_pop_bins):
        log(0, "probe", seed=seed, **rec)
    out = {f"probe_{k}": P.mean(v) for k, v in values.items()}
    out["n_probe"] = len(rows)
    examples = [{"q": r.question, "gold": r.obj, "zero": z} for r, z in
                zip(rows[:8], res["zero_pred"][:8])]
    log(0, "probe_examples", seed=seed, examples=examples)
    return out


def run_protocol(spec: ProtocolSpec, seed: int, device: torch.device, log: Log,
                 show_progress: bool = False) -> dict[str, Any]:
    """One seed: probe, continued pre-training, Q&A fine-tuning per mode, held-out tests."""
    hf = load_causal_lm(spec.model, device=device)
    net = hf.model
    common: dict[str, Any] = {"seed": seed, **run_probe(hf, spec, seed, log)}
    rows = list(spec.rows)
    if spec.drop_known:  # keep only facts the model did not know (zero- nor few-shot)
        known = P.knowledge_probe(net, hf, rows, rows, spec.fewshot_k,
                                  derive_seed(seed, "known"), spec.max_new_tokens)
        few = known.get("few", [False] * len(rows))
        keep = [r for r, z, f in zip(rows, known["zero"], few) if not (z or f)]
        common.update(n_known_dropped=len(rows) - len(keep))
        rows = keep
    require(len({r.subj for r in rows}) >= 3, "data",
            f"{len(rows)} facts left to train on; the protocol needs >= 3 subjects")
    split = P.make_split(rows, spec.test_frac, spec.coverage,
                         make_generator(derive_seed(seed, "split")), spec.control_frac)
    train_rows, test_rows = [rows[i] for i in split.train], [rows[i] for i in split.test]
    control_rows = [rows[i] for i in split.control]
    ft_rows = [r for r in train_rows if r.prop_id in split.covered]
    common.update(n_rows=len(rows), n_test=len(test_rows), n_control=len(control_rows),
                  n_finetune=len(ft_rows), covered=sorted(split.covered))
    common["base_test"] = P.mean(_qa(net, hf, test_rows, spec.max_new_tokens))
    log(0, "eval", seed=seed, stage="base", acc=common["base_test"])

    if spec.K > 0:  # continued pre-training on K statements per fact, control left out
        seen = split.train + split.test
        J = P.fact_templates(len(rows), spec.K, make_generator(derive_seed(seed, "J")))
        corpus = P.make_corpus([rows[i] for i in seen], J[seen])
        batch = encode_pairs(hf, corpus, loss_on_prompt=True, end=".")
        probe_batch = encode_pairs(hf, [P.declarative(rows[i], J[i, 0].item())
                                        for i in split.test[:64]], loss_on_prompt=False, end=".")
        stats = train_lm(net, batch, spec.pretrain, make_generator(derive_seed(seed, "pt")),
                         device, _logger(log, seed, "pretrain"), show_progress, "pretrain",
                         eval_fn=lambda: {"acc": answer_token_acc(net, probe_batch, device)})
        common["pretrain_steps"] = stats["steps"]
        for name, idx in (("test", split.test), ("control", split.control)):
            prefixes = [P.declarative(rows[i], J[i, 0].item())[0] for i in idx]
            grp = [rows[i] for i in idx]
            ok = P.evaluate_qa(net, hf, grp, prefixes, spec.max_new_tokens)["correct"]
            common[f"retention_{name}"] = P.mean(ok)
        log(spec.pretrain.steps, "eval", seed=seed, stage="retention",
            acc=common["retention_test"], acc_control=common["retention_control"])
    common.update(_by_cover(_qa(net, hf, test_rows, spec.max_new_tokens), test_rows,
                            split.covered, "before_test"))

    modes: dict[str, dict[str, Any]] = {}
    for mode in sorted(spec.finetune, key=lambda m: m != "lora"):  # LoRA first (see above)
        m: dict[str, Any] = {}
        tuned = lora_wrap(net, spec.rank, spec.target_modules) if mode == "lora" else net
        m["trainable_params"] = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
        if ft_rows:
            qa_batch = encode_pairs(hf, [(qa_prompt(r.question), r.obj) for r in ft_rows],
                                    loss_on_prompt=False)
            tcfg = (dataclasses.replace(spec.qa, lr=spec.lora_lr)
                    if mode == "lora" and spec.lora_lr else spec.qa)
            stats = train_lm(tuned, qa_batch, tcfg, make_generator(derive_seed(seed, "qa")),
                             device, _logger(log, seed, f"qa_{mode}"), show_progress,
                             f"qa {mode}")
            m["qa_steps"] = stats["steps"]
            m["train_qa_acc"] = P.mean(_qa(tuned, hf, ft_rows[:spec.max_eval_train],
                                           spec.max_new_tokens))
        test_ok = _qa(tuned, hf, test_rows, spec.max_new_tokens)
        control_ok = _qa(tuned, hf, control_rows, spec.max_new_tokens)
        m.update(_by_cover(test_ok, test_rows, split.covered, "test"))
        m.update(_by_cover(control_ok, control_rows, split.covered, "control"))
        if test_rows:
            for rec in P.grouped_accuracy(test_rows, {"acc": test_ok}, spec.n_pop_bins):
                log(0, "heldout", seed=seed, finetune=mode, **rec)
        log(spec.qa.steps, "eval", seed=seed, stage=f"after_{mode}", **m)
        modes[mode] = m
        if mode == "lora":
            net = tuned.unload()  # the plain model, base weights as pre-trained
            net.requires_grad_(True)  # peft froze the base for LoRA
            hf.model = net
    return {"common": common, "modes": modes}


def _logger(log: Log, seed: int, split: str) -> Callable[[int, dict], None]:
    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if metrics:
            log(step, split, seed=seed, **metrics)
    return on_eval
