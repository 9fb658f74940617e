"""Designed hijack prompts P1-P5 scored against a trained two-layer model and the closed form.

P1 n evidence pairs (q, o) in the first half; P2 no evidence; P3 conflicting pairs (q, o1) x a
and (q, o2) x b, with o1 = j* or not; P4 two pairs early, then filler to length L; P5 one pair
at distance δ before the query. Each cell records the model's choice among the candidates,
the closed form's, their agreement, the best constant predictor, and the path logits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from factlab.config import require
from factlab.probes.hijack import (
    candidates,
    closed_form_choice,
    closed_form_params,
    query_alpha,
    query_gaps,
)
from factlab.probes.induction import forward_with_patterns, path_logits, prev_token_acc
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.trigger_bigram import make_prompts, peaked_queries
from factlab.train.trigger import TrainedModel

FAMILIES = ("P1", "P2", "P3", "P4", "P5")


@dataclasses.dataclass
class PromptGrid:
    """The P1-P5 grid (quick sizes for T_train = 64; the paper grid is for T_train = 256)."""

    n_prompts: int = 200  # per cell
    min_peak: float = 0.3  # q needs max_j π_b(j|q) >= min_peak
    query_weights: str = "unigram"  # draw q ∝ π_u (the training trigger law) or "uniform"
    p1_len: int = 64
    p1_n: tuple[int, ...] = (1, 2, 4, 8)
    p2_lens: tuple[int, ...] = (32, 64)
    p3_len: int = 64
    p3_a: tuple[int, ...] = (1, 2, 1, 3, 1)  # a:b = o1 pairs : o2 pairs
    p3_b: tuple[int, ...] = (1, 1, 2, 1, 3)
    p4_lens: tuple[int, ...] = (32, 64, 128, 256)
    p4_region: int = 16  # the 2 evidence pairs lie in the first p4_region positions
    p5_len: int = 64
    p5_dist: tuple[int, ...] = (4, 8, 16, 32, 60)

    def longest(self) -> int:
        """The longest prompt of the grid."""
        return max(self.p1_len, self.p3_len, self.p5_len, *self.p2_lens, *self.p4_lens)

    def check(self) -> None:
        require(self.n_prompts >= 1, "n_prompts", "must be >= 1")
        require(0 < self.min_peak <= 1, "min_peak", "must be in (0, 1]")
        require(self.query_weights in ("unigram", "uniform"), "query_weights",
                "must be 'unigram' or 'uniform'")
        for key in ("p1_len", "p3_len", "p5_len"):
            require(getattr(self, key) >= 8, key, "must be >= 8")
        for key in ("p2_lens", "p4_lens"):
            require(bool(getattr(self, key)) and min(getattr(self, key)) >= 8, key,
                    "needs lengths >= 8")
        for key in ("p1_n", "p3_a", "p3_b", "p5_dist"):
            require(bool(getattr(self, key)) and min(getattr(self, key)) >= 1, key,
                    "needs entries >= 1")
        require(len(self.p3_a) == len(self.p3_b), "p3_b", "needs as many entries as p3_a")
        require(max(self.p1_n) <= self.p1_len // 4, "p1_n",
                f"at most {self.p1_len // 4} pairs fit in the first half of p1_len")
        require(max(a + b for a, b in zip(self.p3_a, self.p3_b)) <= self.p3_len // 4,
                "p3_a", "too many evidence pairs for the first half of p3_len")
        require(all(2 <= d < self.p5_len - 1 for d in self.p5_dist), "p5_dist",
                "every distance must be in [2, p5_len - 2]")
        require(4 <= self.p4_region <= min(self.p4_lens) - 2, "p4_region",
                "must be in [4, min(p4_lens) - 2]")


def prompt_cells(g: PromptGrid) -> list[tuple[str, str, dict[str, Any]]]:
    """(family, cell label, make_prompts kwargs) for every cell of P1-P5."""
    cells = [("P1", f"n={n}", dict(L=g.p1_len, n_o=n)) for n in g.p1_n]
    cells += [("P2", f"L={L}", dict(L=L, n_o=0)) for L in g.p2_lens]
    for a, b in zip(g.p3_a, g.p3_b):
        for is_j in (False, True):
            cells.append(("P3", f"{a}:{b}{' o1=j*' if is_j else ''}",
                          dict(L=g.p3_len, n_o=a, n_o2=b, o_is_jstar=is_j)))
    cells += [("P4", f"L={L}", dict(L=L, n_o=2, region=(0, g.p4_region))) for L in g.p4_lens]
    cells += [("P5", f"delta={d}", dict(L=g.p5_len, n_o=1, distance=d)) for d in g.p5_dist]
    return [(f, c, {**kw, "n": g.n_prompts, "min_peak": g.min_peak,
                    "query_weights": g.query_weights}) for f, c, kw in cells]


@torch.no_grad()
def score_cell(trained: TrainedModel, params: dict[str, float], c_q: torch.Tensor, batch,
               L: int, T_train: int) -> dict[str, Any]:
    """One cell: choices of the model and of the closed form among the candidates (with the
    mean c, and with each query's own c from `c_q` = `query_gaps`)."""
    model = trained.model
    device = model.W_E.device
    tokens = batch.tokens.to(device)
    paths = path_logits(model, tokens)
    cand, _ = candidates(batch)
    cand = cand.to(device)
    model_tok = cand.gather(1, paths["logits"].gather(1, cand).argmax(-1, keepdim=True))[:, 0]
    alpha = query_alpha(model, batch.q, L)
    pick = closed_form_choice(params, alpha, batch, L)
    pred_tok = cand.gather(1, pick[:, None])[:, 0]
    # the same formula with each query's own c (reported beside, not judged)
    pick_q = closed_form_choice(params, alpha, batch, L, c_q)
    pred_q = cand.gather(1, pick_q[:, None])[:, 0]
    argmax = paths["logits"].argmax(-1)
    o, js = batch.o.to(device), batch.jstar.to(device)
    rows = torch.arange(len(o), device=device)

    def rate(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a == b).float().mean())

    out: dict[str, Any] = {
        "agreement": rate(model_tok, pred_tok), "agreement_cq": rate(model_tok, pred_q),
        "constant": max(rate(model_tok, cand[:, c]) for c in range(cand.shape[1])),
        "picks_o": rate(model_tok, o), "picks_jstar": rate(model_tok, js),
        "predicted_in_context": rate(pred_tok, o), "predicted_jstar": rate(pred_tok, js),
        "in_context_wins": rate(argmax, o), "global_wins": rate(argmax, js),
    }
    # α's lean: how much the query alone favours the global answer j* over the in-context o
    differ = o != js
    lean = alpha[rows, js] - alpha[rows, o]
    out["alpha_gap"] = float(lean[differ].mean()) if bool(differ.any()) else 0.0
    if cand.shape[1] > 2:
        out["picks_o2"] = rate(model_tok, cand[:, 2])
    for name in ("direct", "layer1", "induction", "ffn"):
        out[f"{name}_logit_o"] = float(paths[name][rows, o].mean())
        out[f"{name}_logit_jstar"] = float(paths[name][rows, js].mean())
    A1 = forward_with_patterns(model, tokens)[1]
    out["prev_token_acc"] = prev_token_acc(A1)
    out["prev_token_late"] = prev_token_acc(A1, start=T_train) if T_train < L else -1.0
    return out


