"""Knowledge acquisition and extraction: corpus invariants, LoRA, probes, the verdict functions
on planted records (each must hold, fail and be inconclusive), a small pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from factlab.analysis.extraction_stats import log_error_fit, relation_gap_null
from factlab.analysis.seeds import mean_records
from factlab.analysis.selection import best_on_validation
from factlab.analysis.stats import spearman
from factlab.config import ConfigError
from factlab.experiments import extraction as E
from factlab.experiments import extraction_lora as EL
from factlab.experiments import extraction_training as ETR
from factlab.experiments import extraction_trends as ET
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
        assert not torch.isin(ft[:, 0], corpus.val_subjects).any()
        assert torch.isin(ft[:, 0], corpus.train_subjects).all()
        splits = [set(x.tolist()) for x in (corpus.train_subjects, corpus.val_subjects,
                                             corpus.test_subjects)]
        assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
        assert sum(len(x) for x in splits) == SMALL.n_subjects and all(splits)
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


def test_probes_on_planted_patterns(gen):
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
    fit = log_error_fit(x, 1 - 0.5 * np.exp(-1.5 * x))
    assert fit["b"] == pytest.approx(1.5, rel=1e-6) and fit["r2"] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.9]) == pytest.approx(0.8)
    vecs = torch.randn(3, 1, 16) + 0.05 * torch.randn(3, 4, 16)  # a shared direction per rel
    cos = P.relation_direction_cosine(vecs)
    assert cos["within"] > 0.9 > abs(cos["across"]) + 0.5
    null = relation_gap_null(vecs, torch.Generator().manual_seed(0), n_perm=200)
    assert cos["within"] - cos["across"] > null  # the shared direction beats relabelling
    assert relation_gap_null(torch.randn(3, 4, 16, generator=gen), gen, n_perm=200) < 0.5
    null99 = P.random_cosine_null(64, gen)
    assert 0.2 < null99 < 0.45  # |cos| of random directions in R^64: sd 1/8, q99 ~ 2.6 sd


def test_validation_choice_takes_the_best_and_the_first_on_ties():
    assert best_on_validation({1e-4: 0.5, 3e-4: 0.7, 1e-3: 0.7}) == 3e-4
    assert best_on_validation({1e-4: float("nan"), 3e-4: 0.1}) == 3e-4
    rows = [{"seed": s, "K": k, "test_acc": 0.1 * k + 0.01 * s, "flag": s == 2}
            for s in range(3) for k in (1, 2)]
    means = {r["K"]: r for r in mean_records(rows, ("K",))}
    assert means[2]["test_acc"] == pytest.approx(0.21) and means[1]["flag"] is True


# ----------------------------------------------------------------------------- pipeline


def test_small_pipeline_extracts_held_out_facts_at_full_coverage():
    exp = get_experiment("extraction")
    cfg = exp.make_config({"scale": "quick", "corpus.n_subjects": 120, "finetune_lrs": "3e-4,3e-3",
                           "finetune.eval_every": 100})
    out = run_pipeline(cfg, seed=0, device=torch.device("cpu"))
    chance = 1 / cfg.corpus.n_answers  # within the right answer block
    assert out["stored_acc"] >= 0.99
    assert out["test_acc"] >= max(0.5, 4 * chance)  # held-out facts, never fine-tuned
    assert out["test_acc_cov_unseen"] >= 0.4  # even templates the fact was never seen with
    # the lr is the validation argmax, never a test-set choice
    assert out["lr"] == (3e-4, 3e-3)[int(np.argmax(out["val_acc_by_lr"]))]
    assert out["val_acc"] == max(out["val_acc_by_lr"])


def test_model_vocabulary_matches_corpus():
    cfg = ExtractionConfig(corpus=SMALL, model=OneLayerConfig(d_model=8, n_heads=1, d_head=8,
                                                              d_mlp=8))
    corpus = build_corpus(SMALL, 0)
    model = make_model(cfg, corpus, 0, torch.device("cpu"))
    rows = corpus.test_rows()[:5]
    assert model(corpus.qa_tokens(rows)).shape == (5, SMALL.n_relations * SMALL.n_answers)
    assert corpus.qa_tokens(rows).max() < corpus.vocab.size


# ----------------------------------------------------------------------------- verdicts
# Each judge is run through the experiments' own seed rule on three planted seeds.


def _seeds(cells: list[dict], **per_seed) -> list[dict]:
    """Three seeds of `cells`; per_seed[key] = (v0, v1, v2) overrides a field per seed."""
    rows = []
    for s in range(3):
        for c in cells:
            rows.append({**c, "seed": s, **{k: v[s] for k, v in per_seed.items()}})
    return rows


BASE = {"stored_acc": 1.0, "retained_acc": 0.9, "chance_block": 0.125, "lr": 1e-3,
        "still_improving": False, "test_acc_cov_unseen": 0.5, "pretrain_improving": False}


def test_extraction_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    cell = {**BASE, "test_acc": 0.7, "test_acc_cov_seen": 0.8}
    assert over_seeds(_seeds([cell]), E.judge_extraction, ()).state == "holds"
    assert over_seeds(_seeds([{**cell, "test_acc": 0.3}]), E.judge_extraction, ()).state == "fails"
    low = _seeds([cell], stored_acc=(0.9, 0.95, 1.0))
    assert over_seeds(low, E.judge_extraction, ()).state == "inconclusive"
    starved = _seeds([{**cell, "test_acc": 0.3, "still_improving": True}])
    assert over_seeds(starved, E.judge_extraction, ()).state == "inconclusive"
    split = _seeds([cell], test_acc=(0.7, 0.3, 0.3))  # mean 0.43 fails, one seed holds...
    split2 = _seeds([cell], test_acc=(0.9, 0.9, 0.2))  # mean 0.67 holds, one seed fails: ok
    from factlab.analysis.seeds import over_seeds as o
    assert o(split, E.judge_extraction, ()).state == "fails"
    assert o(split2, E.judge_extraction, ()).state == "holds"
    mixed = _seeds([cell], test_acc=(0.9, 0.4, 0.45))  # mean 0.58 holds, 2 of 3 seeds fail
    assert o(mixed, E.judge_extraction, ()).state == "inconclusive"


def test_acquisition_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    cell = {**BASE, "mass_subject": 0.4, "mass_template": 0.3, "rel_cos_within": 0.8,
            "rel_cos_across": 0.0, "rel_gap_null": 0.2, "uniform_mass": 0.25}
    assert over_seeds(_seeds([cell]), E.judge_acquisition, ()).state == "holds"
    flat = {**cell, "mass_subject": 0.15, "mass_template": 0.15}  # attention not structured
    assert over_seeds(_seeds([flat]), E.judge_acquisition, ()).state == "fails"
    nodir = {**cell, "rel_cos_within": 0.1}  # gap 0.1 below the null's 0.2
    assert over_seeds(_seeds([nodir]), E.judge_acquisition, ()).state == "fails"
    assert over_seeds(_seeds([{**cell, "stored_acc": 0.5}]), E.judge_acquisition,
                      ()).state == "inconclusive"


def _trend_cells(key: str, values: list, accs: list, seen: list) -> list[dict]:
    return [{**BASE, key: v, "test_acc": a, "test_acc_cov_seen": s}
            for v, a, s in zip(values, accs, seen)]


@pytest.mark.parametrize("judge,key,sign", [(ET.judge_multiplicity, "K", 1),
                                            (ET.judge_universe, "universe_size", -1)])
def test_two_part_trend_verdicts(judge, key, sign):
    from factlab.analysis.seeds import over_seeds
    values = [1, 2, 4]
    up, flat = [0.3, 0.5, 0.7], [0.6, 0.6, 0.61]
    good = up if sign > 0 else up[::-1]
    rows = _seeds(_trend_cells(key, values, good, good))
    assert over_seeds(rows, judge, (key,)).state == "holds"
    confounded = _seeds(_trend_cells(key, values, good, flat))  # overall only: composition
    assert over_seeds(confounded, judge, (key,)).state == "fails"
    unstored = _seeds(_trend_cells(key, values, good, good), stored_acc=(0.5, 0.5, 1.0))
    assert over_seeds(unstored, judge, (key,)).state == "inconclusive"


def _coverage_cells(unc: float, retained: float) -> list[dict]:
    rnd = [{**BASE, "mode": "random", "coverage": c, "test_acc": a, "test_hallucination": 0.5}
           for c, a in [(0.0, 0.1), (0.25, 0.4), (1.0, 0.8)]]
    rel = [{**BASE, "mode": "relations", "coverage": c, "test_acc": 0.5,
            "test_acc_rel_uncovered": u, "test_acc_rel_covered": 0.8, "retained_acc": retained,
            "test_hallucination": 0.5} for c, u in [(0.25, unc), (1.0, float("nan"))]]
    return rnd + rel


def test_coverage_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    keys = ("mode", "coverage")
    assert over_seeds(_seeds(_coverage_cells(0.05, 0.95)), ET.judge_coverage,
                      keys).state == "holds"
    assert over_seeds(_seeds(_coverage_cells(0.6, 0.95)), ET.judge_coverage,
                      keys).state == "fails"  # uncovered relations are reachable
    assert over_seeds(_seeds(_coverage_cells(0.05, 0.2)), ET.judge_coverage,
                      keys).state == "fails"  # inaccessible because forgotten, not retained
    assert over_seeds(_seeds(_coverage_cells(0.05, 0.95), stored_acc=(0.97, 0.97, 0.97)),
                      ET.judge_coverage, keys).state == "inconclusive"


def test_size_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    def cells(accs):
        return [{**BASE, "setup": s, "n_finetune": n, "test_acc": a - 0.1 * i,
                 "bound_x": n * (1 + i) / 1000}
                for i, s in enumerate(("K=2, tau=4", "K=1, tau=4"))
                for n, a in zip((100, 300, 1000), accs)]
    keys = ("setup", "n_finetune")
    v = over_seeds(_seeds(cells([0.3, 0.5, 0.7])), ET.judge_size, keys)
    assert v.state == "holds" and np.isfinite(v.metrics["collapse_b"])
    assert over_seeds(_seeds(cells([0.5, 0.5, 0.5])), ET.judge_size, keys).state == "fails"
    assert over_seeds(_seeds(cells([0.3, 0.5, 0.7]), stored_acc=(0.1, 0.1, 0.1)), ET.judge_size,
                      keys).state == "inconclusive"


def _lora_cells(attn_acc: float, energy: float, improving: bool = False) -> list[dict]:
    full = {**BASE, "coverage": 1.0, "variant": "full", "target": "full", "rank": 0,
            "test_acc": 0.7, "val_acc": 0.7, "dW_QK_top_energy": energy,
            "dW_QK_align_format": 0.8, "align_null": 0.35, "dW_in_top_energy": 0.2,
            "dW_in_align_format": 0.2}
    out = [full]
    for target, acc in (("W_Q", attn_acc), ("W_in", 0.9)):
        out.append({**BASE, "coverage": 1.0, "variant": f"{target} r=1", "target": target,
                    "rank": 1, "test_acc": acc, "val_acc": acc, "still_improving": improving})
    return out


def test_lora_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    keys = ("coverage", "variant")
    assert over_seeds(_seeds(_lora_cells(0.68, 0.8)), EL.judge_lora, keys).state == "holds"
    # W_in's 0.9 does not count: the claim is about attention adapters
    assert over_seeds(_seeds(_lora_cells(0.5, 0.8)), EL.judge_lora, keys).state == "fails"
    assert over_seeds(_seeds(_lora_cells(0.68, 0.3)), EL.judge_lora, keys).state == "fails"
    assert over_seeds(_seeds(_lora_cells(0.5, 0.8, improving=True)), EL.judge_lora,
                      keys).state == "inconclusive"


def test_attention_only_verdict_holds_fails_inconclusive():
    from factlab.analysis.seeds import over_seeds
    def cells(one: float, many: float, mlp: float = 1.0, improving: bool = False):
        return [{**BASE, "variant": "mlp", "stored_acc": mlp},
                {**BASE, "variant": "attn_1head", "stored_acc": one},
                {**BASE, "variant": "attn_8heads", "stored_acc": many,
                 "pretrain_improving": improving}]
    j, keys = ETR.judge_attention_only, ("variant",)
    assert over_seeds(_seeds(cells(0.5, 0.995)), j, keys).state == "holds"
    assert over_seeds(_seeds(cells(0.995, 0.995)), j, keys).state == "fails"
    assert over_seeds(_seeds(cells(0.5, 0.9)), j, keys).state == "fails"
    assert over_seeds(_seeds(cells(0.5, 0.9, improving=True)), j, keys).state == "inconclusive"
    assert over_seeds(_seeds(cells(0.5, 0.995, mlp=0.9)), j, keys).state == "inconclusive"


def test_schedule_is_descriptive_and_reads_the_validation_choice():
    rows = [{"seed": s, "phase": "pretrain", "schedule": n, "pretrain_lr": lr, "lr": 3e-4,
             "val_acc": val, "test_acc": test, "stored_acc": 1.0, "steps_to_acquire": 500}
            for s in range(3) for n in ("constant", "cosine")
            for lr, val, test in ((1e-3, 0.6, 0.9), (3e-3, 0.7, 0.1))]
    selected = ETR.select_schedules(rows)
    assert all(r["pretrain_lr"] == 3e-3 for r in selected)  # validation, not test, decides
    v = ETR.describe_schedules(selected)
    assert v.state == "descriptive" and v.holds is None
    assert get_experiment("extraction-schedule").descriptive


def test_cells_share_a_pretraining_only_when_it_is_the_same():
    from factlab.pipelines.extraction_grid import pretrain_key, with_corpus
    cfg = get_experiment("extraction").make_config({"scale": "quick"})
    same = [with_corpus(cfg, coverage=0.25, coverage_mode="relations"),
            with_corpus(cfg, n_finetune=10), dataclasses.replace(cfg, method="lora")]
    assert all(pretrain_key(c) == pretrain_key(cfg) for c in same)
    other = [with_corpus(cfg, multiplicity=1), dataclasses.replace(cfg, pretrain_schedule="step")]
    assert all(pretrain_key(c) != pretrain_key(cfg) for c in other)


def test_per_relation_gaps_find_the_one_relation_without_a_direction():
    """Planted: relations 0-3 share a direction each, relation 4 is random. Each planted gap
    beats its own Bonferroni relabelling null, the random one does not."""
    from factlab.analysis.extraction_stats import relation_gaps, relation_nulls

    gen = torch.Generator().manual_seed(0)
    n_rel, tau, d = 5, 4, 32
    vecs = torch.randn(n_rel, 1, d, generator=gen) + 0.3 * torch.randn(n_rel, tau, d, generator=gen)
    vecs[4] = torch.randn(tau, d, generator=gen)
    unit = torch.nn.functional.normalize(vecs.flatten(0, 1).double(), dim=-1)
    gaps = relation_gaps(vecs)
    # the per-group gap from its definition, computed by brute force for relation 0
    cos = unit @ unit.T
    inside = [cos[i, j] for i in range(tau) for j in range(tau) if i != j]
    outside = [cos[i, j] for i in range(tau) for j in range(tau, n_rel * tau)]
    assert float(gaps[0]) == pytest.approx(float(sum(inside) / len(inside)
                                                 - sum(outside) / len(outside)))
    state = gen.get_state()
    aggregate, nulls = relation_nulls(vecs, gen, 1 - 0.05 / n_rel, n_perm=400)
    above = (gaps > nulls).tolist()
    assert above == [True, True, True, True, False]
    gen.set_state(state)  # one set of permutations: the aggregate null is relation_gap_null's
    assert aggregate == relation_gap_null(vecs, gen, n_perm=400)


def test_acquisition_verdict_judges_every_relation():
    from factlab.experiments.extraction import judge_acquisition

    base = {"stored_acc": 1.0, "mass_subject": 0.4, "mass_template": 0.3, "uniform_mass": 0.1,
            "rel_cos_within": 0.8, "rel_cos_across": 0.0, "rel_gap_null": 0.1,
            "rel_gaps": [0.8, 0.7, 0.9], "rel_gap_nulls": [0.2, 0.2, 0.2]}
    assert judge_acquisition([base]).state == "holds"
    one_missing = dict(base, rel_gaps=[0.8, 0.1, 0.9])
    v = judge_acquisition([one_missing])
    assert v.state == "fails" and "2/3" in v.evidence
    assert judge_acquisition([dict(base, stored_acc=0.5)]).state == "inconclusive"


def test_seed_mean_of_per_relation_lists_is_element_wise():
    from factlab.analysis.seeds import mean_records

    rows = [{"seed": 0, "gaps": [0.2, 0.4], "tag": "a"}, {"seed": 1, "gaps": [0.4, 0.8], "tag": "a"}]
    (mean,) = mean_records(rows, ())
    assert mean["gaps"] == pytest.approx([0.3, 0.6]) and mean["tag"] == "a"
