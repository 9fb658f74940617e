"""Memories and the one-layer model: constructions, hook names and shapes, weight shapes."""

import dataclasses

import torch
import torch.nn.functional as F

from factlab.models.linear_attention import LinearAttentionRecall
from factlab.models.memories import LinearMemory, MLPMemory
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer, count_params


def _accuracy(model, n, targets):
    return (model(torch.arange(n)).argmax(-1) == targets).float().mean().item()


def test_linear_outer_product_stores_a_random_map_exactly_when_d_is_large(gen):
    n, m = 64, 16
    targets = torch.randint(0, m, (n,), generator=gen)
    big = LinearMemory(n, m, 512, gen).construct(targets)
    assert _accuracy(big, n, targets) == 1.0
    small = LinearMemory(n, m, 4, gen).construct(targets)  # cross-talk swamps the signal
    assert _accuracy(small, n, targets) < 0.9


def test_mlp_per_unit_construction_stores_a_random_map_exactly(gen):
    n, m = 200, 50
    targets = torch.randint(0, m, (n,), generator=gen)
    memory = MLPMemory(n, m, 128, 256, gen).construct(targets)
    assert _accuracy(memory, n, targets) == 1.0
    assert memory.n_params == 2 * 128 * 256


def test_linear_memory_construction_equals_sum_of_outer_products(gen):
    mem = LinearMemory(5, 3, 8, gen)
    targets = torch.tensor([0, 2, 1, 1, 0])
    mem.construct(targets)
    expected = sum(torch.outer(mem.E[x], mem.U[targets[x]]) for x in range(5))
    assert torch.allclose(mem.W, expected, atol=1e-6)


ONE_LAYER_HOOKS = [
    "hook_embed",
    "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v",
    "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z",
    "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
    "blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
    "blocks.0.hook_resid_post", "unembed.hook_in", "unembed.hook_out",
]


def test_one_layer_hook_names_are_frozen(gen):
    model = OneLayerTransformer(OneLayerConfig(), 30, 12, gen)
    assert sorted(model.hook_names) == sorted(ONE_LAYER_HOOKS)
    no_mlp = OneLayerTransformer(OneLayerConfig(d_mlp=0), 30, 12, gen)
    assert not any("mlp" in n for n in no_mlp.hook_names if "hook_mlp_out" not in n)


def test_one_layer_cache_shapes_follow_transformer_lens(gen):
    cfg = OneLayerConfig(d_model=16, n_heads=3, d_head=5, d_mlp=24)
    model = OneLayerTransformer(cfg, 30, 12, gen)
    tokens = torch.randint(0, 30, (4, 7), generator=gen)
    logits, cache = model.run_with_cache(tokens)
    B, P, H, E, D, M = 4, 7, 3, 5, 16, 24
    expected = {
        "hook_embed": (B, P, D), "blocks.0.hook_resid_pre": (B, P, D),
        "blocks.0.attn.hook_q": (B, 1, H, E), "blocks.0.attn.hook_k": (B, P, H, E),
        "blocks.0.attn.hook_v": (B, P, H, E), "blocks.0.attn.hook_z": (B, 1, H, E),
        "blocks.0.attn.hook_attn_scores": (B, H, 1, P), "blocks.0.attn.hook_pattern": (B, H, 1, P),
        "blocks.0.hook_attn_out": (B, 1, D), "blocks.0.mlp.hook_pre": (B, 1, M),
        "blocks.0.mlp.hook_post": (B, 1, M), "blocks.0.hook_mlp_out": (B, 1, D),
        "blocks.0.hook_resid_post": (B, 1, D), "unembed.hook_in": (B, 1, D),
        "unembed.hook_out": (B, 1, 12),
    }
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    assert logits.shape == (B, 12)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(B, H, 1))
    attn = model.blocks[0].attn
    assert attn.W_Q.shape == attn.W_K.shape == attn.W_V.shape == (H, D, E)
    assert attn.W_O.shape == (H, E, D)
    mlp = model.blocks[0].mlp
    assert mlp.W_in.shape == (D, M) and mlp.W_out.shape == (M, D)
    assert model.W_E.shape == (30, D) and model.W_U.shape == (D, 12)
    assert count_params(cfg) == 4 * H * E * D + 2 * M * D


