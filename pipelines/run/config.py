"""The run config: one YAML file, validated by typed models, with errors that name the key."""

from __future__ import annotations

import importlib
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from parsers import LanguageRegistry
from pipelines.core import STAGES, StageConfig


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the file and the key."""


# Beam 2.77's DaskRunner as issue 19 found it on every codepref stage: Beam's limitations, refused by name.
DASK_LIMITATIONS = (
    "multi-output ParDos leak their tagged outputs (drops) into the main output; output from finish_bundle is lost; "
    "BatchElements drops each bundle's last partial batch; of several sinks only the last runs; Read has no "
    "translation; metrics() is not implemented (a stage's counts come from its metrics)"
)


class RunnerConfig(BaseModel):
    """Which Beam runner executes the stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        "FnApiRunner",
        description="Beam runner: FnApiRunner (local, in-process); PortableRunner, the way to a Flink or Spark job "
        "server, with `--job_endpoint=host:port` and `--environment_type` in `options`; or DataflowRunner configured "
        "through `options`. DaskRunner is refused (Beam 2.77's loses and mixes up rows).",
    )
    running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = Field(
        "multi_processing", description="FnApiRunner only: how local workers run."
    )
    workers: int = Field(0, ge=0, description="FnApiRunner only: local workers; 0 means one per core.")
    options: list[str] = Field(
        default_factory=list, description="Extra Beam pipeline arguments, e.g. ['--project=p', '--region=r']."
    )

    @field_validator("name")
    @classmethod
    def _supported(cls, name: str) -> str:
        if name.rsplit(".", 1)[-1].lower() in ("daskrunner", "dask"):
            raise ValueError(f"{name} is not supported: Beam 2.77's DaskRunner gives wrong output for codepref's stages "
                             f"({DASK_LIMITATIONS}). Run on FnApiRunner on one machine, or on PortableRunner with "
                             "--job_endpoint of a Flink or Spark job server (README, Runners)")
        return name

    @model_validator(mode="after")
    def _job_endpoint(self) -> RunnerConfig:
        if self.name == "PortableRunner" and not any(option.startswith("--job_endpoint") for option in self.options):
            raise ValueError("PortableRunner needs the job server in `options`: --job_endpoint=host:port (a Flink or Spark "
                             "job server, or Beam's local job service), with --environment_type (EXTERNAL, DOCKER)")
        return self


class RunConfig(BaseModel):
    """A whole run: where it writes, how it runs, and the config of each stage it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str = Field("runs/default", description="Directory (local or gs://, s3://) the stages write into.")
    num_shards: int = Field(4, ge=1, description="Parquet shards per stage output.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="The Beam runner.")
    stage_runners: dict[str, RunnerConfig] = Field(
        default_factory=dict,
        description="Stage name -> a runner for that stage alone, e.g. {label: {running_mode: in_memory}} so that a CPU "
        "box runs one in-process judge engine on all its cores instead of one per worker.",
    )
    languages: list[str] = Field(
        default_factory=list, description="Extra language registry files merged over the packaged one."
    )
    plugins: list[str] = Field(
        default_factory=list, description="Python modules imported before the stages are resolved (they may register stages)."
    )
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Stage name -> its config (an empty mapping takes the defaults)."
    )
    _source: str | None = PrivateAttr(None)  # the file it was read from (load_config), named by the errors found later

    def located(self, message: str) -> str:
        """`message` with each line prefixed by the config file it was read from (unchanged for a config made in code)."""
        if self._source is None:
            return message
        return "\n".join(f"{self._source}: {line}" for line in message.splitlines())

    def runner_for(self, name: str) -> RunnerConfig:
        """The runner of one stage: its own when `stage_runners` names it, else the run's."""
        return self.stage_runners.get(name, self.runner)

    def stage_config(self, name: str) -> StageConfig:
        """The validated config of one stage."""
        stage = STAGES[name]
        try:
            return stage.Config.model_validate(self.stages.get(name) or {})
        except ValidationError as error:
            raise ConfigError(_describe(error, prefix=f"stages.{name}")) from None


def _describe(error: ValidationError, prefix: str = "") -> str:
    lines = []
    for problem in error.errors():
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in (prefix, *problem["loc"]) if part != "")
        location = location.removeprefix(".")  # stages.external.sources[1].path
        message = problem["msg"].removeprefix("Value error, ")  # our validators' own words, without pydantic's label
        lines.append(f"{location}: {message}")
    return "; ".join(lines)


def import_plugins(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"plugins: cannot import {module!r}: {error}") from None


BUILTIN_STAGE_MODULES = (
    "pipelines.mine", "pipelines.synthesize", "pipelines.external", "pipelines.parse.stage", "pipelines.dedup", "pipelines.label.stage",
    "pipelines.assemble", "pipelines.train.stage", "pipelines.eval.stage",
)


