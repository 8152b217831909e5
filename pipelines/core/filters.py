"""How a stage drops a record: one filter protocol.

A filter has a `name`, declares the `reasons` it can give (reason -> one-line meaning) and
`check`s a record: None keeps it, a `Rejection` (a declared reason and structured fields, from
which the human-readable detail is rendered) drops it. The base counts the drop under
`dropped_<reason>` and routes a drop record to the stage's drop output. A step that decides
several things at once (a DoFn walking a repository, a stage-level decision) declares its reasons
in a `DropReasons` and routes each rejection with `route`. A reason its declarer did not declare
is a programming error (`UndeclaredReason`). A stage lists its declarers in `Stage.drops`, so
`Stage.drop_reasons()` names every reason it can give (the README's tables are generated from it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import apache_beam as beam
from apache_beam.metrics import Metrics

DROPPED = "dropped"
REJECTED = "rejected"  # the tag of a filter's structured rejections, for filters that emit them
RECORD_PREVIEW_CHARS = 20_000


def metrics_namespace(stage: str) -> str:
    return f"codepref.{stage}"


@functools.lru_cache(maxsize=1024)
def _counter(namespace: str, name: str) -> Any:
    """One counter object per name (a counter finds the running bundle's metrics when incremented, so it is reused)."""
    return Metrics.counter(namespace, name)


def drop_record(stage: str, key: str, reason: str, detail: str, record: Any, count: int = 1) -> beam.pvalue.TaggedOutput:
    """Count a drop under `dropped_<reason>` and route it to the stage's drop output (the low-level
    step under `route`; call `route` with the declarer of the reason instead).

    `count` > 1 stands one drop record for several dropped inputs (e.g. every commit of a
    repository whose licence is not allowed).
    """
    _counter(metrics_namespace(stage), f"dropped_{reason}").inc(count)
    text = record if isinstance(record, str) else json.dumps(record, default=str, sort_keys=True)
    return beam.pvalue.TaggedOutput(
        DROPPED,
        {"stage": stage, "key": key, "reason": reason, "detail": detail, "record": text[:RECORD_PREVIEW_CHARS]},
    )


class Rejection:
    """Why a record is dropped: a reason, structured `fields`, and the `str.format` template that renders
    them as the human-readable `detail`, e.g. `Rejection("too_long", "{side}: {bytes} bytes", side="chosen", bytes=9)`."""

    __slots__ = ("fields", "reason", "template")

    def __init__(self, reason: str, template: str = "", /, **fields: Any):
        self.reason = reason
        self.template = template
        self.fields = fields

    @property
    def detail(self) -> str:
        return self.template.format(**self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rejection) and (self.reason, self.template, self.fields) == (other.reason, other.template, other.fields)

    def __hash__(self) -> int:
        return hash((self.reason, self.template))

    def __repr__(self) -> str:
        fields = "".join(f", {name}={value!r}" for name, value in self.fields.items())
        return f"Rejection({self.reason!r}, {self.template!r}{fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rejection, (self.reason, self.template, self.fields)


def _rejection(reason: str, template: str, fields: dict[str, Any]) -> Rejection:
    return Rejection(reason, template, **fields)


class UndeclaredReason(ValueError):
    """A rejection whose reason its filter does not declare: a programming error, never a data problem."""


class Declares(Protocol):
    """What declares drop reasons: a filter class (or instance), or a `DropReasons`."""

    name: str
    reasons: Mapping[str, str]


@dataclass(frozen=True)
class DropReasons:
    """The declared reasons of a step that is not one record filter (a DoFn that decides several things,
    or a stage-level decision such as `not_sampled`)."""

    name: str
    reasons: Mapping[str, str] = field(default_factory=dict)

    def reject(self, reason: str, template: str = "", /, **fields: Any) -> Rejection:
        """A rejection for one of these reasons (`UndeclaredReason` for any other)."""
        return declared(self, Rejection(reason, template, **fields))

    @classmethod
    def union(cls, name: str, *declarers: Declares) -> DropReasons:
        """The reasons of several declarers as one (what a DoFn that applies them all may give)."""
        return cls(name, {reason: meaning for by in declarers for reason, meaning in by.reasons.items()})


def declared(by: Declares, rejection: Rejection) -> Rejection:
    """`rejection`, when `by` declares its reason; else `UndeclaredReason`."""
    if rejection.reason not in by.reasons:
        raise UndeclaredReason(f"{by.name} gave the drop reason {rejection.reason!r}, which it does not declare "
                               f"(declared: {', '.join(by.reasons) or 'none'}); add it to its `reasons`")
    return rejection


def route(stage: str, key: str, rejection: Rejection, record: Any, by: Declares, count: int = 1) -> beam.pvalue.TaggedOutput:
    """Count and route the drop of a record (or of `count` records) that `by` rejected."""
    declared(by, rejection)
    return drop_record(stage, key, rejection.reason, rejection.detail, record, count)


class Declared:
    """A rule that declares the reasons it can give (`reasons`: reason -> one-line meaning) and makes its
    rejections with `reject`; `name` defaults to the class name."""

    name: ClassVar[str]
    reasons: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    @classmethod
    def reject(cls, reason: str, template: str = "", /, **fields: Any) -> Rejection:
        """A rejection for one of this rule's reasons (`UndeclaredReason` for any other)."""
        return declared(cls, Rejection(reason, template, **fields))


class Filter(Declared):
    """Keep or drop one record, saying why: `check` gives None to keep it, a `Rejection` of a declared
    reason to drop it."""

    def check(self, record: Any) -> Rejection | None:
        raise NotImplementedError


class RecordFilter(Filter, beam.DoFn):
    """A filter as a DoFn: kept records go to the main output, drops (counted here) to `DROPPED`.
    With `emits_rejections`, each drop's key and `Rejection` also go to `REJECTED`, for a report
    that needs the structured fields (e.g. which benchmark a prompt overlaps)."""

    emits_rejections: ClassVar[bool] = False

    def __init__(self, stage: str, key_field: str):
        self.stage = stage
        self.key_field = key_field

    def check(self, record: dict[str, Any]) -> Rejection | None:
        raise NotImplementedError

    def process(self, record: dict[str, Any]) -> Iterator[Any]:
        rejection = self.check(record)
        if rejection is None:
            yield record
            return
        key = str(record.get(self.key_field))
        yield route(self.stage, key, rejection, record, self)
        if self.emits_rejections:
            yield beam.pvalue.TaggedOutput(REJECTED, (key, rejection))


def filter_outputs(rows: beam.PCollection, label: str, fn: RecordFilter) -> beam.pvalue.DoOutputsTuple:
    """The outputs of one filter step: `kept`, `[DROPPED]` (drop records) and `[REJECTED]` ((key, Rejection))."""
    return rows | label >> beam.ParDo(fn).with_outputs(DROPPED, REJECTED, main="kept")


def apply_filter(rows: beam.PCollection, label: str, fn: RecordFilter) -> tuple[beam.PCollection, beam.PCollection]:
    """(kept rows, drop records) of one filter step."""
    outputs = filter_outputs(rows, label, fn)
    return outputs.kept, outputs[DROPPED]


def declared_reasons(declarers: Iterable[Declares]) -> dict[str, tuple[str, str]]:
    """reason -> (the declarers' names, its meaning) over `declarers`, in declaration order; a reason
    that several declare (e.g. `corrupt_object`, found both in the history and in a blob) names them all,
    with the first one's meaning."""
    reasons: dict[str, tuple[str, str]] = {}
    for by in declarers:
        for reason, meaning in by.reasons.items():
            if reason in reasons:
                names, first = reasons[reason]
                if by.name not in names.split(", "):
                    reasons[reason] = (f"{names}, {by.name}", first)
            else:
                reasons[reason] = (by.name, meaning)
    return reasons
