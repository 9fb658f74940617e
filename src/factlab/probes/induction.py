"""Probes of the trigger task and the two-layer model (specs/knowledge_hijack.md §5-§6).

Metric keys keep Birth's 0-based layer names: `wk0` is W_K¹, `wk1`/`wo1` belong to layer 2,
`ff1` to the final FFN. Data probes take (model, x, y, outs); memory probes read weights only.
Attention patterns are read through the hook points `blocks.{l}.attn.hook_pattern`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from factlab.models.two_layer import TwoLayerModel

PATHS = ("direct", "layer1", "induction", "ffn")


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of `values` over `mask`; NaN-free: -1 when the mask is empty."""
    n = int(mask.sum())
    return float(values[mask].float().mean()) if n else -1.0


@torch.no_grad()
def forward_with_patterns(model: TwoLayerModel, x: torch.Tensor):
    """(logits [B,T,N], A¹ pattern [B,T,T], last-layer pattern [B,T,T])."""
    last = len(model.blocks) - 1
    names = ["blocks.0.attn.hook_pattern", f"blocks.{last}.attn.hook_pattern"]
    logits, cache = model.run_with_cache(x, names_filter=names)
    return logits, cache[names[0]][:, 0], cache[names[1]][:, 0]


def loss_metrics(logits: torch.Tensor, y: torch.Tensor, outs: torch.Tensor) -> dict[str, float]:
    """Losses on bigram (outs = 0) and in-context (outs >= 2) positions, and accuracies."""
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    correct = logits.argmax(-1) == y
    first10 = torch.zeros_like(outs, dtype=torch.bool)
    first10[:, :10] = True
    return {
        "loss_all": float(ce.mean()),
        "loss_bigram": _mean(ce, outs == 0),
        "loss_head": _mean(ce, outs >= 2),
        "loss_first": _mean(ce, outs == 1),
        "acc_tot": _mean(correct, outs >= 1),
        "acc_start": _mean(correct, (outs >= 1) & first10),
        "acc_end": _mean(correct, outs >= 2),
        "acc_bigram": _mean(correct, outs == 0),
    }


