"""bioS tier: the biography generator, its augmentations and Q&A, the small GPT, the experiment."""

from __future__ import annotations

import pytest
import torch

from factlab.cli import main
from factlab.models.gpt import GPT, GPTConfig
from factlab.tasks.bios import (
    ATTRIBUTES,
    BOS,
    EOS,
    PAD,
    Bios,
    BiosConfig,
    pad_batch,
    parse_augment,
    qa_batch,
)

SMALL = BiosConfig(n_people=40, n_first=10, n_middle=10, n_last=10, n_cities=12,
                   n_universities=9, n_majors=8, n_employers=10, n_templates=12, n_years=30)


@pytest.fixture(scope="module")
def bios() -> Bios:
    return Bios(SMALL, torch.Generator().manual_seed(0))


def _text(b: Bios, ids: list[int]) -> str:
    return " ".join(b.vocab[i] for i in ids)


def test_population_is_unique_and_consistent(bios):
    assert len(set(bios.names)) == SMALL.n_people
    for p in range(SMALL.n_people):  # the company city is the employer's headquarters
        hq = bios.pools["birth_city"][int(bios.hq[bios.attr["employer"][p]])]
        assert bios.value(p, "company_city") == hq
    assert all(len(t) == SMALL.n_templates for t in bios.templates.values())
    again = Bios(SMALL, torch.Generator().manual_seed(0))
    assert again.names == bios.names and again.dates == bios.dates


def test_augmentations(bios):
    assert parse_augment("multi5+permute+fullname") == parse_augment("fullname+permute+multi5")
    with pytest.raises(ValueError):
        parse_augment("multi5+shuffle")
    gen = torch.Generator().manual_seed(1)
    name = bios.names[3]
    single = bios.entries([3], "single", gen)
    assert len(single) == 1 and _text(bios, single[0]).count(name.split()[0]) == 1
    # single keeps the attribute order: birth date first, employer city last
    sentences = _text(bios, single[0][1:-2]).split(" . ")
    assert bios.value(3, "birth_date").split()[0] in sentences[0]
    perm = bios.entries([3], "single+permute5", gen)
    drop = set(name.split()) | {"he", "she", "He", "She"}
    bags = {tuple(sorted(t for t in _text(bios, e).split() if t not in drop)) for e in perm}
    assert len(perm) == 5 and len(bags) == 1  # the same sentences
    assert len({tuple(e) for e in perm}) > 1  # in different orders
    for e in perm:  # the name stays in the first sentence only
        text = _text(bios, e)
        assert text.count(name) == 1 and name in text.split(" . ")[0]
    multi = bios.entries([3], "multi5", gen)
    assert len(multi) == 5 and len({tuple(e) for e in multi}) > 1
    full = bios.entries([3], "single+fullname", gen)
    assert _text(bios, full[0]).count(name) == len(ATTRIBUTES)
    for e in single + perm + multi + full:
        assert e[0] == bios.stoi[BOS] and e[-1] == bios.stoi[EOS]
        text = _text(bios, e)
        for a in ATTRIBUTES:  # every entry states every attribute
            assert " ".join(bios.value(3, a).replace(",", " ,").split()) in text


def test_qa_items_and_batches(bios):
    items = bios.qa([0, 1])
    assert len(items) == 2 * len(ATTRIBUTES)
    prompt, answer, k = items[1]
    assert _text(bios, prompt).endswith("Answer :") and bios.names[0].split()[0] in _text(bios, prompt)
    assert _text(bios, answer[:-1]) == " ".join(bios.value(0, ATTRIBUTES[k]).replace(",", " ,").split())
    x, y, att = qa_batch(items, bios.stoi[PAD])
    assert x.shape == y.shape and att.tolist() == list(range(6)) * 2
    n_loss = (y != -100).sum(-1)  # loss only on the answer tokens and EOS
    assert n_loss.tolist() == [len(a) for _, a, _ in items]


