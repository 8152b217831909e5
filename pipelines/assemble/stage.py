"""The `assemble` stage: the corpus users download.

Recipe: judged pairs the judges kept (and candidate pairs of stages that are not judged, such as
`external`) -> a system prompt drawn per pair -> final filters (tokens per conversation, tree
depth, English prompt, benchmark decontamination) -> final near-dedup (the dedup stage's
transforms, 20-token shingles, 0.75) -> `CorpusRow` in the Themis-CodePreference layout with
provenance. Beside the shards: the decontamination report and a dataset card (README.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from pydantic import Field

from parsers import LanguageRegistry
from pipelines.assemble.card import write_card
from pipelines.assemble.decontaminate import (
    BenchmarkError,
    BenchmarkFile,
    benchmark_files,
    benchmark_prompts,
)
from pipelines.assemble.filters import (
    PREPARE,
    STAGE,
    CodeDepth,
    Decontaminate,
    EnglishPrompt,
    TokenLength,
)
from pipelines.assemble.system_prompts import SystemPromptShares, draw
from pipelines.core import (
    DROPPED,
    REJECTED,
    Rejection,
    SideTable,
    Stage,
    StageConfig,
    StageResult,
    apply_filter,
    filter_outputs,
    inputs_field,
    metrics_namespace,
    register_stage,
    route,
)
from pipelines.dedup.filters import DUPLICATES
from pipelines.dedup.stage import DedupConfig
from pipelines.dedup.transforms import (
    KEYS,
    FindDuplicates,
    candidate_rank,
    candidate_text,
)
from pipelines.run.config import ConfigError
from schemas import (
    ASPECTS,
    LANGUAGES,
    BenchRow,
    ContaminationReport,
    CorpusRow,
    Origin,
    Vocabulary,
    arrow_schema,
    corpus_languages,
    from_row,
    to_row,
)
from storage import StageManifest
from storage.staging import is_object_store

HOLDOUT_TABLE = "holdout"  # the held-out pairs' folder inside the stage directory


class AssembleConfig(StageConfig):
    """Final filters, decontamination, system prompts."""

    inputs: list[str] = inputs_field("label", description="Stages read: label (kept pairs), or Candidate stages.")
    tokenizer: str = Field("smollm2", description="Length tokenizer: 'smollm2' (packaged), a tokenizer.json or a folder with one.")
    max_tokens: int = Field(4096, ge=16, description="Most tokens in one conversation (system + input + response).")
    min_depth: int = Field(3, ge=0, description="Least tree depth of each code response.")
    english_only: bool = Field(True, description="Keep only pairs whose prompt prose is English.")
    benchmarks: list[BenchmarkFile] = Field(default_factory=list, description="Benchmarks to decontaminate against.")
    contamination_ngram: int = Field(13, ge=3, description="Words in a shared n-gram that marks a prompt as contaminated.")
    dedup: DedupConfig = Field(
        default_factory=lambda: DedupConfig(ngram=20, threshold=0.75, key="pair"), description="The final near-dedup."
    )
    system_prompts: SystemPromptShares = Field(default_factory=SystemPromptShares, description="Shares of the system prompt kinds.")
    seed: int = Field(0, description="Seed of the system-prompt draws.")
    holdout: int = Field(
        0, ge=0, description="Pairs held out of the corpus, in the CRB layout in holdout/ (for `eval`): those whose "
        "salted pair-id hash is lowest, taken after the final dedup so no near-copy stays in the corpus.",
    )
    languages: Literal["registry", "published"] = Field(
        "registry", description="The corpus `language` ClassLabel names: 'registry' (the nine published names in their "
        "published order, then the run registry's other languages in registry order) or 'published' (the nine only, the "
        "strict Themis-CodePreference layout; pairs of other languages are dropped).",
    )


class Prepare(beam.DoFn):
    """A kept judged pair, or an unjudged candidate, as one flat entry with its vote totals and system prompt."""

    def __init__(self, config: AssembleConfig, vocabulary: Vocabulary = LANGUAGES, counted: bool = True):
        self.config = config
        self.vocabulary = vocabulary  # the corpus `language` names (Assemble.vocabulary)
        self.counted = counted  # False when the same pairs are prepared a second time (read again, not held)

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        namespace = metrics_namespace(STAGE)
        if "candidate" in row:  # a JudgedPair
            if not row["kept"]:
                rejection = PREPARE.reject("not_kept_by_judges", "{why}", why=row["keep_reason"])
                yield route(STAGE, row["pair_id"], rejection, {"pair_id": row["pair_id"], "margin": row["margin"]}, PREPARE)
                return
            entry = {**row["candidate"], "label_source": row.get("label_source")}
            counts = [row["chosen_first"], row["chosen_second"]]
            votes = {key: sum(c[key] for c in counts) for key in ("matches", "contradictions", "ties", "errors")}
        else:
            entry, votes = {**row, "label_source": None}, {"matches": 0, "contradictions": 0, "ties": 0, "errors": 0}
        if entry["language"] not in self.vocabulary:
            rejection = PREPARE.reject("language_not_in_corpus_labels", "{language!r} is not one of the corpus's ClassLabel names",
                                       language=entry["language"])
            yield route(STAGE, entry["pair_id"], rejection, {"pair_id": entry["pair_id"]}, PREPARE)
            return
        mode, system = draw(entry["pair_id"], entry["criterion"], self.config.system_prompts, self.config.seed)
        if self.counted:
            Metrics.counter(namespace, f"system_prompt_{mode}").inc()
        yield {**entry, "system": system, "votes": votes}


def to_corpus_row(entry: dict[str, Any], vocabulary: Vocabulary = LANGUAGES) -> dict[str, Any]:
    """A prepared entry as a CorpusRow; its `language` is the index of its name in the corpus vocabulary."""
    votes = entry["votes"]
    return to_row(CorpusRow(
        system=entry["system"], input=entry["prompt"], chosen=entry["chosen"], rejected=entry["rejected"],
        language=vocabulary.index(entry["language"]), aspect=ASPECTS.index(entry["criterion"]), source=entry["source"],
        idx=entry["pair_id"], origin=from_row(Origin, entry["origin"]), license=entry.get("license"),
        prompt_origin=entry["prompt_origin"], verified=entry.get("verified"), verification=entry.get("verification"),
        votes_matches=votes["matches"],
        votes_contradictions=votes["contradictions"], votes_ties=votes["ties"], votes_errors=votes["errors"],
        label_source=entry["label_source"],
    ))


def to_bench_row(entry: dict[str, Any]) -> dict[str, Any]:
    return to_row(BenchRow(prompt=entry["prompt"], chosen=entry["chosen"], rejected=entry["rejected"], language=entry["language"],
                           aspect=entry["criterion"], subset=entry["source"], id=entry["pair_id"]))


def holdout_rank(pair_id: str) -> int:
    """A pair's place in the hold-out order: a hash salted apart from the label stage's sample order."""
    return int.from_bytes(hashlib.blake2b(pair_id.encode("utf-8"), digest_size=8, person=b"holdout").digest(), "big")


@beam.ptransform_fn
def _HeldOutIds(passed_ids: beam.PCollection, decisions: Any, count: int) -> beam.PCollection:
    """The ids of the `count` kept pairs of lowest hold-out rank, as one set (computed from ids, no pair is held)."""
    return (
        passed_ids
        | "KeptIds" >> beam.Filter(lambda pair_id, dropped: pair_id not in dropped, dropped=decisions)
        | "Ranks" >> beam.Map(lambda pair_id: (holdout_rank(pair_id), pair_id))
        | "Lowest" >> beam.combiners.Top.Smallest(count)
        | "AsSet" >> beam.Map(lambda ranked: {pair_id for _, pair_id in ranked})
    )


def _contamination_report(benchmarks: list[BenchmarkFile], ngram: int) -> beam.PTransform:
    """The decontamination filter's rejections ((pair id, Rejection)) -> one ContaminationReport per benchmark."""

    @beam.ptransform_fn
    def report(drops: beam.PCollection) -> beam.PCollection:
        def per_benchmark(keyed: tuple[str, Rejection]) -> tuple[str, str]:
            key, rejection = keyed
            return rejection.fields["benchmark"], f"{key}: {rejection.fields['ngram']!r}"

        def rows(_: Any, hits: dict[str, list[str]]) -> Iterator[dict[str, Any]]:
            for benchmark in benchmarks:
                found = sorted(hits.get(benchmark.name, []))
                yield to_row(ContaminationReport(benchmark.name, len(benchmark_prompts(benchmark)), len(found), found[:5]))

        hits = drops | "ByBenchmark" >> beam.Map(per_benchmark) | "GroupHits" >> beam.GroupByKey() | "Listed" >> beam.MapTuple(
            lambda benchmark, found: (benchmark, list(found)))
        return drops.pipeline | "Once" >> beam.Create([None]) | "Report" >> beam.FlatMap(rows, beam.pvalue.AsDict(hits))

    return report()  # type: ignore[no-any-return]


