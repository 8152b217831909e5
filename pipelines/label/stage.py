"""The `label` stage: execution truth where the run has it, qualified LLM judges elsewhere.

Execution-verified pairs (the solution passes its tests, the mutant fails) take their label from
execution (`verified: truth`, the default): one vote of the judge `execution`, no judge call.
`both` also has the judges vote on them and counts where they disagree; `judge` judges them like
the rest. Before any labelling call, each judge is qualified (pipelines.label.qualify): it votes on
calibration pairs whose truth is known and is refused, with its figures, when it falls short.

For each pair that needs a judge, each judge and each order, `votes / 2` answers are needed
(samples 0..k-1, one seed per pair and order). Answers already in the run's answer cache are reused;
only the missing ones are generated (`n` samples in one request, so the prompt is prefilled once)
and stored before they are parsed. A rerun, or a run resumed after a crash, therefore asks for
nothing it already has, calibration included. Every answer's raw text stays in the cache (answer
files in RUN_DIR/label_answers/, through Beam's FileSystems: any worker reaches them), linked from
the vote by its key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import reduce
from operator import add
from typing import Any, Literal

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import Field, field_validator, model_validator

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
from parsers import LanguageRegistry
from pipelines.core import (
    DROPPED,
    Progress,
    SideTable,
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
from pipelines.label.qualify import (
    Qualification,
    QualifyConfig,
    Tally,
    UnqualifiedJudge,
    qualify,
    refusal,
    tally,
)
from pipelines.label.voting import (
    Aggregation,
    Consensus,
    KeepRule,
    WeightedRule,
    count,
    margin,
    outcome,
)
from schemas import (
    ASPECTS,
    CRITERIA,
    EXECUTION,
    LANGUAGES,
    Candidate,
    JudgedPair,
    Origin,
    Vote,
    from_row,
    to_row,
)

STAGE = "label"
CACHE_FOLDER = f"{STAGE}_answers"
CALIBRATION_TABLE = "calibration"  # the calibration pairs with every judge's votes, beside the stage's shards
PAIRS_KEPT, PAIRS_NOT_KEPT = "pairs_kept", "pairs_not_kept"  # counters of the keep rule's decisions (every judged pair is written)
BY_EXECUTION, TO_JUDGE = "pairs_labelled_by_execution", "pairs_to_judge"
AGREE, DISAGREE = "verified_judges_agree", "verified_judges_disagree"  # verified: both
BENCHMARK_PREFIX = "benchmark:"  # pair ids (and sources) of calibration pairs read from qualify.benchmark
Verified = Literal["truth", "judge", "both"]


class JudgeConfig(BackendConfig):
    """One judge: a model, the backend that serves it, and the name its votes and cached answers go under."""

    name: str | None = Field(None, description="The judge's name on votes and in the cache (default: the model).")

    @property
    def judge(self) -> str:
        return self.name or self.model


class LabelConfig(StageConfig):
    """Who labels each pair (execution or judges), how judges qualify and vote, and which pairs are kept."""

    inputs: list[str] = inputs_field("dedup", description="Stages whose Candidate records are judged.")
    verified: Verified = Field(
        "truth", description="Execution-verified pairs: 'truth' labels them by execution (no judge call), 'both' also "
        "has the judges vote and counts their disagreement, 'judge' judges them like the rest.")
    judges: list[JudgeConfig] = Field(default_factory=lambda: [JudgeConfig(model="smollm2")], description="Judge models.")
    qualify: QualifyConfig | None = Field(
        default_factory=QualifyConfig, description="Judge qualification before labelling (null: judges label unmeasured).")
    votes: int = Field(8, ge=2, description="Votes per judge and pair, half in each order (must be even).")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(256, ge=1, description="Longest answer.")
    constrained: bool = Field(False, description="Constrain answers to a bare verdict tag (vLLM structured outputs).")
    seed: int = Field(0, description="Base seed; each pair and order derive their own from it.")
    aggregation: Aggregation = Field(
        "keep_rule", description="How judges' votes decide: 'keep_rule' (min_matches, max_contradictions, consensus) or "
        "'weighted' (each judge's side weighted by the log-odds of its measured accuracy; needs qualify).")
    min_matches: int = Field(6, ge=0, description="Keep rule: votes that must agree with the expected direction.")
    max_contradictions: int = Field(1, ge=0, description="Keep rule: votes that may oppose it.")
    consensus: Consensus = Field("all", description="Several judges: 'all' must pass, or 'pooled' votes.")
    batch_size: int = Field(16, ge=1, description="Pairs judged per request batch.")
    sample: int | None = Field(
        None, ge=1, description="Judge only this many of the pairs that need a judge, those whose pair-id hash is lowest (the "
        "rest dropped as not_sampled); pairs labelled by execution are all kept.")

    @field_validator("judges")
    @classmethod
    def _distinct_judges(cls, judges: list[JudgeConfig]) -> list[JudgeConfig]:
        names = [judge.judge for judge in judges]
        if not judges or len(set(names)) != len(names):
            raise ValueError(f"judges need distinct names (give `name` to tell apart judges of one model): {names}")
        if EXECUTION in names:
            raise ValueError(f"{EXECUTION!r} names the votes execution casts; give the judge another `name`")
        return judges

    @field_validator("votes")
    @classmethod
    def _even_votes(cls, votes: int) -> int:
        if votes % 2:
            raise ValueError(f"{votes} is odd; votes are split evenly over both orders (give an even number)")
        return votes

    @model_validator(mode="after")
    def _weights_are_measured(self) -> LabelConfig:
        if self.aggregation == "weighted" and self.qualify is None:
            raise ValueError("aggregation 'weighted' weights judges by what qualification measured; set `qualify` (not null)")
        return self


def execution_vote() -> Vote:
    """The vote execution casts on a verified pair: the chosen side passed its tests and the rejected side failed."""
    return Vote(EXECUTION, EXECUTION, "chosen_first", 0, 0, "A", "match", "", None)


def by_truth(config: LabelConfig, row: dict[str, Any]) -> bool:
    """Whether execution labels this pair (its tests decided it and the config takes that as the label)."""
    return row.get("verified") is True and config.verified != "judge"


class JudgeBatch(beam.DoFn):
    """Votes for a batch of pairs: cache first, then one request per (pair, order) for what is missing.

    As the labeller (`calibrating` False) it first checks the judges' qualification (a side input) and refuses,
    or leaves out, those that fell short; as the calibrator it has every judge vote on calibration pairs, unless
    no pair needs a judge (`needed`, a side input, is 0)."""

    def __init__(self, config: LabelConfig, cache_dir: str, calibrating: bool = False):
        self.config = config
        self.cache_dir = cache_dir
        self.calibrating = calibrating

    def setup(self) -> None:
        self.task = JudgeTask()
        self.cache = AnswerCache(self.cache_dir)
        self.backends: dict[str, Any] = {}  # created on first need: a fully cached run starts no engine
        self.judges: list[JudgeConfig] | None = None  # those that may label, known once the qualification is read
        self.rule: KeepRule | WeightedRule = KeepRule(self.config.min_matches, self.config.max_contradictions, self.config.consensus)

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

    def _admit(self, tallies: dict[str, Tally] | None) -> list[JudgeConfig]:
        """The judges that may label, from their calibration counts; raises UnqualifiedJudge as the config says."""
        settings = self.config.qualify
        if settings is None or tallies is None:
            return list(self.config.judges)
        measured = [qualify(judge.judge, tallies.get(judge.judge, Tally()), settings) for judge in self.config.judges]
        refused = [q for q in measured if not q.qualified]
        admitted = [judge for judge, q in zip(self.config.judges, measured) if q.qualified]
        if refused and (settings.on_unqualified == "fail" or (not admitted and settings.on_unqualified == "drop_judge")):
            raise UnqualifiedJudge(refusal(refused, settings, none_left=not admitted))
        if self.config.aggregation == "weighted":
            self.rule = WeightedRule({q.judge: q.weight for q in measured if q.qualified})
        return admitted

    def process(self, batch: list[dict[str, Any]], tallies: dict[str, Tally] | None = None, needed: int = 1) -> Iterator[Any]:
        if self.calibrating:
            if needed:
                yield from self._calibrate(batch)
            return
        if self.judges is None:
            self.judges = self._admit(tallies)
        texts: dict[str, str] = {}
        rejected: dict[str, str] = {}  # pair id -> why a judge's backend refused it
        for judge in self.judges:  # none left (truth_only, no judge qualified): nothing to ask
            texts.update(self._answers(judge, batch, rejected))
        namespace = metrics_namespace(STAGE)
        for row in batch:
            truth = by_truth(self.config, row)
            if row["pair_id"] in rejected and not truth:
                rejection = JUDGING.reject("judge_rejected", "{why}", why=rejected[row["pair_id"]])
                yield route(STAGE, row["pair_id"], rejection, _brief(row), JUDGING)
            elif not self.judges and not truth:
                rejection = JUDGING.reject("no_qualified_judge", "no judge qualified (see the manifest's qualification)")
                yield route(STAGE, row["pair_id"], rejection, _brief(row), JUDGING)
            else:
                judges = [] if row["pair_id"] in rejected else self.judges
                Metrics.counter(namespace, BY_EXECUTION if truth else TO_JUDGE).inc()
                yield to_row(self._judged(row, texts, judges, truth))

    def _calibrate(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        """Every judge's votes on calibration pairs, as JudgedPair rows (a pair a backend refused is left out, counted)."""
        texts: dict[str, str] = {}
        rejected: dict[str, str] = {}
        for judge in self.config.judges:
            texts.update(self._answers(judge, batch, rejected))
        for row in batch:
            if row["pair_id"] in rejected:
                Metrics.counter(metrics_namespace(STAGE), "calibration_pairs_rejected").inc()
                continue
            votes = self._votes(row, texts, self.config.judges)
            yield to_row(judged_pair(row, votes, False, "calibration", "judges"))
            for judge, counts in tally(votes).items():
                yield beam.pvalue.TaggedOutput("tallies", (judge, counts))

    def _answers(self, judge: JudgeConfig, batch: list[dict[str, Any]], rejected: dict[str, str]) -> dict[str, str]:
        """This judge's raw answers for the batch by answer key, cache first; refused pairs go to `rejected`."""
        config = self.config
        requests = [Request(row["pair_id"], order, request_seed(config.seed, row["pair_id"], order),
                            self.task.format_input({**row, "fence": "", "order": order}))
                    for row in batch for order in ORDERS]
        if not requests:
            return {}
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

    def _votes(self, row: dict[str, Any], texts: dict[str, str], judges: list[JudgeConfig]) -> list[Vote]:
        config, namespace = self.config, metrics_namespace(STAGE)
        votes = []
        for judge in judges:
            for order in ORDERS:
                seed = request_seed(config.seed, row["pair_id"], order)
                for sample in range(config.votes // 2):
                    key = AnswerKey(judge.judge, self.task.template_id, row["pair_id"], order, sample, seed)
                    parsed = self.task.parse_output(texts[key.key])
                    verdict = parsed.fields["verdict"] if parsed.fields else None
                    result = outcome(order, verdict)
                    if not self.calibrating:
                        Metrics.counter(namespace, f"votes_{result}").inc()
                    votes.append(Vote(judge.judge, self.task.template_id, order, sample, seed, verdict, result, key.key, parsed.reason))
        return votes

    def _judged(self, row: dict[str, Any], texts: dict[str, str], judges: list[JudgeConfig], truth: bool) -> JudgedPair:
        """The pair with its judges' votes and the decision: the aggregation's, or execution's for a verified pair."""
        namespace = metrics_namespace(STAGE)
        votes = self._votes(row, texts, judges)
        if truth:
            kept, reason = True, "execution_verified"
            if votes:  # verified: both
                judged, why = self.rule.decide(votes)
                Metrics.counter(namespace, AGREE if judged else DISAGREE).inc()
                if not judged:
                    reason = f"execution_verified; judges disagree ({why})"
            votes.append(execution_vote())
        else:
            kept, reason = self.rule.decide(votes)
        Metrics.counter(namespace, PAIRS_KEPT if kept else PAIRS_NOT_KEPT).inc()
        return judged_pair(row, votes, kept, reason, EXECUTION if truth else "judges")


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("pair_id", "criterion", "language", "source")}


