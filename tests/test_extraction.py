"""Knowledge acquisition and extraction: corpus invariants, LoRA, probes, a small pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from factlab.analysis.stats import spearman
from factlab.config import ConfigError
from factlab.experiments import get_experiment
from factlab.models.lora import add_lora, lora_parameters, merge_lora
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.pipelines.extraction import ExtractionConfig, make_model, run_pipeline
from factlab.probes import extraction as P
from factlab.tasks.extraction_corpus import CorpusConfig, build_corpus
from factlab.train.loop import TrainConfig, train

SMALL = CorpusConfig(n_subjects=60, n_relations=3, n_templates=5, n_answers=4, multiplicity=3,
                     seq_len=8, n_noise=10, coverage=0.4, n_finetune=200)


# ----------------------------------------------------------------------------- corpus


def test_each_fact_appears_with_exactly_k_distinct_templates():
    corpus = build_corpus(SMALL, seed=1)
    rows = corpus.pretrain_rows()
    assert len(rows) == SMALL.n_subjects * SMALL.n_relations * SMALL.multiplicity
    facts = rows[:, 0] * SMALL.n_relations + rows[:, 1]
    counts = torch.bincount(facts, minlength=SMALL.n_subjects * SMALL.n_relations)
    assert (counts == SMALL.multiplicity).all()
    distinct = torch.unique(rows, dim=0)  # (s, r, j) never repeats: K *distinct* templates
    assert len(distinct) == len(rows)
    # and the sequences carry the right tokens: one subject, one template of r, ANS last
    tokens = corpus.pretrain_tokens(rows, torch.Generator().manual_seed(0))
    v = corpus.vocab
    assert (v.is_subject(tokens).sum(1) == 1).all() and (v.is_template(tokens).sum(1) == 1).all()
    assert (tokens[:, -1] == v.ANS).all()
    assert ((tokens == v.QFMT) | (tokens == v.AFMT)).sum() == 0  # Q&A format unseen
    tmpl = tokens[v.is_template(tokens)] - v.template0
    assert torch.equal(tmpl // SMALL.n_templates, rows[:, 1])


def test_repeats_mode_uses_one_template_k_times():
    corpus = build_corpus(dataclasses.replace(SMALL, multiplicity_mode="repeats"), seed=1)
    J = corpus.J
    assert (J[..., :1] == J).all() and J.shape[-1] == SMALL.multiplicity


def test_held_out_subjects_never_fine_tuned_and_coverage_is_as_asked():
    for mode, c in [("random", 0.4), ("random", 1 / 15), ("relations", 2 / 3), ("random", 0.0)]:
        cfg = dataclasses.replace(SMALL, coverage=c, coverage_mode=mode)
        corpus = build_corpus(cfg, seed=2)
        ft = corpus.finetune
        assert not torch.isin(ft[:, 0], corpus.test_subjects).any()
        assert torch.isin(ft[:, 0], corpus.train_subjects).all()
        assert len(set(corpus.train_subjects.tolist()) & set(corpus.test_subjects.tolist())) == 0
        expected = round(c * SMALL.universe) if mode == "random" else \
            round(c * SMALL.n_relations) * SMALL.n_templates
        assert int(corpus.covered.sum()) == expected
        if len(ft):
            assert corpus.covered[ft[:, 1], ft[:, 2]].all()  # only covered directions
            # without replacement while possible: 200 draws, all distinct when the pool allows
            pool = len(corpus.train_subjects) * expected
            assert len(torch.unique(ft, dim=0)) == min(len(ft), pool)
        else:
            assert c == 0
        if mode == "relations":
            rel = corpus.covered.any(-1)
            assert torch.equal(corpus.covered, rel[:, None].expand_as(corpus.covered))


def test_same_seed_same_corpus_and_coverage_does_not_change_facts():
    a = build_corpus(SMALL, seed=3)
    b = build_corpus(dataclasses.replace(SMALL, coverage=1.0), seed=3)
    assert torch.equal(a.J, b.J) and torch.equal(a.test_subjects, b.test_subjects)
    assert torch.equal(a.kb.answers, b.kb.answers)
    assert torch.equal(build_corpus(SMALL, seed=3).finetune, a.finetune)


def test_bad_configs_are_refused():
    exp = get_experiment("extraction")
    with pytest.raises(ConfigError, match="multiplicity"):
        exp.make_config({"corpus.multiplicity": 9, "corpus.n_templates": 8})
    with pytest.raises(ConfigError, match="coverage"):
        exp.make_config({"corpus.coverage": 1.5})
    with pytest.raises(ConfigError, match="lora_targets"):
        exp.make_config({"lora_targets": "W_X"})
    with pytest.raises(ConfigError, match="values"):
        get_experiment("extraction-multiplicity").make_config({"values": "1,2,16"})


# ----------------------------------------------------------------------------- LoRA


def _model(gen: torch.Generator) -> OneLayerTransformer:
    return OneLayerTransformer(OneLayerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), 20, 6,
                               gen)


def test_lora_is_an_exact_noop_at_init_and_trains_only_its_factors(gen):
    model = _model(gen)
    tokens = torch.randint(0, 20, (32, 5), generator=gen)
    labels = torch.randint(0, 6, (32,), generator=gen)
    before = model(tokens).detach()
    originals = {k: v.detach().clone() for k, v in model.named_parameters()}
    adapters = add_lora(model, ["blocks.0.mlp.W_in", "blocks.0.attn.W_Q"], rank=2, gen=gen)
    assert torch.equal(model(tokens), before)  # bit for bit
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in lora_parameters(adapters)}
    assert adapters["blocks.0.attn.W_Q"].A.shape == (2, 2, 16)  # one adapter per head
    cfg = TrainConfig(optimizer="adam", lr=0.05, steps=30, eval_every=30)
    train(trainable, lambda step: torch.nn.functional.cross_entropy(model(tokens), labels), cfg)
    for name, p in model.named_parameters():
        if name.endswith(".original"):
            key = name.replace("parametrizations.", "").replace(".original", "")
            assert torch.equal(p, originals[key])  # the wrapped weight itself never moves
    assert adapters["blocks.0.mlp.W_in"].B.abs().sum() > 0
    assert not torch.equal(model(tokens), before)
    delta = adapters["blocks.0.mlp.W_in"].delta()
    assert torch.linalg.matrix_rank(delta) <= 2
    after = model(tokens).detach()
    merge_lora(model, adapters)
    torch.testing.assert_close(model(tokens), after)


def test_lora_col_layout_matches_linear_convention(gen):
    lin = torch.nn.Linear(6, 4, bias=False)
    x = torch.randn(3, 6, generator=gen)
    ad = add_lora(lin, ["weight"], rank=2, alpha=4.0, layout="col", gen=gen)["weight"]
    with torch.no_grad():
        ad.B.normal_(generator=gen)
    W0 = lin.parametrizations.weight.original
    expected = x @ (W0 + 2.0 * ad.B @ ad.A).T
    torch.testing.assert_close(lin(x), expected)


# ----------------------------------------------------------------------------- probes


def test_probes_on_planted_patterns():
    pattern = torch.zeros(2, 1, 1, 4)
    pattern[:, 0, 0, 1] = 0.7
    pattern[:, 0, 0, 3] = 0.3
    mask = torch.tensor([[False, True, False, False]] * 2)
    assert P.attention_mass(pattern, mask) == pytest.approx(0.7)
    u, v = torch.randn(8), torch.randn(5)
    spec = P.update_spectrum(torch.outer(u, v) + 1e-6 * torch.randn(8, 5))
    assert spec["top_energy"] > 0.999 and P.abs_cosine(spec["u1"], u) > 0.999
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.1, 0.0]])
    labels = torch.tensor([0, 0, 1])
    assert P.hallucination_rate(logits, labels, 0.9) == pytest.approx(1 / 3)  # row 2 only
    x = np.linspace(0, 3, 8)
    fit = P.fit_log_error(x, 1 - 0.5 * np.exp(-1.5 * x))
    assert fit["b"] == pytest.approx(1.5, rel=1e-6) and fit["r2"] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.9]) == pytest.approx(0.8)
    vecs = torch.randn(3, 1, 16) + 0.05 * torch.randn(3, 4, 16)  # a shared direction per rel
    cos = P.relation_direction_cosine(vecs)
    assert cos["within"] > 0.9 > abs(cos["across"]) + 0.5


# ----------------------------------------------------------------------------- pipeline


def test_small_pipeline_extracts_held_out_facts_at_full_coverage():
    exp = get_experiment("extraction")
    cfg = exp.make_config({"pretrain.eval_every": 250, "finetune.eval_every": 500,
                           "corpus.n_subjects": 120, "corpus.coverage": 1.0})
    out = run_pipeline(cfg, seed=0, device=torch.device("cpu"))
    chance = 1 / cfg.corpus.n_answers  # within the right answer block
    assert out["stored_acc"] >= 0.99
    assert out["test_acc"] >= max(0.5, 4 * chance)  # held-out facts, never fine-tuned
    assert out["test_acc_cov_unseen"] >= 0.4  # even templates the fact was never seen with
    assert out["qa_train_acc"] > 0.95


def test_model_vocabulary_matches_corpus():
    cfg = ExtractionConfig(corpus=SMALL, model=OneLayerConfig(d_model=8, n_heads=1, d_head=8,
                                                              d_mlp=8))
    corpus = build_corpus(SMALL, 0)
    model = make_model(cfg, corpus, 0, torch.device("cpu"))
    rows = corpus.test_rows()[:5]
    assert model(corpus.qa_tokens(rows)).shape == (5, SMALL.n_relations * SMALL.n_answers)
    assert corpus.qa_tokens(rows).max() < corpus.vocab.size
