"""One reward-model evaluation: score a CRB-format benchmark, write scores.parquet and results.json.

`EvalConfig` is the one config of an evaluation: `codepref eval` builds it from its flags, and the `eval`
stage reads it from the run config (where the model and the benchmark default to the run's own)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.core import StageConfig, inputs_field
from pipelines.eval.metrics import RESULTS_FILE, results, write_results
from pipelines.eval.scoring import SCORES_FILE, score, write_scores
from storage.staging import copy_down, download, written_locally

SystemMode = Literal["none", "full", "per-criterion"]  # the modes of pipelines.eval.conversations.SYSTEM_PROMPTS
WeightsDtype = Literal["float32", "bfloat16", "float16"]


class EvalConfig(StageConfig):
    """The reward model, the benchmark, and how to score it (`codepref eval`, and the `eval` stage of a run)."""

    inputs: list[str] = inputs_field(
        "train", "assemble", at_least_one=False,
        description="In a run, the stages read: train (its model, unless `model` is given) and assemble (its held-out "
        "pairs, unless `benchmark` is); [] with both named.",
    )
    model: str | None = Field(None, description="Local reward model folder: AutoModelForSequenceClassification (one label) and "
                                                "its tokenizer; in a run, default: the train stage's model.")
    benchmark: str | None = Field(None, description="CRB-format benchmark: Parquet/JSONL/JSON file, folder or glob (e.g. a "
                                                    "snapshot's Full/), or a datasets folder; in a run, default: the pairs "
                                                    "assemble held out (its `holdout`).")
    split: str | None = Field(None, description="Split of a datasets folder that holds several (e.g. Full).")
    system_mode: SystemMode = Field(
        "none", description="System prompt: none, full (all five criteria) or per-criterion (the row's aspect; the corpus's "
                           "template).")
    batch_size: int = Field(8, ge=1, description="Conversations per forward pass.")
    max_length: int = Field(4096, ge=16, description="Tokens per conversation; longer ones lose the start of the prompt.")
    device: str = Field("auto", description="torch device: auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    dtype: WeightsDtype = Field("float32", description="Weights' dtype while scoring.")

    @model_validator(mode="after")
    def _sources_named(self) -> EvalConfig:
        if self.model is None and "train" not in self.inputs:
            raise ValueError("name a `model`, or read the train stage (inputs: [train, ...])")
        if self.benchmark is None and "assemble" not in self.inputs:
            raise ValueError("name a `benchmark`, or read the assemble stage's held-out pairs (inputs: [..., assemble])")
        return self


def evaluate(config: EvalConfig, out_dir: str | Path,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score the benchmark, write `scores.parquet` and `results.json` into `out_dir`; return the results.
    `config` names the model and the benchmark (the eval stage fills in its upstream stages' before it calls this)."""
    if config.model is None or config.benchmark is None:
        raise ValueError("evaluate needs `model` and `benchmark`; the eval stage fills them in from its inputs")
    from storage.staging import is_object_store

    out = str(out_dir)
    with tempfile.TemporaryDirectory(prefix="codepref-eval-") as work:
        local = Path(work)
        model, benchmark = config.model, config.benchmark
        if is_object_store(model):  # transformers loads a local folder
            copy_down(model, local / "model")
            model = str(local / "model")
        if is_object_store(benchmark):
            benchmark = _benchmark_copy(benchmark, local / "benchmark")
        table = score(model, benchmark, config.system_mode, config.batch_size, config.max_length, config.device,
                      split=config.split, dtype=config.dtype, progress=progress, recorded_as=(config.model, config.benchmark))
        summary = results(table, source=f"{out.rstrip('/')}/{SCORES_FILE}" if is_object_store(out) else str(Path(out) / SCORES_FILE))
        with written_locally(out) as written:
            write_scores(table, written / SCORES_FILE)
            write_results(summary, written / RESULTS_FILE)
    return summary


def _benchmark_copy(benchmark: str, local: Path) -> str:
    """A local copy of a benchmark on an object store (a file, a folder or a glob of data files), at the same
    paths relative to its folder; returns what `score` reads."""
    from storage.tables import table_files

    files = table_files(benchmark)
    if files == [benchmark]:
        return str(download(benchmark, local / benchmark.rsplit("/", 1)[-1]))
    base = benchmark.split("*", 1)[0].rsplit("/", 1)[0] if "*" in benchmark else benchmark.rstrip("/")
    for file in files:
        download(file, local / file[len(base) + 1:])
    return str(local)
