"""Training and greedy decoding for any local HF causal LM, fitted to its context window.

- `encode_pairs` builds right-padded (prompt, answer) batches with the loss on the answer (and
  on the prompt for plain language modelling); a sequence longer than the model's context window
  is refused with one line naming the limit, never passed on to crash in the position embedding.
- `generate` left-truncates prompts (the oldest few-shot demonstrations go first) to leave room
  for the new tokens, and stops a batch once every row has finished its first non-empty line:
  the PopQA prediction is that line, so later tokens could not change the score.
- `lora_wrap` puts peft LoRA on the attention projections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from factlab.config import ConfigError
from factlab.models.hf import HFModel, context_window
from factlab.tasks.popqa import first_line
from factlab.train.loop import EpochBatches, TrainConfig, train


@dataclasses.dataclass
class Batch:
    """Right-padded token ids, attention mask and labels (-100 where no loss)."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor


def encode_pairs(hf: HFModel, pairs: Sequence[tuple[str, str]], loss_on_prompt: bool,
                 sep: str = " ", end: str = "") -> Batch:
    """Encode (prompt, answer) pairs as prompt + sep + answer + end + EOS, right-padded.

    The loss covers the answer and EOS, and the prompt too when `loss_on_prompt` (plain
    language modelling). Prompt and answer are tokenised apart, so the answer's tokens are the
    same in every prompt. A tokenizer without EOS gets none appended.
    """
    tok = hf.tokenizer
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    seqs, labs = [], []
    for prompt, answer in pairs:
        p = tok(prompt, add_special_tokens=True)["input_ids"]
        a = tok(sep + answer + end, add_special_tokens=False)["input_ids"] + eos
        seqs.append(p + a)
        labs.append((p if loss_on_prompt else [-100] * len(p)) + a)
    width = max(len(s) for s in seqs)
    limit = context_window(hf.model)
    if limit is not None and width > limit:
        longest = max(range(len(seqs)), key=lambda i: len(seqs[i]))
        raise ConfigError(f"model: a training sequence has {width} tokens but the model's "
                          f"context window is {limit} (first words: "
                          f"{pairs[longest][0][:40]!r}); use a model with a longer window")
    pad = tok.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labs)):
        ids[i, :len(s)] = torch.tensor(s)
        labels[i, :len(l)] = torch.tensor(l)
        mask[i, :len(s)] = 1
    return Batch(ids, mask, labels)


def train_lm(model: torch.nn.Module, batch: Batch, tcfg: TrainConfig, gen: torch.Generator,
             device: torch.device, on_eval: Callable[[int, dict], None] | None = None,
             show_progress: bool = False, desc: str = "train",
             eval_fn: Callable[[], dict[str, float]] | None = None) -> dict[str, float]:
    """Minimise the causal-LM loss on `batch`, in seeded epochs of shuffled minibatches.

    With `eval_fn` returning {"acc": ...} and `tcfg.target_acc`, training stops once the
    target is reached. Returns the last evaluation plus "steps" (optimizer steps taken).
    """
    batches = EpochBatches(batch.ids.shape[0], tcfg.batch_size, gen)

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        ids, mask, labels = (t[idx].to(device) for t in (batch.ids, batch.mask, batch.labels))
        width = int(mask.sum(-1).max())  # drop columns that are padding in the whole batch
        return model(input_ids=ids[:, :width], attention_mask=mask[:, :width],
                     labels=labels[:, :width], use_cache=False).loss

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    result = train(params, loss_fn, tcfg, eval_fn, on_eval, show_progress=show_progress,
                   desc=desc)
    model.eval()
    result.raise_if_diverged()
    return {**result.last_eval, "steps": float(result.steps)}


def _line_done(tok: Any, prompt_len: int) -> Any:
    """A stopping criterion: every row has a newline after some non-blank generated text."""
    from transformers import StoppingCriteria

    class FirstLineDone(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            texts = tok.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = ["\n" in t.lstrip() for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return FirstLineDone()


@torch.no_grad()
def generate(model: torch.nn.Module, hf: HFModel, prompts: Sequence[str], max_new_tokens: int,
             batch_size: int = 32) -> list[str]:
    """Greedy continuations of `prompts` (left-padded batches); each cut to its first line."""
    tok = hf.tokenizer
    limit = context_window(hf.model)
    if limit is not None and limit <= max_new_tokens:
        raise ConfigError(f"max_new_tokens: {max_new_tokens} leaves no room for a prompt in "
                          f"the model's context window of {limit} tokens")
    room = None if limit is None else limit - max_new_tokens
    out: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        enc = tok(chunk, return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if room is not None and ids.shape[1] > room:  # left padding: keep the right edge
            ids, mask = ids[:, -room:], mask[:, -room:]
        ids, mask = ids.to(hf.device), mask.to(hf.device)
        gen_ids = model.generate(input_ids=ids, attention_mask=mask,
                                 max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 stopping_criteria=[_line_done(tok, ids.shape[1])])
        texts = tok.batch_decode(gen_ids[:, ids.shape[1]:], skip_special_tokens=True)
        out += [first_line(t) for t in texts]
    return out


def lora_wrap(model: torch.nn.Module, rank: int, target_modules: Sequence[str]) -> torch.nn.Module:
    """peft LoRA (alpha = rank, no dropout) on `target_modules`; GPT-2's Conv1D gets fan_in_fan_out."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    targets = list(target_modules) or default_targets(model)
    hits = [m for n, m in model.named_modules() if n.split(".")[-1] in targets]
    if not hits:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules()
                        if isinstance(m, (torch.nn.Linear, Conv1D))})
        raise ConfigError(f"target_modules: none of {targets} in the model; "
                          f"its linear layers are {', '.join(names)}")
    conv = any(isinstance(m, Conv1D) for m in hits)
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets,
                        fan_in_fan_out=conv, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def default_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections: c_attn for GPT-2 (a Conv1D), q_proj and v_proj for Llama."""
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    if "c_attn" in names:
        return ["c_attn"]
    if {"q_proj", "v_proj"} <= names:
        return ["q_proj", "v_proj"]
    return ["query", "value"] if {"query", "value"} <= names else ["c_attn"]
