"""In-context factual recall: sampler, memories, model, probes, fine-tuning (specs/ic_recall.md)."""

from __future__ import annotations

import math

import pytest
import torch

from factlab.config import ConfigError, apply_overrides
from factlab.experiments import get_experiment
from factlab.experiments.ic_recall import (
    ICRecallConfig,
    fine_tune,
    fit_growth,
    pattern_verdict,
    search_n_min,
)
from factlab.models.ic_memory import (
    build_triplet_memory,
    calibrate,
    embedding_tables,
    oracle_accuracy,
)
from factlab.models.ic_model import ICModelConfig, ICRecallModel
from factlab.probes.ic_recall import role_masses
from factlab.tasks.ic_recall import (
    ICTaskConfig,
    all_triplets,
    make_ic_knowledge_base,
    sample_ic_recall,
    seen_triplets,
)


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


def test_bad_config_refused():
    with pytest.raises(ConfigError, match="n_subjects"):
        apply_overrides(ICRecallConfig(), {"task.n_subjects": 8, "task.k": 8})
    with pytest.raises(ConfigError, match="train_ov"):
        apply_overrides(ICRecallConfig(), {"memory.key": "a"})
    with pytest.raises(ConfigError, match="kbeta"):
        apply_overrides(ICRecallConfig(), {"memory.kbeta": 0.6})


# ---------------------------------------------------------------------------- memory


@pytest.mark.parametrize("key", ["a", "b"])
def test_constructed_memory_oracle(gen, key):
    """M1 recalls every stored triplet from the ideal attention output (spec §5, §9)."""
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


def test_role_masses_on_hand_made_patterns():
    k = 4
    # pairwise pattern: 1/3 on the query, the rest split evenly over 2k tokens
    pairwise = torch.tensor([[1 / 12] * 8 + [1 / 3]])
    m = role_masses(pairwise, k)
    assert m["alpha_q"] == pytest.approx(1 / 3) and m["A_S"] == pytest.approx(1 / 3)
    assert m["psi"] == pytest.approx(0) and m["cv"] == pytest.approx(0)
    # answers only: PSI = 1
    answers = torch.tensor([[0, 0.2] * 4 + [0.2]])
    m = role_masses(answers, k)
    assert m["psi"] == pytest.approx(1) and m["A_A"] == pytest.approx(0.8)
    # one pair only: CV = sqrt(k - 1); with EOS the rest is "other"
    one = torch.tensor([[0.25, 0.25] + [0] * 6 + [0.25, 0.25]])
    m = role_masses(one, k)
    assert m["cv"] == pytest.approx(math.sqrt(k - 1)) and m["A_other"] == pytest.approx(0.25)
    # a pair split 3:1 has |0.3 - 0.1| / 0.4 = 0.5
    m = role_masses(torch.tensor([[0.3, 0.1, 0.6]]), 1)
    assert m["psi"] == pytest.approx(0.5)


def test_pattern_verdict_rejects_uniform_attention():
    hist = [{"step": s, "alpha_q": 1 / 17, "A_S": 8 / 17, "A_A": 8 / 17, "psi": 0.0,
             "cv": 0.0} for s in (0, 100)]
    ok, _, checks = pattern_verdict(hist[-1], hist, 17)
    assert not ok and not checks["alpha_q"] and checks["psi"]


def test_search_and_fit():
    assert search_n_min(lambda n: n >= 37, 4, 1 << 10, 1.05) in range(37, 39)
    assert search_n_min(lambda n: False, 4, 64, 1.25) is None
    sr = 2.0 ** torch.arange(7, 16).numpy()
    assert fit_growth(sr, 3 * sr)["slope"] == pytest.approx(1.0)
    assert fit_growth(sr, 5 * torch.log(torch.tensor(sr)).numpy() ** 2)["polylog_power"] == \
        pytest.approx(2.0)


def test_experiments_registered():
    for name in ("ic-recall", "ic-recall-samples", "ic-recall-pretrained"):
        exp = get_experiment(name)
        exp.make_config({})
        exp.make_config({"scale": "paper"})


# ---------------------------------------------------------------------------- fine-tuning


def test_small_fine_tuning_reaches_target(tmp_path):
    """Attention-only fine-tuning with the constructed memory reaches 99% on all triplets."""
    from factlab.experiments.base import RunContext
    from factlab.experiments.ic_recall import build_setup
    from factlab.store.run_dir import RunStore

    exp = get_experiment("ic-recall")
    cfg = exp.make_config({"task.n_subjects": 64, "n_prompts": 2048, "train.steps": 400,
                           "train.eval_every": 50, "lr_grid": "0.01"})
    ctx = RunContext(RunStore(tmp_path), torch.device("cpu"), False)
    setup = build_setup(cfg, ctx)
    assert setup.info["oracle_acc"] >= 0.99
    res = fine_tune(setup, cfg, cfg.n_prompts, 0.01, 0, ctx, target_acc=0.99)
    assert res.final["acc"] >= 0.99
    assert res.final["alpha_q"] > 2 / 17  # the query subject is singled out


def test_pretrained_memory_roundtrip(tmp_path):
    """M3 tensors saved as safetensors load back; mismatched shapes are a one-line error."""
    from factlab.knowledge import make_knowledge_base
    from factlab.models.ic_memory import PretrainConfig, load_pretrained, pretrain_memory
    from factlab.store.run_dir import RunStore

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
