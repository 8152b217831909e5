"""The optional `eval` stage: score a reward model on a CRB-format benchmark (by default the model the
`train` stage wrote, on the pairs the `assemble` stage held out), writing scores.parquet and
results.json like `codepref eval`."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from parsers import LanguageRegistry
from pipelines.assemble.stage import HOLDOUT_TABLE
from pipelines.core import TaskResult, TaskStage, register_stage
from pipelines.eval.benchmark import BenchmarkError
from pipelines.eval.evaluation import EvalConfig, evaluate
from pipelines.eval.metrics import RESULTS_FILE
from pipelines.eval.scoring import SCORES_FILE
from pipelines.run.config import ConfigError
from storage.staging import is_object_store

TRAINED_MODEL = "model"  # the train stage's final model folder, inside its directory


@register_stage
class Eval(TaskStage[EvalConfig]):
    """Preference accuracy of a reward model, overall and by aspect, language and subset."""

    name = "eval"
    Config = EvalConfig
    output_kind = "EvalResults v1"

    @classmethod
    def check(cls, config: EvalConfig, registry: LanguageRegistry) -> None:
        """The model folder and the benchmark named are there (else the stage would fail only after the stages before it)."""
        if config.model is not None and not (FileSystems.exists(config.model) if is_object_store(config.model)
                                             else Path(config.model).is_dir()):
            raise ConfigError(f"stages.eval.model: {config.model!r} is not a folder (a reward model)")
        if config.benchmark is not None and not (
                FileSystems.match([config.benchmark if "*" in config.benchmark else config.benchmark.rstrip("/") + "*"])[0].metadata_list
                if is_object_store(config.benchmark) else next(glob.iglob(config.benchmark, recursive=True), None) is not None):
            raise ConfigError(f"stages.eval.benchmark: {config.benchmark!r}: no such file or folder")

    @classmethod
    def fingerprint(cls, config: EvalConfig) -> dict[str, Any]:
        from storage.tables import fingerprint_files

        return fingerprint_files([p for p in (config.benchmark, config.model) if p])

    def execute(self, stage_dir: str) -> TaskResult:
        config = self.config
        model = config.model or FileSystems.join(self.context.input_dirs["train"], TRAINED_MODEL)
        benchmark = config.benchmark or FileSystems.join(self.context.input_dirs["assemble"], HOLDOUT_TABLE)
        if config.benchmark is None and not FileSystems.exists(benchmark):
            raise BenchmarkError(f"{benchmark}: the assemble stage held out no pairs; set stages.assemble.holdout, "
                                 "or name a benchmark in stages.eval.benchmark")
        summary = evaluate(config.model_copy(update={"model": model, "benchmark": benchmark}), stage_dir)
        overall = summary["overall"]
        return TaskResult(
            records_in=int(overall["total_examples"]), records_out=int(overall["total_examples"]), files=[SCORES_FILE, RESULTS_FILE],
            counters={"correct": int(overall["correct_predictions"]), "ties": int(overall["ties"])},
        )
