"""The run config: one YAML file, validated by typed models, with errors that name the key."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.stage import STAGES, StageConfig


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the file and the key."""


class RunnerConfig(BaseModel):
    """Which Beam runner executes the stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        "FnApiRunner",
        description="Beam runner: FnApiRunner (local, in-process) or a distributed one "
        "(DataflowRunner, FlinkRunner, SparkRunner) configured through `options`.",
    )
    running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = Field(
        "multi_processing", description="FnApiRunner only: how local workers run."
    )
    workers: int = Field(0, ge=0, description="FnApiRunner only: local workers; 0 means one per core.")
    options: list[str] = Field(
        default_factory=list, description="Extra Beam pipeline arguments, e.g. ['--project=p', '--region=r']."
    )


class RunConfig(BaseModel):
    """A whole run: where it writes, how it runs, and the config of each stage it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str = Field("runs/default", description="Directory (local or gs://, s3://) the stages write into.")
    num_shards: int = Field(4, ge=1, description="Parquet shards per stage output.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="The Beam runner.")
    languages: list[str] = Field(
        default_factory=list, description="Extra language registry files merged over the packaged one."
    )
    plugins: list[str] = Field(
        default_factory=list, description="Python modules imported before the stages are resolved (they may register stages)."
    )
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Stage name -> its config (an empty mapping takes the defaults)."
    )

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
        location = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        lines.append(f"{location}: {problem['msg']}")
    return "; ".join(lines)


def import_plugins(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"plugins: cannot import {module!r}: {error}") from None


BUILTIN_STAGE_MODULES = (
    "pipelines.mine", "pipelines.synthesize", "pipelines.external", "pipelines.parse", "pipelines.dedup", "pipelines.label",
    "pipelines.assemble", "pipelines.train.stage", "pipelines.evaluate.stage",
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
    for name in config.stages:
        if name not in STAGES:
            raise ConfigError(f"{path}: stages.{name}: unknown stage; known: {', '.join(STAGES.names()) or 'none'}")
        try:
            config.stage_config(name)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    return config
