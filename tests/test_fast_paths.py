"""Named fast paths compute the same function as the plain forward (logits and gradients)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from factlab.models.memories import MLPMemory
from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel
from factlab.tasks.bigram_stats import load_stats
from factlab.tasks.trigger_bigram import sample_batch

CONFIGS = {
    "birth": TwoLayerConfig(d_model=32),
    "ape_learned_mlp": TwoLayerConfig(d_model=32, pos="ape_learned", final_ffn="mlp",
                                      freeze_embeddings=False, freeze_output=False),
    "rope1": TwoLayerConfig(d_model=32, pos="rope1"),
    "rel_bias_no_ffn": TwoLayerConfig(d_model=32, pos="rel_bias", final_ffn="none"),
    "none_tied": TwoLayerConfig(d_model=32, pos="none", tie_output=True, sqrtd_embeddings=True),
    "one_layer": TwoLayerConfig(d_model=32, n_layers=1),
    "one_layer_rel": TwoLayerConfig(d_model=32, n_layers=1, pos="rel_bias"),
}


def _batch(T: int = 40, B: int = 37):
    stats = load_stats(None)
    x, y, outs = sample_batch(stats, B, T, 5, True, gen=torch.Generator().manual_seed(3))
    return stats.n, x, y, outs


def _loss_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    logits = fn()
    logits.pow(2).mean().backward()  # a loss that weighs every logit, unlike an argmax
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("mask_kind", ["head", "all", "sparse"])
def test_logits_at_equals_the_plain_forward_and_its_gradients(name, mask_kind):
    n, x, y, outs = _batch()
    cfg = CONFIGS[name]
    model = TwoLayerModel(cfg, n, torch.Generator().manual_seed(1), train_len=x.shape[1])
    with torch.no_grad():  # non-zero relative biases, so the bias path is exercised
        for m in model.modules():
            if hasattr(m, "b"):
                m.b.normal_(generator=torch.Generator().manual_seed(2))
    mask = {"head": outs >= 2, "all": torch.ones_like(outs, dtype=torch.bool),
            "sparse": torch.zeros_like(outs, dtype=torch.bool)}[mask_kind]
    if mask_kind == "sparse":
        mask[::3, -1] = True
        mask[1, 0] = True
    ref, ref_grads = _loss_and_grads(model, lambda: model(x)[mask])
    fast, fast_grads = _loss_and_grads(model, lambda: model.logits_at(x, mask, group_rows=8,
                                                                       query_block=16))
    assert fast.shape == ref.shape == (int(mask.sum()), n)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert sorted(fast_grads) == sorted(ref_grads)
    for key, g in ref_grads.items():
        torch.testing.assert_close(fast_grads[key], g, rtol=1e-3, atol=1e-5, msg=key)


def test_logits_at_with_the_token_position_table_equals_the_plain_forward():
    """B >= N: layer 1's keys come from the (token, position) table, per query block."""
    n, x, y, outs = _batch(B=72)
    assert x.shape[0] >= n
    model = TwoLayerModel(CONFIGS["birth"], n, torch.Generator().manual_seed(1), train_len=40)
    mask = outs >= 2
    ref, ref_grads = _loss_and_grads(model, lambda: model(x)[mask])
    fast, fast_grads = _loss_and_grads(model, lambda: model.logits_at(x, mask, query_block=16))
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert sorted(fast_grads) == sorted(ref_grads)
    for key, g in ref_grads.items():
        torch.testing.assert_close(fast_grads[key], g, rtol=1e-3, atol=1e-5, msg=key)


def test_logits_at_fails_loudly_when_it_is_wrong():
    """The comparison above can fail: a perturbed W_O² changes the fast logits."""
    n, x, _, outs = _batch()
    model = TwoLayerModel(CONFIGS["birth"], n, torch.Generator().manual_seed(1), train_len=40)
    mask = outs >= 2
    ref = model(x)[mask].detach()
    with torch.no_grad():
        model.blocks[1].attn.W_O.mul_(1.01)
    assert not torch.allclose(model.logits_at(x, mask).detach(), ref, rtol=1e-4, atol=1e-4)


