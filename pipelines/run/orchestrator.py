"""Run orchestration: each configured stage is one Beam pipeline from Parquet to Parquet.

A stage writes into `RUN_DIR/<stage>/_attempt/`, and only when its pipeline has finished are
the shards moved into `RUN_DIR/<stage>/` and `_manifest.json` written. A manifest whose config
hash matches means the stage is done and a rerun skips it; anything else is redone from a clean
directory, so a killed run never leaves half a stage behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from parsers import GrammarError, LanguageRegistry, RegistryError
from parsers.registry import DEFAULT_REGISTRY, registry_files
from pipelines.core import (
    STAGES,
    Progress,
    Stage,
    StageContext,
    TaskStage,
    metrics_namespace,
)
from pipelines.run.config import (
    ConfigError,
    RunConfig,
    RunnerConfig,
    check_stages,
    refuse_object_store,
)
from pipelines.run.conservation import (
    DROP_RECORDS,
    RECORDS_IN,
    RECORDS_OUT,
    RECORDS_READ,
    CheckedInput,
    ConservationError,
    check_counts,
    check_input,
    parquet_rows,
)
from pipelines.run.local_runner import local_runner
from pipelines.run.ownership import (
    ATTEMPT_DIR,
    ATTEMPT_MARKER,
    RunLock,
    check_output,
    check_run_dir,
    clear_dir,
    mark_run_dir,
)
from schemas import RECORD_TYPES, Drop
from storage import (
    ReadRecords,
    StageManifest,
    WriteShardedParquet,
    list_parts,
    package_versions,
    shard_name,
    write_rows,
)

DROPPED_DIR = "_dropped"


class StageOrderError(ConfigError):
    """A stage's inputs are neither configured nor already produced in the run directory."""


class StageFailed(RuntimeError):
    """A stage's pipeline or program failed. `summary` names the stage and the cause in a few lines and says
    how to resume; the message adds the cause's whole text (Beam's includes the worker's traceback)."""

    def __init__(self, stage: str, stage_dir: str, cause: BaseException):
        text = str(cause).strip()
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        reason = f"{type(cause).__name__}: {last}"[:1000]
        died = " (a worker process died; out of memory?)" if "Channel closed prematurely" in text else ""
        self.stage, self.stage_dir = stage, stage_dir
        self.summary = (f"stage {stage!r} failed{died}: {reason}\n{stage_dir} holds no finished output of it; the stages "
                        "finished before it are kept: rerun the same command to resume")
        super().__init__(f"{self.summary}\n\n{type(cause).__name__}: {text}")


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    skipped: bool
    manifest: StageManifest


def pipeline_for(runner: RunnerConfig, label: str) -> beam.Pipeline:
    """A Beam pipeline on the configured runner; FnApiRunner is set explicitly (no Prism download)."""
    if runner.name == "FnApiRunner":
        args = [f"--direct_running_mode={runner.running_mode}", f"--direct_num_workers={runner.workers}"]
        options = PipelineOptions([*args, *runner.options, f"--job_name={label}"])
        return beam.Pipeline(runner=local_runner(), options=options)
    return beam.Pipeline(options=PipelineOptions([f"--runner={runner.name}", *runner.options]))


def stage_order(config: RunConfig, selected: list[str] | None = None) -> list[str]:
    """Configured stages in dependency order (inputs first), optionally only the selected ones."""
    configured = list(config.stages)
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise StageOrderError(f"stage inputs form a cycle: {' -> '.join((*path, name))}")
        for upstream in STAGES[name].input_stages(config.stage_config(name)):
            if upstream in configured:
                visit(upstream, (*path, name))
        order.append(name)

    for name in configured:
        visit(name, ())
    if selected is not None:
        unknown = [name for name in selected if name not in configured]
        if unknown:
            raise ConfigError(f"stages {unknown} are not in the config; configured: {', '.join(configured)}")
        order = [name for name in order if name in selected]
    return order


def stage_range(config: RunConfig, start: str | None, end: str | None) -> list[str]:
    """The configured stages from `start` to `end` (both included) in run order."""
    order = stage_order(config)
    for name in (start, end):
        if name is not None and name not in order:
            raise ConfigError(f"stage {name!r} is not in the config; configured: {', '.join(order)}")
    first = order.index(start) if start else 0
    last = order.index(end) if end else len(order) - 1
    if first > last:
        raise ConfigError(f"--from {start} comes after --to {end} in the run order ({', '.join(order)})")
    return order[first : last + 1]


