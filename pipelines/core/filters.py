"""How a stage drops a record: a filter gives a `Rejection` (a reason and its fields), the base counts it
under `dropped_<reason>` and routes a drop record to the stage's drop output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

DROPPED = "dropped"
RECORD_PREVIEW_CHARS = 20_000


def metrics_namespace(stage: str) -> str:
    return f"codepref.{stage}"


def drop_record(stage: str, key: str, reason: str, detail: str, record: Any, count: int = 1) -> beam.pvalue.TaggedOutput:
    """Count a drop under `dropped_<reason>` and route it to the stage's drop output.

    `count` > 1 stands one drop record for several dropped inputs (e.g. every commit of a
    repository whose licence is not allowed).
    """
    Metrics.counter(metrics_namespace(stage), f"dropped_{reason}").inc(count)
    text = record if isinstance(record, str) else json.dumps(record, default=str, sort_keys=True)
    return beam.pvalue.TaggedOutput(
        DROPPED,
        {"stage": stage, "key": key, "reason": reason, "detail": detail, "record": text[:RECORD_PREVIEW_CHARS]},
    )


@dataclass(frozen=True)
class Rejection:
    """Why a filter drops a record."""

    reason: str
    detail: str = ""


class RecordFilter(beam.DoFn):
    """Keep a record, or drop it with a reason: subclasses implement `check`; counting is done here."""

    def __init__(self, stage: str, key_field: str):
        self.stage = stage
        self.key_field = key_field

    def check(self, record: dict[str, Any]) -> Rejection | None:
        raise NotImplementedError

    def process(self, record: dict[str, Any]) -> Iterator[Any]:
        rejection = self.check(record)
        if rejection is None:
            yield record
        else:
            yield drop_record(self.stage, str(record.get(self.key_field)), rejection.reason, rejection.detail, record)


def apply_filter(rows: beam.PCollection, label: str, fn: RecordFilter) -> tuple[beam.PCollection, beam.PCollection]:
    """(kept rows, drop records) of one filter step."""
    outputs = rows | label >> beam.ParDo(fn).with_outputs(DROPPED, main="kept")
    return outputs.kept, outputs[DROPPED]
