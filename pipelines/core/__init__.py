"""What a stage is: the Stage and StageConfig bases, the stage registry, and the filter protocol."""

from pipelines.core.filters import (
    DROPPED,
    RecordFilter,
    Rejection,
    apply_filter,
    drop_record,
    metrics_namespace,
)
from pipelines.core.registry import Registry
from pipelines.core.stage import (
    STAGES,
    Progress,
    SideTable,
    Stage,
    StageConfig,
    StageContext,
    StageResult,
    TaskResult,
    TaskStage,
    inputs_field,
    register_stage,
)

__all__ = [
    "DROPPED",
    "STAGES",
    "Progress",
    "RecordFilter",
    "Registry",
    "Rejection",
    "SideTable",
    "Stage",
    "StageConfig",
    "StageContext",
    "StageResult",
    "TaskResult",
    "TaskStage",
    "apply_filter",
    "drop_record",
    "inputs_field",
    "metrics_namespace",
    "register_stage",
]
