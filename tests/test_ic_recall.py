"""In-context factual recall: sampler, memories, model, probes, protocol, search, verdicts."""

from __future__ import annotations

import math

import pytest
import torch

from factlab.analysis.fits import growth_fit
from factlab.analysis.search import drive, geometric_grid, grid_min_steps
from factlab.config import ConfigError, apply_overrides
from factlab.experiments import get_experiment
from factlab.experiments.base import RunContext
from factlab.experiments.ic_recall import (
    ICRecallConfig,
    pattern_summary,
    pattern_verdict,
    setup_for,
)
from factlab.experiments.ic_recall_ablations import below_target_verdict, shared_pool_summary
from factlab.experiments.ic_recall_samples import samples_summary, samples_verdict
from factlab.knowledge import make_knowledge_base
from factlab.models.ic_memory import build_triplet_memory, calibrate, embedding_tables
from factlab.models.ic_model import ICModelConfig, ICRecallModel
from factlab.pipelines.ic_finetune import Protocol, make_splits, probe_n, validation_rank
from factlab.pipelines.ic_memories import (
    PretrainConfig,
    Setup,
    load_pretrained,
    pretrain_memory,
)
from factlab.pipelines.ic_sweep import ProbeCache
from factlab.probes.ic_recall import (
    isotropic_qk,
    oracle_accuracy,
    role_masses,
    swapped_qk,
    wilson_interval,
)
from factlab.store.run_dir import RunStore
from factlab.tasks.ic_recall import (
    ICTaskConfig,
    all_triplets,
    enumerate_triplets,
    make_ic_knowledge_base,
    sample_ic_recall,
    seen_triplets,
    split_subjects,
)
from factlab.train.loop import TrainConfig, train


def _task(**kw) -> ICTaskConfig:
    return ICTaskConfig(**{"n_subjects": 64, "n_relations": 8, "n_answers": 8, "k": 8, **kw})


# ---------------------------------------------------------------------------- sampler


def test_sampler_invariants(gen):
    task = _task()
    kb = make_ic_knowledge_base(task)
    b = sample_ic_recall(kb, task, 512, gen)
    tok, k, S, R = b["tokens"], task.k, task.n_subjects, task.n_relations
    assert tok.shape == (512, 2 * k + 1)
    subj = b["subjects"]
    # distinct subjects, query outside the context
    assert all(len(set(row.tolist())) == k + 1 for row in subj)
    assert torch.equal(tok[:, 0:2 * k:2], subj[:, :k]) and torch.equal(tok[:, -1], subj[:, -1])
    # answers are a*(s_i, r) as input tokens; label is a*(s_q, r); blocks are disjoint
    r = b["relation"]
    assert torch.equal(tok[:, 1:2 * k:2] - S - R, kb.answers[subj[:, :k], r[:, None]])
    assert torch.equal(b["answer"], kb.answers[subj[:, -1], r])
    assert torch.equal(b["context_answers"] // task.n_answers, r[:, None].expand(-1, k))


def test_sampler_knobs(gen):
    task = _task(eos=True, query_in_context=True)
    kb = make_ic_knowledge_base(task)
    b = sample_ic_recall(kb, task, 256, gen)
    assert b["tokens"].shape[1] == 2 * task.k + 2
    assert (b["tokens"][:, -1] == task.vocab.eos).all()
    assert (b["subjects"][:, :-1] == b["subjects"][:, -1:]).any(1).all()  # s_q in the context
    shared = make_ic_knowledge_base(_task(answer_sets="shared"))
    blocks = shared.answers // 8
    assert (blocks != torch.arange(8)[None]).any()  # answers leave their relation's block


def test_eval_enumerates_all_triplets_and_seen_mask(gen):
    task = _task()
    kb = make_ic_knowledge_base(task)
    s, r = all_triplets(kb, 1 << 15, gen)
    assert len(set(zip(s.tolist(), r.tolist()))) == task.n_subjects * task.n_relations
    b = sample_ic_recall(kb, task, 3, gen)
    seen = seen_triplets(kb, b)
    assert seen.sum() == 3 * (task.k + 1)
    assert seen[b["subjects"][0, 0], b["relation"][0]]


# ---------------------------------------------------------------------------- memory


@pytest.mark.parametrize("key", ["a", "b"])
def test_constructed_memory_oracle(gen, key):
    """M1 recalls every stored triplet from the ideal attention output (docs/ic_recall.md)."""
    task = _task(n_subjects=128)
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 512, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, key, 1 / 3, 1 / 3)
    acc = oracle_accuracy(mem, W_E, W_U, kb, task, 1 / 3, 1 / 3, key, gen)
    assert acc >= 0.99
    # uniform attention cannot solve it with this memory (gamma must exceed beta)
    u = 1 / (2 * task.k + 1)
    assert oracle_accuracy(mem, W_E, W_U, kb, task, u, task.k * u, key, gen) < 0.5


