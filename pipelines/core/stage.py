"""What a stage is: a named composite transform with a typed config, plus counted drops.

A stage class registers itself in `STAGES`, names its typed config (whose `inputs` field, when it has one,
says the stages it reads), the record type it writes and the field that keys its records. The run
orchestrator (pipelines.run) reads the inputs, applies the stage, writes its shards and its manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import apache_beam as beam
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from parsers import LanguageRegistry
from pipelines.core.filters import Declares, declared_reasons
from pipelines.core.registry import Registry


class StageConfig(BaseModel):
    """Base of every stage's typed config: unknown keys are errors, every field has a description.

    A stage that reads other stages' records declares them in its config, once: a field `inputs`
    (use `inputs_field`) whose default is the usual upstream stages; `[]` reads no upstream stage.
    A config without that field belongs to a stage that reads none (it reads from outside the run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("inputs", check_fields=False)
    @classmethod
    def _reads_a_stage(cls, inputs: list[str]) -> list[str]:
        field = cls.model_fields["inputs"]
        if not inputs and (field.json_schema_extra or {}).get(_AT_LEAST_ONE):  # type: ignore[union-attr]
            default = ", ".join(field.get_default(call_default_factory=True))
            raise ValueError(f"[] reads no stage, and this stage has nothing to work on without one; name the stages it "
                             f"reads (default: [{default}])")
        return inputs


_AT_LEAST_ONE = "at_least_one"


def inputs_field(*upstream: str, description: str, at_least_one: bool = True) -> Any:
    """The `inputs` field of a stage config: the upstream stages read, `upstream` by default. `at_least_one`: the
    stage has nothing to work on without one, so `[]` is refused (else `[]` reads no upstream stage)."""
    return Field(default_factory=lambda: list(upstream), json_schema_extra={_AT_LEAST_ONE: at_least_one}, description=description)


C = TypeVar("C", bound=StageConfig)


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the run it belongs to."""

    run_dir: str
    languages: LanguageRegistry = field(compare=False)  # the run's language registry
    input_dirs: dict[str, str] = field(default_factory=dict)  # upstream name -> directory, for stages that read twice
    input_types: dict[str, type] = field(default_factory=dict)  # upstream name -> the record type read from it
    input_files: dict[str, list[str]] = field(default_factory=dict)  # upstream name -> its shards, as its manifest lists them


@dataclass(frozen=True)
class SideTable:
    """An extra dataset a stage writes beside its records (e.g. dedup's cluster table)."""

    rows: beam.PCollection
    record_type: type
    key_field: str


@dataclass
class StageResult:
    """A stage's output rows, the drop records it produced, and any side tables by name."""

    rows: beam.PCollection
    dropped: list[beam.PCollection] = field(default_factory=list)
    tables: dict[str, SideTable] = field(default_factory=dict)


class Stage(Generic[C]):
    """Base of registered stages, generic over their config type (`class Mine(Stage[MineConfig])`).
    Subclasses set the class attributes and implement `build`.

    A stage that reads data from outside the run (repositories, files) overrides `fingerprint`,
    so that a change of that data changes the stage's config hash.
    """

    name: ClassVar[str]
    Config: type[C]  # the stage's typed config (set on the class); its `inputs` field names the upstream stages
    input_type: ClassVar[type | None] = None  # record type of the inputs (default: each upstream's output type)
    output_type: ClassVar[type]
    key_field: ClassVar[str]
    version: ClassVar[int] = 1  # bump when a change of logic changes the output
    # How the run checks its counts (pipelines.run.conservation): "conserving" (in = out + dropped + held out),
    # "fan_out" (in = inputs that gave output + dropped inputs) or "per_source" (the stage's per-source counters).
    accounting: ClassVar[str] = "conserving"
    # The filters and DropReasons whose reasons this stage's drops can give (see `drop_reasons`).
    drops: ClassVar[tuple[Declares, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "inputs" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: declare the stages it reads as the config field `inputs` "
                            "(pipelines.core.inputs_field), not as a class attribute")

    def __init__(self, config: C, context: StageContext):
        self.config: C = config
        self.context = context

    @classmethod
    def input_stages(cls, config: StageConfig) -> tuple[str, ...]:
        """The upstream stages a config reads: its `inputs` (`[]`: none); none when the config has no such field."""
        return tuple(getattr(config, "inputs", ()))

    @classmethod
    def drop_reasons(cls) -> dict[str, tuple[str, str]]:
        """Every reason this stage can drop a record for: reason -> (who declares it, its meaning)."""
        return declared_reasons(cls.drops)

    @classmethod
    def fingerprint(cls, config: C) -> dict[str, Any]:
        """What identifies the outside data this stage reads (default: nothing)."""
        return {}

    @classmethod
    def check(cls, config: C, registry: LanguageRegistry) -> None:
        """Checks of the config that need the run's language registry or a cheap look at the files it names
        (what the typed config alone cannot say); raise pipelines.run.config.ConfigError naming the key. Run through
        pipelines.run.orchestrator.check_run, by `codepref config check` and by the run before it builds any stage
        (default: nothing to check). Checks that need no data belong in the config's validators instead."""

    def read_inputs(self, pipeline: beam.Pipeline, label: str, columns: list[str] | None = None, batched: bool = False) -> beam.PCollection:
        """Every upstream record read again, as one PCollection (for stages that re-read rather than hold);
        `columns`: only these, `batched`: Arrow tables of rows (storage.ReadRecords), for a pass that needs a few
        columns of large records."""
        from storage import ReadRecords

        reads = [pipeline | f"{label}_{name}" >> ReadRecords(directory, self.context.input_types[name], self.context.input_files.get(name),
                                                            columns, batched)
                 for name, directory in self.context.input_dirs.items()]
        return reads | f"{label}_All" >> beam.Flatten()

    def output_schema(self) -> pa.Schema:
        """The Parquet schema the run writes this stage's records with (its shards, empty ones included): default the
        static `arrow_schema(output_type)`. A stage whose schema metadata depends on the run (the corpus's `language`
        vocabulary grows with the run's registry) overrides it; the columns, record name and version must stay those
        of `output_type`, so schema checks pass for its files."""
        from schemas import arrow_schema

        return arrow_schema(self.output_type)

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        """Apply this stage to its input records (rows of the upstream stages)."""
        raise NotImplementedError

    @classmethod
    def local_files(cls, config: C) -> str | None:
        """What this stage keeps that needs a file-system path (a SQLite cache, files a local program reads),
        so that its run directory cannot be an object store such as gs:// (default: nothing; Beam IO only)."""
        return None

    @classmethod
    def progress(cls, config: C, context: StageContext, stage_dir: str, records_in: int) -> Progress | None:
        """What the run polls for a progress bar while this stage runs (default: none; a spinner and the time)."""
        return None

    def finish(self, stage_dir: str, manifest: Any) -> list[str]:
        """After the pipeline, before the manifest is written: write files that summarise the output
        (e.g. a dataset card) and return their names relative to `stage_dir` (default: none)."""
        return []


@dataclass(frozen=True)
class Progress:
    """How far a running stage is: `poll()` gives (done, total or None) in `unit`s; it runs in the
    process that drives the run, so it reads what the workers leave on disk (a cache, a log)."""

    unit: str
    poll: Callable[[], tuple[int, int | None]]


@dataclass
class TaskResult:
    """What a task stage did: the manifest's counts, and the files it wrote (relative to its directory)."""

    records_in: int
    records_out: int
    files: list[str]
    counters: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


class TaskStage(Stage[C]):
    """A stage that is a plain program (PyTorch training, scoring) rather than a Beam pipeline. The run
    still orders it by its inputs, skips it when its manifest matches, and writes that manifest."""

    output_type: ClassVar[type | None] = None  # type: ignore[assignment]
    output_kind: ClassVar[str]  # what the manifest says the directory holds, e.g. "RewardModel v1"
    key_field = ""
    resumable: ClassVar[bool] = False  # True: an unfinished attempt with the same config keeps its files (checkpoints)

    def execute(self, stage_dir: str) -> TaskResult:
        """Do the work, writing into `stage_dir` (empty); the upstream directories are in `self.context.input_dirs`."""
        raise NotImplementedError


STAGES: Registry[type[Stage[Any]]] = Registry("stage")

S = TypeVar("S", bound=type[Stage[Any]])


def register_stage(cls: S) -> S:
    """Class decorator: register a stage under its `name`."""
    return STAGES.register(cls.name)(cls)
