"""LLM judges scored like reward models: any judge entry of the label stage (vllm, openai or transformers
backend, the same config block) on a CRB-format benchmark, written as scores.parquet and results.json in the
layout of a reward model's evaluation, plus the figures only a judge has.

Two modes:

- `pairwise`: the label stage's judge template (llm.judging.JudgeTask), each pair shown in both orders, `votes / 2`
  answers per order. chosen_score = votes that pick the chosen side (matches), rejected_score = votes that pick the
  rejected one (contradictions), so a pair is correct when its votes pick the chosen side and equal counts are a
  tie. A pair none of whose answers parsed is a parse failure (both scores empty, `parse_failed`). Position
  consistency: pairs whose two orders pick the same side (each order's votes decide a side as in qualification:
  more matches than contradictions picks `chosen`, fewer `rejected`, equal none) / pairs; `inconsistent_pairs`:
  pairs whose two orders pick opposite sides.
- `pointwise`: each response rated alone from 1 to 10 (llm.tasks.RatingTask, template rating.v1), `votes` answers
  per response; a side's score is the mean of its parsed ratings. A response none of whose ratings parsed leaves
  its score empty (`chosen_parse_failed` / `rejected_parse_failed`, and `parse_failed`).

Unparsed pairs count as incorrect in `accuracy` (pipelines.eval.metrics). A prompt the backend refuses (too long
for the model) has no answer: its answers count as unparsed and its pair is named in the run's `refused_pairs`
(scores.parquet's metadata, results.json's `run`); refused prompts are not cached, so a rerun asks them again.

Every answer goes through the answer cache (default OUT/answers), keyed by judge name, template version, pair
(`benchmark:<id>`, as the label stage's calibration keys benchmark pairs, so a label run's answer folder may be
given as `cache`), order or side, sample and seed; a rerun asks the backend for nothing it has (results.json's
`answers` block counts what was asked). Sampling settings are not in the key: to ask again with others, give
another `cache` folder or `seed`.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm.backends import Answers, Rejected, Sampling, acquire_backend, release_backend
from llm.cache import AnswerCache
from llm.generation import CachedGenerator, Request, request_seed
from llm.judging import ORDERS, VERDICT_PATTERN, JudgeTask
from llm.tasks import RatingTask
from pipelines.eval.benchmark import BenchmarkError, BenchPair, read_benchmark
from pipelines.eval.metrics import RESULTS_FILE, results, write_results
from pipelines.eval.scoring import (
    RUN_METADATA_KEY,
    SCORES_FILE,
    SCORES_SCHEMA,
    write_scores,
)
from pipelines.label.stage import BENCHMARK_PREFIX, JudgeConfig
from pipelines.label.voting import count, outcome, side
from schemas import ASPECTS, CRITERIA, LANGUAGES, Vote

log = logging.getLogger(__name__)

JudgeMode = Literal["pairwise", "pointwise"]
SIDES = ("chosen", "rejected")  # the variants of a pointwise pair's two requests
CACHE_FOLDER = "answers"  # OUT/answers: the default answer cache
PAIRWISE_COLUMNS = pa.schema([("chosen_first_side", pa.string()), ("chosen_second_side", pa.string()),
                              ("tie_votes", pa.int64()), ("unparsed_votes", pa.int64())])
POINTWISE_COLUMNS = pa.schema([("chosen_unparsed", pa.int64()), ("rejected_unparsed", pa.int64())])
PARSE_FLAGS = pa.schema([("parse_failed", pa.bool_()), ("chosen_parse_failed", pa.bool_()), ("rejected_parse_failed", pa.bool_())])


class JudgeEvalConfig(BaseModel):
    """A judge (a label-stage judge entry), the benchmark, the mode and how the judge is asked (`codepref eval --judge`)."""

    model_config = ConfigDict(extra="forbid")

    judge: JudgeConfig = Field(description="The judge: a judge entry of the label stage (backend, model, name, base_url ...).")
    benchmark: str = Field(description="CRB-format benchmark: Parquet/JSONL/JSON file, folder or glob, or a datasets folder.")
    split: str | None = Field(None, description="Split of a datasets folder that holds several (e.g. Full).")
    mode: JudgeMode = Field("pairwise", description="pairwise: the judge template in both orders; pointwise: a 1-10 rating "
                                                    "of each response.")
    votes: int = Field(2, ge=1, description="pairwise: answers per pair, half in each order (even); pointwise: ratings per "
                                            "response, averaged.")
    temperature: float | None = Field(
        None, ge=0.0, description="Sampling temperature; default: 0 (greedy) when one answer is asked per prompt "
        "(pairwise votes 2, pointwise votes 1), else 0.8 as the label stage.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(256, ge=1, description="Longest answer.")
    constrained: bool = Field(False, description="Constrain answers to a bare verdict or rating tag (vLLM structured outputs).")
    seed: int = Field(0, description="Base seed; each pair and order (or side) derive their own from it.")
    batch_size: int = Field(16, ge=1, description="Pairs asked per batch (the cache is written after each).")
    cache: str | None = Field(None, description="Answer cache folder (default: OUT/answers).")

    @model_validator(mode="after")
    def _even_pairwise_votes(self) -> JudgeEvalConfig:
        if self.mode == "pairwise" and self.votes % 2:
            raise ValueError(f"votes {self.votes} is odd; pairwise votes are split evenly over both orders (give an even number)")
        return self

    @property
    def samples(self) -> int:
        """Answers asked per prompt: per order (pairwise) or per response (pointwise)."""
        return self.votes // 2 if self.mode == "pairwise" else self.votes

    @property
    def sampling_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.8


@dataclass(frozen=True)
class JudgedBenchPair:
    """A benchmark pair as the judge templates need it: the criterion of its aspect, the language's canonical name."""

    pair: BenchPair
    key: str  # the pair in cache keys and seeds: benchmark:<id>
    criterion: str
    language: str

    def record(self) -> dict[str, Any]:
        return {"prompt": self.pair.prompt, "chosen": self.pair.chosen, "rejected": self.pair.rejected,
                "criterion": self.criterion, "language": self.language, "fence": ""}


