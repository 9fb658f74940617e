"""Trigger-bigram sampler, two-layer model, hand-built construction, probes and configs."""

from __future__ import annotations

import json

import pytest
import torch

from factlab.config import ConfigError
from factlab.experiments import get_experiment
from factlab.experiments.base import run_experiment
from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel, reference_construction
from factlab.probes.induction import (
    data_metrics,
    memory_metrics,
    path_logits,
    path_metrics,
    prev_token_acc,
)
from factlab.tasks.bigram_stats import load_stats, stats_from_text
from factlab.tasks.trigger_bigram import make_prompts, peaked_queries, sample_batch


@pytest.fixture(scope="module")
def stats():
    return load_stats()


def test_shipped_stats_match_spec(stats):
    assert stats.n == 65
    assert stats.unigram_entropy() == pytest.approx(3.31, abs=0.01)
    assert stats.conditional_entropy() == pytest.approx(2.45, abs=0.01)
    assert stats.decode(stats.top_tokens(5)) == " etoa"


def test_stats_from_text_and_errors(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abab")
    s = stats_from_text(path)
    assert s.vocab == ("a", "b")
    assert s.bigram_counts.tolist() == [[0, 2], [1, 0]]
    assert load_stats(path).vocab == ("a", "b")
    with pytest.raises(ConfigError, match="no such file"):
        load_stats(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_stats(bad)
    bad.write_text(json.dumps({"vocab": ["a", "b"], "unigram_counts": [1, 2],
                               "bigram_counts": [[1, 2]]}))
    with pytest.raises(ConfigError, match=r"\[N, N\]"):
        load_stats(bad)


def test_sampler_bigram_distribution(stats):
    """Non-trigger transitions follow π_b: the empirical rows of frequent tokens match."""
    x, y, outs = sample_batch(stats, 512, 256, K=3, fixed_triggers=False,
                              gen=torch.Generator().manual_seed(1))
    keep = outs == 0
    counts = torch.zeros(65, 65).index_put_((x[keep], y[keep]), torch.ones(int(keep.sum())),
                                            accumulate=True)
    for i in stats.top_tokens(10, offset=0):
        row = counts[i]
        if row.sum() < 2000:
            continue
        tv = 0.5 * (row / row.sum() - stats.bigram[i].float()).abs().sum()
        assert tv < 0.05, (stats.vocab[int(i)], float(tv))


def test_sampler_triggers_and_counts(stats):
    x, y, outs, trig, o = sample_batch(stats, 64, 128, K=5, fixed_triggers=False,
                                       gen=torch.Generator().manual_seed(2),
                                       return_triggers=True)
    assert ((trig[:, :, None] == trig[:, None, :]).sum((1, 2)) == 5).all()  # distinct
    match = x[:, :, None] == trig[:, None, :]  # [B, T, K]
    is_trig = match.any(-1)
    forced = (o[:, None, :] * match).sum(-1)
    assert (y[is_trig] == forced[is_trig]).all()  # triggers always followed by their output
    # occurrence counter: a cumulative count of the same trigger up to t
    ref = (torch.cumsum(match.long(), 1) * match).sum(-1)
    assert torch.equal(outs, ref)
    assert (outs[~is_trig] == 0).all() and (outs[is_trig] >= 1).all()
    assert torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("K,fixed,frac1,frac2", [(3, False, 0.176, 0.166),
                                                  (5, True, 0.302, 0.283)])
def test_sampler_target_fractions(stats, K, fixed, frac1, frac2):
    _, _, outs = sample_batch(stats, 2000, 256, K=K, fixed_triggers=fixed,
                              gen=torch.Generator().manual_seed(3))
    assert float((outs >= 1).float().mean()) == pytest.approx(frac1, abs=0.02)
    assert float((outs >= 2).float().mean()) == pytest.approx(frac2, abs=0.02)


def test_sampler_options_and_determinism(stats):
    a = sample_batch(stats, 8, 32, K=2, outputs="bigram", no_repeat=True, output_pool="test",
                     gen=torch.Generator().manual_seed(4), return_triggers=True)
    b = sample_batch(stats, 8, 32, K=2, outputs="bigram", no_repeat=True, output_pool="test",
                     gen=torch.Generator().manual_seed(4), return_triggers=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    trig, o = a[3], a[4]
    assert (o >= 48).all() and (o != trig).all()
    fixed = sample_batch(stats, 4, 16, K=3, fixed_triggers=True, trigger_offset=1,
                         gen=torch.Generator().manual_seed(0), return_triggers=True)[3]
    assert stats.decode(fixed[0]) == "eto"


def test_prompts_have_exact_evidence(stats):
    g = torch.Generator().manual_seed(5)
    p = make_prompts(stats, 50, 64, n_o=3, n_o2=2, gen=g)
    q = p.q[:, None]
    assert (p.tokens[:, -1] == p.q).all()
    nxt = p.tokens[:, 1:]
    is_q = p.tokens[:, :-1] == q
    assert (is_q.sum(1) == 5).all()  # q only in the evidence pairs (and the query)
    assert ((nxt == p.o[:, None]) & is_q).sum(1).eq(3).all()
    assert ((nxt == p.o2[:, None]) & is_q).sum(1).eq(2).all()
    assert ((p.tokens == p.jstar[:, None]).sum(1) == 0).all()
    assert (p.o != p.jstar).all() and (p.o != p.q).all()
    assert (stats.bigram.max(1).values[peaked_queries(stats)] >= 0.3).all()
    d = make_prompts(stats, 10, 64, n_o=1, distance=8, gen=g)
    assert (d.tokens[:, 64 - 1 - 8] == d.q).all() and (d.tokens[:, 64 - 8] == d.o).all()


@pytest.fixture(scope="module")
def built(stats):
    """The hand-built memories at d = 512 with random triggers, no FFN."""
    model = TwoLayerModel(TwoLayerConfig(d_model=512, final_ffn="none"), stats.n,
                          torch.Generator().manual_seed(0))
    reference_construction(model, stats.bigram.float())
    return model


def test_construction_solves_task_without_training(stats, built):
    x, y, outs = sample_batch(stats, 32, 256, K=5, gen=torch.Generator().manual_seed(6))
    m = data_metrics(built, x, y, outs)
    assert m["acc_end"] >= 0.97
    assert m["score_acc"] >= 0.99  # previous-token head fires at the output token
    assert m["score2_acc"] >= 0.97 and m["score2_next_acc"] >= 0.97
    mem = memory_metrics(built, stats.bigram.float())
    assert mem["wk0_acc"] >= 0.99 and mem["wk0_64_acc"] >= 0.99
    assert mem["wk1_acc"] >= 0.99 and mem["wo1_acc"] >= 0.99
    assert mem["ff1_loss"] == -1.0
    fresh = TwoLayerModel(TwoLayerConfig(d_model=512, final_ffn="none"), stats.n,
                          torch.Generator().manual_seed(0))
    untrained = memory_metrics(fresh, stats.bigram.float())
    assert max(untrained["wk0_acc"], untrained["wk1_acc"], untrained["wo1_acc"]) < 0.2
    assert data_metrics(fresh, x, y, outs)["acc_end"] < 0.1


def test_construction_ffn_and_decomposition(stats):
    model = TwoLayerModel(TwoLayerConfig(d_model=128, final_ffn="linear"), stats.n,
                          torch.Generator().manual_seed(0))
    reference_construction(model, stats.bigram.float())
    assert memory_metrics(model, stats.bigram.float())["ff1_loss"] < 1e-3
    tokens = sample_batch(stats, 4, 32, gen=torch.Generator().manual_seed(7))[0]
    paths = path_logits(model, tokens)
    total = paths["direct"] + paths["layer1"] + paths["induction"] + paths["ffn"]
    assert torch.allclose(total, paths["logits"], atol=1e-3, rtol=1e-4)
    # the FFN's relay of the induction output is in the induction path, not in the FFN path
    _, cache = model.run_with_cache(tokens)
    a2 = cache["blocks.1.hook_attn_out"][:, -1]
    h1 = cache["blocks.1.hook_resid_pre"][:, -1]
    W_F = model.blocks[1].mlp.W_F
    assert torch.allclose(paths["induction"], (a2 + a2 @ W_F.T) @ model.W_U, atol=1e-3)
    assert torch.allclose(paths["ffn"], (h1 @ W_F.T) @ model.W_U, atol=1e-3)


def test_frozen_matrices_do_not_train(stats):
    model = TwoLayerModel(TwoLayerConfig(d_model=32, pos="rel_bias"), stats.n,
                          torch.Generator().manual_seed(0), train_len=32)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert set(frozen) == {"W_E", "W_U", "blocks.0.attn.W_V", "blocks.0.attn.W_O",
                           "blocks.1.attn.W_V"}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert set(trained) == {"blocks.0.attn.W_K", "blocks.0.attn.rel.b", "blocks.1.attn.W_K",
                            "blocks.1.attn.W_O", "blocks.1.mlp.W_F"}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5,
                          momentum=0.9, weight_decay=1e-2)
    g = torch.Generator().manual_seed(8)
    for _ in range(3):
        x, y, _ = sample_batch(stats, 16, 32, K=3, gen=g)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, trained[n]), n


def test_positional_schemes_and_hooks(stats):
    x = sample_batch(stats, 2, 40, gen=torch.Generator().manual_seed(9))[0]
    for pos in ("ape_random", "ape_learned", "ape_sincos", "rope1", "rel_bias", "none"):
        model = TwoLayerModel(TwoLayerConfig(d_model=16, pos=pos, max_len=64), stats.n,
                              torch.Generator().manual_seed(0), train_len=20)
        logits, cache = model.run_with_cache(x)
        assert logits.shape == (2, 40, 65)
        assert cache["blocks.1.attn.hook_pattern"].shape == (2, 1, 40, 40)
        assert cache["blocks.0.attn.hook_q"].shape == (2, 40, 1, 16)
        assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(2, 1, 40))
        assert cache["blocks.0.attn.hook_pattern"].triu(1).abs().max() == 0  # causal
    one = TwoLayerModel(TwoLayerConfig(d_model=16, n_layers=1), stats.n,
                        torch.Generator().manual_seed(0))
    assert one.blocks[0].attn.W_O.requires_grad and len(one.blocks) == 1
    assert memory_metrics(one, stats.bigram.float())["wk1_acc"] == -1.0


