"""Load a local HuggingFace causal LM by path, offline, with a TransformerLens-style hook view.

`load_causal_lm(path)` never touches the network (``local_files_only=True`` and the offline
environment flags) and always asks for eager attention, because with the default ``sdpa``
implementation `output_attentions=True` silently returns nothing. Anything wrong with the path
becomes a one-line `ConfigError`: a folder without config.json, a folder without a tokenizer
(refused as such, before any training, so that it is never mistaken for a diverged run), a
tokenizer whose ids exceed the model's vocabulary, or no token usable for padding.
`context_window(model)` is the longest sequence the model's positions allow.

`HFModel.run_with_cache(tokens)` returns ``(logits, cache)`` with activations under our hook
names, collected by plain PyTorch forward hooks on the HF modules:

    hook_embed, hook_pos_embed (learned positions only)        [batch, pos, d_model]
    blocks.{l}.hook_resid_pre, .hook_resid_post               [batch, pos, d_model]
    blocks.{l}.hook_attn_out, .hook_mlp_out                   [batch, pos, d_model]
    blocks.{l}.attn.hook_pattern                              [batch, head, query, key]
    ln_final.hook_normalized                                  [batch, pos, d_model]
    unembed.hook_out                                          [batch, pos, d_vocab]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from factlab.config import ConfigError
from factlab.models.hooks import ActivationCache, NamesFilter, resolve_names

OFFLINE_FLAGS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def set_offline() -> None:
    """Forbid every HuggingFace library from reaching the network in this process."""
    os.environ.update(OFFLINE_FLAGS)


def require_hf() -> None:
    """One-line error when the optional `hf` extra is missing."""
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("the HuggingFace path needs the hf extra: pip install "
                          "'factlab[hf]' (transformers, peft)") from None


#: Files any HF tokenizer is saved as (fast JSON, GPT-2 BPE, sentencepiece, WordPiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                   "vocab.txt")


def check_model_dir(path: str | Path, key: str = "model") -> Path:
    """The path as a `Path` if it looks like a saved HF model, else a one-line `ConfigError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}: no such directory {str(path)!r}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"{key}: {str(path)!r} is not a HuggingFace model directory "
                          "(no config.json); pass a folder written by save_pretrained")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{key}: {str(path)!r} has no tokenizer (none of "
                          f"{', '.join(TOKENIZER_FILES)}); save one beside the weights with "
                          "tokenizer.save_pretrained(path)")
    return path


def context_window(model: nn.Module) -> int | None:
    """The longest sequence the model's position scheme allows (None when it states none)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclasses.dataclass
class _Layout:
    """Where the parts of a decoder-only HF model live (GPT-2, Llama and their relatives)."""

    embed: nn.Module
    pos_embed: nn.Module | None
    blocks: Sequence[nn.Module]
    attns: Sequence[nn.Module]
    mlps: Sequence[nn.Module]
    ln_final: nn.Module | None


def _find_layout(model: nn.Module) -> _Layout:
    """Locate embeddings, blocks, attention/MLP submodules and the final norm by convention."""
    base = getattr(model, "base_model", model)
    n_layers = getattr(model.config, "num_hidden_layers", None)
    blocks = None
    for _, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            blocks = list(module)
            break
    if blocks is None:
        raise ConfigError(f"model: cannot find the {n_layers} transformer blocks of "
                          f"{type(model).__name__}")

    def child(block: nn.Module, names: tuple[str, ...]) -> nn.Module:
        for name in names:
            if hasattr(block, name):
                return getattr(block, name)
        raise ConfigError(f"model: block {type(block).__name__} has none of {names}")

    attns = [child(b, ("attn", "self_attn", "attention")) for b in blocks]
    mlps = [child(b, ("mlp", "feed_forward")) for b in blocks]
    pos = None
    for name, module in base.named_modules():
        if name.split(".")[-1] in ("wpe", "embed_positions") and isinstance(module, nn.Embedding):
            pos = module
    ln_final = None
    for name in ("ln_f", "norm", "final_layer_norm"):
        for mod_name, module in base.named_modules():
            if mod_name.split(".")[-1] == name:
                ln_final = module
        if ln_final is not None:
            break
    return _Layout(model.get_input_embeddings(), pos, blocks, attns, mlps, ln_final)


def _main(out: Any) -> torch.Tensor:
    """The hidden-state tensor of a module output (a tensor, or a tuple led by one)."""
    return out if isinstance(out, torch.Tensor) else out[0]


class HFModel:
    """A local HF causal LM, its tokenizer and device, with a hook-point view of its forward."""

    def __init__(self, model: nn.Module, tokenizer: Any, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.layout = _find_layout(model)

    def run_with_hooks(self, tokens: torch.Tensor,
                       fwd_hooks: Sequence[tuple[str, Callable[..., torch.Tensor | None]]] = (),
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One forward pass with temporary hooks (see the module-level `run_with_hooks`)."""
        return run_with_hooks(self, tokens, fwd_hooks, attention_mask)

    @property
    def n_layers(self) -> int:
        return len(self.layout.blocks)

    @property
    def hook_names(self) -> list[str]:
        """Every hook name this view provides, in forward order."""
        names = ["hook_embed"] + (["hook_pos_embed"] if self.layout.pos_embed else [])
        for l in range(self.n_layers):
            names += [f"blocks.{l}.hook_resid_pre", f"blocks.{l}.attn.hook_pattern",
                      f"blocks.{l}.hook_attn_out", f"blocks.{l}.hook_mlp_out",
                      f"blocks.{l}.hook_resid_post"]
        if self.layout.ln_final is not None:
            names.append("ln_final.hook_normalized")
        return names + ["unembed.hook_out"]

    def _modules(self) -> dict[str, tuple[nn.Module, Callable[[Any, Any], torch.Tensor]]]:
        """hook name -> (module, function of (inputs, output) giving the activation)."""
        lay = self.layout
        out = {"hook_embed": (lay.embed, lambda i, o: _main(o))}
        if lay.pos_embed is not None:
            out["hook_pos_embed"] = (lay.pos_embed, lambda i, o: _main(o))
        for l in range(self.n_layers):
            out[f"blocks.{l}.hook_resid_pre"] = (lay.blocks[l], lambda i, o: i[0])
            out[f"blocks.{l}.hook_resid_post"] = (lay.blocks[l], lambda i, o: _main(o))
            out[f"blocks.{l}.hook_attn_out"] = (lay.attns[l], lambda i, o: _main(o))
            out[f"blocks.{l}.attn.hook_pattern"] = (lay.attns[l], lambda i, o: o[1])
            out[f"blocks.{l}.hook_mlp_out"] = (lay.mlps[l], lambda i, o: _main(o))
        if lay.ln_final is not None:
            out["ln_final.hook_normalized"] = (lay.ln_final, lambda i, o: _main(o))
        return out

    @torch.no_grad()
    def run_with_cache(self, tokens: torch.Tensor,
                       names_filter: NamesFilter = None,
                       attention_mask: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass returning (logits [batch, pos, vocab], cache of detached activations)."""
        wanted = resolve_names(names_filter, self.hook_names)
        modules = self._modules()
        unknown = [n for n in wanted if n not in modules and n != "unembed.hook_out"]
        if unknown:
            raise KeyError(f"no hook point {unknown[0]!r}; available: {', '.join(self.hook_names)}")
        cache = ActivationCache()
        handles = []
        for name in wanted:
            if name == "unembed.hook_out":
                continue
            module, pick = modules[name]

            def save(mod: nn.Module, inputs: Any, output: Any, name=name, pick=pick) -> None:
                value = pick(inputs, output)
                if value is None:
                    raise RuntimeError(f"{name}: the model returned no attention weights; "
                                       "load it with attn_implementation='eager'")
                cache[name] = value.detach()

            handles.append(module.register_forward_hook(save))
        try:
            mask = None if attention_mask is None else attention_mask.to(self.device)
            logits = self.model(tokens.to(self.device), attention_mask=mask,
                                use_cache=False).logits
        finally:
            for handle in handles:
                handle.remove()
        if "unembed.hook_out" in wanted:
            cache["unembed.hook_out"] = logits.detach()
        return logits, cache


class _HookRef:
    """What a hook function sees as `hook`: an object with the hook's `name`."""

    def __init__(self, name: str):
        self.name = name


def _replace_output(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return new
    return (new, *output[1:])


def run_with_hooks(hf: HFModel, tokens: torch.Tensor,
                   fwd_hooks: Sequence[tuple[str, Callable[..., torch.Tensor | None]]] = (),
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One forward pass with `fn(activation, *, hook)` hooks; a returned tensor replaces it.

    `blocks.{l}.hook_resid_pre` replaces the block's input; the other residual-stream hooks
    replace the module's output. Attention patterns are read-only here (HF computes the
    attention output inside the module), so a hook on `hook_pattern` must return None.
    """
    modules = hf._modules()
    handles = []
    post: list[tuple[str, Callable]] = []
    for name, fn in fwd_hooks:
        if name == "unembed.hook_out":
            post.append((name, fn))
            continue
        if name not in modules:
            raise KeyError(f"no hook point {name!r}; available: {', '.join(hf.hook_names)}")
        module, pick = modules[name]
        ref = _HookRef(name)
        if name.endswith("hook_resid_pre"):
            def pre(mod: nn.Module, args: tuple, fn=fn, ref=ref) -> tuple | None:
                new = fn(args[0], hook=ref)
                return None if new is None else (new, *args[1:])

            handles.append(module.register_forward_pre_hook(pre))
            continue

        def hook(mod: nn.Module, inputs: Any, output: Any, fn=fn, ref=ref, pick=pick) -> Any:
            new = fn(pick(inputs, output), hook=ref)
            if new is None:
                return None
            if ref.name.endswith("hook_pattern"):
                raise NotImplementedError(f"{ref.name}: patterns are read-only on HF models")
            return _replace_output(output, new)

        handles.append(module.register_forward_hook(hook))
    try:
        mask = None if attention_mask is None else attention_mask.to(hf.device)
        logits = hf.model(tokens.to(hf.device), attention_mask=mask, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    for name, fn in post:
        new = fn(logits, hook=_HookRef(name))
        logits = logits if new is None else new
    return logits


def load_causal_lm(path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> HFModel:
    """Load the causal LM and tokenizer saved at `path`, offline, with eager attention."""
    path = check_model_dir(path)
    require_hf()
    set_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars in logs
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation="eager",
            **({"dtype": dtype} if dtype is not None else {}))
    except Exception as err:
        raise ConfigError(f"model: cannot load a causal LM from {str(path)!r}: "
                          f"{_first_line(err)}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise ConfigError(f"model: cannot load the tokenizer from {str(path)!r}: "
                          f"{_first_line(err)}") from None
    if tokenizer.pad_token is None:  # GPT-2 and Llama ship none; batching needs one
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is None:
            raise ConfigError(f"model: the tokenizer at {str(path)!r} has no pad, eos, unk or "
                              "bos token to pad batches with; add one (e.g. an eos token)")
        tokenizer.pad_token = fallback
    n_vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_vocab:
        raise ConfigError(f"model: the tokenizer at {str(path)!r} has {len(tokenizer)} tokens "
                          f"but the model embeds only {n_vocab}; they do not belong together")
    tokenizer.padding_side = "left"  # decoder-only batches generate from the right edge
    device = torch.device(device)
    model.to(device)
    model.eval()
    return HFModel(model, tokenizer, device)
