"""A tiny causal language model and a tokenizer trained here, for trainer and evaluator tests (no hub; built by
benchmarks.tiny_model, which the trainer benchmark uses too)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.tiny_model import random_llama, tiny_tokenizer

__all__ = ["tiny_causal_lm", "tiny_tokenizer"]


def tiny_causal_lm(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights (hidden size 32) and the tiny tokenizer, saved in `directory`."""
    return random_llama(directory, seed=seed)