def test_calibration_numbers():
    tau, lam = calibrate(1 / 3, 1 / 3, 8, 8.0)
    assert tau == pytest.approx((2 / 3 + 1 / 3 + 1 / 24) / 2)
    assert lam * (2 / 3 - tau) == pytest.approx(8.0)
    with pytest.raises(ConfigError):
        calibrate(1 / 24, 1 / 3, 8)  # gamma = beta: no discrimination


def test_sparse_memory_path_is_exact(gen):
    task = _task(n_subjects=256)
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 128, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, "b", 1 / 3, 1 / 3)
    assert not mem.sparse  # S = 256 <= 8 x 64: all units are cheaper than the gather
    mem.top, mem.sparse = 8, True  # expand 8 subjects per prompt
    u = 0.4 * W_E[:100] + 0.3 * W_E[task.vocab.answer(torch.arange(100) % 64)]
    u[:10] *= 5  # some rows force the dense fallback
    sparse = mem(u)
    mem.hook_post.add(lambda x, hook: None)
    dense = mem(u)
    mem.hook_post.clear()
    assert torch.allclose(sparse, dense, atol=1e-5)


# ---------------------------------------------------------------------------- model, probes


def test_model_hooks_and_pattern_shape(gen):
    task = _task()
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 64, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, "b", 1 / 3, 1 / 3)
    model = ICRecallModel(ICModelConfig(d_model=64), W_E, W_U, mem, gen)
    tok = sample_ic_recall(kb, task, 5, gen)["tokens"]
    logits, cache = model.run_with_cache(tok)
    assert logits.shape == (5, kb.n_outputs)
    assert cache["blocks.0.attn.hook_pattern"].shape == (5, 1, 1, 2 * task.k + 1)
    assert cache["blocks.0.mlp.hook_post"].shape == (5, 1, 64 * 8)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"], torch.tensor(1 / 17))  # zero init
    assert set(model.hook_names) >= {"hook_embed", "blocks.0.attn.hook_attn_scores",
                                     "blocks.0.attn.hook_z", "blocks.0.hook_attn_out",
                                     "blocks.0.mlp.hook_pre", "blocks.0.hook_mlp_out",
                                     "unembed.hook_out"}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["blocks.0.attn.W_QK"]


def test_positions_reach_the_score_only(gen):
    """With positions on, the score sees them but the values (the memory's input) do not."""
    task = _task()
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 64, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, "b", 1 / 3, 1 / 3)
    tok = sample_ic_recall(kb, task, 4, gen)["tokens"]
    for kind in ("sinusoidal", "learned"):
        model = ICRecallModel(ICModelConfig(d_model=64, positions=kind), W_E, W_U, mem, gen,
                              n_pos=task.seq_len)
        with torch.no_grad():
            model.blocks[0].attn.W_QK.copy_(torch.eye(64)[None])
        plain = ICRecallModel(ICModelConfig(d_model=64), W_E, W_U, mem, gen)
        with torch.no_grad():
            plain.blocks[0].attn.W_QK.copy_(torch.eye(64)[None])
        assert not torch.allclose(model.pattern(tok), plain.pattern(tok))
        # uniform attention: both read the same values, so the same logits
        with torch.no_grad():
            model.blocks[0].attn.W_QK.zero_()
            plain.blocks[0].attn.W_QK.zero_()
        assert torch.allclose(model(tok), plain(tok), atol=1e-6)
    learned = ICRecallModel(ICModelConfig(d_model=64, positions="learned"), W_E, W_U, mem, gen)
    assert {n for n, p in learned.named_parameters() if p.requires_grad} == \
        {"blocks.0.attn.W_QK", "blocks.0.attn.W_pos"}


