"""Reward-model evaluation on CRB-format benchmarks (Themis-CodeRewardBench layout): scores of every
pair (scores.parquet) and preference accuracy overall and by aspect, language and subset (results.json)."""

from pipelines.eval.benchmark import (
    BENCH_COLUMNS,
    BenchmarkError,
    BenchPair,
    read_benchmark,
)
from pipelines.eval.conversations import (
    SYSTEM_PROMPTS,
    BenchPairEncoder,
    PairError,
    messages,
)
from pipelines.eval.evaluation import EvalConfig, evaluate
from pipelines.eval.judges import JudgeEvalConfig, evaluate_judge
from pipelines.eval.metrics import (
    RESULTS_FILE,
    ScoresError,
    recompute,
    results,
    write_results,
)
from pipelines.eval.scoring import (
    SCORES_FILE,
    SCORES_SCHEMA,
    ModelError,
    ScoringError,
    score,
    scores_table,
    write_scores,
)

__all__ = [
    "BENCH_COLUMNS",
    "RESULTS_FILE",
    "SCORES_FILE",
    "SCORES_SCHEMA",
    "SYSTEM_PROMPTS",
    "BenchPair",
    "BenchmarkError",
    "EvalConfig",
    "JudgeEvalConfig",
    "ModelError",
    "BenchPairEncoder",
    "PairError",
    "ScoresError",
    "ScoringError",
    "evaluate",
    "evaluate_judge",
    "messages",
    "read_benchmark",
    "recompute",
    "results",
    "score",
    "scores_table",
    "write_results",
    "write_scores",
]
