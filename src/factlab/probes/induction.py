"""Probes of the trigger task and the two-layer model (Birth, arXiv 2306.00802, and the
hijack analysis of arXiv 2412.11459; definitions in docs/induction.md).

Metric keys keep Birth's 0-based layer names: `wk0` is W_K¹, `wk1`/`wo1` belong to layer 2,
`ff1` to the final FFN. Data probes take (model, x, y, outs); memory probes read weights only.
Attention patterns are read through the hook points `blocks.{l}.attn.hook_pattern`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from factlab.models.two_layer import TwoLayerModel
from factlab.probes.metrics import forward_chunks

# sequences per evaluation forward: the [B, H, T, T] scores of a whole eval batch (B = 512,
# T = 256 at Birth's configuration) would otherwise set the run's peak memory
SEQ_CHUNK = 128

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
    logits, cache = forward_chunks(lambda t: model.run_with_cache(t, names_filter=names), x,
                                   chunk=SEQ_CHUNK)
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
    """Birth's attention probes from the layer-1 and layer-2 patterns [B, T, T]."""
    B, T = x.shape
    rows = torch.arange(B, device=x.device)[:, None]
    pos = torch.arange(T, device=x.device)[None, :].expand(B, T)
    top1 = A1.argmax(-1)  # [B, T]: the key each query attends most in layer 1
    # previous-token head fires at the output token: argmax_s A¹[i+1, s] = i
    prev_ok = torch.zeros_like(outs, dtype=torch.bool)
    prev_ok[:, :-1] = top1[:, 1:] == pos[:, :-1]
    valid = torch.zeros_like(prev_ok)
    valid[:, :-1] = True
    # queries in the first half (t = i + 1 < T/2): the ones a later trigger occurrence reads
    # often enough to train a position-specific head (docs/induction.md, hijack-length)
    early = valid & (pos + 1 < T // 2)
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
        "score_early_acc": _mean(prev_ok, (outs >= 1) & early),
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
    """wk0/wk0_64, wk1, wo1 and ff1 probes from the weights alone.

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


def _path_hooks(n_layers: int) -> list[str]:
    """The residual-stream hooks the path split reads: caching only these keeps the
    [B, H, T, T] score and pattern tensors of every layer out of memory."""
    last = f"blocks.{n_layers - 1}"
    return sorted({"blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", f"{last}.hook_attn_out",
                   f"{last}.hook_resid_pre"})


@torch.no_grad()
def path_logits(model: TwoLayerModel, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact split of the last-position logits [B, N] into paths, no signal counted twice.

        direct    = W_U h⁰_T                       the query token (and its position)
        layer1    = W_U W_O¹ a¹_T                  layer-1 attention output
        induction = W_U (W_O² a²_T + FFN(h²_T) − FFN(h¹_T))   layer 2 and the FFN's relay of it
        ffn       = W_U FFN(h¹_T)                  the FFN on everything but the induction output

    They sum to the logits for any FFN (for the linear W_F the relay is W_U W_F W_O² a²). A
    one-layer model has layer1 = 0 and its single layer as `induction`; no FFN gives ffn = 0.
    `ffn_of_induction` is the relay alone (already inside `induction`).
    """
    n = len(model.blocks)
    logits, cache = model.run_with_cache(tokens, names_filter=_path_hooks(n))
    at_last = {k: v[:, -1:] for k, v in cache.items()}  # the FFN is position-wise
    paths = {k: (v[:, 0] @ model.W_U) for k, v in _path_residuals(model, at_last).items()}
    zero = torch.zeros_like(paths["direct"])
    attn = at_last[f"blocks.{n - 1}.hook_attn_out"][:, 0] @ model.W_U
    return {"logits": logits[:, -1], "layer1": zero, "ffn": zero, **paths,
            "ffn_of_induction": paths["induction"] - attn}


def _path_residuals(model: TwoLayerModel, cache) -> dict[str, torch.Tensor]:
    """The residual-stream contribution of each path (see `path_logits`) from a cache of
    `_path_hooks`; the FFN's relay of the induction output belongs to `induction`."""
    n = len(model.blocks)
    last = f"blocks.{n - 1}"
    attn = cache[f"{last}.hook_attn_out"]
    ffn = model.blocks[-1].mlp
    paths = {"direct": cache["blocks.0.hook_resid_pre"]}
    if n == 2:
        paths["layer1"] = cache["blocks.0.hook_attn_out"]
    if ffn is None:
        paths["induction"] = attn
    else:
        h1 = cache[f"{last}.hook_resid_pre"]
        f1 = ffn(h1)
        paths["induction"] = attn + ffn(h1 + attn) - f1
        paths["ffn"] = f1
    return paths


class _PathSums:
    """Running sums of each path's centred target logit over the head / bigram positions, so
    the path split needs no cache of the whole batch (one chunk's residuals at a time)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, model: TwoLayerModel, cache, y: torch.Tensor, outs: torch.Tensor) -> None:
        for path, h in _path_residuals(model, cache).items():
            logits = h @ model.W_U  # [b, T, N]
            target = logits.gather(-1, y[..., None])[..., 0] - logits.mean(-1)
            for part, mask in (("head", outs >= 2), ("bigram", outs == 0)):
                key = f"logit_{path}_{part}"
                self.sums[key] = self.sums.get(key, 0.0) + float(target[mask].double().sum())
                self.counts[key] = self.counts.get(key, 0) + int(mask.sum())

    def means(self) -> dict[str, float]:
        """Means over every added chunk; -1 where no position qualified (as `_mean`)."""
        return {k: self.sums[k] / n if n else -1.0 for k, n in self.counts.items()}


@torch.no_grad()
def path_metrics(model: TwoLayerModel, x: torch.Tensor, y: torch.Tensor,
                 outs: torch.Tensor) -> dict[str, float]:
    """The `path_logits` decomposition at every position of a batch, for logging.

    logit_<path>_head / _bigram: the path's logit of the target y_t, centred over the vocabulary,
    averaged over in-context (outs >= 2) or bigram (outs = 0) positions. The paths sum to the
    logits (the FFN's relay of the induction output counts in `induction` only).
    """
    sums = _PathSums()
    for i in range(0, len(x), SEQ_CHUNK):
        rows = slice(i, i + SEQ_CHUNK)
        _, cache = model.run_with_cache(x[rows], names_filter=_path_hooks(len(model.blocks)))
        sums.add(model, cache, y[rows], outs[rows])
    return sums.means()


@torch.no_grad()
def batch_metrics(model: TwoLayerModel, x: torch.Tensor, y: torch.Tensor,
                  outs: torch.Tensor) -> dict[str, float]:
    """`data_metrics` and `path_metrics` of one batch from one forward per chunk (the two
    forwards they run separately are the same function): the patterns and logits are kept
    for the whole batch, the path residuals one chunk at a time."""
    last = len(model.blocks) - 1
    patterns = ["blocks.0.attn.hook_pattern", f"blocks.{last}.attn.hook_pattern"]
    names = patterns + _path_hooks(len(model.blocks))
    sums, logits, A1, A2 = _PathSums(), [], [], []
    for i in range(0, len(x), SEQ_CHUNK):
        rows = slice(i, i + SEQ_CHUNK)
        out, cache = model.run_with_cache(x[rows], names_filter=names)
        logits.append(out)
        A1.append(cache[patterns[0]][:, 0])
        A2.append(cache[patterns[1]][:, 0])
        sums.add(model, cache, y[rows], outs[rows])
    full = torch.cat(logits)
    metrics = loss_metrics(full, y, outs)
    metrics.update(attention_metrics(torch.cat(A1), torch.cat(A2), x, y, outs, full.argmax(-1)))
    metrics.update(sums.means())
    return metrics


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


def two_layer_probe(triggers: torch.Tensor | None, bigram: torch.Tensor, pure: torch.Tensor,
                    T: int):
    """probe(model, (x, y, outs)) -> Birth's logged probes of the two-layer model.

    `pure` holds pure-bigram sequences for `prev_token_bigram_acc` (rope1's analogue of wk0).
    """

    def probe(model: TwoLayerModel, batch) -> dict[str, float]:
        x, y, outs = batch
        out = batch_metrics(model, x, y, outs)
        out.update(memory_metrics(model, bigram.to(x.device), triggers, T=min(T, 256)))
        out["prev_token_bigram_acc"] = prev_token_acc(
            forward_with_patterns(model, pure.to(x.device))[1])
        out["acc"] = out["acc_end"]
        return out

    return probe