def test_role_masses_on_hand_made_patterns():
    k = 4
    # pairwise pattern: 1/3 on the query, the rest split evenly over 2k tokens
    m = role_masses(torch.tensor([[1 / 12] * 8 + [1 / 3]]), k)
    assert m["alpha_q"] == pytest.approx(1 / 3) and m["A_S"] == pytest.approx(1 / 3)
    assert m["asym"] == pytest.approx(0) and m["spread"] == pytest.approx(0)
    # answers only: asymmetry 1
    m = role_masses(torch.tensor([[0, 0.2] * 4 + [0.2]]), k)
    assert m["asym"] == pytest.approx(1) and m["A_A"] == pytest.approx(0.8)
    # one pair only: spread sqrt(k - 1); with EOS the rest is "other"
    m = role_masses(torch.tensor([[0.25, 0.25] + [0] * 6 + [0.25, 0.25]]), k)
    assert m["spread"] == pytest.approx(math.sqrt(k - 1)) and m["A_other"] == pytest.approx(0.25)
    # aggregates: prompts that lean opposite ways average to a symmetric pattern
    m = role_masses(torch.tensor([[0.3, 0.1, 0.6], [0.1, 0.3, 0.6]]), 1)
    assert m["asym"] == pytest.approx(0)


def test_isotropic_null_and_swap(gen):
    W = torch.randn(1, 8, 8, generator=gen)
    null = isotropic_qk(W)
    assert torch.allclose(null[0], W[0].trace() / 8 * torch.eye(8))
    task = _task()
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 8, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, "b", 1 / 3, 1 / 3)
    model = ICRecallModel(ICModelConfig(d_model=8), W_E, W_U, mem, gen)
    with swapped_qk(model, null):
        assert torch.equal(model.blocks[0].attn.W_QK, null)
    assert torch.equal(model.blocks[0].attn.W_QK, torch.zeros(1, 8, 8))


def test_wilson_interval():
    lo, hi = wilson_interval(990, 1000)
    assert lo < 0.99 < hi and hi - lo < 0.015
    lo, _ = wilson_interval(10_000, 10_000)
    assert lo > 0.9995
    assert wilson_interval(0, 0) == (0.0, 1.0)


# ---------------------------------------------------------------------------- held-out split


def test_heldout_subjects_never_in_train_or_validation(gen):
    task = _task(n_subjects=40)
    kb = make_ic_knowledge_base(task)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, 64, gen)
    mem = build_triplet_memory(W_E, W_U, kb, task, "b", 1 / 3, 1 / 3)
    setup = Setup(task, kb, W_E, W_U, mem, {})
    sp = make_splits(setup, Protocol(n_val=64, heldout_contexts=3), 200, 0, torch.device("cpu"))
    held = sp.test_heldout["subjects"][:, -1].unique()
    assert sp.n_heldout_subjects == 8 and len(held) == 8
    for split in (sp.train, sp.val, sp.test_seen):
        assert not torch.isin(split["subjects"], held).any()
    # every held-out triplet is asked in 3 contexts; every fine-tuning triplet once
    assert len(sp.test_heldout["answer"]) == 8 * 8 * 3
    assert len(sp.test_seen["answer"]) == 32 * 8
    tr, ho = split_subjects(10, 0.2, gen)
    assert len(ho) == 2 and not torch.isin(tr, ho).any()
    s, r = enumerate_triplets(ho, 3, 2)
    assert len(s) == 12 and set(r.tolist()) == {0, 1, 2}


# ---------------------------------------------------------------------------- loop, search, fits


def test_patience_stops_a_plateau_and_flags_a_starved_run():
    w = torch.nn.Parameter(torch.tensor([3.0]))
    vals = iter([5.0, 4.0] + [4.0] * 50)
    res = train([w], lambda s: (w ** 2).sum(), TrainConfig(steps=100, eval_every=5, patience=3),
                lambda: {"loss": next(vals)})
    assert res.stop_reason == "patience" and not res.still_improving
    w = torch.nn.Parameter(torch.tensor([3.0]))
    res = train([w], lambda s: (w ** 2).sum(), TrainConfig(steps=20, eval_every=5, patience=3),
                lambda: {"loss": float(w.detach() ** 2)})
    assert res.stop_reason == "steps" and res.still_improving


