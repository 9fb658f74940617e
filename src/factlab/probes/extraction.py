"""Metrics of knowledge acquisition and extraction (arXiv 2508.00901; docs/extraction.md).

Every function works on plain tensors (logits, labels, boolean masks, attention patterns,
weight updates), except `weight_snapshot`, which reads the one-layer model's named weights.
"""

from __future__ import annotations

import math

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
    """x = Ñ_f K² log|R| / (2 |R|²), the exponent of the held-out error bound of arXiv 2508.00901."""
    return n_finetune * multiplicity**2 * math.log(universe) / (2 * universe**2)


def random_cosine_null(d: int, gen: torch.Generator, n: int = 2000, q: float = 0.99) -> float:
    """The q-quantile of |cos(u, g)| for a fixed unit u and n Gaussian directions g in R^d.

    The null of a format alignment: what a direction unrelated to the format reaches. By
    rotation invariance it does not depend on u, so e_1 stands in for it.
    """
    g = torch.randn(n, d, generator=gen, dtype=torch.float64)
    cos = g[:, 0].abs() / g.norm(dim=1)
    return float(torch.quantile(cos, q))


def weight_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the one-layer model's effective weights (LoRA included)."""
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    out = {"W_Q": attn.W_Q, "W_K": attn.W_K, "W_V": attn.W_V, "W_O": attn.W_O}
    if mlp is not None:
        out.update(W_in=mlp.W_in, W_out=mlp.W_out)
    return {k: v.detach().clone() for k, v in out.items()}


def _spectrum_fields(prefix: str, delta: torch.Tensor, formats: dict[str, torch.Tensor],
                     ) -> dict[str, object]:
    spec = update_spectrum(delta)
    out: dict[str, object] = {f"{prefix}_top_energy": spec["top_energy"],
                              f"{prefix}_sv": [round(s, 6) for s in spec["sv"][:16]]}
    for name, vec in formats.items():
        out[f"{prefix}_align_{name}"] = abs_cosine(spec["u1"], vec)
    out[f"{prefix}_align_format"] = max(out[f"{prefix}_align_{n}"] for n in formats)
    return out


def update_analysis(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                    W_E: torch.Tensor, qfmt: int, afmt: int,
                    gen: torch.Generator) -> dict[str, object]:
    """Top energy σ1²/Σσ² and format alignment of the updates ΔW_QK and ΔW_in.

    The input-side top singular vector u1 of each update is compared with the format
    embeddings: for ΔW_QK (query side) with φ(QFMT) and φ(AFMT), for ΔW_in with those and
    their W_OV images (what attention writes when it reads a format token). `align_null` is
    the 99% quantile of the same |cos| for random directions in R^d (`random_cosine_null`).
    """
    phi = {"qfmt": W_E[qfmt], "afmt": W_E[afmt]}
    qk = {k: torch.einsum("hde,hfe->df", w["W_Q"], w["W_K"]) for k, w in
          (("b", before), ("a", after))}
    out = _spectrum_fields("dW_QK", qk["a"] - qk["b"], phi)
    if "W_in" in after:
        ov = torch.einsum("hde,hef->df", after["W_V"], after["W_O"])
        formats = {**phi, "ov_qfmt": phi["qfmt"] @ ov, "ov_afmt": phi["afmt"] @ ov}
        out.update(_spectrum_fields("dW_in", after["W_in"] - before["W_in"], formats))
    out["align_null"] = random_cosine_null(W_E.shape[1], gen)
    return out