def _registry_fingerprint(paths: list[Any]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if hasattr(path, "read_bytes") else b"")
    return digest.hexdigest()[:16]


def config_hash(stage: type[Stage], stage_config: Any, upstream: dict[str, str], registry: str) -> str:
    """Hash of everything that determines a stage's output."""
    identity = {
        "stage": stage.name,
        "stage_version": stage.version,
        "schema": [stage.output_type.SCHEMA, stage.output_type.VERSION] if stage.output_type else stage.output_kind,  # type: ignore[attr-defined]
        "config": stage_config.model_dump(mode="json"),
        "inputs": upstream,
        "languages": registry,
        "outside_data": stage.fingerprint(stage_config),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _done(manifest: StageManifest | None, wanted_hash: str, directory: str) -> bool:
    if manifest is None or manifest.config_hash != wanted_hash:
        return False
    return all(FileSystems.exists(FileSystems.join(directory, name)) for name in manifest.files)


def _count(label: str, namespace: str, *counters: str) -> beam.PTransform:
    made = [beam.metrics.Metrics.counter(namespace, counter) for counter in counters]  # a counter finds the running bundle

    def counted(row: Any) -> Any:
        for counter in made:
            counter.inc()
        return row

    return label >> beam.Map(counted)


def fill_empty_shards(directory: str, record_type: type, num_shards: int, schema: pa.Schema | None = None) -> None:
    """Write an empty shard for every shard index that got no rows, so a dataset always has all its files (`schema`: the
    one the other shards were written with, when not the record type's static one)."""
    present = {part.rsplit("/", 1)[-1] for part in list_parts(directory)}
    for shard in range(num_shards):
        name = shard_name(shard, num_shards)
        if name not in present:
            write_rows(FileSystems.join(directory, name), [], record_type, schema)


def _move_outputs(source: str, target: str, subdirectories: list[str]) -> list[str]:
    """Move the attempt's shards (and those of its drop and side tables) into the stage directory."""
    moved: list[str] = []
    for sub in ("", *subdirectories):
        parts = list_parts(FileSystems.join(source, sub) if sub else source)
        if not parts:
            continue
        destination = FileSystems.join(target, sub) if sub else target
        if sub and not FileSystems.exists(destination):
            FileSystems.mkdirs(destination)
        names = [part.rsplit("/", 1)[-1] for part in parts]
        FileSystems.rename(parts, [FileSystems.join(destination, name) for name in names])
        moved.extend(f"{sub}/{name}" if sub else name for name in names)
    FileSystems.delete([source])
    return moved


def check_run(config: RunConfig, selected: list[str] | None = None) -> tuple[list[str], LanguageRegistry, str]:
    """Every check of a run before any stage is built, the same for `codepref run` and `codepref config check`:
    the language registry files, the stage order (inputs first, no cycle), then each stage's own checks
    (`check_stages`). Returns (stages in run order, the run's language registry, its fingerprint). A ConfigError
    names the config file (when the config was read from one) on each of its lines."""
    try:
        registry, registry_id = run_registry(config)
        order = stage_order(config, selected)
        check_stages(config, order, registry)
    except (ConfigError, RegistryError, GrammarError) as error:
        kind = type(error) if isinstance(error, ConfigError) else ConfigError  # a StageOrderError stays one
        raise kind(config.located(str(error))) from None
    return order, registry, registry_id


def run_stage(
    config: RunConfig,
    name: str,
    registry: LanguageRegistry,
    registry_id: str,
    *,
    force: bool = False,
    output_dir: str | None = None,
    input_dirs: dict[str, str] | None = None,
    on_start: Callable[[str, Progress | None], None] | None = None,
) -> StageOutcome:
    """Run one stage unless its manifest says it is already done with this config.

    The stage reads `input_dirs` (name -> directory) when given, else `RUN_DIR/<upstream>` for
    each upstream stage, and writes into `output_dir` when given, else into `RUN_DIR/<stage>`.
    `on_start` hears when the stage really starts, with what to poll for its progress (if anything).
    """
    stage_cls = STAGES[name]
    stage_config = config.stage_config(name)
    refuse_object_store(config, name, output_dir)
    stage_dir = output_dir or FileSystems.join(config.run_dir, name)
    if input_dirs is None:
        input_dirs = {up: FileSystems.join(config.run_dir, up) for up in stage_cls.input_stages(stage_config)}

    upstream: dict[str, str] = {}
    manifests: dict[str, StageManifest] = {}
    input_types: dict[str, type] = {}
    records_in = 0
    for up, directory in input_dirs.items():
        manifest = StageManifest.read(directory)
        if manifest is None:
            raise StageOrderError(f"stage {name!r} reads {up!r}, which has no finished output in {directory}; run it first")
        upstream[up] = manifest.config_hash
        manifests[up] = manifest
        records_in += manifest.records_out
        if not issubclass(stage_cls, TaskStage):
            # The record type: the stage's, else the upstream stage's, else what the directory's manifest says it holds.
            input_types[up] = stage_cls.input_type or (STAGES[up].output_type if up in STAGES else _record_type(manifest, directory))
    wanted = config_hash(stage_cls, stage_config, upstream, registry_id)
    existing = StageManifest.read(stage_dir)
    if not force and _done(existing, wanted, stage_dir):
        assert existing is not None
        return StageOutcome(name, skipped=True, manifest=existing)

    check_output(stage_dir, f"stage {name!r} output")
    with RunLock(stage_dir, purpose=f"stage {name!r}"):
        try:
            checked = {up: check_input(up, input_dirs[up], manifests[up]) for up in input_dirs} if input_types else {}
        except ConservationError as error:
            raise StageFailed(name, stage_dir, error) from None
        context = StageContext(run_dir=config.run_dir, languages=registry, input_dirs=dict(input_dirs), input_types=input_types,
                               input_files={up: item.files for up, item in checked.items()})
        if on_start is not None:
            on_start(name, stage_cls.progress(stage_config, context, stage_dir, records_in))
        try:
            if issubclass(stage_cls, TaskStage):
                return _run_task(stage_cls, stage_config, context, stage_dir, wanted, upstream)
            return _run_pipeline(stage_cls, config, stage_config, context, stage_dir, wanted, upstream, list(checked.values()))
        except ConfigError:
            raise
        except Exception as error:
            raise StageFailed(name, stage_dir, error) from error


def _run_pipeline(stage_cls: type[Stage], config: RunConfig, stage_config: Any, context: StageContext, stage_dir: str,
                  wanted: str, upstream: dict[str, str], checked: list[CheckedInput]) -> StageOutcome:
    """A Beam stage: its pipeline into the attempt directory, the counts checked against the files, then the
    shards moved into place, then the manifest."""
    name = stage_cls.name
    clear_dir(stage_dir)
    # Marks the directory as this stage's until the manifest is written: a rerun after a failure between moving
    # the shards and writing the manifest (a full disk, a kill) may clear it again.
    marker = FileSystems.join(stage_dir, ATTEMPT_MARKER)
    with FileSystems.create(marker) as handle:
        handle.write(wanted.encode("utf-8"))
    attempt = FileSystems.join(stage_dir, ATTEMPT_DIR)
    FileSystems.mkdirs(attempt)
    namespace = metrics_namespace(name)
    started, clock = datetime.now(timezone.utc), time.monotonic()

    pipeline = pipeline_for(config.runner_for(name), f"codepref-{name}")
    inputs = {
        up: pipeline
        | f"Read_{up}" >> ReadRecords(directory, context.input_types[up], context.input_files[up])
        | _count(f"Count_{up}", namespace, RECORDS_READ, RECORDS_IN)
        for up, directory in context.input_dirs.items()
    }
    stage = stage_cls(stage_config, context)
    result = stage.build(pipeline, inputs)
    output_schema = stage.output_schema()
    (
        result.rows
        | _count("CountOut", namespace, RECORDS_OUT)
        | "WriteOutput" >> WriteShardedParquet(attempt, stage_cls.output_type, stage_cls.key_field, config.num_shards,
                                                schema=output_schema)
    )
    if result.dropped:
        # Each step's drops are counted and spilled where they are made (a Flatten first would gather them all).
        counted = tuple(dropped | _count(f"CountDropped_{index}", namespace, DROP_RECORDS) for index, dropped in enumerate(result.dropped))
        _ = counted | "WriteDropped" >> WriteShardedParquet(FileSystems.join(attempt, DROPPED_DIR), Drop, "key", 1)
    for table_name, table in result.tables.items():
        _ = table.rows | f"Write_{table_name}" >> WriteShardedParquet(
            FileSystems.join(attempt, table_name), table.record_type, table.key_field, config.num_shards
        )
    pipeline_result = pipeline.run()
    pipeline_result.wait_until_finish()
    counters = _counters(pipeline_result, namespace)
    dropped = {key.removeprefix("dropped_"): value for key, value in sorted(counters.items()) if key.startswith("dropped_")}
    drop_rows = parquet_rows(list_parts(FileSystems.join(attempt, DROPPED_DIR))) if result.dropped else None
    check_counts(name, stage_cls.accounting, counters, dropped, checked, parquet_rows(list_parts(attempt)), drop_rows)

    fill_empty_shards(attempt, stage_cls.output_type, config.num_shards, output_schema)
    for table_name, table in result.tables.items():
        fill_empty_shards(FileSystems.join(attempt, table_name), table.record_type, config.num_shards)
    files = _move_outputs(attempt, stage_dir, [DROPPED_DIR, *result.tables])
    manifest = StageManifest(
        stage=name,
        config_hash=wanted,
        schema=f"{stage_cls.output_type.SCHEMA} v{stage_cls.output_type.VERSION}",
        records_in=counters.pop(RECORDS_IN, 0),
        records_out=counters.pop(RECORDS_OUT, 0),
        dropped=dropped,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 3),
        files=files,
        versions=package_versions(),
        config=stage_config.model_dump(mode="json"),
        inputs=upstream,
        counters={key: value for key, value in sorted(counters.items()) if not key.startswith("dropped_")},
    )
    manifest.files.extend(stage.finish(stage_dir, manifest))  # before the manifest: a failure here leaves the stage undone
    manifest.write(stage_dir)
    FileSystems.delete([marker])
    return StageOutcome(name, skipped=False, manifest=manifest)


