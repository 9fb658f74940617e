"""The bioS pipeline (Physics 3.1, arXiv 2309.14316) for one seed and one augmentation.

Pre-train a fresh GPT on the biographies of all people, Q&A fine-tune on P_train, and score
P_test by exact match of the whole answer (greedy = every answer token is the teacher-forced
argmax, since answers are short and the prompt fixes the attribute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from factlab.models.gpt import GPT, GPTConfig
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.bios import ATTRIBUTES, PAD, Bios, pad_batch, qa_batch
from factlab.train.loop import EpochBatches, TrainConfig, train

Log = Callable[..., None]  # log(step, split, **fields)


@torch.no_grad()
def qa_exact(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             chunk: int = 512) -> torch.Tensor:
    """Per item: every answer token is the argmax (= greedy decoding reproduces the answer)."""
    model.eval()
    out = []
    for s in range(0, x.shape[0], chunk):
        xb, yb = x[s:s + chunk].to(device), y[s:s + chunk].to(device)
        pred = model(xb).argmax(-1)
        out.append(((pred == yb) | (yb == -100)).all(-1).cpu())
    return torch.cat(out)


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions (-100 = no loss)."""
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)


def train_seq(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tcfg: TrainConfig,
              seed: int, device: torch.device, on_eval: Callable[[int, dict], None],
              eval_fn: Callable[[], dict[str, float]] | None = None,
              show_progress: bool = False, desc: str = "train") -> None:
    """Seeded shuffled minibatch epochs over (x, y) with the shared training loop."""
    batches = EpochBatches(x.shape[0], tcfg.batch_size, make_generator(seed))

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        xb, yb = x[idx], y[idx]
        width = int((yb != -100).nonzero()[:, 1].max()) + 1  # trim all-padding columns
        model.train()
        return lm_loss(model, xb[:, :width].to(device), yb[:, :width].to(device))

    result = train(model.parameters(), loss_fn, tcfg, eval_fn, on_eval,
                   show_progress=show_progress, desc=desc)
    result.raise_if_diverged()


@dataclasses.dataclass
class BiosSplit:
    """The population, the P_train/P_test people and their Q&A batches."""

    bios: Bios
    test: list[int]
    train: list[int]
    qa_train: tuple[torch.Tensor, torch.Tensor]
    qa_test: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, attribute index


def make_bios_split(bios: Bios, test_frac: float, seed: int) -> BiosSplit:
    """Split people 50/50 (seeded) and encode both Q&A sets."""
    n = bios.cfg.n_people
    perm = torch.randperm(n, generator=make_generator(derive_seed(seed, "split"))).tolist()
    n_test = max(1, round(test_frac * n))
    test, train_people = sorted(perm[:n_test]), sorted(perm[n_test:])
    pad = bios.stoi[PAD]
    xq_tr, yq_tr, _ = qa_batch(bios.qa(train_people), pad)
    return BiosSplit(bios, test, train_people, (xq_tr, yq_tr), qa_batch(bios.qa(test), pad))


def run_augment(split: BiosSplit, aug: str, model_cfg: GPTConfig, pretrain: TrainConfig,
                qa: TrainConfig, seed: int, device: torch.device, log: Log,
                show_progress: bool = False) -> dict[str, Any]:
    """Pre-train a fresh GPT on `aug` biographies, fine-tune on P_train Q&A, score P_test."""
    bios = split.bios
    n = bios.cfg.n_people
    entries = bios.entries(range(n), aug, make_generator(derive_seed(seed, "entries", aug)))
    x, y = pad_batch(entries, None, bios.stoi[PAD])
    xq_tr, yq_tr = split.qa_train
    xq_te, yq_te, att_te = split.qa_test
    mcfg = dataclasses.replace(model_cfg, d_vocab=len(bios.vocab),
                               n_ctx=max(model_cfg.n_ctx, x.shape[1], xq_tr.shape[1]))
    model = GPT(mcfg, make_generator(derive_seed(seed, "init", aug))).to(device)
    first_x, first_y = x[: min(len(entries), 512)], y[: min(len(entries), 512)]

    def bio_eval() -> dict[str, float]:
        with torch.no_grad():
            model.eval()
            hit = (model(first_x.to(device)).argmax(-1).cpu() == first_y) | (first_y == -100)
        return {"bio_token_acc": float(hit[first_y != -100].float().mean())}

    def logger(split_name: str) -> Callable[[int, dict], None]:
        return lambda step, m: log(step, split_name, seed=seed, augment=aug, **m) if m else None

    train_seq(model, x, y, pretrain, derive_seed(seed, "pt", aug), device, logger("pretrain"),
              bio_eval, show_progress, f"pretrain {aug}")
    pre_test = float(qa_exact(model, xq_te, yq_te, device).float().mean())
    train_seq(model, xq_tr, yq_tr, qa, derive_seed(seed, "qa", aug), device, logger("qa_train"),
              None, show_progress, f"qa {aug}")
    ok_tr = qa_exact(model, xq_tr, yq_tr, device)
    ok_te = qa_exact(model, xq_te, yq_te, device)
    row = {"n_entries": len(entries), "bio_token_acc": bio_eval()["bio_token_acc"],
           "qa_test_before_ft": pre_test, "qa_train_acc": float(ok_tr.float().mean()),
           "qa_test_acc": float(ok_te.float().mean()), "n_test_items": int(ok_te.numel())}
    for k, name in enumerate(ATTRIBUTES):
        row[f"qa_test_acc_{name}"] = float(ok_te[att_te == k].float().mean())
    log(qa.steps, "result", seed=seed, augment=aug, **row)
    return row
