"""The HF path: offline loader and hook view, PopQA loader/scorer, popqa-extraction end to end.

Models are tiny random GPT-2 / Llama checkpoints with a word-level tokenizer, built in a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factlab.cli import main
from factlab.config import ConfigError
from factlab.store.run_dir import iter_jsonl
from factlab.tasks.popqa import (
    COLUMNS,
    TEMPLATES,
    first_line,
    fixture_path,
    is_correct,
    is_correct_normalised,
    load_popqa,
    parse_answers,
)

# ---------------------------------------------------------------- PopQA loader and scoring

def test_fixture_loads_in_the_real_schema():
    rows = load_popqa(fixture_path())
    header = fixture_path().read_text().splitlines()[0].split("\t")
    assert tuple(header) == COLUMNS
    assert len(rows) >= 30
    assert {r.prop_id for r in rows} == set(TEMPLATES)  # all 16 relation types
    for r in rows:  # possible_answers was a JSON string; the question follows the template
        assert isinstance(r.answers, tuple) and r.obj in r.answers
        assert r.question == TEMPLATES[r.prop_id].format(r.subj)


def test_parse_answers_json_then_python_literal():
    assert parse_answers('["Paris", "City of Light"]') == ["Paris", "City of Light"]
    assert parse_answers("['Paris']") == ["Paris"]
    for bad in ("Paris", "[1, 2]", "[]", '{"a": 1}', "['x'"):
        with pytest.raises(ValueError):
            parse_answers(bad)


def test_original_substring_rule():
    assert is_correct("He was a politician and lawyer", ["politician"])
    assert is_correct("Paris, France", ["paris"])  # g.capitalize()
    assert is_correct("born in london", ["London"])  # g.lower()
    assert not is_correct("BORN IN LONDON", ["London"])  # the prediction is not lower-cased
    assert is_correct_normalised("BORN IN LONDON", ["London"])
    assert first_line("\n  Paris\nQ: next question") == "Paris"


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def _fixture_lines() -> tuple[list[str], list[list[str]]]:
    lines = [line.split("\t") for line in fixture_path().read_text().splitlines()]
    return lines[0], lines[1:]


def test_loader_rejects_bad_files(tmp_path):
    header, rows = _fixture_lines()
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_popqa(empty)
    with pytest.raises(ConfigError, match="no rows"):
        load_popqa(_write_tsv(tmp_path / "h.tsv", header, []))
    drop = header.index("possible_answers")
    cut = _write_tsv(tmp_path / "cols.tsv", header[:drop] + header[drop + 1:],
                     [r[:drop] + r[drop + 1:] for r in rows])
    with pytest.raises(ConfigError, match="lacks the PopQA column.*possible_answers"):
        load_popqa(cut)
    broken = [list(r) for r in rows]
    broken[3][drop] = "[not json"
    with pytest.raises(ConfigError, match="line 5: possible_answers"):
        load_popqa(_write_tsv(tmp_path / "ans.tsv", header, broken))
    broken = [list(r) for r in rows]
    broken[0][header.index("prop_id")] = "999"
    with pytest.raises(ConfigError, match="line 2: prop_id 999"):
        load_popqa(_write_tsv(tmp_path / "prop.tsv", header, broken))


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", "popqa-extraction", "--no-progress", *args])
    return code, capsys.readouterr().err.strip()


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    header, rows = _fixture_lines()
    fake = tmp_path / "fake_model"  # passes the cheap check; the data fails first
    fake.mkdir()
    (fake / "config.json").write_text("{}")
    (fake / "tokenizer_config.json").write_text("{}")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    drop = header.index("s_pop")
    nocol = _write_tsv(tmp_path / "nocol.tsv", header[:drop] + header[drop + 1:],
                       [r[:drop] + r[drop + 1:] for r in rows])
    badans = [list(r) for r in rows]
    badans[0][header.index("possible_answers")] = "Paris"
    badans = _write_tsv(tmp_path / "badans.tsv", header, badans)
    cases = [(empty, "is empty"), (nocol, "lacks the PopQA column"),
             (badans, "possible_answers")]
    for data, message in cases:
        code, err = _cli(capsys, f"model={fake}", f"data={data}", "--out", str(tmp_path / "r"))
        assert code == 2 and message in err and "\n" not in err, err
    not_a_model = tmp_path / "weights"
    not_a_model.mkdir()
    code, err = _cli(capsys, f"model={not_a_model}")
    assert code == 2 and "not a HuggingFace model directory" in err and "\n" not in err
    code, err = _cli(capsys, f"model={tmp_path / 'missing'}")
    assert code == 2 and "no such directory" in err
    no_tok = tmp_path / "no_tokenizer"  # weights and config, but no tokenizer beside them
    no_tok.mkdir()
    (no_tok / "config.json").write_text('{"model_type": "gpt2"}')
    (no_tok / "model.safetensors").write_bytes(b"")
    code, err = _cli(capsys, f"model={no_tok}")
    assert code == 2 and "has no tokenizer" in err and "\n" not in err


def test_importing_factlab_does_not_import_transformers():
    code = ("import sys, factlab, factlab.cli, factlab.models.hf, factlab.tasks.popqa, "
            "factlab.pipelines.popqa, factlab.pipelines.popqa_run, factlab.pipelines.hf_lm, "
            "factlab.pipelines.convert_gguf, factlab.tasks.real_facts, "
            "factlab.experiments.popqa, factlab.experiments.bios; "
            "from factlab.experiments import all_experiments; all_experiments(); "
            "sys.exit(int('transformers' in sys.modules or "
            "'peft' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------- tiny HF checkpoints

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{"gpt2": path, "llama": path}: random tiny checkpoints over the fixture's vocabulary."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from factlab.pipelines.popqa import protocol_texts
    from factlab.pipelines.tiny_hf import build_tiny_checkpoint

    texts = protocol_texts(load_popqa(fixture_path()))
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_checkpoint(root / arch, texts, arch=arch,
                                        n_heads=2 if arch == "gpt2" else 4)
            for arch in ("gpt2", "llama")}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_hook_patterns_match_hf_eager_attentions(tiny, arch):
    from factlab.models.hf import load_causal_lm

    hf = load_causal_lm(tiny[arch])
    tokens = hf.tokenizer(["Q: What is Zudra Rommor's occupation? A: glassmonger"],
                          return_tensors="pt")["input_ids"]
    logits, cache = hf.run_with_cache(tokens)
    with torch.no_grad():
        out = hf.model(tokens, output_attentions=True)
    assert len(out.attentions) == hf.n_layers == 2
    for layer, attn in enumerate(out.attentions):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert pattern.shape == (1, hf.model.config.num_attention_heads, tokens.shape[1],
                                 tokens.shape[1])
        torch.testing.assert_close(pattern, attn)
        assert torch.allclose(pattern.sum(-1), torch.ones(()))  # rows are distributions
    torch.testing.assert_close(logits, out.logits)
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], cache["blocks.0.hook_resid_post"])
    assert set(cache) == set(hf.hook_names)


def test_loader_refuses_a_directory_that_is_not_a_model(tmp_path):
    pytest.importorskip("transformers")
    from factlab.models.hf import load_causal_lm

    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')  # config, no weights
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot load") as info:
        load_causal_lm(tmp_path)
    assert "\n" not in str(info.value)


def test_lora_targets_conv1d_with_fan_in_fan_out_and_freezes_the_base(tiny):
    from factlab.models.hf import load_causal_lm
    from factlab.pipelines.hf_lm import lora_wrap

    hf = load_causal_lm(tiny["gpt2"])
    net = lora_wrap(hf.model, rank=2, target_modules=())
    cfg = net.peft_config["default"]
    assert cfg.fan_in_fan_out and set(cfg.target_modules) == {"c_attn"} and cfg.r == 2
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with pytest.raises(ConfigError, match="target_modules"):
        lora_wrap(load_causal_lm(tiny["gpt2"]).model, 2, ["q_proj"])


_FAST = {"fewshot_k": 3, "pretrain.lr": 3e-3, "pretrain.steps": 250, "qa.steps": 200,
         "qa.lr": 3e-3, "lora_lr": 1e-2, "n_pop_bins": 2, "seeds": "0",
         "finetune": "full,lora"}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_popqa_extraction_end_to_end(tiny, tmp_path, arch):
    from factlab.experiments.base import run_experiment
    from factlab.experiments.popqa import POPQA_EXTRACTION, verdict_one

    cfg = POPQA_EXTRACTION.make_config({"model": str(tiny[arch]), **_FAST})
    summary = run_experiment(POPQA_EXTRACTION, cfg, out=tmp_path / "run", show_progress=False)
    seed = summary["metrics"]["seeds"][0]
    c = seed["common"]
    assert c["n_test"] > 0 and c["n_control"] > 0 and c["n_finetune"] > 0
    assert c["n_probe"] == c["n_rows"] == 48 and 0 <= c["probe_zero_shot"] <= 1
    assert c["retention_test"] >= 0.5  # continued pre-training stored held-out statements
    assert c["retention_control"] < c["retention_test"]  # the control group was never shown
    n_params = sum(p.numel() for p in torch.nn.Module.parameters(_load(tiny[arch])))
    for mode in ("full", "lora"):
        m = seed["modes"][mode]
        assert m["train_qa_acc"] >= 0.5  # Q&A fine-tuning fits the covered P_train questions
        assert m["n_test_covered"] > 0 and m["n_control_covered"] > 0
        if mode == "lora":
            assert m["trainable_params"] < 0.2 * n_params
        else:
            assert m["trainable_params"] == n_params  # peft's freeze was undone
        assert verdict_one({**c, **m}).state == summary["metrics"]["modes"][mode][
            "seed_verdicts"][0]
    records = list(iter_jsonl(tmp_path / "run" / "metrics.jsonl"))
    stages = [r["stage"] for r in records if r["split"] == "eval"]
    assert stages == ["base", "retention", "after_lora", "after_full"]
    assert sum(r["split"] == "probe" and r["group"] == "pop_bin" for r in records) == 2
    assert all("seed" in r for r in records)
    assert summary["verdict"] in ("holds", "fails", "inconclusive")
    assert (tmp_path / "run" / "groups.png").is_file()
    assert (tmp_path / "run" / "probe.png").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["figures"]


def _load(path):
    from factlab.models.hf import load_causal_lm

    return load_causal_lm(path).model


def test_popqa_extraction_is_a_pure_function_of_its_config(tiny, tmp_path):
    from factlab.experiments.base import run_experiment
    from factlab.experiments.popqa import POPQA_EXTRACTION

    cfg = POPQA_EXTRACTION.make_config({"model": str(tiny["gpt2"]), "finetune": "lora",
                                        "fewshot_k": 0, "pretrain.steps": 20, "qa.steps": 20,
                                        "pretrain.eval_every": 10, "max_new_tokens": 4,
                                        "seeds": "0"})
    for name in ("a", "b"):
        run_experiment(POPQA_EXTRACTION, cfg, out=tmp_path / name, show_progress=False)
    first = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert first and first == (tmp_path / "b" / "metrics.jsonl").read_text()


# ---------------------------------------------------------------- the verdict on planted records

def _rec(test_cov: float, ctl_cov: float, n: int = 60, retention: float = 0.95,
         fit: float = 0.99) -> dict:
    return {"test_covered": test_cov, "control_covered": ctl_cov, "n_test_covered": n,
            "n_control_covered": n, "test_uncovered": 0.1, "control_uncovered": 0.1,
            "retention_test": retention, "train_qa_acc": fit}


def test_popqa_verdict_on_planted_records():
    from factlab.experiments.popqa import judge, verdict_one

    assert verdict_one(_rec(0.8, 0.1)).state == "holds"
    assert verdict_one(_rec(0.1, 0.1, n=200)).state == "fails"  # retained, not extractable
    few = verdict_one(_rec(0.3, 0.1, n=8))  # a gap the sample cannot place
    assert few.state == "inconclusive" and "too few" in few.reason
    lost = verdict_one(_rec(0.1, 0.1, retention=0.2))  # facts never acquired: no claim
    assert lost.state == "inconclusive" and "not acquired" in lost.reason
    unfit = verdict_one(_rec(0.8, 0.1, fit=0.1))
    assert unfit.state == "inconclusive" and "did not fit" in unfit.reason
    assert verdict_one({**_rec(0.8, 0.1), "n_control_covered": 0}).state == "inconclusive"

    def seed(full: dict, lora: dict) -> dict:
        return {"common": {}, "modes": {"full": full, "lora": lora}}

    good, bad = _rec(0.8, 0.1), _rec(0.1, 0.1, n=200)
    assert judge([seed(good, good)] * 3, ("full", "lora")).state == "holds"
    assert judge([seed(good, bad)] * 3, ("full", "lora")).state == "fails"  # LoRA fails
    split = judge([seed(good, good), seed(bad, good), seed(_rec(0.3, 0.1, n=8), good)],
                  ("full", "lora"))
    assert split.state == "inconclusive"


# ---------------------------------------------------------------- context window, vocabularies

def test_short_context_is_fitted_or_refused_in_one_line(tmp_path):
    pytest.importorskip("transformers")
    from factlab.models.hf import context_window, load_causal_lm
    from factlab.pipelines.hf_lm import encode_pairs, generate
    from factlab.pipelines.popqa import protocol_texts
    from factlab.pipelines.tiny_hf import build_tiny_checkpoint

    rows = load_popqa(fixture_path())
    path = build_tiny_checkpoint(tmp_path / "short", protocol_texts(rows), n_ctx=16)
    hf = load_causal_lm(path)
    assert context_window(hf.model) == 16
    long_prompt = " ".join(["Q: What color is Qelothqel? A: teal"] * 6) + " Q: What color is"
    out = generate(hf.model, hf, [long_prompt, "Q: What color is Qelothqel? A:"], 4)
    assert len(out) == 2  # the long few-shot prompt was cut from the left, not crashed on
    with pytest.raises(ConfigError, match="context window is 16") as info:
        encode_pairs(hf, [(long_prompt, "teal")], loss_on_prompt=True)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no room"):
        generate(hf.model, hf, ["Q:"], 16)


def test_small_vocabulary_special_tokens(tmp_path):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from factlab.models.hf import load_causal_lm

    vocab = {w: i for i, w in enumerate(["Q:", "A:", "red", "blue", "?"])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=5,
                                       n_positions=8))
    for name, specials in (("unk_only", {"unk_token": "?"}), ("none", {})):
        folder = tmp_path / name
        model.save_pretrained(folder)
        PreTrainedTokenizerFast(tokenizer_object=raw, **specials).save_pretrained(folder)
    hf = load_causal_lm(tmp_path / "unk_only")  # no eos: unk pads
    assert hf.tokenizer.pad_token == "?"
    with pytest.raises(ConfigError, match="no pad, eos, unk or bos token"):
        load_causal_lm(tmp_path / "none")
    big = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=3))
    big.save_pretrained(tmp_path / "mismatch")
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="?").save_pretrained(
        tmp_path / "mismatch")
    with pytest.raises(ConfigError, match="do not belong together"):
        load_causal_lm(tmp_path / "mismatch")


# ---------------------------------------------------------------- real facts files

def test_countryinfo_facts_in_popqa_schema(tmp_path):
    pytest.importorskip("countryinfo")
    from factlab.tasks.real_facts import build_facts

    path = build_facts("countryinfo", tmp_path / "countries.tsv")
    rows = load_popqa(path)
    by = {(r.subj, r.prop_id): r for r in rows}
    assert by[("France", 422)].obj == "Paris" and by[("Paris", 97)].obj == "France"
    assert "French Republic" in by[("Paris", 97)].answers  # aliases, not the short codes
    assert not any(len(a) < 4 and a.isupper() for r in rows for a in r.answers)
    assert by[("France", 422)].s_pop > 1e7  # population as popularity
    assert len({r.prop_id for r in rows}) == 6 and len(rows) > 1000
    assert "Spain" in by[("France", 47)].answers  # every neighbour is a gold answer
    side = json.loads((tmp_path / "countries.tsv.source.json").read_text())
    assert side["licence"].startswith("MIT") and side["n_rows"] == len(rows)


def test_fanoutqa_facts_and_fictional_subjects(tmp_path):
    pytest.importorskip("fanoutqa")
    pytest.importorskip("countryinfo")
    from factlab.tasks.real_facts import as_popqa, build_facts, fictional_rows

    rows = load_popqa(build_facts("fanoutqa", tmp_path / "f.tsv"))
    assert len(rows) > 1000 and all(r.prop_id == 0 for r in rows)
    side = json.loads((tmp_path / "f.tsv.source.json").read_text())
    assert "CC BY-SA 4.0" in side["licence"]
    fic = as_popqa(fictional_rows(10, torch.Generator().manual_seed(0)))
    assert len(fic) == 30 and len({r.subj for r in fic}) == 10
    assert {r.prop_id for r in fic} == {422, 30, 361}
    with pytest.raises(ConfigError, match="unknown source"):
        build_facts("wikidata", tmp_path / "x.tsv")


def test_run_with_hooks_can_read_and_replace_activations(tiny):
    from factlab.models.hf import load_causal_lm

    hf = load_causal_lm(tiny["llama"])
    tokens = hf.tokenizer(["Q: What color is Qelothqel? A: teal"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        clean, cache = hf.run_with_cache(tokens)
        seen = {}

        def record(x, hook):
            seen[hook.name] = x  # returns None: the activation is kept

        same = hf.run_with_hooks(tokens, [("blocks.1.hook_mlp_out", record)])
        torch.testing.assert_close(same, clean)
        torch.testing.assert_close(seen["blocks.1.hook_mlp_out"], cache["blocks.1.hook_mlp_out"])
        ablated = hf.run_with_hooks(tokens, [("blocks.1.hook_mlp_out", lambda x, hook: 0 * x)])
        assert not torch.allclose(ablated, clean)
        # zeroing the last block's MLP output equals removing it from the final residual
        resid = cache["blocks.1.hook_resid_post"] - cache["blocks.1.hook_mlp_out"]
        fixed = hf.run_with_hooks(tokens, [("blocks.1.hook_resid_pre",
                                            lambda x, hook: cache["blocks.1.hook_resid_pre"])])
        torch.testing.assert_close(fixed, clean)
        final = hf.model.model.norm(resid) @ hf.model.lm_head.weight.T
        torch.testing.assert_close(ablated, final)
