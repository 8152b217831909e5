"""The optional `train` stage: the bundled reward-model trainer on the run's corpus (the `assemble`
output). A killed run resumes from its newest checkpoint rather than starting over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import create_model

from pipelines.core import (
    DropReasons,
    Progress,
    StageConfig,
    StageContext,
    TaskResult,
    TaskStage,
    inputs_field,
    register_stage,
)
from pipelines.train.config import DROP_REASONS, METRICS_FILE, TrainConfig

# Every training option of TrainConfig, except what the run decides (data, output folder, resuming).
_RUN_DECIDES = ("data", "output_dir", "resume", "stop_after_steps")
TrainStageConfig = create_model(
    "TrainStageConfig",
    __base__=StageConfig,
    __doc__="The trainer's options (see pipelines.train.TrainConfig); the data are the input stages' shards.",
    inputs=(list[str], inputs_field("assemble", description="Stages whose corpus shards are trained on.")),
    **{name: (field.annotation, field) for name, field in TrainConfig.model_fields.items() if name not in _RUN_DECIDES},
)


def _steps_logged(metrics: Path) -> tuple[int, int | None]:
    """(last step logged, total steps) of a metrics.jsonl being written; (0, None) before the first line."""
    step, total = 0, None
    try:
        lines = metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return step, total
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the line being written
        step = int(record.get("step", step))
        total = int(record.get("total_steps", total)) if record.get("total_steps") else total
    return step, total


@register_stage
class Train(TaskStage[Any]):  # Any: TrainStageConfig is made at import time from TrainConfig's fields
    """A Bradley-Terry reward model trained on the corpus; exported as a sequence classifier in `model/`."""

    name = "train"
    Config = TrainStageConfig
    output_kind = "RewardModel v1"
    resumable = True  # an unfinished attempt with the same config hash keeps its checkpoints
    drops = (DropReasons("PairEncoder", DROP_REASONS),)

    @classmethod
    def fingerprint(cls, config: Any) -> dict[str, Any]:
        from storage.tables import fingerprint_files

        return fingerprint_files([config.model])

    @classmethod
    def progress(cls, config: Any, context: StageContext, stage_dir: str, records_in: int) -> Progress:
        """Optimizer steps done, from the trainer's metrics log."""
        return Progress("steps", lambda: _steps_logged(Path(stage_dir) / METRICS_FILE))

    def execute(self, stage_dir: str) -> TaskResult:
        options = self.config.model_dump(exclude={"inputs"})
        if options["model"] == "smollm2":  # the packaged SmolLM2-135M-Instruct, prepared offline once
            from llm.models import prepare_smollm2

            options["model"] = str(prepare_smollm2())
        data = list(self.context.input_dirs.values())
        from pipelines.train.trainer import (  # loads torch and transformers only now
            RESULT_FILE,
            train,
        )

        result = train(TrainConfig(**options, data=data, output_dir=stage_dir, resume=True))
        return TaskResult(
            records_in=result.pairs_read, records_out=result.pairs_kept, files=["model", "metrics.jsonl", RESULT_FILE],
            counters={"steps": result.steps, "truncated": result.truncated}, dropped=dict(result.dropped),
        )

