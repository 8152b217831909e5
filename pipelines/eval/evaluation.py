"""One reward-model evaluation: score a CRB-format benchmark, write scores.parquet and results.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipelines.core import StageConfig
from pipelines.eval.metrics import RESULTS_FILE, results, write_results
from pipelines.eval.scoring import SCORES_FILE, score, write_scores

SystemMode = Literal["none", "full", "per-criterion"]  # the modes of pipelines.eval.conversations.SYSTEM_PROMPTS
WeightsDtype = Literal["float32", "bfloat16", "float16"]


class EvaluateConfig(StageConfig):
    """What `codepref eval` (and the `eval` stage) needs."""

    model: str = Field(description="Local reward model folder: AutoModelForSequenceClassification (one label) and its tokenizer.")
    benchmark: str = Field(description="CRB-format benchmark: Parquet/JSONL/JSON file, folder or glob (e.g. a snapshot's Full/), "
                                       "or a datasets folder.")
    split: str | None = Field(None, description="Split of a datasets folder that holds several (e.g. Full).")
    system_mode: SystemMode = Field(
        "none", description="System prompt: none, all five criteria, or the row's aspect (the corpus's template).")
    batch_size: int = Field(8, ge=1, description="Conversations per forward pass.")
    max_length: int = Field(4096, ge=16, description="Tokens per conversation; longer ones lose the start of the prompt.")
    device: str = Field("auto", description="torch device: auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    dtype: WeightsDtype = Field("float32", description="Weights' dtype while scoring.")


def evaluate(config: EvaluateConfig, out_dir: str | Path,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score the benchmark, write `scores.parquet` and `results.json` into `out_dir`; return the results."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = score(config.model, config.benchmark, config.system_mode, config.batch_size, config.max_length,
                  config.device, split=config.split, dtype=config.dtype, progress=progress)
    write_scores(table, out / SCORES_FILE)
    summary = results(table, source=str(out / SCORES_FILE))
    write_results(summary, out / RESULTS_FILE)
    return summary