def attention_metrics(A1: torch.Tensor, A2: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      outs: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Birth's attention probes (spec §5) from the layer-1 and layer-2 patterns [B, T, T]."""
    B, T = x.shape
    rows = torch.arange(B, device=x.device)[:, None]
    pos = torch.arange(T, device=x.device)[None, :].expand(B, T)
    top1 = A1.argmax(-1)  # [B, T]: the key each query attends most in layer 1
    # previous-token head fires at the output token: argmax_s A¹[i+1, s] = i
    prev_ok = torch.zeros_like(outs, dtype=torch.bool)
    prev_ok[:, :-1] = top1[:, 1:] == pos[:, :-1]
    valid = torch.zeros_like(prev_ok)
    valid[:, :-1] = True
    a_star = A2.argmax(-1)  # [B, T]
    x_prev = x[rows, (a_star - 1).clamp_min(0)]
    score2 = (x_prev == x) & (a_star > 0)
    next_ok = x[rows, a_star] == y
    pred_ok = x[rows, a_star] == pred
    cond_ok = top1[rows, a_star] == a_star - 1
    head = outs >= 2
    repeat = head & (x == y)
    return {
        "score_acc": _mean(prev_ok, (outs >= 1) & valid),
        "score_start_acc": _mean(prev_ok, (outs == 1) & valid),
        "score2_acc": _mean(score2, head),
        "score2_next_acc": _mean(next_ok, head),
        "pred_attended_acc": _mean(pred_ok, head),
        "score_cond_acc": _mean(cond_ok, head),
        "score1_repeat_val_acc": _mean(cond_ok, repeat),
        "score2_repeat_val_acc": _mean(score2, repeat),
        "repeat_frac": _mean(x == y, outs >= 1),
    }


def prev_token_acc(A1: torch.Tensor, start: int = 1) -> float:
    """Mean over queries t >= max(start, 1) of 1[argmax_s A¹[t, s] = t - 1]."""
    T = A1.shape[-1]
    t = torch.arange(max(start, 1), T, device=A1.device)
    if len(t) == 0:
        return -1.0
    return float((A1[:, t].argmax(-1) == (t - 1)).float().mean())


@torch.no_grad()
def data_metrics(model: TwoLayerModel, x: torch.Tensor, y: torch.Tensor,
                 outs: torch.Tensor) -> dict[str, float]:
    """Losses, accuracies and attention probes of one batch."""
    logits, A1, A2 = forward_with_patterns(model, x)
    out = loss_metrics(logits, y, outs)
    out.update(attention_metrics(A1, A2, x, y, outs, logits.argmax(-1)))
    return out


@torch.no_grad()
def memory_metrics(model: TwoLayerModel, bigram: torch.Tensor,
                   triggers: torch.Tensor | None = None, T: int = 256) -> dict[str, float]:
    """wk0/wk0_64, wk1, wo1 and ff1 probes from the weights alone (spec §5).

    `triggers` are the fixed triggers (wk1 over them, ff1 over the other tokens); None means
    random triggers (wk1 and ff1 over all tokens). For relative schemes wk0 is the rel_bias
    analogue 1[argmax_δ b[δ] = 1], or -1 (rope1: see `prev_token_acc` on data).
    """
    E, W_U = model.W_E, model.W_U
    N = E.shape[0]
    blocks = model.blocks
    out: dict[str, float] = {}
    a1 = blocks[0].attn
    if model.absolute:
        for key, n in (("wk0_acc", min(T, model.W_pos.shape[0])), ("wk0_64_acc", 64)):
            P = model.W_pos[:min(n, model.W_pos.shape[0])]
            S = P @ a1.W_K @ P.T  # S[t, s] = P[t]ᵀ W_K¹ P[s]
            best = S[1:, :-1].argmax(-1)  # t in [1, n-1], s in [0, n-2]
            out[key] = float((best == torch.arange(len(best), device=S.device)).float().mean())
    elif a1.rel is not None:
        out["wk0_acc"] = float(a1.rel.b.argmax() == 1)
        out["wk0_64_acc"] = out["wk0_acc"]
    else:
        out["wk0_acc"] = out["wk0_64_acc"] = -1.0
    keys = torch.arange(N, device=E.device) if triggers is None else triggers.to(E.device)
    if len(blocks) == 2:
        a2 = blocks[1].attn
        w1 = E[keys] @ a1.W_V.T @ a1.W_O.T  # w_1(k') rows
        S = E[keys] @ a2.W_K @ w1.T  # [k, k'] = E[k]ᵀ W_K² W_O¹W_V¹ E[k']
        out["wk1_acc"] = float((S.argmax(-1) == torch.arange(len(keys), device=S.device))
                               .float().mean())
    else:
        out["wk1_acc"] = -1.0
    last = blocks[-1].attn
    L = E @ last.W_V.T @ last.W_O.T @ W_U  # [i, j] = (W_U W_O² W_V² E[i])_j
    out["wo1_acc"] = float((L.argmax(-1) == torch.arange(N, device=L.device)).float().mean())
    ffn = blocks[-1].mlp
    if ffn is None:
        out["ff1_loss"] = -1.0
    else:
        rows = torch.ones(N, dtype=torch.bool, device=E.device)
        if triggers is not None:
            rows[keys] = False
        logq = (ffn(E[rows]) @ W_U).log_softmax(-1)
        p = bigram.to(E)[rows]
        kl = (p * (p.clamp_min(1e-30).log() - logq)).sum(-1)
        out["ff1_loss"] = float(kl.mean())
    return out


def norm_metrics(model: TwoLayerModel) -> dict[str, float]:
    """norm_<param> and gradnorm_<param> of every trainable parameter (dots become _)."""
    out: dict[str, float] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = name.replace(".", "_")
        out[f"norm_{key}"] = float(p.detach().norm())
        out[f"gradnorm_{key}"] = float(p.grad.norm()) if p.grad is not None else 0.0
    return out


@torch.no_grad()
def path_logits(model: TwoLayerModel, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact split of the last-position logits [B, N] into the paths of spec §6.1.

    direct = W_U h⁰_T, layer1 = W_U W_O¹ a¹_T, induction = W_U W_O² a²_T (the single layer of a
    one-layer model), ffn = W_U FFN(h²_T) (zeros without an FFN). They sum to the logits.
    `ffn_of_induction` = W_U W_F a²_T is the share of `ffn` that a linear FFN relays from the
    induction output (zeros otherwise); it is part of `ffn`, not an extra term.
    """
    logits, cache = model.run_with_cache(tokens)
    W_U = model.W_U
    n = len(model.blocks)
    out = {"logits": logits[:, -1], "direct": cache["blocks.0.hook_resid_pre"][:, -1] @ W_U}
    out["layer1"] = (cache["blocks.0.hook_attn_out"][:, -1] @ W_U if n == 2
                     else torch.zeros_like(out["direct"]))
    out["induction"] = cache[f"blocks.{n - 1}.hook_attn_out"][:, -1] @ W_U
    mlp = f"blocks.{n - 1}.hook_mlp_out"
    out["ffn"] = cache[mlp][:, -1] @ W_U if mlp in cache else torch.zeros_like(out["direct"])
    # a linear FFN splits further: the part it relays from the induction output, W_U W_F a²
    ffn = model.blocks[-1].mlp
    out["ffn_of_induction"] = torch.zeros_like(out["direct"])
    if ffn is not None and ffn.kind == "linear":
        out["ffn_of_induction"] = ffn(cache[f"blocks.{n - 1}.hook_attn_out"][:, -1]) @ W_U
    return out


@torch.no_grad()
def path_metrics(model: TwoLayerModel, x: torch.Tensor, y: torch.Tensor,
                 outs: torch.Tensor) -> dict[str, float]:
    """The §6.1 decomposition over a batch, for logging during training.

    logit_<path>_head / _bigram: the path's logit of the target y_t, centred over the vocabulary,
    averaged over in-context (outs >= 2) or bigram (outs = 0) positions.
    """
    _, cache = model.run_with_cache(x)
    n = len(model.blocks)
    names = {"direct": "blocks.0.hook_resid_pre", "induction": f"blocks.{n - 1}.hook_attn_out",
             "ffn": f"blocks.{n - 1}.hook_mlp_out"}
    if n == 2:
        names["layer1"] = "blocks.0.hook_attn_out"
    out: dict[str, float] = {}
    for path, name in names.items():
        if name not in cache:
            continue
        logits = cache[name] @ model.W_U  # [B, T, N]
        target = logits.gather(-1, y[..., None])[..., 0] - logits.mean(-1)
        out[f"logit_{path}_head"] = _mean(target, outs >= 2)
        out[f"logit_{path}_bigram"] = _mean(target, outs == 0)
    ffn = model.blocks[-1].mlp
    if ffn is not None and ffn.kind == "linear":  # the FFN's relay of the induction output
        logits = ffn(cache[names["induction"]]) @ model.W_U
        target = logits.gather(-1, y[..., None])[..., 0] - logits.mean(-1)
        out["logit_ffn_of_induction_head"] = _mean(target, outs >= 2)
    return out


@torch.no_grad()
def ablated_argmax(model: TwoLayerModel, tokens: torch.Tensor, path: str) -> torch.Tensor:
    """Argmax [B] at the last position after zeroing one path and re-running ("total effect")."""
    n = len(model.blocks)
    name = {"layer1": "blocks.0.hook_attn_out", "induction": f"blocks.{n - 1}.hook_attn_out",
            "ffn": f"blocks.{n - 1}.hook_mlp_out"}[path]
    if path == "layer1" and n == 1:
        return model(tokens)[:, -1].argmax(-1)
    return model.run_with_hooks(tokens, [(name, lambda t, hook: torch.zeros_like(t))])[:, -1] \
        .argmax(-1)