def _run_task(stage_cls: type[TaskStage], stage_config: Any, context: StageContext, stage_dir: str, wanted: str,
              upstream: dict[str, str]) -> StageOutcome:
    """A task stage: its own program in place of a Beam pipeline, then the manifest (last, so a crash leaves it undone).

    A resumable stage keeps what an unfinished attempt with the same config hash left (its checkpoints);
    anything else starts from an empty directory.
    """
    attempt = FileSystems.join(stage_dir, ATTEMPT_MARKER)  # through FileSystems: the run_dir may be an object store
    resuming = stage_cls.resumable and FileSystems.exists(attempt) and _read_text(attempt).strip() == wanted
    if not resuming:
        clear_dir(stage_dir)
        with FileSystems.create(attempt) as handle:
            handle.write(wanted.encode("utf-8"))
    started, clock = datetime.now(timezone.utc), time.monotonic()
    stage = stage_cls(stage_config, context)
    result = stage.execute(stage_dir)
    manifest = StageManifest(
        stage=stage_cls.name, config_hash=wanted, schema=stage_cls.output_kind, records_in=result.records_in,
        records_out=result.records_out, dropped=dict(sorted(result.dropped.items())), started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds=round(time.monotonic() - clock, 3),
        files=result.files, versions=package_versions(), config=stage_config.model_dump(mode="json"), inputs=upstream,
        counters=dict(sorted(result.counters.items())),
    )
    manifest.write(stage_dir)
    FileSystems.delete([attempt])
    return StageOutcome(stage_cls.name, skipped=False, manifest=manifest)


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def _record_type(manifest: StageManifest, directory: str) -> type:
    name = manifest.schema.split(" v")[0]
    if name not in RECORD_TYPES:
        raise StageOrderError(f"{directory}: holds {manifest.schema!r} records, which no stage reads")
    return RECORD_TYPES[name]


