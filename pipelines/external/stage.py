"""The `external` stage: candidate pairs from local copies of public preference sets (CodeNet,
Venus, ECCO, PIE, RunBugRun, ProSec, CyberNative, CodeScaler, CodeR-Pile), mixed by caps and shares.

How caps and shares combine (deterministic: it depends only on pair ids and counts, never on
workers, shards or the order rows arrive in):

1. every candidate is ranked by a 64-bit hash of its `pair_id` (ties by the id itself);
2. `cap` keeps a source's `cap` lowest-ranked candidates (all when unset);
3. sources with a `share` form the mix: with p_i = share_i / (sum of the shares) and n_i a
   source's candidates after its cap, the mix has T = min_i(n_i / p_i) candidates (the largest
   mix in which every source supplies its proportion), or `total` when that is smaller; source i
   keeps its floor(T * p_i) lowest-ranked candidates. A source that yields no candidate is left
   out of the mix. Sources without a share keep what their cap allows and do not count in `total`.

Candidates beyond a cap are dropped as `over_cap`, those beyond a share as `over_share`; two
candidates with the same pair id (the same row twice in a set) keep one, the other is a
`duplicate_pair`. Every drop is counted per source (`<source>.dropped_<reason>`) besides the
stage's totals, and so are rows read (`<source>.rows`), candidates (`<source>.candidates`) and
candidates kept (`<source>.kept`).
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from parsers import LanguageRegistry
from pipelines.core import (
    DROPPED,
    Declares,
    Rejection,
    Stage,
    StageConfig,
    StageResult,
    declared,
    metrics_namespace,
    register_stage,
    route,
)
from pipelines.external.adapters import ADAPTERS, Adapter, AdapterSettings
from pipelines.external.adapters.base import (
    ADAPTER_ROWS,
    Missing,
    content_id,
    slug,
    stable_rank,
)
from pipelines.external.filters import DECLARERS, SELECTION
from pipelines.run.config import ConfigError
from pipelines.run.conservation import PER_SOURCE
from schemas import Candidate, to_row
from storage.tables import ReadTableRows, TableError, fingerprint_files

STAGE = "external"


class ProblemStatements(BaseModel):
    """A table of problem statements joined to a set's rows by problem id (for sets without prompts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="JSONL, JSON or Parquet file(s) (a file, folder or glob), or a `datasets` folder.")
    split: str | None = Field(None, description="A `datasets` folder holding several splits: the one to read.")
    id_column: str = Field("problem_id", description="Column with the problem id the set's rows name.")
    text_column: str = Field("problem_description", description="Column with the statement (text or HTML).")