def judged_pairs(pairs: Sequence[BenchPair], source: str) -> list[JudgedBenchPair]:
    """The pairs with their criteria; an aspect no judge checklist covers (Helpfulness ...) is an error naming the pair."""
    judged = []
    for pair in pairs:
        criterion = ASPECTS.canonical(pair.aspect) if pair.aspect in ASPECTS else None
        if criterion not in CRITERIA:
            raise BenchmarkError(f"{source}: pair {pair.id!r} has aspect {pair.aspect!r}, which no judge checklist covers "
                                 f"(judged criteria: {', '.join(CRITERIA)}); leave such pairs out of the benchmark")
        language = LANGUAGES.canonical(pair.language) if pair.language in LANGUAGES else pair.language
        judged.append(JudgedBenchPair(pair, BENCHMARK_PREFIX + pair.id, criterion, language))
    return judged


class CountingBackend:
    """The judge's backend, acquired on first use (a fully cached run starts no engine and sends nothing), counting
    the prompts it is sent and the answers it gives, so that results.json says what a run asked for."""

    def __init__(self, judge: JudgeConfig):
        self.judge = judge
        self.backend: Any = None
        self.requests = 0  # prompts sent
        self.answers = 0  # answers received
        self.refused = 0  # prompts the backend refused

    @property
    def retries(self) -> int:
        return getattr(self.backend, "retries", 0) if self.backend is not None else 0

    def generate(self, conversations: list[Any], sampling: Sampling, seeds: list[int] | None = None,
                 on_answer: Callable[[int, Answers], None] | None = None) -> list[Answers]:
        if self.backend is None:
            self.backend = acquire_backend(self.judge)
        self.requests += len(conversations)

        def counted(index: int, answers: Answers) -> None:
            if isinstance(answers, Rejected):
                self.refused += 1
            else:
                self.answers += len(answers)
            if on_answer is not None:
                on_answer(index, answers)

        return self.backend.generate(conversations, sampling, seeds, on_answer=counted)

    def release(self) -> None:
        if self.backend is not None:
            self.backend = None
            release_backend(self.judge)