def test_rope_is_relative(stats):
    """With rope1, shifting the whole sequence by a prefix leaves later layer-1 scores alone
    up to the content: identical content at two offsets gives identical score differences."""
    model = TwoLayerModel(TwoLayerConfig(d_model=16, pos="rope1"), stats.n,
                          torch.Generator().manual_seed(0))
    tok = torch.tensor([[5, 9, 13, 20, 5, 9, 13, 20]])
    _, cache = model.run_with_cache(tok)
    s = cache["blocks.0.attn.hook_attn_scores"][0, 0]
    assert torch.allclose(s[5, 4], s[1, 0], atol=1e-4)  # same tokens, same offset 1
    assert torch.allclose(s[7, 5], s[3, 1], atol=1e-4)


def test_prev_token_probe_detects_planted_pattern():
    A = torch.zeros(1, 6, 6)
    A[0, 0, 0] = 1
    for t in range(1, 6):
        A[0, t, t - 1] = 1
    assert prev_token_acc(A) == 1.0
    A[0, 5] = 0
    A[0, 5, 5] = 1
    assert prev_token_acc(A) == pytest.approx(0.8)
    assert prev_token_acc(A, start=5) == 0.0


def test_bad_configs_are_refused():
    for name, over, key in [("induction-head", {"model.n_layers": "3"}, "n_layers"),
                            ("induction-head", {"model.pos": "alibi"}, "pos"),
                            ("hijack-length", {"schemes": "ape_random,ape_sincos"}, "schemes"),
                            ("hijack-length", {"model.max_len": "100"}, "max_len"),
                            ("hijack-prompts", {"grid.p1_n": "1,40"}, "p1_n"),
                            ("induction-standard", {"model.pos": "alibi"}, "pos"),
                            ("induction-depth", {"task.seq_len": "1"}, "seq_len")]:
        with pytest.raises(ConfigError, match=key):
            get_experiment(name).make_config(over)