def test_grid_search_each_size_alone():
    def outcome(threshold: int, undecided: tuple[int, ...] = ()):
        return lambda n: "inconclusive" if n in undecided else (
            "success" if n >= threshold else "fail")

    grid = geometric_grid(4, 1024, 1.1)
    for guess in (None, 4, 37, 300, 1024):  # the answer is the same grid point from any start
        found = drive(grid_min_steps(4, 1024, 1.1, guess), outcome(37))
        assert found["status"] == "found" and found["n_min"] == min(n for n in grid if n >= 37)
        assert found["lo_fail"] == max(n for n in grid if n < 37)
    near = drive(grid_min_steps(4, 1024, 1.1, 40), outcome(37))["n_probes"]
    assert near < drive(grid_min_steps(4, 1024, 1.1, 1024), outcome(37))["n_probes"]
    assert drive(grid_min_steps(4, 64, 1.25), outcome(100))["status"] == "above_bracket"
    assert drive(grid_min_steps(4, 64, 1.25), outcome(2))["status"] == "below_bracket"
    res = drive(grid_min_steps(4, 1024, 2.0, 16), outcome(37, undecided=(32,)))
    assert res["status"] == "inconclusive"
    sr = 2.0 ** torch.arange(7, 16).numpy()
    assert growth_fit(sr, 3 * sr)["slope"] == pytest.approx(1.0)
    assert growth_fit(sr, 5 * torch.log(torch.tensor(sr)).numpy() ** 2)["polylog_power"] == \
        pytest.approx(2.0)


def test_probe_cache_resumes(tmp_path):
    cache = ProbeCache(tmp_path / "probes.jsonl")
    cache.add({"key": "qk|S=16|seed=0|n=64", "outcome": "fail"})
    with open(tmp_path / "probes.jsonl", "a") as fh:
        fh.write('{"key": "torn')  # a crash mid-line
    back = ProbeCache(tmp_path / "probes.jsonl")
    assert back.done["qk|S=16|seed=0|n=64"]["outcome"] == "fail" and len(back.done) == 1
    # knobs: a directory without a fingerprint is adopted, then other knobs are refused
    assert len(ProbeCache(tmp_path / "probes.jsonl", {"lr_grid": [0.01]}).done) == 1
    assert len(ProbeCache(tmp_path / "probes.jsonl", {"lr_grid": [0.01]}).done) == 1
    with pytest.raises(ConfigError, match="other knobs"):
        ProbeCache(tmp_path / "probes.jsonl", {"lr_grid": [0.03]})


# ---------------------------------------------------------------------------- verdicts


def _pattern_rec(**kw):
    rec = {"seed": 0, "k": 8, "hits_seen": 20_000, "n_seen": 20_000, "hits_heldout": 5_000,
           "n_heldout": 5_000, "asym": 0.05, "spread": 0.05, "null_asym": 0.02,
           "null_spread": 0.03, "alpha_q": 0.4, "A_S": 0.3, "A_A": 0.3,
           "acc_all": 1.0, "acc_heldout": 1.0, "still_improving": False}
    rec.update(kw)
    return rec


def test_pattern_verdict_three_states():
    ok = (True, "memory oracle 1.0")
    assert pattern_verdict(_pattern_rec(), ok).state == "holds"
    # a rival pattern (answers only) fails even when accurate
    assert pattern_verdict(_pattern_rec(asym=0.9), ok).state == "fails"
    # clearly below target on held-out subjects, converged: fails
    assert pattern_verdict(_pattern_rec(hits_heldout=2_500), ok).state == "fails"
    # ... the same but starved: inconclusive
    v = pattern_verdict(_pattern_rec(hits_heldout=2_500, still_improving=True), ok)
    assert v.state == "inconclusive" and "budget" in v.reason
    # an interval straddling the target: too few trials
    v = pattern_verdict(_pattern_rec(hits_heldout=99, n_heldout=100), ok)
    assert v.state == "inconclusive" and "trials" in v.reason
    # NaN is never a pass; a bad memory is a prerequisite
    assert pattern_verdict(_pattern_rec(asym=float("nan")), ok).state == "inconclusive"
    assert pattern_verdict(_pattern_rec(), (False, "oracle 0.8")).state == "inconclusive"
    assert pattern_verdict(_pattern_rec(n_heldout=0, hits_heldout=0), ok).state == \
        "inconclusive"


