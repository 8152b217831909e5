"""The optional `train` stage: the bundled reward-model trainer on the run's corpus (the `assemble`
output). A killed run resumes from its newest checkpoint rather than starting over."""

from __future__ import annotations

import json
import tempfile
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


def _steps_logged(metrics: str) -> tuple[int, int | None]:
    """(last step logged, total steps) of a metrics.jsonl being written (or copied up); (0, None) before the first line."""
    from apache_beam.io.filesystems import FileSystems

    step, total = 0, None
    try:
        with FileSystems.open(metrics) as handle:
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:  # BeamIOError too: not written yet
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
        return Progress("steps", lambda: _steps_logged(f"{stage_dir.rstrip('/')}/{METRICS_FILE}"))

    def execute(self, stage_dir: str) -> TaskResult:
        options = self.config.model_dump(exclude={"inputs"})
        if options["model"] == "smollm2":  # the packaged SmolLM2-135M-Instruct, prepared offline once
            from llm.models import prepare_smollm2

            options["model"] = str(prepare_smollm2())
        data = list(self.context.input_dirs.values())
        from storage.staging import is_object_store

        if not any(is_object_store(place) for place in [stage_dir, *data]):
            return self._train(options, data, stage_dir)
        with tempfile.TemporaryDirectory(prefix="codepref-train-") as work:
            return self._train_staged(options, data, stage_dir, Path(work))

    def _train(self, options: dict[str, Any], data: list[str], output_dir: str) -> TaskResult:
        from pipelines.train.trainer import (  # loads torch and transformers only now
            RESULT_FILE,
            train,
        )

        result = train(TrainConfig(**options, data=data, output_dir=output_dir, resume=True))
        return TaskResult(
            records_in=result.pairs_read, records_out=result.pairs_kept, files=["model", "metrics.jsonl", RESULT_FILE],
            counters={"steps": result.steps, "truncated": result.truncated}, dropped=dict(result.dropped),
        )

    def _train_staged(self, options: dict[str, Any], data: list[str], stage_dir: str, work: Path) -> TaskResult:
        """The trainer needs local paths: the corpus shards and an unfinished attempt's newest checkpoint are
        copied down through FileSystems, and every output file (the newest checkpoint too, even when
        training fails) copied up into `stage_dir`."""
        from pipelines.train.trainer import CHECKPOINT_PREFIX, DROPPED_FILE
        from storage import list_parts
        from storage.staging import copy_down, copy_up, download

        local_data = []
        for index, folder in enumerate(data):
            shards = work / "data" / str(index)
            for part in list_parts(folder):
                download(part, shards / part.rsplit("/", 1)[-1])
            local_data.append(str(shards))
        output = work / "output"
        output.mkdir()
        copy_down(stage_dir, output, keep=(CHECKPOINT_PREFIX,))  # an unfinished attempt's, to resume from
        try:
            result = self._train(options, local_data, str(output))
        finally:  # the newest checkpoint and the log go up even when training failed, for the resumed attempt
            self._copy_up_checkpoint(output, stage_dir)
            for name in (METRICS_FILE, DROPPED_FILE):
                if (output / name).is_file():
                    copy_up(output / name, stage_dir)
        for name in result.files:
            copy_up(output / name, stage_dir if (output / name).is_file() else f"{stage_dir.rstrip('/')}/{name}")
        return result

    @staticmethod
    def _copy_up_checkpoint(output: Path, stage_dir: str) -> None:
        """The newest complete checkpoint, its state file last (a checkpoint without it is not one), older ones removed."""
        from apache_beam.io.filesystems import FileSystems

        from pipelines.train.trainer import STATE_FILE, checkpoints_in
        from storage.staging import copy_up, remote_files

        found = checkpoints_in(output)
        if not found:
            return
        newest = found[-1]
        target = f"{stage_dir.rstrip('/')}/{newest.name}"
        stale = [path for path in remote_files(stage_dir) if "/checkpoint-" in path and not path.startswith(target + "/")]
        for path in sorted(p for p in newest.rglob("*") if p.is_file() and p.name != STATE_FILE):
            copy_up(path, "/".join([target, *path.parent.relative_to(newest).parts]))
        copy_up(newest / STATE_FILE, target)
        if stale:
            FileSystems.delete(stale)