def test_experiment_runs_and_is_deterministic(tmp_path):
    exp = get_experiment("induction-depth")
    over = {"model.d_model": "16", "task.seq_len": "16", "train.steps": "4", "seeds": "0,1",
            "train.eval_every": "2", "train.batch_size": "8", "eval_batch": "8"}
    cfg = exp.make_config(over)
    a = run_experiment(exp, cfg, out=tmp_path / "a", show_progress=False)
    run_experiment(exp, cfg, out=tmp_path / "b", show_progress=False)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == \
        (tmp_path / "b" / "metrics.jsonl").read_text()
    # four steps cannot beat the null by 0.3: never "holds"
    assert a["verdict"] in ("fails", "inconclusive") and "order-free null" in a["evidence"]
    assert (tmp_path / "a" / "depth.png").exists()


def test_path_metrics_on_construction(stats, built):
    x, y, outs = sample_batch(stats, 8, 128, K=5, gen=torch.Generator().manual_seed(10))
    m = path_metrics(built, x, y, outs)
    assert m["logit_induction_head"] > 50  # the copy margin of the built W_O2 (100)
    assert abs(m["logit_direct_head"]) < 5
    assert "logit_ffn_head" not in m  # no FFN in this model


@pytest.mark.parametrize("final_ffn", ["none", "linear"])
def test_batch_metrics_is_data_and_path_metrics_in_one_forward(stats, final_ffn):
    """The probes' single chunked forward gives the numbers of the two separate ones, over
    more sequences than one chunk (SEQ_CHUNK) and with and without the FFN relay."""
    from factlab.probes.induction import SEQ_CHUNK, batch_metrics

    model = TwoLayerModel(TwoLayerConfig(d_model=32, final_ffn=final_ffn), stats.n,
                          torch.Generator().manual_seed(2), train_len=32)
    x, y, outs = sample_batch(stats, SEQ_CHUNK + 9, 32, K=3,
                              gen=torch.Generator().manual_seed(4))
    one = batch_metrics(model, x, y, outs)
    two = {**data_metrics(model, x, y, outs), **path_metrics(model, x, y, outs)}
    assert one.keys() == two.keys()
    assert all(one[k] == pytest.approx(two[k], rel=1e-5, abs=1e-6) for k in two)
    assert ("logit_ffn_head" in one) == (final_ffn != "none")


def test_quick_presets_are_valid_and_sized():
    """The quick default of hijack-prompts trains the one scheme that can meet its
    prerequisite in the budget; the others stay available through `schemes`."""
    prompts = get_experiment("hijack-prompts").make_config({})
    assert prompts.schemes == ("rel_bias",) and prompts.train.steps == 1000
    assert prompts.model.d_model == 128
    assert get_experiment("hijack-prompts").make_config({"schemes": "ape_random,rel_bias"}) \
        .schemes == ("ape_random", "rel_bias")
