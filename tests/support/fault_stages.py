"""A test stage whose worker process dies: the first time a row it processes has the marked id, the
worker SIGKILLs itself (as the kernel's OOM killer would) and leaves the marker file behind, so
that a rerun of the same config goes through."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from pydantic import Field

from pipelines.core import Stage, StageConfig, StageResult, register_stage
from schemas import Commit, to_row


class DyingSourceConfig(StageConfig):
    rows: int = Field(24, description="Commit rows made.")
    kill_on: int = Field(7, description="The row whose worker is killed the first time it is processed.")
    marker: str = Field(description="File written just before the kill; once it exists, nobody is killed.")


def commit_of(index: int) -> Commit:
    return Commit(repo="octo/demo", commit=f"{index:040x}", parent=f"{index + 1000:040x}", path=f"src/m{index}.py",
                  language="Python", license="mit", committed_at=1_500_000_000 + index, subject=f"Fix loop {index}",
                  message=f"Fix loop {index}\n", before=f"x = {index}\n", after=f"x = {index + 1}\n", split="train")


class DieOnce(beam.DoFn):
    def __init__(self, kill_on: int, marker: str):
        self.kill_on = kill_on
        self.marker = marker

    def process(self, index: int) -> Iterator[Any]:
        beam.metrics.Metrics.counter("codepref.dying_source", "records_in").inc()  # a source counts what it makes
        if index == self.kill_on and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        yield to_row(commit_of(index))


@register_stage
class DyingSource(Stage):
    name = "dying_source"
    Config = DyingSourceConfig
    output_type = Commit
    key_field = "commit"

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config: DyingSourceConfig = self.config  # type: ignore[assignment]
        rows = (
            pipeline
            | "Indices" >> beam.Create(range(config.rows))
            | "Spread" >> beam.Reshuffle()  # rows reach both workers
            | "MaybeDie" >> beam.ParDo(DieOnce(config.kill_on, config.marker))
        )
        return StageResult(rows)
