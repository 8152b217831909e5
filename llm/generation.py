"""Cache-first generation for every LLM task: answers already in the run's answer cache are
reused, only the missing ones are asked for (`n` samples in one request per prompt), and each is
stored as it arrives and written to an answer file when the batch ends, fails, or runs long, so a
crash or a rerun never pays twice for an answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from apache_beam.metrics import Metrics

from llm.backends import Answers, Conversation, Rejected, Sampling
from llm.cache import AnswerCache, AnswerKey


def request_seed(base: int, key: str, variant: str) -> int:
    """The seed of one request: stable for a (base seed, pair or commit, variant), so reruns ask the same."""
    digest = hashlib.blake2b(f"{base}/{key}/{variant}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Request:
    """`n` answers wanted for one prompt: a pair (or commit), a variant (the judge's order, a style)."""

    pair_id: str
    variant: str
    seed: int
    conversation: Conversation

    def key(self, model: str, template: str, sample: int) -> AnswerKey:
        return AnswerKey(model, template, self.pair_id, self.variant, sample, self.seed)


class CachedGenerator:
    """One model's answers for one template, through the cache; counters go to `namespace`."""

    def __init__(self, cache: AnswerCache, backend: Any, model: str, template: str, namespace: str):
        self.cache, self.backend, self.model, self.template, self.namespace = cache, backend, model, template, namespace

    def answers(self, requests: list[Request], sampling: Sampling) -> list[Answers]:
        """`sampling.n` texts per request (in sample order), or `Rejected` where the backend refused one."""
        keys = [[request.key(self.model, self.template, i).key for i in range(sampling.n)] for request in requests]
        found = self.cache.get_many_by_key(key for request_keys in keys for key in request_keys)
        Metrics.counter(self.namespace, "answers_from_cache").inc(len(found))
        results: list[Answers | None] = [
            [found[key] for key in request_keys] if all(key in found for key in request_keys) else None for request_keys in keys
        ]
        missing = [index for index, result in enumerate(results) if result is None]
        if not missing:
            return results  # type: ignore[return-value]

        def store(position: int, answers: Answers) -> None:
            index = missing[position]
            results[index] = answers
            if isinstance(answers, Rejected):
                Metrics.counter(self.namespace, "backend_rejections").inc()
                return
            request = requests[index]
            self.cache.put_many((request.key(self.model, self.template, i), text) for i, text in enumerate(answers))
            Metrics.counter(self.namespace, "backend_requests").inc()

        retries_before = getattr(self.backend, "retries", 0)
        try:
            self.backend.generate([requests[i].conversation for i in missing], sampling, [requests[i].seed for i in missing],
                                  on_answer=store)
        finally:
            Metrics.counter(self.namespace, "backend_retries").inc(getattr(self.backend, "retries", 0) - retries_before)
            self.cache.flush()  # the answers that came, even when the backend failed after some
        return results  # type: ignore[return-value]