def evaluate_judge(config: JudgeEvalConfig, out_dir: str | Path,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Have the judge score every pair of the benchmark, write `scores.parquet` and `results.json` into `out_dir`;
    return the results (metrics.results of the scores, the judge's own figures, and the `answers` asked)."""
    from pipelines.eval.evaluation import _benchmark_copy
    from storage.staging import is_object_store, written_locally

    out = str(out_dir)
    cache_dir = config.cache or (f"{out.rstrip('/')}/{CACHE_FOLDER}" if is_object_store(out) else str(Path(out) / CACHE_FOLDER))
    with tempfile.TemporaryDirectory(prefix="codepref-eval-judge-") as work:
        benchmark = config.benchmark
        if is_object_store(benchmark):
            benchmark = _benchmark_copy(benchmark, Path(work) / "benchmark")
        pairs = judged_pairs(read_benchmark(benchmark, config.split), config.benchmark)
    backend = CountingBackend(config.judge)
    cache = AnswerCache(cache_dir)
    try:
        table = _score(config, pairs, cache, backend, progress)
    finally:
        try:
            cache.close()
        finally:
            backend.release()
    needed = len(pairs) * config.votes * (1 if config.mode == "pairwise" else 2)
    answers = {"needed": needed, "from_cache": needed - backend.answers - backend.refused * config.samples,
               "generated": backend.answers, "requests": backend.requests, "refused_prompts": backend.refused}
    source = f"{out.rstrip('/')}/{SCORES_FILE}" if is_object_store(out) else str(Path(out) / SCORES_FILE)
    summary = {**results(table, source=source), **judge_results(table), "answers": answers}
    with written_locally(out) as written:
        write_scores(table, written / SCORES_FILE)
        write_results(summary, written / RESULTS_FILE)
    return summary


def _score(config: JudgeEvalConfig, pairs: list[JudgedBenchPair], cache: AnswerCache, backend: CountingBackend,
           progress: Callable[[int, int], None] | None) -> pa.Table:
    """The scores table: the judge's answers for every pair, batch by batch through the cache, parsed and counted."""
    task: JudgeTask | RatingTask = JudgeTask() if config.mode == "pairwise" else RatingTask()
    pattern = (VERDICT_PATTERN if config.mode == "pairwise" else RatingTask.answer_pattern) if config.constrained else None
    sampling = Sampling(n=config.samples, temperature=config.sampling_temperature, top_p=config.top_p,
                        max_tokens=config.max_tokens, seed=config.seed, regex=pattern)
    generator = CachedGenerator(cache, backend, config.judge.judge, task.template_id, "eval_judge")
    variants = ORDERS if config.mode == "pairwise" else SIDES
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    batches = -(-len(pairs) // config.batch_size)
    for number, start in enumerate(range(0, len(pairs), config.batch_size), 1):
        batch = pairs[start : start + config.batch_size]
        requests = [_request(task, config.seed, pair, variant) for pair in batch for variant in variants]
        answers = iter(generator.answers(requests, sampling))
        for pair in batch:
            texts = {variant: next(answers) for variant in variants}
            if any(isinstance(a, Rejected) for a in texts.values()):
                refused.append(pair.pair.id)
                log.warning("pair %s: the judge's backend refused %s", pair.pair.id,
                            "; ".join(f"{v}: {a.reason}" for v, a in texts.items() if isinstance(a, Rejected)))
            rows.append(_pairwise_row(task, config, pair, texts) if config.mode == "pairwise" else _pointwise_row(task, config.samples, texts))
        if progress is not None:
            progress(number, batches)
    run = {"judge": config.judge.judge, "model": config.judge.model, "backend": config.judge.backend,
           "benchmark": config.benchmark, "split": config.split, "mode": config.mode, "template": task.template_id,
           "votes": config.votes, "temperature": config.sampling_temperature, "top_p": config.top_p,
           "max_tokens": config.max_tokens, "constrained": config.constrained, "seed": config.seed, "pairs": len(pairs),
           "refused_pairs": refused}
    return _table([p.pair for p in pairs], rows, config.mode, run)


def _request(task: JudgeTask | RatingTask, seed: int, pair: JudgedBenchPair, variant: str) -> Request:
    record = pair.record()
    if variant in ORDERS:
        record["order"] = variant
    else:
        record["response"] = record[variant]
    return Request(pair.key, variant, request_seed(seed, pair.key, variant), task.format_input(record))


def _pairwise_row(task: JudgeTask | RatingTask, config: JudgeEvalConfig, pair: JudgedBenchPair,
                  texts: dict[str, Answers]) -> dict[str, Any]:
    """Votes over both orders: matches and contradictions are the scores; each order's votes decide its side."""
    votes = []
    for order, answers in texts.items():
        seed = request_seed(config.seed, pair.key, order)
        for sample in range(config.samples):
            if isinstance(answers, Rejected):
                verdict, reason = None, f"refused by the backend: {answers.reason}"
            else:
                parsed = task.parse_output(answers[sample])
                verdict, reason = (parsed.fields or {}).get("verdict"), parsed.reason
            votes.append(Vote(config.judge.judge, task.template_id, order, sample, seed, verdict, outcome(order, verdict), "", reason))
    counts = [count(votes, order) for order in ORDERS]
    matches, contradictions = sum(c.matches for c in counts), sum(c.contradictions for c in counts)
    errors = sum(c.errors for c in counts)
    failed = errors == len(votes)
    return {"chosen_score": None if failed else float(matches), "rejected_score": None if failed else float(contradictions),
            "chosen_first_side": side([v for v in votes if v.order == ORDERS[0]]),
            "chosen_second_side": side([v for v in votes if v.order == ORDERS[1]]),
            "tie_votes": sum(c.ties for c in counts), "unparsed_votes": errors,
            "parse_failed": failed, "chosen_parse_failed": False, "rejected_parse_failed": False}


def _pointwise_row(task: JudgeTask | RatingTask, samples: int, texts: dict[str, Answers]) -> dict[str, Any]:
    """Each side's mean parsed rating; a side with none is a parse failure (a refused prompt's answers are unparsed)."""
    row: dict[str, Any] = {}
    for variant, answers in texts.items():
        ratings = [] if isinstance(answers, Rejected) else [
            parsed.fields["rating"] for parsed in map(task.parse_output, answers) if parsed.fields is not None]
        row[f"{variant}_score"] = float(statistics.fmean(ratings)) if ratings else None
        row[f"{variant}_parse_failed"] = not ratings
        row[f"{variant}_unparsed"] = samples - len(ratings)
    row["parse_failed"] = row["chosen_parse_failed"] or row["rejected_parse_failed"]
    return row


def _table(pairs: Sequence[BenchPair], rows: list[dict[str, Any]], mode: JudgeMode, run: dict[str, Any]) -> pa.Table:
    """SCORES_SCHEMA (an unparsed pair's empty scores leave `correct` false and `score_diff` empty), then the
    mode's own columns and the parse flags; `run` in the schema metadata."""
    chosen, rejected = [r["chosen_score"] for r in rows], [r["rejected_score"] for r in rows]
    scored = [c is not None and r is not None for c, r in zip(chosen, rejected)]
    columns: dict[str, list[Any]] = {
        "chosen_score": chosen, "rejected_score": rejected,
        "correct": [ok and c > r for ok, c, r in zip(scored, chosen, rejected)],
        "score_diff": [c - r if ok else None for ok, c, r in zip(scored, chosen, rejected)],
        "language": [p.language for p in pairs], "aspect": [p.aspect for p in pairs], "subset": [p.subset for p in pairs],
        "id": [p.id for p in pairs],
    }
    extra = PAIRWISE_COLUMNS if mode == "pairwise" else POINTWISE_COLUMNS
    for field in [*extra, *PARSE_FLAGS]:
        columns[field.name] = [r[field.name] for r in rows]
    schema = pa.schema([*SCORES_SCHEMA, *extra, *PARSE_FLAGS])
    return pa.Table.from_pydict(columns, schema=schema).replace_schema_metadata({RUN_METADATA_KEY: json.dumps(run, sort_keys=True)})


def judge_results(table: pa.Table) -> dict[str, Any]:
    """The judge's own figures, from its scores table (so a written scores.parquet recomputes them).

    pairwise: `position_consistency` (pairs whose two orders pick the same side / pairs, with its Wilson interval),
    `inconsistent_pairs` (the two orders pick opposite sides), `undecided_order_pairs` (an order picks no side: its
    votes tie, or none parsed), and `votes` (matches, contradictions, ties, unparsed, total). pointwise:
    `rating_parse_failures` (responses with no parsed rating) and `ratings` (responses and answers, and how many of
    each did not parse)."""
    from audit.agreement import proportion

    run = json.loads((table.schema.metadata or {}).get(RUN_METADATA_KEY, b"{}"))
    columns = table.to_pydict()
    pairs = table.num_rows
    if run.get("mode") == "pointwise":
        failures = sum(columns["chosen_parse_failed"]) + sum(columns["rejected_parse_failed"])
        asked = run["votes"] * 2 * pairs
        unparsed = sum(columns["chosen_unparsed"]) + sum(columns["rejected_unparsed"])
        return {"rating_parse_failures": failures,
                "ratings": {"responses": 2 * pairs, "unparsed_responses": failures, "answers": asked, "unparsed_answers": unparsed}}
    first, second = columns["chosen_first_side"], columns["chosen_second_side"]
    consistent = sum(a is not None and a == b for a, b in zip(first, second))
    opposite = sum(a is not None and b is not None and a != b for a, b in zip(first, second))
    total = run["votes"] * pairs
    matches = sum(v for v in columns["chosen_score"] if v is not None)
    contradictions = sum(v for v in columns["rejected_score"] if v is not None)
    return {"position_consistency": proportion(consistent, pairs, "no pairs"), "inconsistent_pairs": opposite,
            "undecided_order_pairs": pairs - consistent - opposite,
            "votes": {"total": total, "matches": int(matches), "contradictions": int(contradictions),
                      "ties": sum(columns["tie_votes"]), "unparsed": sum(columns["unparsed_votes"])}}