def test_hooks_can_replace_activations_and_are_removed(gen):
    model = OneLayerTransformer(OneLayerConfig(d_mlp=0), 20, 6, gen)
    tokens = torch.randint(0, 20, (3, 5), generator=gen)
    clean = model(tokens)

    def zero(x, hook):
        assert hook.name == "blocks.0.hook_attn_out"
        return torch.zeros_like(x)

    ablated = model.run_with_hooks(tokens, [("blocks.0.hook_attn_out", zero)])
    assert torch.allclose(ablated, torch.zeros_like(ablated))  # no MLP, no residual: all zero
    assert torch.allclose(model(tokens), clean)  # hooks were removed


def test_attention_residual_adds_the_query_embedding(gen):
    cfg = OneLayerConfig(d_mlp=0, attn_residual=True)
    model = OneLayerTransformer(cfg, 20, 6, gen)
    tokens = torch.randint(0, 20, (3, 5), generator=gen)
    _, cache = model.run_with_cache(tokens)
    resid = cache["blocks.0.hook_attn_out"] + model.W_E[tokens[:, -1:]]
    assert torch.allclose(cache["blocks.0.hook_resid_post"], resid, atol=1e-6)


def test_frozen_embeddings_get_no_gradient(gen):
    model = OneLayerTransformer(OneLayerConfig(), 20, 6, gen)
    tokens = torch.randint(0, 20, (3, 5), generator=gen)
    F.cross_entropy(model(tokens), torch.tensor([0, 1, 2])).backward()
    assert model.W_E.grad is None and model.W_U.grad is None
    assert model.blocks[0].attn.W_Q.grad is not None


def test_linear_attention_matches_its_formula(gen):
    model = LinearAttentionRecall(9, 4, init=1e-5)
    with torch.no_grad():
        model.A.normal_(generator=gen)
        model.V.normal_(generator=gen)
    tokens = torch.randint(0, 9, (2, 6), generator=gen)
    x = F.one_hot(tokens, 9).float()
    expected = torch.einsum("bd,de,bte,tbo->bo", x[:, -1], model.A, x,
                            (x @ model.V).transpose(0, 1))
    assert torch.allclose(model(tokens), expected, atol=1e-5)
    fresh = LinearAttentionRecall(9, 4)
    loss = F.cross_entropy(fresh(tokens), torch.tensor([0, 3]))
    assert abs(loss.item() - torch.log(torch.tensor(4.0)).item()) < 1e-4


def test_stacked_weight_accessors_and_derived_circuits(gen):
    model = OneLayerTransformer(OneLayerConfig(d_model=8, n_heads=2, d_head=4), 10, 5, gen)
    assert model.W_Q.shape == (1, 2, 8, 4) and model.W_O.shape == (1, 2, 4, 8)
    assert model.W_QK.shape == model.W_OV.shape == (1, 2, 8, 8)
    tokens = torch.randint(0, 10, (3, 6), generator=gen)
    _, cache = model.run_with_cache(tokens)
    x = model.W_E[tokens]
    scores = torch.einsum("bd,hde,bte->bht", x[:, -1], model.W_QK[0], x) / 2.0
    assert torch.allclose(cache["blocks.0.attn.hook_attn_scores"][:, :, 0], scores, atol=1e-5)


def test_memory_and_linear_attention_hook_names_are_frozen(gen):
    assert LinearMemory(4, 3, 8, gen).hook_names == ["hook_embed", "hook_memory_out"]
    assert MLPMemory(4, 3, 8, 6, gen).hook_names == ["hook_embed", "hook_pre", "hook_post"]
    assert LinearAttentionRecall(5, 3).hook_names == ["blocks.0.attn.hook_attn_scores",
                                                      "unembed.hook_out"]


def test_folded_forward_equals_the_stock_forward_and_its_gradients(gen):
    for residual, mlp in ((False, 24), (True, 0)):
        cfg = OneLayerConfig(d_model=16, n_heads=3, d_head=5, d_mlp=mlp, attn_residual=residual)
        model = OneLayerTransformer(cfg, 30, 12, gen)
        tokens = torch.randint(0, 30, (6, 9), generator=gen)
        labels = torch.randint(0, 12, (6,), generator=gen)
        assert model._can_fold()
        folded = model(tokens)
        F.cross_entropy(folded, labels).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad()
        logits, cache = model.run_with_cache(tokens)  # hooks on embed/q/k/v: the stock path
        assert torch.allclose(folded, logits, atol=1e-5)
        stock = OneLayerTransformer(dataclasses.replace(cfg, fold_embed=False), 30, 12, gen)
        stock.load_state_dict(model.state_dict())
        assert not stock._can_fold()
        F.cross_entropy(stock(tokens), labels).backward()
        for g, p in zip(grads, [p for p in stock.parameters() if p.requires_grad]):
            assert torch.allclose(g, p.grad, atol=1e-5)
