"""Verdict rules of the induction / hijack family on planted records (holds, fails,
inconclusive for each), and the nulls, head scores and closed form they rest on."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from factlab.analysis.nulls import count_match, order_free_accuracies, over_represented
from factlab.experiments.hijack import hijack_length_verdict, hijack_prompts_verdict
from factlab.experiments.induction import induction_depth_verdict, induction_head_verdict
from factlab.experiments.standard import standard_verdict
from factlab.models.standard import StandardConfig, StandardTransformer
from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel, reference_construction
from factlab.pipelines.hijack_prompts import PromptGrid, prompt_cells, score_cells
from factlab.probes.hijack import (
    closed_form_choice,
    closed_form_params,
    head_scores,
    prev_token_at_outputs,
    prev_token_profile,
    query_alpha,
    query_gaps,
)
from factlab.tasks.bigram_stats import load_stats
from factlab.tasks.trigger_bigram import make_prompts
from factlab.train.trigger import TrainedModel

INF = math.inf


def _three(rec):
    return [rec, dict(rec), dict(rec)]


# ------------------------------------------------------------------ induction-head

HEAD_OK = {"bigram": 20, "head": 200, "wo1": 100, "wk1": 150, "wk0": 250, "head_drop": 2.0,
           "acc_end": 0.85}


def test_induction_head_verdict_states():
    assert induction_head_verdict(_three(HEAD_OK)).state == "holds"
    inverted = dict(HEAD_OK, wk0=120)  # wo1 < wk0 < wk1: not top-down
    assert induction_head_verdict(_three(inverted)).state == "fails"
    starved = dict(HEAD_OK, wk1=INF)
    v = induction_head_verdict(_three(starved))
    assert v.state == "inconclusive" and "wk1" in v.reason
    # one seed inverted, two not: the mean's holds is shared by 2/3 -> holds
    assert induction_head_verdict([HEAD_OK, HEAD_OK, inverted]).state == "holds"
    no_head = dict(HEAD_OK, head_drop=0.1)
    assert induction_head_verdict(_three(no_head)).state == "inconclusive"


# ------------------------------------------------------------------ induction-depth

DEPTH = {"acc1": 0.30, "acc2": 0.85, "null_best": 0.40, "null_over_represented": 0.40,
         "null_count_match": 0.35, "null_shuffled_prefix": 0.2, "improving1": False,
         "improving2": False}


def test_induction_depth_verdict_states():
    v = induction_depth_verdict(_three(DEPTH))
    assert v.state == "holds" and "0.400" in v.evidence  # the null beside the number
    assert induction_depth_verdict(_three(dict(DEPTH, acc1=0.5))).state == "fails"
    starved = dict(DEPTH, acc2=0.6, improving2=True)
    v = induction_depth_verdict(_three(starved))
    assert v.state == "inconclusive" and "still improving" in v.reason
    assert induction_depth_verdict(_three(dict(DEPTH, acc2=0.6))).state == "inconclusive"


# ------------------------------------------------------------------ hijack-length

def _length(inside, late):
    return {s: {"x1": {"acc_end": 0.9, "prev_token_in": i, "prev_token_late": -1.0},
                "x4": {"acc_end": 0.5, "prev_token_in": i, "prev_token_late": l}}
            for s, (i, l) in zip(("ape_random", "rel_bias", "rope1"), zip(inside, late))}


def test_hijack_length_verdict_states():
    ok = _length((0.98, 0.97, 0.3), (0.01, 0.95, 0.1))  # rope1 not sharp: skipped
    assert hijack_length_verdict(_three(ok), 4).state == "holds"
    rpe_lost = _length((0.98, 0.97, 0.3), (0.01, 0.6, 0.1))
    assert hijack_length_verdict(_three(rpe_lost), 4).state == "fails"
    ape_kept = _length((0.98, 0.97, 0.3), (0.9, 0.95, 0.1))
    assert hijack_length_verdict(_three(ape_kept), 4).state == "fails"
    no_rpe = _length((0.98, 0.7, 0.3), (0.01, 0.6, 0.1))
    v = hijack_length_verdict(_three(no_rpe), 4)
    assert v.state == "inconclusive" and "relative" in v.reason


def test_hijack_length_compares_inside_and_past_on_the_same_sequences():
    # the long batch reads rel_bias 0.93 inside and 0.85 past (kept, within 0.1); the training-
    # length batch's 0.99 inside must not enter the comparison (0.99 - 0.85 > 0.1)
    rec = _length((0.98, 0.93, 0.3), (0.01, 0.85, 0.1))
    rec["rel_bias"]["x1"]["prev_token_in"] = 0.99
    assert hijack_length_verdict(_three(rec), 4).state == "holds"
    rec["rel_bias"]["x4"]["prev_token_in"] = 0.88  # not sharp on the long batch: says nothing
    v = hijack_length_verdict(_three(rec), 4)
    assert v.state == "inconclusive" and "relative" in v.reason


# ------------------------------------------------------------------ hijack-prompts

def _prompts(agree, const=0.6, prev=0.95, acc=0.8):
    fams = {f: {"agreement": agree, "constant": const} for f in ("P1", "P2", "P3", "P4", "P5")}
    return {s: {"lambda": 5.0, "c": 3.0, "prev_token_in": prev, "acc_end": acc,
                "families": fams} for s in ("ape_random", "rel_bias")}


def test_hijack_prompts_verdict_states():
    assert hijack_prompts_verdict(_three(_prompts(0.9))).state == "holds"
    assert hijack_prompts_verdict(_three(_prompts(0.7))).state == "fails"
    # above 0.8 but below always answering j*: the formula adds nothing
    assert hijack_prompts_verdict(_three(_prompts(0.85, const=0.95))).state == "fails"
    v = hijack_prompts_verdict(_three(_prompts(0.9, prev=0.5)))
    assert v.state == "inconclusive" and "prerequisite" in v.reason


# ------------------------------------------------------------------ induction-standard

STD = {"acc_end": 0.8, "null_best": 0.4, "prev_head": 0, "prev_score": 0.8, "prev_null": 0.07,
       "induction_head": 1, "induction_score": 0.7, "induction_null": 0.2, "improving": False,
       "heads_improving": False, "p1_in_context": 0.8, "p1_global": 0.1, "p2_in_context": 0.0,
       "p2_global": 0.9}


def test_standard_verdict_states():
    rec = {"ape_learned": STD, "rope": STD}
    assert standard_verdict(_three(rec)).state == "holds"
    weak = {"ape_learned": STD, "rope": dict(STD, induction_score=0.3)}
    assert standard_verdict(_three(weak)).state == "fails"
    starved = {"ape_learned": STD, "rope": dict(STD, acc_end=0.5, improving=True)}
    v = standard_verdict(_three(starved))
    assert v.state == "inconclusive" and "rope" in v.reason
    # a head short of its bar while its validation score still rose: the budget, not a miss
    forming = {"ape_learned": STD, "rope": dict(STD, prev_score=0.45, heads_improving=True)}
    v = standard_verdict(_three(forming))
    assert v.state == "inconclusive" and "budget" in v.reason and "rope" in v.reason
    settled = {"ape_learned": STD, "rope": dict(STD, prev_score=0.45)}
    assert standard_verdict(_three(settled)).state == "fails"


# ------------------------------------------------------------------ nulls and probes

def test_order_free_nulls_on_planted_sequence():
    uni = torch.full((6,), 1 / 6)
    # trigger 0 -> output 5 three times, filler 1..4; at the last 0, count-match says 5
    x = torch.tensor([[0, 5, 1, 2, 0, 5, 3, 4, 0, 5, 1, 0]])
    y = torch.tensor([[5, 1, 2, 0, 5, 3, 4, 0, 5, 1, 0, 5]])
    outs = torch.zeros_like(x)
    outs[0, [0, 4, 8, 11]] = torch.tensor([1, 2, 3, 4])
    assert int(count_match(x, uni)[0, -1]) == 5
    assert int(over_represented(x, uni)[0, -1]) == 5
    acc = order_free_accuracies(x, y, outs, uni)
    assert acc["best"] == max(acc["over_represented"], acc["count_match"])
    # a shuffling model that cannot see order: a constant guess of 5 is right at every repeat
    const = lambda t: torch.nn.functional.one_hot(torch.full_like(t, 5), 6).float()
    assert order_free_accuracies(x, y, outs, uni, const)["shuffled_prefix"] == 1.0


def test_head_scores_find_planted_heads():
    x = torch.tensor([[0, 5, 1, 0, 5, 2, 0]])
    outs = torch.tensor([[1, 0, 0, 2, 0, 0, 3]])
    T = x.shape[1]
    P = torch.zeros(1, 2, T, T)
    P[0, :, 0, 0] = 1
    for t in range(1, T):
        P[0, 0, t, t - 1] = 1  # head 0: previous token
        P[0, 1, t, 0] = 1  # head 1: always the first token
    P[0, 1, 3, 1] = 1.0
    P[0, 1, 3, 0] = 0.0
    P[0, 1, 6, :] = 0.0
    P[0, 1, 6, 4] = 1.0  # x[3] = 0 = x[6]: the token after an earlier 0
    s = head_scores(P, x, outs)
    assert int(s["prev"].argmax()) == 0 and float(s["prev"][0]) == 1.0
    assert int(s["induction"].argmax()) == 1 and float(s["induction"][1]) == 1.0
    assert float(s["induction_null"][0]) < 0.5
    A1 = P[:, 0]
    assert prev_token_at_outputs(A1, outs) == 1.0
    assert prev_token_at_outputs(A1, outs, lo=T) == -1.0


def test_profile_finds_where_a_planted_head_fades():
    # a head that attends t - 1 only at queries t < 8 (first token after), on a sequence of 16
    # with an output token at every position: the profile in windows of 4 reads 1, 1, 0, 0
    T = 16
    A1 = torch.zeros(1, T, T)
    A1[0, :, 0] = 1.0
    for t in range(1, 8):
        A1[0, t] = 0.0
        A1[0, t, t - 1] = 1.0
    outs = torch.ones(1, T, dtype=torch.long)
    assert prev_token_profile(A1, outs, 4) == [1.0, 1.0, 0.0, 0.0]
    assert prev_token_at_outputs(A1, outs, 1, T // 2) == 1.0  # hijack-length's inside window
    assert prev_token_at_outputs(A1, outs, 1, T) == pytest.approx(7 / 15)


def test_closed_form_on_construction():
    stats = load_stats()
    model = TwoLayerModel(TwoLayerConfig(d_model=256, final_ffn="linear", max_len=256),
                          stats.n, torch.Generator().manual_seed(0))
    reference_construction(model, stats.bigram.float(), T=128)
    p = closed_form_params(model)
    assert p["lambda"] > 50 and p["c"] > 10  # the built margins (100 and 20)
    # random embeddings: near-orthogonal, at the random-vector level; collapsed ones are not
    assert p["embed_cos"] == pytest.approx(p["embed_cos_null"], rel=0.2)
    collapsed = copy.deepcopy(model)
    with torch.no_grad():
        collapsed.W_E[1:] = collapsed.W_E[0] + 0.1 * collapsed.W_E[1:]
    assert closed_form_params(collapsed)["embed_cos"] > 0.9
    gen = torch.Generator().manual_seed(1)
    for n_o, expect in ((4, 0), (0, 1)):  # evidence: o wins; none: j* (the FFN's bigram)
        batch = make_prompts(stats, 50, 64, n_o, gen=gen)
        pick = closed_form_choice(p, query_alpha(model, batch.q, 64), batch, 64)
        assert (pick == expect).float().mean() >= 0.95
    # the FFN stores the bigram, so the query alone leans to its global answer j* over o
    cell = prompt_cells(PromptGrid(n_prompts=50))[0]
    rows, summary = score_cells(TrainedModel(model, stats, None), [cell], 64, 0)
    assert rows[0]["alpha_gap"] > 1.0 and summary["families"]["P1"]["alpha_gap"] > 1.0
    # the built head has one gap for every query: per-query c predicts what the mean c does
    gaps = query_gaps(model)
    assert float(gaps.mean()) == pytest.approx(p["c"]) and float(gaps.min()) == p["c_min"]
    assert rows[0]["agreement_cq"] == pytest.approx(rows[0]["agreement"], abs=0.05)


def test_standard_transformer_shapes_and_rope():
    for pos in ("ape_learned", "rope"):
        model = StandardTransformer(StandardConfig(pos=pos, max_len=64), 65,
                                    torch.Generator().manual_seed(0))
        x = torch.randint(65, (2, 20))
        logits, cache = model.run_with_cache(x)
        assert logits.shape == (2, 20, 65)
        pat = cache["blocks.1.attn.hook_pattern"]
        assert pat.shape == (2, 2, 20, 20) and pat.triu(1).abs().max() == 0
        assert all(p.requires_grad for n, p in model.named_parameters() if n != "W_pos")
    a = StandardTransformer(StandardConfig(), 65, torch.Generator().manual_seed(3))
    b = StandardTransformer(StandardConfig(), 65, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="max_len"):
        StandardTransformer(StandardConfig(max_len=8), 65, torch.Generator())(x)


def test_standard_fused_attention_equals_the_hooked_pattern_path():
    """Unhooked, the attention runs fused (SDPA); with a pattern hook it runs the explicit
    softmax. Same function: logits and gradients agree to float32 tolerance (relative to each
    gradient's scale: bias gradients reach ~300, where summation order alone moves 1e-5)."""
    for pos in ("ape_learned", "rope"):
        model = StandardTransformer(StandardConfig(pos=pos, max_len=64), 65,
                                    torch.Generator().manual_seed(0))
        x = torch.randint(65, (3, 24), generator=torch.Generator().manual_seed(1))
        params = [p for p in model.parameters() if p.requires_grad]
        fused = model(x)
        g_fused = torch.autograd.grad(fused.square().sum(), params)
        with model.hooks([("blocks.0.attn.hook_pattern", lambda t, hook: None),
                          ("blocks.1.attn.hook_pattern", lambda t, hook: None)]):
            explicit = model(x)
            g_explicit = torch.autograd.grad(explicit.square().sum(), params)
        assert torch.allclose(fused, explicit, atol=1e-5)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
                   for a, b in zip(g_fused, g_explicit))