class ExternalSource(BaseModel):
    """One local copy of a public preference set, read by its adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description=f"The set's adapter: {', '.join(ADAPTERS.names())}.")
    label: str | None = Field(None, description="Name of this source in counters and drops (default: `name`); "
                                                "needed when two sources use one adapter.")
    path: str = Field(description="The local copy: a JSONL, JSON or Parquet file, a folder of them, a glob, "
                                  "or a `datasets` folder (save_to_disk). Nothing is downloaded.")
    split: str | None = Field(None, description="A `datasets` folder holding several splits: the one to read.")
    columns: dict[str, str] = Field(default_factory=dict, description="Column overrides, role -> column name "
                                                                      "(roles: see the adapter's docstring).")
    language: str | None = Field(None, description="Language of every row, for sets without a language column "
                                                   "(default: the set's, e.g. Python for Venus).")
    languages: list[str] | None = Field(None, description="Keep only rows in these languages (e.g. [Python] as the "
                                                          "reference did for RunBugRun).")
    min_ratio: float = Field(5.0, ge=1.0, description="Sets with runtime/memory measurements: the chosen side must be at "
                                                      "least this many times more efficient.")
    cap: int | None = Field(None, ge=0, description="Keep at most this many candidates of this source (lowest hash of "
                                                    "pair_id first).")
    share: float | None = Field(None, gt=0.0, description="Mixing ratio relative to the other sources with a share.")
    problems: ProblemStatements | None = Field(None, description="Problem statements by problem id, for sets whose rows "
                                                                 "carry none (CodeNet, ECCO, PIE, RunBugRun).")
    options: dict[str, Any] = Field(default_factory=dict, description="The adapter's own options (see its Options).")
    record_drops: bool = Field(True, description="Write a drop record for each dropped row (counts are kept either way); "
                                                 "turn off for huge sets.")

    @model_validator(mode="after")
    def _adapter_accepts(self) -> ExternalSource:
        adapter = ADAPTERS[self.name] if self.name in ADAPTERS else None
        if adapter is None:
            raise ValueError(f"unknown set {self.name!r}; known: {', '.join(ADAPTERS.names())}")
        unknown = sorted(set(self.columns) - set(adapter.roles))
        if unknown:
            raise ValueError(f"{self.name}: unknown column roles {unknown}; known: {', '.join(adapter.roles)}")
        if "min_ratio" in self.model_fields_set and not adapter.measures:
            raise ValueError(f"{self.name} has no runtime or memory measurements: `min_ratio` does not apply")
        try:
            adapter.Options.model_validate(self.options)
        except ValidationError as error:
            problems = "; ".join(f"options.{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors())
            raise ValueError(f"{self.name}: {problems}") from None
        return self

    @property
    def key(self) -> str:
        return self.label or self.name

    def settings(self) -> AdapterSettings:
        return AdapterSettings(columns=dict(self.columns), language=self.language,
                               languages=tuple(self.languages) if self.languages else None,
                               min_ratio=self.min_ratio, options=dict(self.options))


class ExternalConfig(StageConfig):
    """Which public preference sets to read, and how many pairs of each to keep."""

    sources: list[ExternalSource] = Field(min_length=1, description="The sets to read, each with its adapter.")
    total: int | None = Field(None, ge=0, description="Size of the mix of the sources with a `share` (default: the "
                                                      "largest the shares allow).")

    @model_validator(mode="after")
    def _distinct(self) -> ExternalConfig:
        keys = [source.key for source in self.sources]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"sources {twice} appear twice; give each a distinct `label`")
        if self.total is not None and not any(source.share for source in self.sources):
            raise ValueError("`total` sizes the mix of the sources with a `share`, and none has one")
        return self


def mix_quotas(counts: dict[str, int], caps: dict[str, int | None], shares: dict[str, float | None],
               total: int | None) -> dict[str, int]:
    """How many candidates each source keeps, from its candidate count (see the module docstring)."""
    capped = {label: n if caps.get(label) is None else min(n, caps[label]) for label, n in counts.items()}  # type: ignore[type-var]
    mixed = {label: Fraction(shares[label]) for label in capped if shares.get(label) and capped[label] > 0}  # type: ignore[arg-type]
    quotas = dict(capped)
    if mixed:
        whole = sum(mixed.values())
        size = min(Fraction(capped[label]) * whole / share for label, share in mixed.items())
        if total is not None:
            size = min(size, Fraction(total))
        for label, share in mixed.items():
            quotas[label] = math.floor(size * share / whole)
    return quotas


def _drop(source: ExternalSource, key: str, rejection: Rejection, record: Any, level: str, by: Declares) -> Iterator[Any]:
    """Count a drop that `by` declares for the source (at its `level`: rows_dropped, group_drops, candidate_drops) and
    the stage; route a drop record unless the source turned them off."""
    reason = declared(by, rejection).reason
    namespace = metrics_namespace(STAGE)
    Metrics.counter(namespace, f"{source.key}.dropped_{reason}").inc()
    Metrics.counter(namespace, f"{source.key}.{level}").inc()
    if source.record_drops:
        yield route(STAGE, key, rejection, record, by)
    else:
        Metrics.counter(namespace, f"dropped_{reason}").inc()


class PrepareRows(beam.DoFn):
    """One row of a set, checked and keyed by its adapter (row id, or group); bad rows are counted drops."""

    def __init__(self, source: ExternalSource, registry: LanguageRegistry):
        self.source = source
        self.registry = registry

    def setup(self) -> None:
        self.adapter: Adapter = ADAPTERS[self.source.name](self.source.settings(), self.registry)
        self.declares = self.adapter.declares()

    def process(self, item: tuple[str, Any]) -> Iterator[Any]:
        file, row = item
        namespace = metrics_namespace(STAGE)
        Metrics.counter(namespace, "records_in").inc()
        Metrics.counter(namespace, f"{self.source.key}.rows").inc()
        if not isinstance(row, dict):
            key = f"external/{self.source.name}/{content_id(row)}"
            rejection = ADAPTER_ROWS.reject("malformed_row", "not a JSON object ({file})", file=file)
            yield from _drop(self.source, key, rejection, row, "rows_dropped", self.declares)
            return
        try:
            prepared = self.adapter.prepare(file, row)
        except Missing as error:
            prepared = ADAPTER_ROWS.reject("missing_column", "{error}", error=str(error))
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            prepared = ADAPTER_ROWS.reject("malformed_row", "{kind}: {error}", kind=type(error).__name__, error=str(error))
        if isinstance(prepared, Rejection):
            yield from _drop(self.source, self.adapter.row_key(file, row), prepared, row, "rows_dropped", self.declares)
            return
        Metrics.counter(namespace, f"{self.source.key}.keyed").inc()
        yield prepared


class PairRows(beam.DoFn):
    """The candidates of one key's rows (one row, or a group), with the problem statements at hand."""

    def __init__(self, source: ExternalSource, registry: LanguageRegistry):
        self.source = source
        self.registry = registry

    def setup(self) -> None:
        self.adapter: Adapter = ADAPTERS[self.source.name](self.source.settings(), self.registry)
        self.declares = self.adapter.declares()

    def process(self, element: tuple[str, Iterable[dict[str, Any]]], statements: dict[str, str]) -> Iterator[Any]:
        key, items = element[0], list(element[1])
        namespace = metrics_namespace(STAGE)
        drop_key = f"external/{self.source.name}/{key}"
        try:
            results = list(self.adapter.pairs(key, items, statements))
        except Missing as error:
            results = [ADAPTER_ROWS.reject("missing_column", "{error}", error=str(error))]
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            results = [ADAPTER_ROWS.reject("malformed_row", "{kind}: {error}", kind=type(error).__name__, error=str(error))]
        paired = any(isinstance(result, Candidate) for result in results)
        Metrics.counter(namespace, f"{self.source.key}.{'rows_paired' if paired else 'rows_unpaired'}").inc(len(items))
        for result in results:
            if isinstance(result, Candidate):
                Metrics.counter(namespace, f"{self.source.key}.candidates").inc()
                Metrics.counter(namespace, f"criterion_{slug(result.criterion)}").inc()
                yield self.source.key, to_row(result)
            else:
                yield from _drop(self.source, drop_key, result, {"key": key, "rows": items}, "group_drops", self.declares)


