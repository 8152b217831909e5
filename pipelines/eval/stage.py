"""The optional `eval` stage: score a reward model on a CRB-format benchmark (by default the model the
`train` stage wrote, on the pairs the `assemble` stage held out), writing scores.parquet and
results.json like `codepref eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from pipelines.assemble.stage import HOLDOUT_TABLE
from pipelines.core import StageConfig, TaskResult, TaskStage, register_stage
from pipelines.eval.benchmark import BenchmarkError
from pipelines.eval.evaluation import EvaluateConfig, SystemMode, WeightsDtype, evaluate
from pipelines.eval.metrics import RESULTS_FILE
from pipelines.eval.scoring import SCORES_FILE

TRAINED_MODEL = "model"  # the train stage's final model folder, inside its directory


class EvalStageConfig(StageConfig):
    """The benchmark, and the model when it is not the run's trained one."""

    inputs: list[str] = Field(
        default_factory=lambda: ["train", "assemble"],
        description="Stages read: train (its model, unless `model` is given) and assemble (its held-out pairs, unless `benchmark` is).",
    )
    model: str | None = Field(None, description="A reward model folder; default: the train stage's model.")
    benchmark: str | None = Field(
        None, description="CRB-format benchmark file, folder or datasets folder; default: the pairs assemble held out (its `holdout`)."
    )
    split: str | None = Field(None, description="Split of a datasets folder that holds several.")
    system_mode: SystemMode = Field("none", description="System prompt: none, full or per-criterion.")
    batch_size: int = Field(8, ge=1, description="Conversations per forward pass.")
    max_length: int = Field(4096, ge=16, description="Tokens per conversation.")
    device: str = Field("auto", description="torch device.")
    dtype: WeightsDtype = Field("float32", description="Weights' dtype while scoring.")


    @model_validator(mode="after")
    def _sources_named(self) -> EvalStageConfig:
        if self.model is None and "train" not in self.inputs:
            raise ValueError("name a `model`, or read the train stage (inputs: [train, ...])")
        if self.benchmark is None and "assemble" not in self.inputs:
            raise ValueError("name a `benchmark`, or read the assemble stage's held-out pairs (inputs: [..., assemble])")
        return self


@register_stage
class Eval(TaskStage):
    """Preference accuracy of a reward model, overall and by aspect, language and subset."""

    name = "eval"
    Config = EvalStageConfig
    inputs = ("train", "assemble")
    output_kind = "EvalResults v1"

    @classmethod
    def input_stages(cls, config: StageConfig) -> tuple[str, ...]:
        return tuple(getattr(config, "inputs", ()))

    @classmethod
    def fingerprint(cls, config: EvalStageConfig) -> dict[str, Any]:  # type: ignore[override]
        from storage.tables import fingerprint_files

        return fingerprint_files([p for p in (config.benchmark, config.model) if p])

    def execute(self, stage_dir: str) -> TaskResult:
        config: EvalStageConfig = self.config  # type: ignore[assignment]
        model = config.model or str(Path(self.context.input_dirs["train"]) / TRAINED_MODEL)
        benchmark = config.benchmark or str(Path(self.context.input_dirs["assemble"]) / HOLDOUT_TABLE)
        if config.benchmark is None and not Path(benchmark).is_dir():
            raise BenchmarkError(f"{benchmark}: the assemble stage held out no pairs; set stages.assemble.holdout, "
                                 "or name a benchmark in stages.eval.benchmark")
        options = config.model_dump(exclude={"inputs", "model", "benchmark"})
        summary = evaluate(EvaluateConfig(model=model, benchmark=benchmark, **options), stage_dir)
        overall = summary["overall"]
        return TaskResult(
            records_in=int(overall["total_examples"]), records_out=int(overall["total_examples"]), files=[SCORES_FILE, RESULTS_FILE],
            counters={"correct": int(overall["correct_predictions"]), "ties": int(overall["ties"])},
        )
