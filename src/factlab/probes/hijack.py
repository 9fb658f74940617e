"""The closed-form logit of the hijack analysis (arXiv 2412.11459), read from trained weights,
and attention-head scores that find previous-token and induction heads in any model.

Idealised logit at the query q (a sharp previous-token head, near-orthogonal embeddings):

    ξ(j) ≈ λ (e^c n_j + r_j) / (m e^c + L − m) + α_qj

m = evidence positions (tokens right after an earlier q), n_j = j's count there, r_j = j's count
elsewhere, L = keys the query sees. Read from the weights of a two-layer model:
    λ  = mean_j [G(W_O² W_V² E[j]) W_U]_j − mean_{k≠j} [G(W_O² W_V² E[k]) W_U]_j, the logit a
         token gets when layer 2 attends to it fully, over the logit it gets from other tokens
         (G = identity + the FFN: its relay of the induction output is part of λ);
    c  = mean_q S[q, q] − mean_{k≠q} S[q, k], S[k, k'] = E[k]ᵀ W_K² W_O¹ W_V¹ E[k'] / √d, the
         induction head's key-query gap;
    α  = [(h⁰ + FFN(h⁰)) W_U] with h⁰ = E[q] (+ P[L−1]), the logit of j from the query alone.
"""

from __future__ import annotations

import math

import torch

from factlab.models.two_layer import TwoLayerModel
from factlab.probes.induction import loss_metrics
from factlab.tasks.trigger_bigram import PromptBatch


def _g(model: TwoLayerModel, h: torch.Tensor) -> torch.Tensor:
    """h + FFN(h) (the residual and the final FFN, when there is one)."""
    ffn = model.blocks[-1].mlp
    return h if ffn is None else h + ffn(h)


@torch.no_grad()
def closed_form_params(model: TwoLayerModel) -> dict[str, float]:
    """λ and c of the idealised logit, from the weights of a two-layer model."""
    E, W_U = model.W_E, model.W_U
    N = E.shape[0]
    a2 = model.blocks[1].attn
    off = ~torch.eye(N, dtype=torch.bool, device=E.device)
    L = _g(model, E @ a2.W_V.T @ a2.W_O.T) @ W_U  # [k attended, j logit]
    diag = L.diagonal()
    other = (L * off).sum(0) / (N - 1)  # column mean over attended k != j
    lam = float((diag - other).mean())
    gap = query_gaps(model)
    # the formula's other assumption: near-orthogonal embeddings (random d-vectors: ~ sqrt(2/πd))
    En = E / E.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (En @ En.T).abs()[off]
    return {"lambda": lam, "c": float(gap.mean()), "c_min": float(gap.min()),
            "embed_cos": float(cos.mean()), "embed_cos_null": math.sqrt(2 / (math.pi * E.shape[1]))}


@torch.no_grad()
def query_gaps(model: TwoLayerModel) -> torch.Tensor:
    """c per query token [N]: S[q, q] − mean_{k≠q} S[q, k] (c is their mean)."""
    E = model.W_E
    N = E.shape[0]
    a1, a2 = model.blocks[0].attn, model.blocks[1].attn
    off = ~torch.eye(N, dtype=torch.bool, device=E.device)
    w1 = E @ a1.W_V.T @ a1.W_O.T
    S = (E @ a2.W_K @ w1.T) * a2.scale  # [q, k']
    return S.diagonal() - (S * off).sum(1) / (N - 1)


@torch.no_grad()
def query_alpha(model: TwoLayerModel, q: torch.Tensor, L: int) -> torch.Tensor:
    """α [n, N]: the logits that the query token at position L − 1 gets on its own."""
    h = model.W_E[q.to(model.W_E.device)]
    if model.absolute:
        h = h + model.W_pos[L - 1]
    return _g(model, h) @ model.W_U