def _counters(result: Any, namespace: str) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def run(
    config: RunConfig,
    *,
    selected: list[str] | None = None,
    force: bool = False,
    on_stage: Callable[[StageOutcome], None] | None = None,
    on_start: Callable[[str, Progress | None], None] | None = None,
) -> list[StageOutcome]:
    """Run the configured stages in order; finished stages with a matching manifest are skipped.
    `on_start` hears when a stage starts (with its progress probe), `on_stage` when it is done or skipped."""
    order, registry, registry_id = check_run(config, selected)
    check_run_dir(config.run_dir)
    with RunLock(config.run_dir):
        mark_run_dir(config.run_dir)
        outcomes = []
        for name in order:
            outcome = run_stage(config, name, registry, registry_id, force=force, on_start=on_start)
            outcomes.append(outcome)
            if on_stage is not None:
                on_stage(outcome)
    return outcomes


def run_registry(config: RunConfig) -> tuple[LanguageRegistry, str]:
    """The language registry of a run (user files plus the config's `languages`) and its fingerprint."""
    paths = [DEFAULT_REGISTRY, *registry_files()[1:], *(_as_path(p) for p in config.languages)]
    return LanguageRegistry.from_files(paths), _registry_fingerprint(paths)


def _as_path(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"languages: {text!r} is not a file")
    return path