def score_cells(trained: TrainedModel, cells: list[tuple[str, str, dict[str, Any]]],
                T_train: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every cell; return (rows, summary with λ, c, α's lean j* − o, the embeddings'
    mean |cos| against its random-vector null, and per-family agreement)."""
    stats = trained.stats
    params = closed_form_params(trained.model)
    c_q = query_gaps(trained.model)  # weights only: once for every cell
    rows = []
    for family, label, kw in cells:
        kw = dict(kw)
        n, min_peak, weights = kw.pop("n"), kw.pop("min_peak"), kw.pop("query_weights")
        queries = peaked_queries(stats, min_peak, trained.triggers)
        require(len(queries) > 0, "grid.min_peak", "no query token has a peaked bigram row")
        w = stats.unigram[queries].float() if weights == "unigram" else None
        gen = make_generator(derive_seed(seed, "prompts", family, label))
        batch = make_prompts(stats, n, queries=queries, query_weights=w, gen=gen, **kw)
        row = score_cell(trained, params, c_q, batch, kw["L"], T_train)
        row.update(family=family, cell=label, length=kw["L"], in_scope=kw["L"] <= T_train)
        rows.append(row)
    families: dict[str, dict[str, float]] = {}
    for fam in FAMILIES:
        sel = [r for r in rows if r["family"] == fam and r["in_scope"]]
        if sel:
            families[fam] = {k: sum(r[k] for r in sel) / len(sel)
                             for k in ("agreement", "constant", "alpha_gap", "agreement_cq")}
    p1 = [r for r in rows if r["family"] == "P1"]

    def threshold(key: str) -> float:
        """Smallest n of P1 at which `key` >= 0.5 (-1: none)."""
        return next((float(r["cell"][2:]) for r in p1 if r[key] >= 0.5), -1.0)

    tie = next((r for r in rows if r["cell"] == "1:1 o1=j*"), None)
    summary = {**params, "families": families,
               "alpha_gap": sum(f["alpha_gap"] for f in families.values()) / max(len(families), 1),
               "p1_threshold_model": threshold("picks_o"),
               "p1_threshold_formula": threshold("predicted_in_context"),
               "tie_jstar_model": tie["picks_jstar"] if tie else -1.0,
               "tie_jstar_formula": tie["predicted_jstar"] if tie else -1.0}
    return rows, summary


@torch.no_grad()
def hijack_rates(model: torch.nn.Module, stats, n: int, L: int, n_o: int, seed: int,
                 device: torch.device | str = "cpu") -> dict[str, float]:
    """Argmax rates of o (in-context) and j* (global) on n prompts with n_o evidence pairs.

    For any model (no paths needed): queries with a peaked bigram row, drawn ∝ π_u.
    """
    queries = peaked_queries(stats, 0.3)
    batch = make_prompts(stats, n, L, n_o, queries=queries,
                         query_weights=stats.unigram[queries].float(),
                         gen=make_generator(seed))
    pred = model(batch.tokens.to(device))[:, -1].argmax(-1).cpu()
    return {"in_context": float((pred == batch.o).float().mean()),
            "global": float((pred == batch.jstar).float().mean())}