def _by_execution(row: dict[str, Any]) -> dict[str, Any]:
    """A verified pair labelled by execution alone."""
    Metrics.counter(metrics_namespace(STAGE), BY_EXECUTION).inc()
    Metrics.counter(metrics_namespace(STAGE), PAIRS_KEPT).inc()
    return to_row(judged_pair(row, [execution_vote()], True, "execution_verified", EXECUTION))


def judged_pair(row: dict[str, Any], votes: list[Vote], kept: bool, reason: str, label_source: str) -> JudgedPair:
    """A candidate row with its votes, their counts per order and margin, and the decision."""
    return JudgedPair(
        pair_id=row["pair_id"], candidate=from_row(Candidate, row), votes=votes, chosen_first=count(votes, "chosen_first"),
        chosen_second=count(votes, "chosen_second"), margin=margin(votes), kept=kept, keep_reason=reason,
        label_source=label_source,
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


@beam.ptransform_fn
def _Lowest(rows: beam.PCollection, size: int) -> beam.PCollection:
    """The (rank, pair id) of the `size` rows of lowest sample rank, as one list."""
    return (rows | "Ranks" >> beam.Map(lambda row: (sample_rank(row["pair_id"]), row["pair_id"]))
            | "Smallest" >> beam.combiners.Top.Smallest(size))


def benchmark_candidates(path: str) -> list[dict[str, Any]]:
    """The pairs of a CRB-format file as Candidate rows for calibration (their chosen side is the truth)."""
    from pipelines.eval.benchmark import read_benchmark

    rows = []
    for pair in read_benchmark(path):
        criterion = ASPECTS.canonical(pair.aspect)
        if criterion not in CRITERIA:
            raise ValueError(f"{path}: pair {pair.id!r} has aspect {pair.aspect!r}, which no judge checklist covers "
                             f"(judged criteria: {', '.join(CRITERIA)})")
        language = LANGUAGES.canonical(pair.language) if pair.language in LANGUAGES else pair.language
        rows.append(to_row(Candidate(
            pair_id=BENCHMARK_PREFIX + pair.id, source=BENCHMARK_PREFIX + pair.subset, criterion=criterion, language=language,
            prompt=pair.prompt, prompt_origin="benchmark", chosen=pair.chosen, rejected=pair.rejected,
            origin=Origin(instruct_source=path, instruct_row=pair.id),
        )))
    return rows


def cache_dir(run_dir: str) -> str:
    """The judges' answer cache: beside the stage directory, so that it survives the stage being redone."""
    return FileSystems.join(run_dir, CACHE_FOLDER)


def _verified_counts(context: StageContext) -> tuple[int, int]:
    """(pairs, execution-verified pairs) of the stage's inputs, from one column of their shards."""
    from storage import read_table

    pairs = verified = 0
    for files in context.input_files.values():
        if files:
            column = read_table(files, columns=["verified"]).column("verified")
            pairs += len(column)
            verified += sum(1 for value in column.to_pylist() if value is True)
    return pairs, verified


@register_stage
class Label(Stage[LabelConfig]):
    """Execution labels the verified pairs; qualified judges vote on the rest in both orders; every answer cached."""

    name = STAGE
    Config = LabelConfig
    input_type = Candidate
    output_type = JudgedPair
    key_field = "pair_id"
    drops = (JUDGING, SAMPLE)

    @classmethod
    def fingerprint(cls, config: LabelConfig) -> dict[str, Any]:
        from storage.tables import fingerprint_files

        return fingerprint_files([config.qualify.benchmark]) if config.qualify and config.qualify.benchmark else {}

    @classmethod
    def check(cls, config: LabelConfig, registry: LanguageRegistry) -> None:
        """The calibration benchmark, when given, reads as CRB pairs of judged criteria."""
        from pipelines.eval.benchmark import BenchmarkError
        from pipelines.run.config import ConfigError

        if config.qualify and config.qualify.benchmark:
            try:
                benchmark_candidates(config.qualify.benchmark)
            except (BenchmarkError, KeyError, ValueError) as error:
                raise ConfigError(f"stages.label.qualify.benchmark: {error}") from None

    @classmethod
    def progress(cls, config: LabelConfig, context: StageContext, stage_dir: str, records_in: int) -> Progress:
        """Answers in the cache (earlier runs' included) of the answers this stage needs: its pairs that need a judge
        and, when it qualifies judges, its calibration pairs."""
        pairs, verified = _verified_counts(context)
        judged = pairs - verified if config.verified == "truth" else pairs
        if config.sample:
            judged = min(judged, config.sample) + (verified if config.verified == "both" else 0)
        calibration = 0
        if config.qualify and judged:
            calibration = min(verified, config.qualify.pairs)
            calibration += len(benchmark_candidates(config.qualify.benchmark)) if config.qualify.benchmark else 0
        total = (judged + calibration) * config.votes * len(config.judges)
        stored = AnswerCounter(cache_dir(context.run_dir), [judge.judge for judge in config.judges])
        return Progress("answers", lambda: (min(stored(), total), total))

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        cache = cache_dir(self.context.run_dir)
        candidates = list(inputs.values()) | "AllCandidates" >> beam.Flatten()
        dropped, tables = [], {}
        truth = candidates | "ByExecution" >> beam.Filter(lambda row: by_truth(config, row))
        to_judge = candidates | "NeedJudges" >> beam.Filter(lambda row: not by_truth(config, row))
        if config.sample:
            lowest = to_judge | "SampleLowest" >> _Lowest(config.sample)
            sampled = to_judge | "Sample" >> beam.ParDo(_Sampled(), beam.pvalue.AsSingleton(lowest)).with_outputs(DROPPED, main="kept")
            to_judge, dropped = sampled.kept, [sampled[DROPPED]]
        if config.verified == "both":  # the judges vote on the verified pairs too; execution still labels them
            to_judge = (to_judge, truth) | "WithVerified" >> beam.Flatten()
            labelled_by_execution = []
        else:
            labelled_by_execution = [truth | "LabelByExecution" >> beam.Map(_by_execution)]
        side: dict[str, Any] = {}
        if config.qualify is not None:
            needed = to_judge | "CountToJudge" >> beam.combiners.Count.Globally()
            calibrated = self._calibration(pipeline, candidates, cache, needed)
            tables[CALIBRATION_TABLE] = SideTable(calibrated[CALIBRATION_TABLE], JudgedPair, "pair_id")
            tallies = calibrated.tallies | "SumTallies" >> beam.CombinePerKey(lambda counts: reduce(add, counts, Tally()))
            side["tallies"] = beam.pvalue.AsDict(tallies)
        judged = (
            to_judge
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.batch_size)
            | "Judge" >> beam.ParDo(JudgeBatch(config, cache), **side).with_outputs(DROPPED, main="judged")
        )
        rows = [judged.judged, *labelled_by_execution] | "AllLabelled" >> beam.Flatten()
        return StageResult(rows, [*dropped, judged[DROPPED]], tables)

    def _calibration(self, pipeline: beam.Pipeline, candidates: beam.PCollection, cache: str, needed: beam.PCollection) -> Any:
        """Every judge's votes on the calibration pairs (the run's verified pairs of lowest rank, then the benchmark's),
        unless no pair needs a judge: outputs CALIBRATION_TABLE (JudgedPair rows) and `tallies` ((judge, Tally))."""
        settings = self.config.qualify
        assert settings is not None
        verified = candidates | "Verified" >> beam.Filter(lambda row: row.get("verified") is True)
        lowest = verified | "CalibrationLowest" >> _Lowest(settings.pairs)
        drawn = verified | "CalibrationDraw" >> beam.Filter(
            lambda row, ranked: row["pair_id"] in {pair_id for _, pair_id in ranked}, beam.pvalue.AsSingleton(lowest))
        sources = [drawn]
        if settings.benchmark:
            sources.append(pipeline | "CalibrationBenchmark" >> beam.Create(benchmark_candidates(settings.benchmark)))
        return (
            sources
            | "CalibrationPairs" >> beam.Flatten()
            | "CalibrationBatch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.config.batch_size)
            | "Calibrate" >> beam.ParDo(JudgeBatch(self.config, cache, calibrating=True), needed=beam.pvalue.AsSingleton(needed))
            .with_outputs("tallies", main=CALIBRATION_TABLE)
        )

    def finish(self, stage_dir: str, manifest: Any) -> list[str]:
        """The judges' qualification into the manifest (`report`), and a note for the user on each judge."""
        config, counters = self.config, manifest.counters
        judged = (counters.get(TO_JUDGE, 0) + manifest.dropped.get("no_qualified_judge", 0) + manifest.dropped.get("judge_rejected", 0)
                  + (counters.get(BY_EXECUTION, 0) if config.verified == "both" else 0))
        if config.qualify is None:
            manifest.report["qualification"] = {"status": "off"}
            if judged:
                manifest.notes.append("judges labelled without qualification (label.qualify is null): nothing measured them")
            return []
        if not judged:
            manifest.report["qualification"] = {"status": "skipped", "why": "no pair needed a judge"}
            return []
        from storage import list_parts, read_rows

        totals: dict[str, Tally] = {}
        calibration_pairs = 0
        if list_parts(FileSystems.join(stage_dir, CALIBRATION_TABLE)):
            for row in read_rows(FileSystems.join(stage_dir, CALIBRATION_TABLE), JudgedPair):
                calibration_pairs += 1
                for judge, counts in tally([from_row(Vote, vote) for vote in row["votes"]]).items():
                    totals[judge] = totals.get(judge, Tally()) + counts
        measured = [qualify(judge.judge, totals.get(judge.judge, Tally()), config.qualify) for judge in config.judges]
        manifest.report["qualification"] = {
            "status": "measured", "calibration_pairs": calibration_pairs, "thresholds": config.qualify.model_dump(mode="json"),
            "judges": [q.as_dict() for q in measured],
        }
        manifest.notes.extend(q.summary() for q in measured)
        if not any(q.qualified for q in measured):
            manifest.notes.append(
                f"no judge qualified: {manifest.dropped.get('no_qualified_judge', 0)} pairs that needed a judge were dropped "
                f"(no_qualified_judge); {counters.get(BY_EXECUTION, 0)} pairs are labelled by execution")
        return []


def qualifications(manifest: Any) -> list[Qualification]:
    """The judges' qualification a label manifest records (none when it was off or skipped)."""
    report = manifest.report.get("qualification") or {}
    return [Qualification.from_dict(q) for q in report.get("judges", [])]