def import_builtin_stages() -> None:
    for module in BUILTIN_STAGE_MODULES:
        importlib.import_module(module)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read, validate and return a run config; every stage named must be registered."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the config file (YAML) itself") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 text (byte {error.object[error.start]:#04x}); "
                          "save the config as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    document.update(overrides or {})
    try:
        config = RunConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_describe(error)}") from None
    import_builtin_stages()
    try:
        import_plugins(config.plugins)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    for name in config.stage_runners:
        if name not in config.stages:
            raise ConfigError(f"{path}: stage_runners.{name}: not a configured stage; configured: {', '.join(config.stages)}")
    for name in config.stages:
        if name not in STAGES:
            raise ConfigError(f"{path}: stages.{name}: unknown stage; known: {', '.join(STAGES.names()) or 'none'}")
        try:
            stage_config = config.stage_config(name)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        # An input need not be configured (a run may read a finished stage from its directory), but it must be a stage.
        unknown = [upstream for upstream in STAGES[name].input_stages(stage_config) if upstream not in STAGES]
        if unknown:
            raise ConfigError(f"{path}: stages.{name}.inputs: unknown stages {unknown}; known: {', '.join(sorted(STAGES.names()))}")
    config._source = str(path)
    return config


def check_stages(config: RunConfig, names: list[str] | None = None, registry: LanguageRegistry | None = None) -> None:
    """The checks of a run that need more than the config file: each stage's `Stage.check` (against the run's
    language registry, and cheap looks at the files its config names) and whether a stage that keeps local files
    has a file-system run directory. Part of `pipelines.run.orchestrator.check_run`, which `codepref config check`
    and the run both call before any stage is built. Raises one ConfigError naming every problem, one a line.
    `names`: the stages to check (default: all configured)."""
    from pipelines.run.orchestrator import run_registry  # run imports this module

    if registry is None:
        registry, _ = run_registry(config)
    problems = []
    for name in config.stages if names is None else names:
        try:
            stage_config = config.stage_config(name)
            refuse_object_store(config, name)
            STAGES[name].check(stage_config, registry)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("\n".join(problems))


def refuse_object_store(config: RunConfig, name: str, output_dir: str | None = None) -> None:
    """A stage that keeps local files (a SQLite cache, a program's working files) needs a run directory (and an
    output directory) on a file system, not an object store such as gs://."""
    from storage.staging import is_object_store

    stage = STAGES[name]
    needs_path = stage.local_files(config.stage_config(name))
    if needs_path and (is_object_store(config.run_dir) or is_object_store(output_dir or "")):
        raise ConfigError(f"stage {name!r} keeps {needs_path}, which needs a file-system path, but run_dir is "
                          f"{config.run_dir!r}: use a run directory on a file system every worker mounts (NFS, Filestore, "
                          "a gcsfuse or s3fs mount), or run this stage on a separate config whose run_dir is local")


# --- the documented reference: every key, its default and its meaning, as YAML -------------------------------------

REQUIRED = "<required>"
_WRAP = 100


def reference_yaml(stages: list[str] | None = None) -> str:
    """A commented YAML run config: every key of the run and of each stage (the built-in stages by
    default, in pipeline order) at its default, each under its description."""
    import_builtin_stages()
    def place(name: str) -> int:  # the order of BUILTIN_STAGE_MODULES, whatever order they were imported in
        module = STAGES[name].__module__
        return next((i for i, prefix in enumerate(BUILTIN_STAGE_MODULES) if module.startswith(prefix)), len(BUILTIN_STAGE_MODULES))

    builtin = sorted((name for name in STAGES.names() if STAGES[name].__module__.startswith("pipelines.")), key=place)
    names = stages if stages is not None else builtin
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stages {unknown}; known: {', '.join(STAGES.names())}")
    lines = ["# codepref run config: every key at its default, under what it means. Keys marked <required> have no",
             "# default. Generated from the typed configs by `codepref config init`; validate with `codepref config check`."]
    lines += _model_lines(RunConfig, {}, "", skip={"stages"})
    lines += _comment(RunConfig.model_fields["stages"].description or "", "")
    lines.append("stages:")
    for name in names:
        stage = STAGES[name]
        lines += _comment(f"{name}: {(stage.__doc__ or '').strip().splitlines()[0]}", "  ")
        lines.append(f"  {name}:")
        lines += _model_lines(stage.Config, {}, "    ")
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, _WRAP - len(indent) - 2)]


def _model_lines(model: type[BaseModel], values: dict[str, Any], indent: str, skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        lines += _comment(field.description or "", indent)
        if field.is_required() and name not in values:
            lines.append(f"{indent}{name}: {REQUIRED}")
            continue
        value = values[name] if name in values else field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines += _model_lines(type(value), value.model_dump(), indent + "  ")
            continue
        if value and isinstance(value, list) and all(isinstance(item, BaseModel) for item in value):
            lines.append(f"{indent}{name}:")
            for item in value:
                body = _model_lines(type(item), item.model_dump(), indent + "    ")
                first = next(i for i, line in enumerate(body) if not line.lstrip().startswith("#"))
                body[first] = f"{indent}  - {body[first].lstrip()}"
                lines += body
            continue
        plain = TypeAdapter(field.annotation).dump_python(value, mode="json")
        text = yaml.safe_dump({name: plain}, default_flow_style=True, sort_keys=False, width=10_000).strip()
        lines.append(f"{indent}{text[1:-1]}")  # {key: value} -> key: value
        item_model = _inner_model(field.annotation)
        if item_model is not None and not value:  # show what one entry holds
            example = _model_lines(item_model, {}, "")
            lines.append(f"{indent}#   {'one entry' if isinstance(value, list) else 'when set'}, {item_model.__name__}:")
            lines += [f"{indent}#     {line}" for line in example]
    return lines


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds when it is list[M], M | None or a union of models (the first)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _inner_model(argument)
        if found is not None:
            return found
    return None