class RouteFinalDecisions(beam.DoFn):
    """Drop the final dedup's duplicates; send the held-out pairs to their table; the rest is the corpus."""

    def process(self, entry: dict[str, Any], decisions: dict[str, tuple[str, str]], held_out: Any = frozenset()) -> Iterator[Any]:
        decision = decisions.get(entry["pair_id"])
        if decision is not None:
            rejection = DUPLICATES.reject(decision[0], "{detail}", detail=decision[1])
            yield route(STAGE, entry["pair_id"], rejection, {"pair_id": entry["pair_id"]}, DUPLICATES)
        elif entry["pair_id"] in held_out:
            Metrics.counter(metrics_namespace(STAGE), "held_out").inc()
            yield beam.pvalue.TaggedOutput(HOLDOUT_TABLE, entry)
        else:
            yield entry


def _benchmark_there(benchmark: BenchmarkFile) -> bool:
    """Whether a benchmark's path is there: a local file or folder, or objects at or under it on an object store."""
    if not is_object_store(benchmark.path):
        return Path(benchmark.path).exists()
    try:
        benchmark_files(benchmark)
    except BenchmarkError:
        return False
    return True


@register_stage
class Assemble(Stage[AssembleConfig]):
    """The corpus: final filters, decontamination, final near-dedup, system prompts, card."""

    name = STAGE
    Config = AssembleConfig
    output_type = CorpusRow
    key_field = "idx"
    drops = (PREPARE, TokenLength, CodeDepth, EnglishPrompt, Decontaminate, DUPLICATES)

    @classmethod
    def fingerprint(cls, config: AssembleConfig) -> dict[str, Any]:
        from storage.tables import fingerprint_files

        return fingerprint_files([b.path for b in config.benchmarks])

    @classmethod
    def check(cls, config: AssembleConfig, registry: LanguageRegistry) -> None:
        """The tokenizer (unless the packaged one) and each benchmark file named are there (else the stage would
        fail only when its workers start)."""
        if config.tokenizer != "smollm2":
            path = Path(config.tokenizer).expanduser()
            if not (path / "tokenizer.json" if path.is_dir() else path).is_file():
                raise ConfigError(f"stages.assemble.tokenizer: {config.tokenizer!r} is neither a tokenizer.json nor a folder with one")
        for index, benchmark in enumerate(config.benchmarks):
            if not _benchmark_there(benchmark):
                raise ConfigError(f"stages.assemble.benchmarks[{index}] ({benchmark.name}).path: {benchmark.path!r} does not exist")

    def vocabulary(self) -> Vocabulary:
        """The corpus `language` ClassLabel names of this run (`assemble.languages`; schemas.corpus_languages)."""
        return corpus_languages(self.context.languages.names, self.config.languages)

    def output_schema(self) -> pa.Schema:
        """CorpusRow's schema whose `huggingface` metadata names this run's languages (the static one when published)."""
        return arrow_schema(CorpusRow, {"language": self.vocabulary().names})

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        vocabulary = self.vocabulary()
        prepared = (
            list(inputs.values())
            | "AllPairs" >> beam.Flatten()
            | "Prepare" >> beam.ParDo(Prepare(config, vocabulary)).with_outputs(DROPPED, main="entries")
        )
        dropped = [prepared[DROPPED]]
        entries = prepared.entries
        filters = [("TokenLength", TokenLength(config.tokenizer, config.max_tokens)),
                   ("CodeDepth", CodeDepth(self.context.languages, config.min_depth))]
        if config.english_only:
            filters.append(("EnglishPrompt", EnglishPrompt()))
        for label, fn in filters:
            entries, drops = apply_filter(entries, label, fn)
            dropped.append(drops)
        tables = {}
        if config.benchmarks:
            decontaminated = filter_outputs(entries, "Decontaminate", Decontaminate(config.benchmarks, config.contamination_ngram))
            entries = decontaminated.kept
            dropped.append(decontaminated[DROPPED])
            report = decontaminated[REJECTED] | "ContaminationReport" >> _contamination_report(config.benchmarks, config.contamination_ngram)
            tables["decontamination"] = SideTable(report, ContaminationReport, "benchmark")
        # The pairs that passed are read and prepared again where they are needed after the duplicates are
        # found, rather than held in memory until then (at 100k pairs that buffer was most of the stage's memory).
        passed_ids = entries | "PassedIds" >> beam.Map(lambda entry: entry["pair_id"])
        passed = beam.pvalue.AsDict(passed_ids | "PassedSet" >> beam.Map(lambda pair_id: (pair_id, None)))

        def reread(label: str) -> beam.PCollection:
            return (
                self.read_inputs(pipeline, label)
                | f"{label}_Passed" >> beam.Filter(lambda row, ids: row["pair_id"] in ids, ids=passed)
                | f"{label}_Prepare" >> beam.ParDo(Prepare(config, vocabulary, counted=False))
            )

        decisions, members = entries | "FinalDedup" >> FindDuplicates(
            STAGE, "pair_id", candidate_rank, candidate_text(KEYS[config.dedup.key]), config.dedup, reread=reread
        )
        decided = beam.pvalue.AsDict(decisions)
        held_out = beam.pvalue.AsSingleton(passed_ids | "HoldOut" >> _HeldOutIds(decided, config.holdout)) if config.holdout else frozenset()
        final = reread("Reread") | "ApplyDedup" >> beam.ParDo(RouteFinalDecisions(), decided, held_out).with_outputs(
            DROPPED, HOLDOUT_TABLE, main="kept")
        dropped.append(final[DROPPED])
        kept = final.kept
        if config.holdout:
            tables[HOLDOUT_TABLE] = SideTable(final[HOLDOUT_TABLE] | "BenchRows" >> beam.Map(to_bench_row), BenchRow, "id")
        rows = kept | "CorpusRows" >> beam.Map(to_corpus_row, vocabulary)
        return StageResult(rows, dropped, tables)

    def finish(self, stage_dir: str, manifest: StageManifest) -> list[str]:
        """The corpus vocabulary into the manifest (`report["languages"]`: index -> name as a list), then the card."""
        manifest.report["languages"] = list(self.vocabulary().names)
        return [write_card(self.context.run_dir, stage_dir, manifest)]