def candidates(batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate ids [n, C] (o, j*, then o2 when present) and their evidence counts [n, C]."""
    cols = [batch.o, batch.jstar] + ([batch.o2] if batch.n_o2 > 0 else [])
    cand = torch.stack(cols, 1)
    counts = torch.stack([torch.full_like(batch.o, batch.n_o),
                          torch.where(batch.jstar == batch.o, batch.n_o, 0)]
                         + ([torch.full_like(batch.o, batch.n_o2)] if batch.n_o2 > 0 else []), 1)
    return cand, counts


@torch.no_grad()
def closed_form_choice(params: dict[str, float], alpha: torch.Tensor, batch: PromptBatch,
                       L: int, c_q: torch.Tensor | None = None) -> torch.Tensor:
    """Index [n] into `candidates(batch)` of the closed form's winner; with `c_q` (from
    `query_gaps`) each prompt uses its own query's c instead of the mean."""
    cand, n_j = candidates(batch)
    cand, n_j = cand.to(alpha.device), n_j.to(alpha.device).float()
    m = batch.n_o + batch.n_o2
    ec: float | torch.Tensor = math.exp(min(params["c"], 50.0))
    if c_q is not None:
        ec = c_q[batch.q.to(c_q.device)].clamp(max=50.0).exp()[:, None]
    # r_j = 0: the filler avoids every candidate
    xi = params["lambda"] * ec * n_j / (m * ec + L - m) + alpha.gather(1, cand)
    return xi.argmax(-1)


@torch.no_grad()
def head_scores(pattern: torch.Tensor, x: torch.Tensor, outs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per head [H]: previous-token and induction scores, and their uniform-attention nulls.

    `pattern` [B, H, T, T]. prev = mean attention mass on t − 1 over t >= 1; induction = mean
    mass, at outs >= 2 positions, on keys s with x[s − 1] = x[t] (what followed earlier
    occurrences). The nulls are the same masses under uniform causal attention on this batch.
    """
    B, H, T, _ = pattern.shape
    t = torch.arange(1, T, device=x.device)
    prev = pattern[:, :, t, t - 1].mean((0, 2))
    prev_null = (1.0 / (t + 1).float()).mean()
    after = torch.zeros(B, T, T, dtype=torch.bool, device=x.device)  # [b, t, s]
    after[:, :, 1:] = x[:, :, None] == x[:, None, :-1]
    after &= torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    sel = outs >= 2
    if not bool(sel.any()):
        nan = torch.full((H,), float("nan"))
        return {"prev": prev, "prev_null": prev_null.expand(H), "induction": nan,
                "induction_null": nan}
    mass = (pattern * after[:, None]).sum(-1)  # [B, H, T]
    ind = mass.permute(0, 2, 1)[sel].mean(0)  # [H]
    keys = torch.arange(1, T + 1, device=x.device).float()[None, :].expand(B, T)
    ind_null = (after.sum(-1).float() / keys)[sel].mean()
    return {"prev": prev, "prev_null": prev_null.expand(H), "induction": ind,
            "induction_null": ind_null.expand(H)}


def prev_token_at_outputs(A1: torch.Tensor, outs: torch.Tensor, lo: int = 1,
                          hi: int | None = None) -> float:
    """Birth's score_acc restricted to query positions in [lo, hi): at each output token
    (the query right after a trigger, outs[t - 1] >= 1), 1[argmax_s A¹[t, s] = t − 1].

    -1 when no such query lies in the range. A¹ is [B, T, T] (one head).
    """
    B, T, _ = A1.shape
    hi = T if hi is None else min(hi, T)
    lo = max(lo, 1)
    if hi <= lo:
        return -1.0
    t = torch.arange(lo, hi, device=A1.device)
    sel = outs[:, t - 1] >= 1  # [B, len(t)]
    if not bool(sel.any()):
        return -1.0
    ok = A1[:, t].argmax(-1) == (t - 1)
    return float(ok[sel].float().mean())


def prev_token_profile(A1: torch.Tensor, outs: torch.Tensor, width: int) -> list[float]:
    """`prev_token_at_outputs` in consecutive query windows [k w, (k + 1) w) over the sequence:
    where along the positions a previous-token head holds (-1 for a window without outputs)."""
    T = A1.shape[1]
    return [prev_token_at_outputs(A1, outs, lo, lo + width) for lo in range(0, T, width)]


def standard_probe(model: torch.nn.Module, batch) -> dict[str, float]:
    """Validation probes: losses, acc_end and the best head scores of layers 1 and 2."""
    x, y, outs = batch
    logits, cache = model.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
    out = loss_metrics(logits, y, outs)
    s0 = head_scores(cache["blocks.0.attn.hook_pattern"], x, outs)
    s1 = head_scores(cache["blocks.1.attn.hook_pattern"], x, outs)
    out.update(prev_score=float(s0["prev"].max()), induction_score=float(s1["induction"].max()),
               acc=out["acc_end"])
    return out
