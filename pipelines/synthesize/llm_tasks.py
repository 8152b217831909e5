"""The synthesis tasks asked of a model: commit review, instruction recovery and bug introduction.

All go through the run's answer cache (answer files in `RUN_DIR/synthesize_answers/`), like the judge, so a
rerun or a resumed run asks only for what it does not have. A commit pair is reviewed first
(1-5 for its criterion; below the cut-off it is dropped, counted) and then gets a recovered
instruction in one of five styles chosen from the commit; when recovery fails the subject
fallback stays, flagged by `prompt_origin`. LLM bug introduction is the alternative to
tree-sitter mutation for instruction data: the buggy code must parse with no new errors, differ
from the solution and, where the data has tests, fail them while the solution passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field

from llm.backends import (
    BackendConfig,
    Rejected,
    Sampling,
    acquire_backend,
    release_backend,
)
from llm.cache import AnswerCache
from llm.generation import CachedGenerator, Request, request_seed
from llm.tasks import BugIntroduction, CommitReview, InstructionRecovery, Task
from parsers import LanguageRegistry
from parsers.facts import parse
from pipelines.core import Rejection, metrics_namespace, route
from pipelines.run.conservation import INPUTS_EXPANDED, OUTPUTS_DROPPED, OUTPUTS_MADE
from pipelines.synthesize.filters import LLM_BUGS, LLM_REVIEW, SYNTHESIZE_REASONS
from pipelines.synthesize.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    check_bug,
    unverifiable,
)
from schemas import Candidate, Origin, from_row, to_row

STAGE = "synthesize"
CACHE_FOLDER = "synthesize_answers"


class LLMTasksConfig(BaseModel):
    """The model of the synthesis tasks, and which tasks it does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: BackendConfig = Field(default_factory=lambda: BackendConfig(model="smollm2"), description="The model and its backend.")
    recover_instructions: bool = Field(True, description="Recover the prompt of commit pairs (else the subject fallback).")
    review_cutoff: int | None = Field(
        None, ge=1, le=5, description="Review commit pairs 1-5 for their criterion and drop those rated below this (none: no review)."
    )
    temperature: float = Field(0.2, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(512, ge=1, description="Longest answer.")
    constrained: bool = Field(False, description="Constrain answers to the tasks' tag shape (vLLM structured outputs).")
    seed: int = Field(0, description="Base seed; each request derives its own from it.")
    batch_size: int = Field(16, ge=1, description="Records per request batch.")


class _TaskRunner(beam.DoFn):
    """Base of the batch DoFns: one cache and one backend per worker, created on first need."""

    def __init__(self, config: LLMTasksConfig, cache_dir: str):
        self.config = config
        self.cache_dir = cache_dir

    def setup(self) -> None:
        self.cache = AnswerCache(self.cache_dir)
        self.backend: Any = None  # acquired on first need: a fully cached run starts no engine

    def teardown(self) -> None:
        if self.backend is not None:
            release_backend(self.config.model)
            self.backend = None
        self.cache.close()

    def ask(self, task: Task, requests: list[Request]) -> dict[tuple[str, str], Any]:
        """(key, variant) -> the parsed answer (`Parsed`) or `Rejected`, each distinct request asked once."""
        unique = list({(r.pair_id, r.variant): r for r in requests}.values())
        if not unique:
            return {}
        if self.backend is None:
            self.backend = acquire_backend(self.config.model)
        config = self.config
        sampling = Sampling(n=1, temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                            regex=task.answer_pattern if config.constrained else None)
        generator = CachedGenerator(self.cache, self.backend, config.model.model, task.template_id, metrics_namespace(STAGE))
        results = {}
        for request, answers in zip(unique, generator.answers(unique, sampling)):
            results[(request.pair_id, request.variant)] = answers if isinstance(answers, Rejected) else task.parse_output(answers[0])
        return results

    def request(self, task: Task, key: str, variant: str, record: dict[str, Any]) -> Request:
        return Request(key, variant, request_seed(self.config.seed, key, variant), task.format_input(record))


class CommitTasks(_TaskRunner):
    """Review (optional) and instruction recovery for a batch of commit pairs."""

    def __init__(self, config: LLMTasksConfig, cache_dir: str, registry: LanguageRegistry):
        super().__init__(config, cache_dir)
        self.registry = registry

    def process(self, batch: list[tuple[dict[str, Any], str]]) -> Iterator[Any]:
        """`batch`: (candidate row, commit message) items."""
        namespace = metrics_namespace(STAGE)
        pairs = [from_row(Candidate, row) for row, _ in batch]
        messages = {row["pair_id"]: message for row, message in batch}
        if self.config.review_cutoff is not None:
            pairs = list(self._reviewed(pairs, messages))
            for item in pairs:
                if not isinstance(item, Candidate):
                    Metrics.counter(namespace, OUTPUTS_DROPPED).inc()  # a pair its commit gave, dropped after
                    yield item
            pairs = [p for p in pairs if isinstance(p, Candidate)]
        if self.config.recover_instructions:
            task = InstructionRecovery()
            wanted = {p.pair_id: (_commit_key(p), task.style_for(_commit_key(p))) for p in pairs}
            requests = [self.request(task, wanted[p.pair_id][0], wanted[p.pair_id][1],
                                     {"language": p.language, "fence": self._fence(p), "chosen": p.chosen, "rejected": p.rejected,
                                      "style": wanted[p.pair_id][1]}) for p in pairs]
            answers = self.ask(task, requests)
            for index, pair in enumerate(pairs):
                answer = answers[wanted[pair.pair_id]]
                if isinstance(answer, Rejected) or answer.fields is None:
                    Metrics.counter(namespace, "instructions_not_recovered").inc()
                    continue  # the subject fallback stays, flagged as such
                Metrics.counter(namespace, "instructions_recovered").inc()
                pairs[index] = dataclasses.replace(
                    pair, prompt=answer.fields["problem_statement"], prompt_origin="recovered",
                    origin=dataclasses.replace(pair.origin, instruction_style=wanted[pair.pair_id][1]),
                )
        for pair in pairs:
            yield to_row(pair)

    def _reviewed(self, pairs: list[Candidate], messages: dict[str, str]) -> Iterator[Any]:
        task = CommitReview(self.config.review_cutoff or 1)
        requests = [self.request(task, p.pair_id, "review", {
            "language": p.language, "fence": self._fence(p), "criterion": p.criterion, "message": messages[p.pair_id],
            "before": p.rejected, "after": p.chosen}) for p in pairs]
        answers = self.ask(task, requests)
        for pair in pairs:
            answer = answers[(pair.pair_id, "review")]
            brief = {"pair_id": pair.pair_id, "criterion": pair.criterion, "repo": pair.origin.repo, "commit": pair.origin.commit}
            if isinstance(answer, Rejected):
                yield _drop(pair.pair_id, LLM_REVIEW.reject("review_rejected", "{why}", why=answer.reason), brief)
            elif answer.fields is None:
                yield _drop(pair.pair_id, LLM_REVIEW.reject("review_unparsed", "{why}", why=answer.reason or ""), brief)
            elif not answer.fields["keep"]:
                rejection = LLM_REVIEW.reject("review_below_cutoff", "rated {rating} < {cutoff}", rating=answer.fields["rating"],
                                              cutoff=self.config.review_cutoff)
                yield _drop(pair.pair_id, rejection, brief)
            else:
                yield dataclasses.replace(pair, review_rating=answer.fields["rating"])

    def _fence(self, pair: Candidate) -> str:
        return self.registry[pair.language].fence if pair.language in self.registry else ""


def _drop(key: str, rejection: Rejection, record: Any) -> Any:
    return route(STAGE, key, rejection, record, SYNTHESIZE_REASONS)


def _commit_key(pair: Candidate) -> str:
    """One recovered instruction per commit, shared by its pairs of several criteria."""
    return f"commit/{pair.origin.repo}/{pair.origin.commit}"


class IntroduceBugs(_TaskRunner):
    """Bug-injected pairs whose bug an LLM wrote, checked by parsing and, where there are tests, by running them."""

    def __init__(self, config: LLMTasksConfig, cache_dir: str, registry: LanguageRegistry, limits: SandboxLimits, interpreter: str):
        super().__init__(config, cache_dir)
        self.registry, self.limits, self.interpreter = registry, limits, interpreter

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        task = BugIntroduction()
        items = []
        for item in batch:
            pair_id = f"instruct/{item['source']}/{item['id']}"
            brief = {"source": item["source"], "id": item["id"], "instruction": item["instruction"][:500]}
            if item["language"] not in self.registry:
                yield _drop(pair_id, LLM_BUGS.reject("unknown_language", "{language}", language=item["language"]), brief)
            else:
                items.append((pair_id, brief, item))
        requests = [self.request(task, pair_id, "bug", {
            "language": item["language"], "fence": self.registry[item["language"]].fence, "instruction": item["instruction"],
            "solution": item["solution"]}) for pair_id, _, item in items]
        answers = self.ask(task, requests)
        for pair_id, brief, item in items:
            yield from self._pair(pair_id, brief, item, answers[(pair_id, "bug")])

    def _pair(self, pair_id: str, brief: dict[str, Any], item: dict[str, Any], answer: Any) -> Iterator[Any]:
        spec = self.registry[item["language"]]
        if isinstance(answer, Rejected):
            yield _drop(pair_id, LLM_BUGS.reject("llm_bug_rejected", "{why}", why=answer.reason), brief)
            return
        if answer.fields is None:
            yield _drop(pair_id, LLM_BUGS.reject("llm_bug_unparsed", "{why}", why=answer.reason or ""), brief)
            return
        solution, buggy = item["solution"], answer.fields["buggy_code"]
        if buggy.strip() == solution.strip():
            yield _drop(pair_id, LLM_BUGS.reject("llm_bug_unchanged", "the answer is the solution itself"), brief)
            return
        original, mutant = parse(solution, spec), parse(buggy, spec)
        if mutant.error_bytes > original.error_bytes or mutant.missing_nodes > original.missing_nodes:
            rejection = LLM_BUGS.reject("llm_bug_parse_errors", "{error_bytes} error bytes in the buggy code", error_bytes=mutant.error_bytes)
            yield _drop(pair_id, rejection, brief)
            return
        unrun = unverifiable(spec.name, item.get("tests"))
        verified, verification = None, unrun or "unverified: the source has no tests"
        if item.get("tests") is not None and not unrun:
            try:
                check = check_bug(solution, buggy, item["tests"], self.limits, self.interpreter)
            except SandboxUnavailable as error:
                yield _drop(pair_id, LLM_BUGS.reject("sandbox_unavailable", "{error}", error=str(error)), brief)
                return
            if check.drop_reason:
                yield _drop(pair_id, LLM_BUGS.reject(f"llm_bug_{check.drop_reason}", "{output}", output=check.verification), brief)
                return
            verified, verification = True, check.verification
        Metrics.counter(metrics_namespace(STAGE), "mutation_llm").inc()
        Metrics.counter(metrics_namespace(STAGE), INPUTS_EXPANDED).inc()
        Metrics.counter(metrics_namespace(STAGE), OUTPUTS_MADE).inc()
        yield to_row(Candidate(
            pair_id=pair_id, source="bug_injection", criterion="Functional Correctness", language=spec.name,
            prompt=item["instruction"], prompt_origin="instruct", chosen=solution, rejected=buggy,
            origin=Origin(instruct_source=item["source"], instruct_row=str(item["id"]), mutation_operator=f"llm:{self.config.model.model}"),
            verified=verified, verification=verification,
        ))
