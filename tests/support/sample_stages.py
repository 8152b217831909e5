"""Two small stages for testing the run machinery: a JSONL commit source and a message filter.

They are real Beam stages (text IO, tagged drop outputs, counters); the product's own stages
plug in the same way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from pydantic import Field

from pipelines.core import (
    DROPPED,
    DropReasons,
    RecordFilter,
    Stage,
    StageConfig,
    StageResult,
    apply_filter,
    inputs_field,
    register_stage,
    route,
)
from schemas import Commit, from_row, to_row

SOURCE_ROWS = DropReasons("commit_lines", {"malformed_row": "a line that is not a commit row"})


class SourceConfig(StageConfig):
    path: str = Field(description="JSONL file of commit rows.")
    fail_on: str = Field("", description="Raise on the row with this commit id (to simulate a crash).")


class ParseCommitLine(beam.DoFn):
    def __init__(self, stage: str, fail_on: str):
        self.stage = stage
        self.fail_on = fail_on

    def process(self, line: str) -> Iterator[Any]:
        beam.metrics.Metrics.counter(f"codepref.{self.stage}", "records_in").inc()
        try:
            row = json.loads(line)
            record = from_row(Commit, row)
        except (ValueError, KeyError, TypeError) as error:
            yield route(self.stage, line[:40], SOURCE_ROWS.reject("malformed_row", "{error}", error=str(error)), line, SOURCE_ROWS)
            return
        if record.commit == self.fail_on:
            raise RuntimeError(f"simulated crash on {record.commit}")
        yield to_row(record)


@register_stage
class SampleSource(Stage):
    name = "sample_source"
    Config = SourceConfig
    output_type = Commit
    drops = (SOURCE_ROWS,)
    key_field = "commit"

    def build(self, pipeline, inputs):
        parsed = (
            pipeline
            | "ReadLines" >> beam.io.ReadFromText(self.config.path)
            | "ParseRows" >> beam.ParDo(ParseCommitLine(self.name, self.config.fail_on)).with_outputs(DROPPED, main="rows")
        )
        return StageResult(parsed.rows, [parsed[DROPPED]])


class FilterConfig(StageConfig):
    inputs: list[str] = inputs_field("sample_source", description="Stages whose commits are filtered.")
    min_message: int = Field(10, description="Shortest message kept.")
    stall_once: str = Field("", description="If this file does not exist: create it and stall (for a test to kill the run).")


class MessageLength(RecordFilter):
    reasons = {"short_message": "a message shorter than `min_message`"}  # noqa: RUF012

    def __init__(self, stage: str, min_message: int, stall_once: str = ""):
        super().__init__(stage, "commit")
        self.min_message = min_message
        self.stall_once = stall_once

    def check(self, record):
        if self.stall_once and not os.path.exists(self.stall_once):
            with open(self.stall_once, "w") as marker:
                marker.write(str(os.getpid()))
            time.sleep(300)
        if len(record["message"]) < self.min_message:
            return self.reject("short_message", "{length} characters", length=len(record["message"]))
        return None


@register_stage
class SampleFilter(Stage):
    name = "sample_filter"
    Config = FilterConfig
    output_type = Commit
    drops = (MessageLength,)
    key_field = "commit"

    def build(self, pipeline, inputs):
        kept, dropped = apply_filter(inputs["sample_source"], "MessageLength", MessageLength(self.name, self.config.min_message, self.config.stall_once))
        return StageResult(kept, [dropped])