def test_pattern_summary_combines_seeds():
    info = {"oracle_acc": 1.0}
    good = [_pattern_rec(seed=s) for s in range(3)]
    assert pattern_summary(good, info).state == "holds"
    bad = [_pattern_rec(seed=s, asym=0.9) for s in range(3)]
    assert pattern_summary(bad, info).state == "fails"
    mixed = [_pattern_rec(seed=0), _pattern_rec(seed=1, asym=0.9),
             _pattern_rec(seed=2, hits_heldout=99, n_heldout=100)]
    assert pattern_summary(mixed, info).state == "inconclusive"


def test_shared_pool_control_three_states():
    info = {"oracle_acc": 0.15}
    low = [_pattern_rec(seed=s, hits_seen=3_000, hits_heldout=700) for s in range(3)]
    assert shared_pool_summary(low, info).state == "holds"
    assert shared_pool_summary([_pattern_rec(seed=s) for s in range(3)], info).state == "fails"
    starved = [dict(r, still_improving=True) for r in low]
    assert shared_pool_summary(starved, info).state == "inconclusive"
    assert below_target_verdict(_pattern_rec(hits_seen=99, n_seen=100, hits_heldout=0,
                                             n_heldout=0)).state == "inconclusive"


def _nmin_rows(arm, sizes, fn, seeds=(0, 1, 2), status="found"):
    return [{"arm": arm, "S": s, "triplets": 8 * s, "seed": seed, "n_min": fn(8 * s),
             "status": status} for s in sizes for seed in seeds]


def test_samples_verdict_three_states():
    polylog = _nmin_rows("qk", (64, 256, 1024, 4096), lambda x: 20 * math.log(x) ** 1.5)
    linear = _nmin_rows("control", (16, 32, 64, 128), lambda x: 4 * x)
    assert samples_verdict(polylog + linear).state == "holds"
    steep = _nmin_rows("qk", (64, 256, 1024, 4096), lambda x: 2 * x ** 0.75)
    assert samples_verdict(steep + linear).state == "fails"
    flat_control = _nmin_rows("control", (16, 32, 64, 128), lambda x: 100)
    assert samples_verdict(polylog + flat_control).state == "fails"
    starved = linear[:-1] + [dict(linear[-1], status="above_bracket", n_min=None)]
    v = samples_verdict(polylog + starved, seed=linear[-1]["seed"])
    assert v.state == "inconclusive" and "control" in v.reason
    assert samples_verdict(polylog).state == "inconclusive"  # the control never ran
    weak = [dict(r, oracle_acc=0.986 if r["S"] == 256 else 0.998) for r in polylog]
    v = samples_verdict(weak + linear)  # the target is out of reach for any attention
    assert v.state == "inconclusive" and "oracle 0.9860 at S*R=2048" in v.reason
    probes = [{"outcome": "success"}, {"outcome": "inconclusive"}]
    summary = samples_summary(polylog + starved, probes, (0, 1, 2))
    assert summary.metrics["inconclusive_probes"] == 1 and summary.state == "inconclusive"
    assert samples_summary(polylog + linear, probes, (0, 1, 2)).state == "holds"


# ---------------------------------------------------------------------------- configs, runs


def test_bad_config_refused():
    with pytest.raises(ConfigError, match="n_subjects"):
        apply_overrides(ICRecallConfig(), {"task.n_subjects": 8, "task.k": 8})
    with pytest.raises(ConfigError, match="train_ov"):
        apply_overrides(ICRecallConfig(), {"memory.key": "a"})
    with pytest.raises(ConfigError, match="kbeta"):
        apply_overrides(ICRecallConfig(), {"memory.kbeta": 0.6})
    with pytest.raises(ConfigError, match="arms"):
        get_experiment("ic-recall-samples").make_config({"arms": "qk,nope"})
    with pytest.raises(ConfigError, match="monitor"):
        apply_overrides(ICRecallConfig(), {"protocol.monitor": "auc"})


