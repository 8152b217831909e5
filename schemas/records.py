"""Record types of every stage, and their Arrow schemas derived from the type hints.

One dataclass per record; `arrow_schema(cls)` derives the Parquet schema from its annotations
(`Text` marks large strings), and every schema carries the record's name and version in its
metadata so a Parquet file says what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, TypeVar

import pyarrow as pa

from schemas.vocab import ASPECTS, LANGUAGES, Vocabulary

Text = Annotated[str, pa.large_string()]
"""A string that may be large (source code, prompts, judge answers)."""

SCHEMA_NAME_KEY = b"codepref.schema"
SCHEMA_VERSION_KEY = b"codepref.schema_version"

R = TypeVar("R")


@dataclass(frozen=True)
class Origin:
    """Where a pair came from; enough to trace a corpus row back to its raw material."""

    repo: str | None = None
    commit: str | None = None
    path: str | None = None
    instruct_source: str | None = None
    instruct_row: str | None = None
    mutation_operator: str | None = None
    mutation_start_byte: int | None = None
    mutation_end_byte: int | None = None
    instruction_style: str | None = None  # style of a recovered instruction (see llm.tasks)


@dataclass(frozen=True)
class CodeSummary:
    """The tree-sitter facts of one side that later filters need (see parsers.facts)."""

    parse_ok: bool
    error_share: float
    has_error: bool
    depth: int
    named_nodes: int
    lines: int
    functions: int
    classes: int
    comment_spans: list[int]  # byte ranges of comments, flattened: [start0, end0, start1, end1, ...]


@dataclass(frozen=True)
class Commit:
    """A single-file, modified-in-place commit with both versions of the file."""

    SCHEMA: ClassVar[str] = "Commit"
    VERSION: ClassVar[int] = 1

    repo: str
    commit: str
    parent: str | None  # None for rows of commit tables, which do not say
    path: str
    language: str
    license: str | None
    committed_at: int | None  # committer time, Unix seconds (UTC); None when a commit table lacks it
    subject: str
    message: Text
    before: Text
    after: Text
    split: str  # "train" or "benchmark"


@dataclass(frozen=True)
class Candidate:
    """A preference pair before judging: a prompt, a chosen and a rejected side, one criterion."""

    SCHEMA: ClassVar[str] = "Candidate"
    VERSION: ClassVar[int] = 2

    pair_id: str  # stable, derived from the origin; carried unchanged to the corpus
    source: str  # e.g. "commit", "bug_injection", "external:venus"
    criterion: str  # one of vocab.CRITERIA
    language: str  # registry canonical name
    prompt: Text
    prompt_origin: str  # "recovered" (LLM instruction recovery), "subject_fallback", "instruct"
    chosen: Text
    rejected: Text
    origin: Origin
    license: str | None = None
    committed_at: int | None = None
    verified: bool | None = None  # execution verification result; None when not run
    verification: str | None = None
    chosen_facts: CodeSummary | None = None
    rejected_facts: CodeSummary | None = None
    review_rating: int | None = None  # the LLM commit review (1-5) when one was asked for
    criterion_origin: str | None = None  # commit pairs: "seed_terms", or "classifier" (the second pass)


EXECUTION = "execution"  # the `judge` of a vote that execution cast: the pair's tests decided it (no answer, no cache key)
LABEL_SOURCES = (EXECUTION, "judges")  # what decided a judged pair's label


@dataclass(frozen=True)
class Vote:
    """One judge answer for one pair in one order (or, with `judge` EXECUTION, the verdict of the pair's tests)."""

    judge: str  # model name
    template_version: str
    order: str  # "chosen_first" (chosen shown as A) or "chosen_second"
    sample: int
    seed: int
    verdict: str | None  # "A", "B", "TIE", or None when the answer did not parse
    outcome: str  # "match", "contradiction", "tie", "error"
    answer_key: str  # key of the raw answer in the judge cache
    error: str | None = None


@dataclass(frozen=True)
class OrderCounts:
    """Vote outcomes of one presentation order."""

    matches: int = 0
    contradictions: int = 0
    ties: int = 0
    errors: int = 0


@dataclass(frozen=True)
class JudgedPair:
    """A candidate with every vote, counts per order, and the keep decision."""

    SCHEMA: ClassVar[str] = "JudgedPair"
    VERSION: ClassVar[int] = 2  # v2: label_source

    pair_id: str  # the candidate's, repeated at the top for keys and queries
    candidate: Candidate
    votes: list[Vote]
    chosen_first: OrderCounts
    chosen_second: OrderCounts
    margin: float  # (matches - contradictions) / votes
    kept: bool
    keep_reason: str
    label_source: str = "judges"  # one of LABEL_SOURCES: execution (the tests) or the judges' votes


@dataclass(frozen=True)
class CorpusRow:
    """A row of the final corpus: the Themis-CodePreference columns, then provenance."""

    SCHEMA: ClassVar[str] = "CorpusRow"
    VERSION: ClassVar[int] = 3  # v2: verification; v3: label_source

    system: Text
    input: Text
    chosen: Text
    rejected: Text
    language: Annotated[int, pa.int64(), "ClassLabel:language"]
    aspect: Annotated[int, pa.int64(), "ClassLabel:aspect"]
    source: str
    idx: str
    # Provenance: a training loader may ignore everything below.
    origin: Origin
    license: str | None
    prompt_origin: str
    verified: bool | None
    verification: str | None  # what the execution check (or the source's own measurement) said
    votes_matches: int
    votes_contradictions: int
    votes_ties: int
    votes_errors: int
    label_source: str | None = None  # what decided the label: execution (the tests) or judges; None for unjudged stages' pairs


@dataclass(frozen=True)
class Drop:
    """A record a stage dropped, with the reason; written beside the stage output for inspection."""

    SCHEMA: ClassVar[str] = "Drop"
    VERSION: ClassVar[int] = 1

    stage: str
    key: str  # the dropped record's id (pair id, commit, path ...)
    reason: str
    detail: str
    record: Text  # the dropped record as JSON (may be truncated for huge records)


@dataclass(frozen=True)
class ClusterMember:
    """Why a record was kept or dropped by dedup: its cluster, the cluster's representative, the similarity."""

    SCHEMA: ClassVar[str] = "ClusterMember"
    VERSION: ClassVar[int] = 1

    record_id: str
    cluster_id: str  # the representative's id
    representative_id: str
    kind: str  # "exact" or "near"
    similarity: float  # estimated Jaccard to the representative (1.0 for exact duplicates)
    kept: bool


@dataclass(frozen=True)
class ContaminationReport:
    """One benchmark's decontamination result (written beside the corpus)."""

    SCHEMA: ClassVar[str] = "ContaminationReport"
    VERSION: ClassVar[int] = 1

    benchmark: str
    prompts_checked: int  # prompts of the benchmark whose n-grams were indexed
    pairs_removed: int
    examples: list[str]  # up to five "pair id: shared n-gram"


@dataclass(frozen=True)
class BenchRow:
    """A held-out pair in the Themis-CodeRewardBench (CRB) layout, which `codepref eval` reads."""

    SCHEMA: ClassVar[str] = "BenchRow"
    VERSION: ClassVar[int] = 1

    prompt: Text
    chosen: Text
    rejected: Text
    language: str  # the corpus's name, e.g. "C++"
    aspect: str  # e.g. "Functional Correctness"
    subset: str  # the pair's source
    id: str  # the pair id


CORPUS_COLUMNS: tuple[str, ...] = ("system", "input", "chosen", "rejected", "language", "aspect", "source", "idx")
RECORD_TYPES: dict[str, type] = {
    cls.SCHEMA: cls for cls in (Commit, Candidate, JudgedPair, CorpusRow, BenchRow, Drop, ClusterMember, ContaminationReport)
}

_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
_CLASS_LABELS: dict[str, Vocabulary] = {"ClassLabel:language": LANGUAGES, "ClassLabel:aspect": ASPECTS}


def _arrow_type(hint: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for one annotation."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extra = typing.get_args(hint)
        explicit = [e for e in extra if isinstance(e, pa.DataType)]
        # ClassLabel columns are nullable: `datasets` applies its feature spec only to nullable fields.
        class_label = any(isinstance(e, str) and e in _CLASS_LABELS for e in extra)
        return (explicit[0] if explicit else _arrow_type(base)[0]), class_label
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional unions are supported, got {hint}")
        return _arrow_type(args[0])[0], True
    if origin is list:
        (item,) = typing.get_args(hint)
        return pa.list_(_arrow_field("item", item)), False
    if dataclasses.is_dataclass(hint):
        return pa.struct(_arrow_fields(hint)), False
    if hint in _SCALARS:
        return _SCALARS[hint], False
    raise TypeError(f"no Arrow type for annotation {hint!r}")


def _arrow_field(name: str, hint: Any) -> pa.Field:
    arrow_type, nullable = _arrow_type(hint)
    return pa.field(name, arrow_type, nullable=nullable)


def _arrow_fields(cls: type) -> list[pa.Field]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return [_arrow_field(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _class_label_columns(cls: type) -> dict[str, Vocabulary]:
    """ClassLabel column -> its published vocabulary."""
    hints = typing.get_type_hints(cls, include_extras=True)
    columns: dict[str, Vocabulary] = {}
    for f in dataclasses.fields(cls):
        labels = [e for e in typing.get_args(hints[f.name])[1:] if isinstance(e, str) and e in _CLASS_LABELS]
        if labels:
            columns[f.name] = _CLASS_LABELS[labels[0]]
    return columns


def _huggingface_features(cls: type, class_labels: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """`datasets` feature spec, so ClassLabel columns load with their names (`class_labels` replace the published ones)."""
    return {name: {"names": list(class_labels.get(name, vocabulary.names)), "_type": "ClassLabel"}
            for name, vocabulary in _class_label_columns(cls).items()}


def arrow_schema(cls: type, class_labels: Mapping[str, Sequence[str]] | None = None) -> pa.Schema:
    """The Parquet schema of a record type, with its name and version in the metadata.

    `class_labels`: ClassLabel column -> the label names a run writes instead of the published ones (the corpus
    `language` vocabulary grown with the run's registry). They must begin with the published names in the
    published order, so an index written under the published vocabulary means the same language under every
    vocabulary; equal to the published names, the schema is exactly the static one."""
    published = _class_label_columns(cls)
    chosen: dict[str, tuple[str, ...]] = {}
    for name, labels in (class_labels or {}).items():
        if name not in published:
            raise ValueError(f"{cls.__name__}.{name} is not a ClassLabel column; those are: {', '.join(published) or 'none'}")
        labels = tuple(labels)
        names = published[name].names
        if labels[: len(names)] != names or len(set(labels)) != len(labels):
            raise ValueError(f"{cls.__name__}.{name} labels {list(labels)} must be the published {list(names)} "
                             "followed by other, distinct names")
        if labels != names:
            chosen[name] = labels
    return _arrow_schema(cls, tuple(sorted(chosen.items())))


@cache
def _arrow_schema(cls: type, class_labels: tuple[tuple[str, tuple[str, ...]], ...]) -> pa.Schema:
    metadata = {SCHEMA_NAME_KEY: cls.SCHEMA.encode(), SCHEMA_VERSION_KEY: str(cls.VERSION).encode()}
    features = _huggingface_features(cls, dict(class_labels))
    if features:
        from datasets import Features  # imported lazily: datasets is slow to import

        spec = Features.from_arrow_schema(pa.schema(_arrow_fields(cls))).to_dict()
        spec.update(features)
        metadata[b"huggingface"] = json.dumps({"info": {"features": spec}}).encode()
    return pa.schema(_arrow_fields(cls), metadata=metadata)


def class_label_names(metadata: dict[bytes, bytes] | None, column: str) -> list[str] | None:
    """The label names a Parquet file's `huggingface` metadata gives a ClassLabel column, if it gives any."""
    if not metadata or b"huggingface" not in metadata:
        return None
    feature = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {}).get(column)
    if not isinstance(feature, dict) or feature.get("_type") != "ClassLabel":
        return None
    return list(feature["names"])


_PLAIN = (str, int, float, bool, bytes, type(None))


def to_row(record: Any) -> dict[str, Any]:
    """A record as a plain dict (what Beam carries and Parquet stores); a record of scalar fields without the
    deep copy `dataclasses.asdict` makes of each value."""
    row = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    if all(isinstance(value, _PLAIN) for value in row.values()):
        return row
    return dataclasses.asdict(record)


def from_row(cls: type[R], row: dict[str, Any]) -> R:
    """Rebuild a record (nested dataclasses included) from a plain dict."""
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in row:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise KeyError(f"{cls.__name__} row lacks column {f.name!r}")
        values[f.name] = _from_value(hints[f.name], row[f.name])
    return cls(**values)


def _from_value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _from_value(typing.get_args(hint)[0], value)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_value(inner, value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_from_value(item, v) for v in value]
    if dataclasses.is_dataclass(hint):
        return from_row(hint, value)
    return value


def schema_of(metadata: dict[bytes, bytes] | None) -> tuple[str, int] | None:
    """(record name, version) from a Parquet file's schema metadata, if it has them."""
    if not metadata or SCHEMA_NAME_KEY not in metadata:
        return None
    return metadata[SCHEMA_NAME_KEY].decode(), int(metadata[SCHEMA_VERSION_KEY].decode())


__all__ = [
    "CORPUS_COLUMNS",
    "RECORD_TYPES",
    "BenchRow",
    "Candidate",
    "ClusterMember",
    "CodeSummary",
    "ContaminationReport",
    "Commit",
    "CorpusRow",
    "Drop",
    "JudgedPair",
    "OrderCounts",
    "Origin",
    "Text",
    "Vote",
    "arrow_schema",
    "class_label_names",
    "from_row",
    "schema_of",
    "to_row",
]
