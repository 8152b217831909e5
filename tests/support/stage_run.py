"""Run one stage alone through the orchestrator, its upstream stages written as finished fixtures, and read
back what it left: its records, its drops and its manifest (the `run_stage` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core import STAGES
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Drop
from storage import StageManifest, read_rows
from tests.support.stage_fixtures import write_stage


@dataclass(frozen=True)
class StageRun:
    """What one stage left in `directory`; unpacks as (rows, drops, manifest), the three most tests read."""

    directory: Path
    rows: dict[str, dict[str, Any]]  # the stage's records by its key field
    drops: dict[str, str]  # drop reason by dropped key
    details: dict[str, str]  # drop detail by dropped key
    manifest: StageManifest

    def __iter__(self) -> Iterator[Any]:
        return iter((self.rows, self.drops, self.manifest))

    def dropped(self) -> list[dict[str, Any]]:
        """Every drop record as written (with the record itself), several per key included."""
        return list(read_rows(str(self.directory / "_dropped"), Drop))

    def table(self, name: str, record_type: type) -> list[dict[str, Any]]:
        """The rows of a side table the stage writes beside its records (e.g. dedup's `clusters`)."""
        return list(read_rows(str(self.directory / name), record_type))


def run_one_stage(run_dir: Path, stage: str, config: dict[str, Any] | None = None, *,
                  upstream: dict[str, tuple[list[Any], type]] | None = None, num_shards: int = 2,
                  running_mode: str = "in_memory", workers: int = 1) -> StageRun:
    """Run `stage` with `config` in `run_dir` (forced: a rerun redoes it), after writing each `upstream`
    stage (name -> (records, record type)) as a finished stage with a manifest."""
    import_builtin_stages()
    for name, (records, record_type) in (upstream or {}).items():
        write_stage(run_dir, name, records, record_type)
    run(RunConfig(run_dir=str(run_dir), num_shards=num_shards, runner={"running_mode": running_mode, "workers": workers},
                  stages={stage: config or {}}), force=True)
    stage_class = STAGES[stage]
    directory = run_dir / stage
    rows = {row[stage_class.key_field]: row for row in read_rows(str(directory), stage_class.output_type)}
    drops = list(read_rows(str(directory / "_dropped"), Drop))
    manifest = StageManifest.read(str(directory))
    undeclared = set(manifest.dropped) - set(stage_class.drop_reasons())  # every stage test checks its stage's declarations
    assert not undeclared, f"{stage} dropped records for reasons it does not declare: {sorted(undeclared)}"
    return StageRun(directory, rows, {d["key"]: d["reason"] for d in drops}, {d["key"]: d["detail"] for d in drops}, manifest)