def test_validation_rank_reads_the_monitored_metric():
    """The acc monitor keeps the more accurate checkpoint even when its loss is higher (the
    frozen memory's loss rose 2.0 -> 5.1 while accuracy rose 0.47 -> 0.72)."""
    early, late = {"acc": 0.47, "loss": 2.0}, {"acc": 0.72, "loss": 5.1}
    assert validation_rank(late, "acc") < validation_rank(early, "acc")
    assert validation_rank(early, "loss") < validation_rank(late, "loss")
    assert validation_rank({"acc": 0.9, "loss": 0.3}, "acc") < \
        validation_rank({"acc": 0.9, "loss": 0.4}, "acc")  # ties broken by the loss
    assert get_experiment("ic-recall-samples").make_config({}).protocol.monitor == "acc"


def test_presets_build():
    for name in ("ic-recall", "ic-recall-samples", "ic-recall-pretrained",
                 "ic-recall-shared-pool", "ic-recall-m2", "ic-recall-context",
                 "ic-recall-init"):
        exp = get_experiment(name)
        assert exp.make_config({}).seeds == (0, 1, 2)
        assert exp.make_config({"scale": "paper"}).scale == "paper"


def test_small_fine_tuning_reaches_target(tmp_path):
    """Attention-only fine-tuning with the constructed memory: validation-stopped, tested on
    the fine-tuning subjects' triplets at >= 99%."""
    exp = get_experiment("ic-recall")
    cfg = exp.make_config({"task.n_subjects": 64, "model.d_model": 512, "model.positions":
                           "none", "task.n_answers": 8})
    ctx = RunContext(RunStore(tmp_path), torch.device("cpu"), False)
    setup = setup_for(cfg, ctx)
    assert setup.info["oracle_acc"] >= 0.99
    proto = Protocol(n_val=256, min_steps=1000, patience=4)
    tcfg = TrainConfig(optimizer="adam", batch_size=256, eval_every=50)
    outcome, res = probe_n(setup, cfg.model, tcfg, proto, 2048, (0.01,), 0,
                           torch.device("cpu"), 0.99)
    assert outcome == "success", res.test["acc_seen"]
    assert res.test["alpha_q"] > 2 / 17  # the query subject is singled out
    assert 0 <= res.test["acc_heldout"] <= 1  # measured (S < d: not expected to generalise)
    assert res.test["n_heldout"] == 13 * 8 * proto.heldout_contexts


def test_pretrained_memory_roundtrip(tmp_path):
    """M3 tensors saved as safetensors load back; mismatched shapes are a one-line error."""
    kb = make_knowledge_base(16, 2, 4, 64)
    t, m = pretrain_memory(kb, 32, PretrainConfig(d_mlp=32, seq_len=4, steps=20,
                                                  batch_size=64, eval_every=10),
                           0, torch.device("cpu"))
    assert 0 <= m["pretrain_acc"] <= 1 and t["W_in"].shape == (32, 32)
    RunStore(tmp_path).save_checkpoint("pretrained_memory", t)
    back = load_pretrained(tmp_path, kb, 32)
    assert torch.equal(back["W_out"], t["W_out"])
    with pytest.raises(ConfigError, match="pretrained_from"):
        load_pretrained(tmp_path, kb, 64)
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_pretrained(tmp_path / "nope", kb, 32)


def test_pretraining_lr_grid_stops_at_the_first_lr_that_stores_the_facts():
    """A too-small lr misses Task A; the grid moves on, keeps the better memory, and stops at
    the first lr that reaches the target (the later one is never tried)."""
    kb = make_knowledge_base(16, 2, 4, 64)
    base = dict(d_mlp=64, seq_len=4, n_noise=4, steps=300, batch_size=128, eval_every=50,
                target_acc=0.95)
    seen: list[float] = []
    t, m = pretrain_memory(kb, 32, PretrainConfig(lr_grid=(1e-6, 1e-2, 1e-1), **base), 0,
                           torch.device("cpu"), on_eval=lambda step, e: seen.append(e["lr"]))
    assert m["pretrain_lr"] == 1e-2 and m["pretrain_acc"] >= 0.95
    assert set(seen) == {1e-6, 1e-2}  # 1e-1 not tried once 1e-2 stored the facts
    _, low = pretrain_memory(kb, 32, PretrainConfig(lr=1e-6, **base), 0, torch.device("cpu"))
    assert low["pretrain_acc"] < 0.5  # the first lr alone does not store them
