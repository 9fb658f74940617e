"""Knowledge base, the factual-recall sampler (invariants as property tests), the linear-attention
model's optimised path, and the one Task A recipe's validation/test protocol."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factlab.knowledge import make_knowledge_base, zipf_weights
from factlab.models.linear_attention import LinearAttentionRecall
from factlab.models.one_layer import OneLayerConfig
from factlab.probes.metrics import accuracy
from factlab.runtime import make_generator
from factlab.tasks.factual_recall import RecallTaskConfig, sample_factual_recall, sample_task
from factlab.train.loop import TrainConfig
from factlab.train.recipes import train_factual_recall


@settings(max_examples=25, deadline=None)
@given(S=st.integers(2, 40), R=st.integers(1, 10), D=st.integers(1, 9), seed=st.integers(0, 99))
def test_random_kb_answers_lie_in_their_relation_block(S, R, D, seed):
    kb = make_knowledge_base(S, R, D, seed)
    assert kb.answers.shape == (S, R)
    r = torch.arange(R)[None, :].expand(S, R)
    assert torch.equal(kb.relation_of_answer(kb.answers), r)
    assert torch.equal(make_knowledge_base(S, R, D, seed).answers, kb.answers)


def test_structured_kb_is_floor_s_over_two_plus_block_offset():
    kb = make_knowledge_base(16, 4, 8, kind="structured")
    s, r = torch.meshgrid(torch.arange(16), torch.arange(4), indexing="ij")
    assert torch.equal(kb.answers, s // 2 + 8 * r)


@settings(max_examples=30, deadline=None)
@given(S=st.integers(1, 30), R=st.integers(1, 6), D=st.integers(1, 5), noise=st.integers(0, 20),
       T=st.integers(3, 24), eos=st.booleans(), seed=st.integers(0, 10_000))
def test_sampler_invariants(S, R, D, noise, T, eos, seed):
    kb = make_knowledge_base(S, R, D, seed)
    gen = torch.Generator().manual_seed(seed)
    tokens, answer, s, r = sample_factual_recall(kb, 64, gen, T, noise, eos)
    EOS = S + R + noise
    assert tokens.shape == (64, T) and tokens.min() >= 0 and tokens.max() <= EOS
    is_subject, is_relation = tokens < S, (tokens >= S) & (tokens < S + R)
    assert is_subject.sum(1).eq(1).all() and is_relation.sum(1).eq(1).all()
    assert torch.equal(tokens[is_subject], s) and torch.equal(tokens[is_relation] - S, r)
    assert torch.equal(answer, kb.answers[s, r])
    assert torch.equal(kb.relation_of_answer(answer), r)
    if eos:
        assert tokens[:, -1].eq(EOS).all()
        assert not is_subject[:, -1].any() and not is_relation[:, -1].any()
        if noise > 0:
            assert tokens[:, :-1].ne(EOS).all()
    else:
        assert torch.equal(tokens[:, -1] - S, r)


def test_positions_are_uniform_over_the_first_t_minus_one_slots():
    kb = make_knowledge_base(8, 4, 2)
    gen = torch.Generator().manual_seed(1)
    tokens, _, _, _ = sample_factual_recall(kb, 40_000, gen, seq_len=9, n_noise=5)
    pos_s = (tokens < 8).float().argmax(1)
    pos_r = ((tokens >= 8) & (tokens < 12)).float().argmax(1)
    freq = torch.bincount(pos_s, minlength=9).float() / len(pos_s)
    assert freq[-1] == 0 and (freq[:-1] - 1 / 8).abs().max() < 0.01
    freq_r = torch.bincount(pos_r, minlength=9).float() / len(pos_r)
    assert freq_r[-1] == 0 and (freq_r[:-1] - 1 / 8).abs().max() < 0.01


def test_zipf_frequencies_follow_rank_power_law():
    kb = make_knowledge_base(10, 5, 3)
    gen = torch.Generator().manual_seed(2)
    _, _, s, r = sample_factual_recall(kb, 200_000, gen, seq_len=6, n_noise=3,
                                       subject_zipf=1.0, relation_zipf=2.0)
    for ids, n, a in ((s, 10, 1.0), (r, 5, 2.0)):
        empirical = torch.bincount(ids, minlength=n).float() / len(ids)
        assert (empirical - zipf_weights(n, a)).abs().max() < 0.01
    assert torch.allclose(zipf_weights(7, 0.0), torch.full((7,), 1 / 7))


def test_sampler_is_deterministic_given_the_generator():
    kb = make_knowledge_base(12, 3, 4)
    a = sample_factual_recall(kb, 32, torch.Generator().manual_seed(5), 10, 7)
    b = sample_factual_recall(kb, 32, torch.Generator().manual_seed(5), 10, 7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_batch_names_its_fields_and_sample_task_reads_the_layout():
    task = RecallTaskConfig(n_subjects=6, n_relations=3, n_answers=2, n_noise=4, seq_len=7)
    kb = make_knowledge_base(6, 3, 2)
    batch = sample_task(kb, task, 16, torch.Generator().manual_seed(3))
    tokens, answer, s, r = batch
    assert tokens is batch.tokens and torch.equal(batch.answer, kb.answers[s, r])
    assert batch.tokens.shape == (16, 7) and batch.tokens[:, -1].eq(task.vocab_size - 1).all()


def test_linear_attention_counts_path_equals_the_token_sum():
    torch.manual_seed(0)
    tokens = torch.randint(0, 11, (64, 9))
    slow = LinearAttentionRecall(11, 5)
    torch.nn.init.normal_(slow.A)
    torch.nn.init.normal_(slow.V)
    fast = LinearAttentionRecall(11, 5, path="counts")
    fast.load_state_dict(slow.state_dict())
    assert torch.allclose(fast(tokens), slow(tokens), atol=1e-5)
    with pytest.raises(ValueError):
        LinearAttentionRecall(11, 5, path="fast")


def test_train_factual_recall_selects_on_validation_and_reports_test_there():
    task = RecallTaskConfig(n_subjects=4, n_relations=4, n_answers=4, n_noise=4, seq_len=5)
    model_cfg = OneLayerConfig(d_model=16, n_heads=2, d_head=4, d_mlp=16)
    tcfg = TrainConfig(optimizer="adamw", lr=3e-2, steps=60, batch_size=64, eval_every=10)
    seen = []
    model, result = train_factual_recall(task, model_cfg, tcfg, seed=7, n_test=128,
                                         on_eval=lambda step, m: seen.append((step, m["acc"])))
    best_step, best_acc = max(seen, key=lambda e: (e[1], -e[0]))
    assert result.best_eval["step"] == best_step and result.best_eval["acc"] == best_acc
    assert 0 <= result.best_eval["test_acc"] <= 1 and "test_loss" in result.best_eval
    # the returned model holds the best checkpoint: its validation accuracy is the best one
    kb = make_knowledge_base(4, 4, 4, task.kb_seed)
    val = sample_task(kb, task, 128, make_generator(7 + 2))
    with torch.no_grad():
        assert accuracy(model(val.tokens), val.answer) == pytest.approx(best_acc)
    test = sample_task(kb, task, 128, make_generator(7 + 3))
    assert not torch.equal(test.tokens, val.tokens)  # independent draws
