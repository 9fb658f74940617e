"""Metrics of knowledge acquisition and extraction (specs/knowledge_extraction.md §3, §6).

Every function works on plain tensors (logits, labels, boolean masks, attention patterns,
weight updates), never on a model class, so the HuggingFace path reuses them unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

HALLUCINATION_CONFIDENCE = 0.5  # p(argmax) above which a wrong answer counts as confident


def accuracy_by_group(logits: torch.Tensor, labels: torch.Tensor,
                      groups: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy in each group (a boolean row mask); NaN for an empty group."""
    correct = (logits.argmax(-1) == labels).float()
    out = {}
    for name, mask in groups.items():
        out[name] = correct[mask].mean().item() if bool(mask.any()) else float("nan")
    return out


def hallucination_rate(logits: torch.Tensor, labels: torch.Tensor,
                       confidence: float = HALLUCINATION_CONFIDENCE) -> float:
    """Fraction of rows answered wrongly with top probability >= `confidence`."""
    p = logits.float().softmax(-1)
    top, pred = p.max(-1)
    return ((pred != labels) & (top >= confidence)).float().mean().item()


def answer_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "",
                   confidence: float = HALLUCINATION_CONFIDENCE) -> dict[str, float]:
    """Accuracy, cross-entropy, mean top probability and hallucination rate."""
    logits = logits.float()
    p = logits.softmax(-1)
    return {
        f"{prefix}acc": (logits.argmax(-1) == labels).float().mean().item(),
        f"{prefix}loss": torch.nn.functional.cross_entropy(logits, labels).item(),
        f"{prefix}confidence": p.max(-1).values.mean().item(),
        f"{prefix}hallucination": hallucination_rate(logits, labels, confidence),
    }


def attention_mass(pattern: torch.Tensor, key_mask: torch.Tensor) -> float:
    """Mean attention mass that the query rows put on masked keys.

    pattern: [batch, head, query, key] (TransformerLens `hook_pattern`); key_mask: [batch, key].
    Averaged over batch, heads and queries.
    """
    mass = (pattern * key_mask[:, None, None, :].to(pattern.dtype)).sum(-1)
    return mass.mean().item()


def update_spectrum(delta: torch.Tensor) -> dict[str, object]:
    """Singular values of a weight update and its energy in the top direction.

    Returns {"sv": list, "top_energy": σ1² / Σσ², "u1": [d_rows], "v1": [d_cols]}. In factlab's
    row-vector convention (y = x @ W) u1 is the input-side direction.
    """
    U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    energy = (S**2).sum().item()
    return {"sv": S.tolist(), "top_energy": (S[0] ** 2).item() / energy if energy > 0 else 0.0,
            "u1": U[:, 0].float(), "v1": Vh[0].float()}


def abs_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """|cos(a, b)| of two vectors (0 when either is zero)."""
    a, b = a.double().flatten(), b.double().flatten()
    den = a.norm() * b.norm()
    return (a @ b).abs().item() / den.item() if den > 0 else 0.0


def relation_direction_cosine(vectors: torch.Tensor) -> dict[str, float]:
    """Within- vs across-relation mean pairwise cosine of template images.

    vectors: [n_rel, tau, d], e.g. W_OV φ(T_{r,j}). A shared relation direction shows as a
    within-relation cosine well above the across-relation one.
    """
    n_rel, tau, _ = vectors.shape
    unit = torch.nn.functional.normalize(vectors.reshape(n_rel * tau, -1).double(), dim=-1)
    cos = unit @ unit.T
    rel = torch.arange(n_rel).repeat_interleave(tau)
    same = rel[:, None] == rel[None, :]
    off_diag = ~torch.eye(n_rel * tau, dtype=torch.bool)
    within = cos[same & off_diag]
    across = cos[~same]
    return {"within": within.mean().item() if within.numel() else float("nan"),
            "across": across.mean().item() if across.numel() else float("nan")}


def bound_x(n_finetune: float, multiplicity: float, universe: float) -> float:
    """x = Ñ_f K² log|R| / (2 |R|²), the exponent of the held-out error bound (spec §1)."""
    return n_finetune * multiplicity**2 * math.log(universe) / (2 * universe**2)


def fit_log_error(x: np.ndarray, acc: np.ndarray, min_error: float = 0.01) -> dict[str, float]:
    """Least-squares fit log(1 - acc) = a - b x over points with error > `min_error`.

    Returns {"a", "b", "r2", "n"}; NaNs when fewer than two points qualify.
    """
    x, err = np.asarray(x, float), 1 - np.asarray(acc, float)
    keep = err > min_error
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return {"a": float("nan"), "b": float("nan"), "r2": float("nan"), "n": int(keep.sum())}
    y = np.log(err[keep])
    slope, a = np.polyfit(x[keep], y, 1)
    pred = a + slope * x[keep]
    ss_tot = ((y - y.mean()) ** 2).sum()
    r2 = 1 - ((y - pred) ** 2).sum() / ss_tot if ss_tot > 0 else float("nan")
    return {"a": float(a), "b": float(-slope), "r2": float(r2), "n": int(keep.sum())}

