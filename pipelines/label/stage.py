"""The `label` stage: LLM judges vote on every candidate pair, in both orders, cache first.

For each pair, each judge and each order, `votes / 2` answers are needed (samples 0..k-1, one
seed per pair and order). Answers already in the run's answer cache are reused; only the missing
ones are generated (`n` samples in one request, so the prompt is prefilled once) and stored
before they are parsed. A rerun, or a run resumed after a crash, therefore asks for nothing it
already has. Every answer's raw text stays in the cache (answer files in RUN_DIR/label_answers/,
through Beam's FileSystems: any worker reaches them), linked from the vote by its key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import Field, field_validator

from llm.backends import (
    BackendConfig,
    Rejected,
    Sampling,
    acquire_backend,
    release_backend,
)
from llm.cache import AnswerCache, AnswerCounter, AnswerKey
from llm.generation import CachedGenerator, Request, request_seed
from llm.judging import ORDERS, VERDICT_PATTERN, JudgeTask
from pipelines.core import (
    DROPPED,
    Progress,
    Stage,
    StageConfig,
    StageContext,
    StageResult,
    inputs_field,
    metrics_namespace,
    register_stage,
    route,
)
from pipelines.label.filters import JUDGING, SAMPLE
from pipelines.label.voting import Consensus, KeepRule, count, margin, outcome
from schemas import Candidate, JudgedPair, Vote, from_row, to_row

STAGE = "label"
CACHE_FOLDER = f"{STAGE}_answers"
PAIRS_KEPT, PAIRS_NOT_KEPT = "pairs_kept", "pairs_not_kept"  # counters of the keep rule's decisions (every judged pair is written)


class JudgeConfig(BackendConfig):
    """One judge: a model, the backend that serves it, and the name its votes and cached answers go under."""

    name: str | None = Field(None, description="The judge's name on votes and in the cache (default: the model).")

    @property
    def judge(self) -> str:
        return self.name or self.model


class LabelConfig(StageConfig):
    """Who judges, how often, and which pairs are kept."""

    inputs: list[str] = inputs_field("dedup", description="Stages whose Candidate records are judged.")
    judges: list[JudgeConfig] = Field(default_factory=lambda: [JudgeConfig(model="smollm2")], description="Judge models.")
    votes: int = Field(8, ge=2, description="Votes per judge and pair, half in each order (must be even).")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(256, ge=1, description="Longest answer.")
    constrained: bool = Field(False, description="Constrain answers to a bare verdict tag (vLLM structured outputs).")
    seed: int = Field(0, description="Base seed; each pair and order derive their own from it.")
    min_matches: int = Field(6, ge=0, description="Keep rule: votes that must agree with the expected direction.")
    max_contradictions: int = Field(1, ge=0, description="Keep rule: votes that may oppose it.")
    consensus: Consensus = Field("all", description="Several judges: 'all' must pass, or 'pooled' votes.")
    batch_size: int = Field(16, ge=1, description="Pairs judged per request batch.")
    sample: int | None = Field(
        None, ge=1, description="Judge only this many pairs, those whose pair-id hash is lowest (the rest dropped as not_sampled)."
    )

    @field_validator("judges")
    @classmethod
    def _distinct_judges(cls, judges: list[JudgeConfig]) -> list[JudgeConfig]:
        names = [judge.judge for judge in judges]
        if not judges or len(set(names)) != len(names):
            raise ValueError(f"judges need distinct names (give `name` to tell apart judges of one model): {names}")
        return judges

    @field_validator("votes")
    @classmethod
    def _even_votes(cls, votes: int) -> int:
        if votes % 2:
            raise ValueError(f"{votes} is odd; votes are split evenly over both orders (give an even number)")
        return votes


class JudgeBatch(beam.DoFn):
    """Votes for a batch of pairs: cache first, then one request per (pair, order) for what is missing."""

    def __init__(self, config: LabelConfig, cache_dir: str):
        self.config = config
        self.cache_dir = cache_dir

    def setup(self) -> None:
        self.task = JudgeTask()
        self.cache = AnswerCache(self.cache_dir)
        self.backends: dict[str, Any] = {}  # created on first need: a fully cached run starts no engine
        self.rule = KeepRule(self.config.min_matches, self.config.max_contradictions, self.config.consensus)

    def teardown(self) -> None:
        for judge in self.config.judges:
            if judge.judge in self.backends:
                release_backend(judge)
        self.backends.clear()
        self.cache.close()

    def _backend(self, judge: JudgeConfig) -> Any:
        if judge.judge not in self.backends:
            self.backends[judge.judge] = acquire_backend(judge)
        return self.backends[judge.judge]

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        config = self.config
        texts: dict[str, str] = {}
        rejected: dict[str, str] = {}  # pair id -> why a judge's backend refused it
        for judge in config.judges:
            texts.update(self._answers(judge, batch, rejected))
        for row in batch:
            if row["pair_id"] in rejected:
                rejection = JUDGING.reject("judge_rejected", "{why}", why=rejected[row["pair_id"]])
                yield route(STAGE, row["pair_id"], rejection, {k: row[k] for k in ("pair_id", "criterion", "language", "source")}, JUDGING)
            else:
                yield to_row(self._judged(row, texts))

    def _answers(self, judge: JudgeConfig, batch: list[dict[str, Any]], rejected: dict[str, str]) -> dict[str, str]:
        """This judge's raw answers for the batch by answer key, cache first; refused pairs go to `rejected`."""
        config = self.config
        requests = [Request(row["pair_id"], order, request_seed(config.seed, row["pair_id"], order),
                            self.task.format_input({**row, "fence": "", "order": order}))
                    for row in batch for order in ORDERS]
        sampling = Sampling(n=config.votes // 2, temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                            regex=VERDICT_PATTERN if config.constrained else None)
        generator = CachedGenerator(self.cache, self._backend(judge), judge.judge, self.task.template_id, metrics_namespace(STAGE))
        texts = {}
        for request, answers in zip(requests, generator.answers(requests, sampling)):
            if isinstance(answers, Rejected):
                rejected[request.pair_id] = f"{judge.judge}, {request.variant}: {answers.reason}"
                continue
            texts.update({request.key(judge.judge, self.task.template_id, i).key: text for i, text in enumerate(answers)})
        return texts

    def _judged(self, row: dict[str, Any], texts: dict[str, str]) -> JudgedPair:
        config, namespace = self.config, metrics_namespace(STAGE)
        votes = []
        for judge in config.judges:
            for order in ORDERS:
                seed = request_seed(config.seed, row["pair_id"], order)
                for sample in range(config.votes // 2):
                    key = AnswerKey(judge.judge, self.task.template_id, row["pair_id"], order, sample, seed)
                    parsed = self.task.parse_output(texts[key.key])
                    verdict = parsed.fields["verdict"] if parsed.fields else None
                    result = outcome(order, verdict)
                    Metrics.counter(namespace, f"votes_{result}").inc()
                    votes.append(Vote(judge.judge, self.task.template_id, order, sample, seed, verdict, result, key.key, parsed.reason))
        kept, reason = self.rule.decide(votes)
        Metrics.counter(namespace, PAIRS_KEPT if kept else PAIRS_NOT_KEPT).inc()
        return JudgedPair(
            pair_id=row["pair_id"], candidate=from_row(Candidate, row), votes=votes, chosen_first=count(votes, "chosen_first"),
            chosen_second=count(votes, "chosen_second"), margin=margin(votes), kept=kept, keep_reason=reason,
        )


def sample_rank(pair_id: str) -> int:
    """A pair's place in the sample order: a stable hash, so the same pairs are picked on every run."""
    return int.from_bytes(hashlib.blake2b(pair_id.encode("utf-8"), digest_size=8).digest(), "big")


class _Sampled(beam.DoFn):
    def process(self, row: dict[str, Any], lowest: list[tuple[int, str]]) -> Iterator[Any]:
        if row["pair_id"] in {pair_id for _, pair_id in lowest}:
            yield row
        else:
            rejection = SAMPLE.reject("not_sampled", "outside the sample of {size}", size=len(lowest))
            yield route(STAGE, row["pair_id"], rejection, {"pair_id": row["pair_id"]}, SAMPLE)


def cache_dir(run_dir: str) -> str:
    """The judges' answer cache: beside the stage directory, so that it survives the stage being redone."""
    return FileSystems.join(run_dir, CACHE_FOLDER)


@register_stage
class Label(Stage[LabelConfig]):
    """LLM judges vote on every pair in both orders; every answer cached, every vote kept."""

    name = STAGE
    Config = LabelConfig
    input_type = Candidate
    output_type = JudgedPair
    key_field = "pair_id"
    drops = (JUDGING, SAMPLE)

    @classmethod
    def progress(cls, config: LabelConfig, context: StageContext, stage_dir: str, records_in: int) -> Progress:
        """Answers in the cache (earlier runs' included) of the answers this stage needs."""
        pairs = min(records_in, config.sample) if config.sample else records_in
        total = pairs * config.votes * len(config.judges)
        stored = AnswerCounter(cache_dir(context.run_dir), [judge.judge for judge in config.judges])
        return Progress("answers", lambda: (min(stored(), total), total))

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        cache = cache_dir(self.context.run_dir)
        candidates = list(inputs.values()) | "AllCandidates" >> beam.Flatten()
        dropped = []
        if config.sample:
            lowest = (
                candidates
                | "SampleRanks" >> beam.Map(lambda row: (sample_rank(row["pair_id"]), row["pair_id"]))
                | "Lowest" >> beam.combiners.Top.Smallest(config.sample)
            )
            sampled = candidates | "Sample" >> beam.ParDo(_Sampled(), beam.pvalue.AsSingleton(lowest)).with_outputs(DROPPED, main="kept")
            candidates, dropped = sampled.kept, [sampled[DROPPED]]
        judged = (
            candidates
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.batch_size)
            | "Judge" >> beam.ParDo(JudgeBatch(config, cache)).with_outputs(DROPPED, main="judged")
        )
        return StageResult(judged.judged, [*dropped, judged[DROPPED]])