def _statement_pairs(item: tuple[str, Any], problems: ProblemStatements) -> Iterator[tuple[str, str]]:
    _, row = item
    if isinstance(row, dict) and row.get(problems.id_column) is not None and row.get(problems.text_column):
        yield str(row[problems.id_column]), str(row[problems.text_column])


def _ranked_ids(element: tuple[str, Iterable[str]]) -> tuple[str, list[str]]:
    """A source's distinct pair ids, lowest hash first."""
    label, ids = element
    return label, sorted(set(ids), key=lambda pair_id: (stable_rank(pair_id), pair_id))


def _verdicts(element: tuple[str, list[str]], quotas: dict[str, int], caps: dict[str, int | None]) -> Iterator[tuple[str, str]]:
    """(pair id, "kept" or the reason it is cut) for every ranked candidate of a source."""
    label, ranked = element
    cap = caps.get(label)
    for position, pair_id in enumerate(ranked):
        if position < quotas.get(label, 0):
            yield pair_id, "kept"
        elif cap is not None and position >= cap:
            yield pair_id, "over_cap"
        else:
            yield pair_id, "over_share"


class KeepChosen(beam.DoFn):
    """One candidate per pair id, kept or dropped by the cap / share verdict."""

    def __init__(self, sources: dict[str, ExternalSource]):
        self.sources = sources

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        pair_id, grouped = element
        rows = list(grouped["rows"])
        if not rows:
            return
        if len(rows) > 1:  # the same pair id twice: keep one, the same one on every run
            rows.sort(key=lambda labelled: json.dumps(labelled, sort_keys=True, default=str))
        (label, row), duplicates = rows[0], rows[1:]
        for other_label, other in duplicates:
            rejection = SELECTION.reject("duplicate_pair", "another row gave the same pair id")
            yield from _drop(self.sources[other_label], pair_id, rejection, _brief(other), "candidate_drops", SELECTION)
        verdict = grouped["verdicts"][0] if grouped["verdicts"] else "kept"
        if verdict != "kept":
            rejection = SELECTION.reject(verdict, "beyond the source's cap" if verdict == "over_cap" else "beyond the source's share of the mix")
            yield from _drop(self.sources[label], pair_id, rejection, _brief(row), "candidate_drops", SELECTION)
            return
        Metrics.counter(metrics_namespace(STAGE), f"{label}.kept").inc()
        yield row


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("pair_id", "source", "criterion", "language")}


