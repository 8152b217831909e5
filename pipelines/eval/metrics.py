"""Preference accuracy of a scores table, overall and by aspect, language and subset (DuckDB).

A pair is correct when chosen_score > rejected_score; a tie is not correct, and is counted under
`ties`. The figures follow the published Themis results files (`overall` with `accuracy`,
`total_examples`, `correct_predictions`, and the mean, median and sample standard deviation of
chosen_score - rejected_score; `by_*` with `accuracy` and `count`), plus `ties`, `correct` and
`accuracy_ci95` (the Wilson 95 % interval), unrounded. They are computed from the two scores, never from a
stored `correct` column, so a
published scores.parquet (id as its pandas index) recomputes the same way as ours.

Grouping: languages and aspects are grouped through the vocabularies of schemas.vocab, so `Cpp`
and `C++` are one group; a group's key is its most frequent spelling in the table (the
alphabetically first on a tie), so a CRB run keeps the benchmark's spellings. A name the
vocabulary does not know is a group of its own. Subsets are grouped as spelled.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.eval.scoring import RUN_METADATA_KEY
from schemas import ASPECTS, LANGUAGES
from schemas.vocab import Vocabulary

RESULTS_FILE = "results.json"
NEEDED_COLUMNS = ("chosen_score", "rejected_score", "language", "aspect", "subset")
GROUPINGS = {"by_aspect": ("aspect", ASPECTS), "by_language": ("language", LANGUAGES), "by_subset": ("subset", None)}


class ScoresError(ValueError):
    """A scores table or file cannot be summarised; the message names it."""


def _group_names(spellings: Counter[str], vocabulary: Vocabulary | None) -> dict[str, str]:
    """Spelling -> group key: spellings of one vocabulary label share the most frequent spelling."""
    label = {s: vocabulary.canonical(s) if vocabulary is not None and s in vocabulary else s for s in spellings}
    key: dict[str, str] = {}
    for group in set(label.values()):
        members = [s for s in spellings if label[s] == group]
        key[group] = min(members, key=lambda s: (-spellings[s], s))
    return {s: key[label[s]] for s in spellings}


def results(scores: pa.Table, source: str = "scores table") -> dict[str, Any]:
    """Accuracy, ties and score-difference statistics overall and per aspect, language and subset.

    `run` (how the scores were made) is added when the table's metadata records it.
    """
    import duckdb

    missing = [c for c in NEEDED_COLUMNS if c not in scores.column_names]
    if missing:
        raise ScoresError(f"{source}: no column {', '.join(missing)} (it has: {', '.join(scores.column_names)})")
    for column in NEEDED_COLUMNS:
        if scores.column(column).null_count:
            raise ScoresError(f"{source}: column {column!r} has {scores.column(column).null_count} empty values")
    for column in NEEDED_COLUMNS[:2]:
        finite = pc.is_finite(scores.column(column).cast(pa.float64()))
        if not pc.all(finite).as_py():
            raise ScoresError(f"{source}: column {column!r} has values that are not finite numbers")
    if scores.num_rows == 0:
        raise ScoresError(f"{source}: no scores")
    table = scores.select(list(NEEDED_COLUMNS))
    for name, (column, vocabulary) in GROUPINGS.items():
        spellings = Counter(table.column(column).to_pylist())
        names = _group_names(spellings, vocabulary)
        table = table.append_column(name, pa.array([names[s] for s in table.column(column).to_pylist()], pa.string()))

    summary: dict[str, Any] = {}
    with duckdb.connect() as db:
        db.register("scores", table)
        total, correct, ties, mean, median, std = db.execute(
            "SELECT count(*), count_if(chosen_score > rejected_score), count_if(chosen_score = rejected_score), "
            "avg(chosen_score - rejected_score), median(chosen_score - rejected_score), "
            "stddev_samp(chosen_score - rejected_score) FROM scores").fetchone()
        summary["overall"] = {"accuracy": correct / total, "accuracy_ci95": _interval(correct, total), "total_examples": total,
                              "correct_predictions": correct, "ties": ties, "mean_score_difference": mean, "median_score_difference": median,
                              "std_score_difference": std}
        for name in GROUPINGS:
            rows = db.execute(
                f"SELECT {name}, count(*), count_if(chosen_score > rejected_score), count_if(chosen_score = rejected_score) "
                f"FROM scores GROUP BY {name} ORDER BY {name}").fetchall()
            summary[name] = {key: {"accuracy": hits / count, "accuracy_ci95": _interval(hits, count), "count": count, "correct": hits,
                                   "ties": tied}
                             for key, count, hits, tied in rows}
    metadata = scores.schema.metadata or {}
    if RUN_METADATA_KEY in metadata:
        summary["run"] = json.loads(metadata[RUN_METADATA_KEY])
    return summary


def _interval(correct: int, total: int) -> list[float]:
    """The Wilson 95 % interval of an accuracy."""
    from audit.agreement import wilson_interval

    low, high = wilson_interval(correct, total)  # type: ignore[misc] (total > 0 here)
    return [low, high]


def recompute(scores_file: str | Path) -> dict[str, Any]:
    """results() of a scores.parquet: ours, or a published Themis one."""
    try:
        table = pq.read_table(str(scores_file))
    except (OSError, pa.ArrowException) as error:
        raise ScoresError(f"{scores_file}: cannot be read as Parquet ({error})") from error
    return results(table, source=str(scores_file))


def write_results(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