def test_logits_at_with_hooks_runs_the_hooked_forward():
    n, x, _, outs = _batch()
    model = TwoLayerModel(CONFIGS["birth"], n, torch.Generator().manual_seed(1), train_len=40)
    mask = outs >= 1
    zero = [("blocks.1.hook_attn_out", lambda t, hook: torch.zeros_like(t))]
    with torch.no_grad(), model.hooks(zero):
        hooked = model.logits_at(x, mask)
    with torch.no_grad():
        expected = model.run_with_hooks(x, zero)[mask]
    torch.testing.assert_close(hooked, expected)


def test_frozen_weights_get_no_gradient_buffers_on_the_fast_path():
    n, x, _, outs = _batch()
    model = TwoLayerModel(CONFIGS["birth"], n, torch.Generator().manual_seed(1), train_len=40)
    model.logits_at(x, outs >= 2).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == (not p.requires_grad), name


@pytest.mark.parametrize("chunk", [7, 64, 4096])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: |h| > 40, the row-max branch
def test_mlp_memory_fused_loss_equals_cross_entropy_and_its_gradients(chunk, scale, gen):
    memory = MLPMemory(100, 60, 16, 32, gen)
    with torch.no_grad():
        memory.W_out.mul_(scale)
    x = torch.randint(0, 100, (90,), generator=gen)
    y = torch.randint(0, 60, (90,), generator=gen)
    ref = F.cross_entropy(memory(x), y)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in memory.named_parameters()}
    memory.zero_grad(set_to_none=True)
    loss = memory.loss(x, y, chunk=chunk)
    loss.backward()
    torch.testing.assert_close(loss, ref)
    for key, g in ref_grads.items():
        torch.testing.assert_close(memory.get_parameter(key).grad, g, msg=key)


def test_fast_paths_keep_the_default_forward(gen):
    """Adding the named paths left the documented forward as it was (a plain formula check)."""
    n, x, _, _ = _batch(T=12, B=3)
    model = TwoLayerModel(dataclasses.replace(CONFIGS["birth"], final_ffn="none"), n, gen,
                          train_len=12)
    a1, a2 = model.blocks[0].attn, model.blocks[1].attn
    causal = torch.ones(12, 12, dtype=torch.bool).tril()

    def layer(a, h):
        s = (h @ a.W_K @ h.transpose(1, 2)) / 32**0.5
        return h + torch.softmax(s.masked_fill(~causal, -torch.inf), -1) @ h @ a.W_V.T @ a.W_O.T

    h = layer(a2, layer(a1, model.W_E[x] + model.W_pos[:12]))
    torch.testing.assert_close(model(x), h @ model.W_U, rtol=1e-4, atol=1e-4)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_logits_at_equals_the_plain_forward_on_cuda():
    n, x, _, outs = _batch()
    model = TwoLayerModel(CONFIGS["birth"], n, torch.Generator().manual_seed(1),
                          train_len=40).cuda()
    x, mask = x.cuda(), (outs >= 2).cuda()
    ref, ref_grads = _loss_and_grads(model, lambda: model(x)[mask])
    fast, fast_grads = _loss_and_grads(model, lambda: model.logits_at(x, mask))
    torch.testing.assert_close(fast, ref, rtol=1e-3, atol=1e-3)
    for key, g in ref_grads.items():
        torch.testing.assert_close(fast_grads[key], g, rtol=1e-2, atol=1e-4, msg=key)


def _experiment_names() -> list[str]:
    from factlab.experiments import REGISTRY

    return sorted(REGISTRY)


@needs_cuda
@pytest.mark.parametrize("name", _experiment_names())
def test_every_experiment_runs_unchanged_with_device_cuda(name, tmp_path):
    """`device=cuda` on the quick default (one seed): the run finishes with a verdict."""
    from factlab.experiments import get_experiment
    from factlab.experiments.base import run_experiment

    exp = get_experiment(name)
    cfg = exp.make_config({"seeds": "0", "device": "cuda"})
    summary = run_experiment(exp, cfg, tmp_path / "run", show_progress=False)
    assert summary is not None