class SelectCandidates(beam.PTransform):
    """Caps, shares and one candidate per pair id: `(source label, candidate row)` in, kept rows out (+ drops)."""

    def __init__(self, config: ExternalConfig):
        super().__init__()
        self.config = config

    def expand(self, labelled: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        config = self.config
        sources = {source.key: source for source in config.sources}
        caps = {key: source.cap for key, source in sources.items()}
        shares = {key: source.share for key, source in sources.items()}
        by_id = labelled | "ById" >> beam.Map(lambda item: (item[1]["pair_id"], item))
        if any(cap is not None for cap in caps.values()) or any(shares.values()):
            ranked = (
                labelled
                | "Ids" >> beam.Map(lambda item: (item[0], item[1]["pair_id"]))
                | "BySource" >> beam.GroupByKey()
                | "Rank" >> beam.Map(_ranked_ids)
            )
            quotas = (
                ranked
                | "Count" >> beam.Map(lambda item: (item[0], len(item[1])))
                | "Counts" >> beam.combiners.ToDict()
                | "Quotas" >> beam.Map(mix_quotas, caps, shares, config.total)
            )
            verdicts = ranked | "Verdicts" >> beam.FlatMap(_verdicts, quotas=beam.pvalue.AsSingleton(quotas), caps=caps)
        else:
            verdicts = labelled.pipeline | "NoVerdicts" >> beam.Create([])
        return (
            {"rows": by_id, "verdicts": verdicts}
            | "Join" >> beam.CoGroupByKey()
            | "Keep" >> beam.ParDo(KeepChosen(sources)).with_outputs(DROPPED, main="kept")
        )


class SourcePairs(beam.PTransform):
    """One source's `(label, candidate row)` pairs and its drop records: read, prepare, group, pair."""

    def __init__(self, source: ExternalSource, index: int, registry: LanguageRegistry):
        super().__init__()
        self.source = source
        self.index = index
        self.registry = registry

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        source = self.source
        try:
            adapter = ADAPTERS[source.name](source.settings(), self.registry)
            rows = pbegin | "Read" >> ReadTableRows(source.path, source.split, adapter.wants_file)
            statements = pbegin | "Statements" >> ProblemStatementsById(source.problems)
        except (TableError, ValueError) as error:
            raise ConfigError(f"stages.{STAGE}.sources[{self.index}] ({source.name}): {error}") from None
        prepared = rows | "Prepare" >> beam.ParDo(PrepareRows(source, self.registry)).with_outputs(DROPPED, main="items")
        if adapter.grouped:
            keyed = prepared.items | "Group" >> beam.GroupByKey()
        else:
            keyed = prepared.items | "OneRowEach" >> beam.Map(lambda item: (item[0], [item[1]]))
        paired = keyed | "Pairs" >> beam.ParDo(
            PairRows(source, self.registry), statements=beam.pvalue.AsDict(statements)).with_outputs(DROPPED, main="pairs")
        drops = (prepared[DROPPED], paired[DROPPED]) | "Drops" >> beam.Flatten()
        return paired.pairs, drops


class ProblemStatementsById(beam.PTransform):
    """`(problem id, statement)` of a source's problems table, one per id (none without a table)."""

    def __init__(self, problems: ProblemStatements | None):
        super().__init__()
        self.problems = problems

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self.problems is None:
            return pbegin | "None" >> beam.Create([])
        return (
            pbegin
            | "Read" >> ReadTableRows(self.problems.path, self.problems.split)
            | "ById" >> beam.FlatMap(_statement_pairs, self.problems)
            | "OnePerProblem" >> beam.CombinePerKey(min)
        )


@register_stage
class External(Stage[ExternalConfig]):
    """Candidate pairs from local copies of public preference sets, as `Candidate` records."""

    accounting = PER_SOURCE  # rows are keyed, grouped and paired: balanced at each level, per source
    name = STAGE
    Config = ExternalConfig
    output_type = Candidate
    key_field = "pair_id"
    drops = DECLARERS

    @classmethod
    def check(cls, config: ExternalConfig, registry: LanguageRegistry) -> None:
        """The languages a source selects are in the run's registry; each local copy (and problems table) named is
        there: a path or glob that matches something (object stores are looked at when read)."""
        for index, source in enumerate(config.sources):
            missing = [name for name in source.languages or () if name not in registry]
            if missing:
                raise ConfigError(f"stages.{STAGE}.sources[{index}] ({source.name}).languages: {missing} are not in the "
                                  f"language registry; known: {', '.join(registry.names)}")
            tables = [("path", source.path), *([("problems.path", source.problems.path)] if source.problems else [])]
            for key, path in tables:
                if "://" not in path and next(glob.iglob(path, recursive=True), None) is None:
                    raise ConfigError(f"stages.{STAGE}.sources[{index}] ({source.name}).{key}: {path!r}: no such file or folder")

    @classmethod
    def fingerprint(cls, config: ExternalConfig) -> dict[str, Any]:
        """Size and time of every file of the sources and their problem tables: a new copy redoes the stage."""
        places = [source.path for source in config.sources]
        places += [source.problems.path for source in config.sources if source.problems is not None]
        return fingerprint_files(places)

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        candidates, dropped = [], []
        for index, source in enumerate(config.sources):
            pairs, drops = pipeline | f"Source_{slug(source.key)}-{index}" >> SourcePairs(source, index, self.context.languages)
            candidates.append(pairs)
            dropped.append(drops)
        chosen = tuple(candidates) | "AllCandidates" >> beam.Flatten() | "Select" >> SelectCandidates(config)
        return StageResult(chosen.kept, [*dropped, chosen[DROPPED]])


__all__ = ["External", "ExternalConfig", "ExternalSource", "ProblemStatements", "mix_quotas"]