def test_gpt_hooks_and_causality():
    cfg = GPTConfig(d_model=16, n_layers=2, n_heads=2, n_ctx=12, d_vocab=20)
    model = GPT(cfg, torch.Generator().manual_seed(0))
    expected = ["hook_embed", "hook_pos_embed"]
    for l in range(2):
        expected += [f"blocks.{l}.{n}" for n in (
            "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores",
            "attn.hook_pattern", "attn.hook_z", "mlp.hook_pre", "mlp.hook_post",
            "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
            "hook_mlp_out")]
    assert sorted(model.hook_names) == sorted(expected + ["ln_final.hook_normalized"])
    tokens = torch.randint(0, 20, (3, 10), generator=torch.Generator().manual_seed(1))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (3, 10, 20)
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (3, 2, 10, 10)
    assert torch.allclose(pattern.sum(-1), torch.ones(3, 2, 10))
    assert pattern.triu(1).abs().max() == 0  # causal
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 20  # the future does not change the past
    assert torch.allclose(model(changed)[:, :-1], logits[:, :-1], atol=1e-6)
    assert cache["blocks.0.attn.hook_q"].shape == (3, 10, 2, 8)


def test_gpt_memorises_biographies(bios):
    torch.manual_seed(0)
    entries = bios.entries(range(8), "single", torch.Generator().manual_seed(0))
    x, y = pad_batch(entries, None, bios.stoi[PAD])
    model = GPT(GPTConfig(d_model=48, n_layers=2, n_heads=4, n_ctx=x.shape[1],
                          d_vocab=len(bios.vocab)), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(),
                                                 ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    hit = (model(x).argmax(-1) == y)[y != -100].float().mean()
    assert hit > 0.95  # full-batch training memorises eight biographies


def test_bios_experiment_small_run(tmp_path):
    from factlab.experiments.base import run_experiment
    from factlab.experiments.bios import BIOS, bios_verdict

    cfg = BIOS.make_config({
        "bios.n_people": 16, "bios.n_first": 6, "bios.n_middle": 6, "bios.n_last": 6,
        "bios.n_cities": 6, "bios.n_universities": 6, "bios.n_majors": 6, "bios.n_employers": 6,
        "bios.n_years": 10, "model.d_model": 32, "model.n_layers": 2,
        "pretrain.steps": 80, "pretrain.lr": 3e-3, "pretrain.eval_every": 40,
        "qa.steps": 100, "qa.lr": 3e-3, "qa.eval_every": 100, "seeds": "0,1"})
    summary = run_experiment(BIOS, cfg, out=tmp_path / "run", show_progress=False)
    per_seed = summary["metrics"]["results"]
    assert len(per_seed) == 2 and summary["metrics"]["seed_verdicts"]
    for res in per_seed:
        assert set(res) == {"single", "multi5+permute"}
        for row in res.values():
            assert row["qa_train_acc"] >= 0.5  # QA fine-tuning fits P_train
            assert 0 <= row["qa_test_acc"] <= 1 and row["n_test_items"] == 8 * 6
    states = [bios_verdict(res, "single", "multi5+permute").state for res in per_seed]
    assert summary["metrics"]["seed_verdicts"] == states
    assert "over 2 seeds" in summary["evidence"]
    assert (tmp_path / "run" / "bios_accuracy.png").is_file()


def _planted(rich: float, base: float, n: int = 600, fit: float = 0.99) -> dict:
    return {"single": {"qa_test_acc": base, "qa_train_acc": fit, "n_test_items": n},
            "multi5+permute": {"qa_test_acc": rich, "qa_train_acc": fit, "n_test_items": n}}


def test_bios_verdict_on_planted_records():
    from factlab.experiments.bios import bios_verdict, judge_bios

    base, rich = "single", "multi5+permute"
    assert bios_verdict(_planted(0.90, 0.10), base, rich).state == "holds"
    assert bios_verdict(_planted(0.20, 0.10), base, rich).state == "fails"
    # a gap near the threshold on few items cannot be placed
    assert bios_verdict(_planted(0.38, 0.10, n=30), base, rich).state == "inconclusive"
    unfit = bios_verdict(_planted(0.90, 0.10, fit=0.2), base, rich)
    assert unfit.state == "inconclusive" and "did not fit" in unfit.reason
    # over seeds: 2 of 3 agree with the mean -> decided; split seeds -> inconclusive
    assert judge_bios([_planted(0.9, 0.1)] * 2 + [_planted(0.2, 0.1)], base, rich).state \
        == "holds"
    split = judge_bios([_planted(0.9, 0.1), _planted(0.12, 0.1), _planted(0.38, 0.1, n=30)],
                       base, rich)
    assert split.state == "inconclusive"


def test_bad_augmentation_is_refused(capsys):
    assert main(["show", "bios", "augments=single,multi5+shuffle"]) == 2
    err = capsys.readouterr().err.strip()
    assert "augments" in err and "\n" not in err
