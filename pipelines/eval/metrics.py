"""Preference accuracy of a scores table, overall and by aspect, language and subset (DuckDB).

A pair is correct when chosen_score > rejected_score; a tie is not correct, and is counted under
`ties`. The figures follow the published Themis results files (`overall` with `accuracy`,
`total_examples`, `correct_predictions`, and the mean, median and sample standard deviation of
chosen_score - rejected_score; `by_*` with `accuracy` and `count`), plus `ties`, `correct` and
`accuracy_ci95` (the Wilson 95 % interval), unrounded. They are computed from the two scores, never from a
stored `correct` column, so a
published scores.parquet (id as its pandas index) recomputes the same way as ours.

Parse failures (generative judges, whose answers may not parse): a table with any of the columns
`parse_failed`, `chosen_parse_failed`, `rejected_parse_failed` may leave a score empty where its
row is marked failed, as the published files do. Such a pair counts as incorrect in `accuracy`;
`overall` then adds `accuracy_valid_only` (correct / valid pairs), `valid_pairs`,
`total_parse_failures` (pairs) and `parse_failure_rate`, and each group `parse_failures`. Any
other empty or non-finite score is an error naming the pair.

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
PARSE_COLUMNS = ("parse_failed", "chosen_parse_failed", "rejected_parse_failed")  # generative judges' unparsed answers
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
    for column in NEEDED_COLUMNS[2:]:
        if scores.column(column).null_count:
            raise ScoresError(f"{source}: column {column!r} has {scores.column(column).null_count} empty values")
    if scores.num_rows == 0:
        raise ScoresError(f"{source}: no scores")
    failed = _parse_failures(scores)
    table = scores.select(list(NEEDED_COLUMNS))
    for column in NEEDED_COLUMNS[:2]:
        values = table.column(column).cast(pa.float64())
        # A score is missing (empty, or not a finite number) only where the model's answer did not parse.
        unusable = pc.fill_null(pc.invert(pc.is_finite(values)), True)
        stray = pc.and_(unusable, pc.invert(failed)) if failed is not None else unusable
        if pc.any(stray).as_py():
            row = pc.index(stray, True).as_py()
            pair = scores.column("id")[row].as_py() if "id" in scores.column_names else f"row {row}"
            marked = "" if failed is None else ", and it is not marked as a parse failure"
            raise ScoresError(f"{source}: pair {pair}: {column!r} is {'empty' if values[row].as_py() is None else 'not a finite number'}"
                              f"{marked} ({pc.sum(stray).as_py()} such values)")
        table = table.set_column(table.column_names.index(column), column, pc.if_else(unusable, None, values))
    table = table.append_column("parse_failed", failed if failed is not None else pa.array([False] * table.num_rows))
    for name, (column, vocabulary) in GROUPINGS.items():
        spellings = Counter(table.column(column).to_pylist())
        names = _group_names(spellings, vocabulary)
        table = table.append_column(name, pa.array([names[s] for s in table.column(column).to_pylist()], pa.string()))

    summary: dict[str, Any] = {}
    with duckdb.connect() as db:
        db.register("scores", table)
        # A parse failure is never correct and never a tie; the score differences are those of the pairs scored.
        valid = "NOT parse_failed"
        total, correct, ties, failures, mean, median, std = db.execute(
            f"SELECT count(*), count_if({valid} AND chosen_score > rejected_score), count_if({valid} AND chosen_score = rejected_score), "
            "count_if(parse_failed), avg(chosen_score - rejected_score), median(chosen_score - rejected_score), "
            "stddev_samp(chosen_score - rejected_score) FROM scores").fetchone()
        summary["overall"] = {"accuracy": correct / total, "accuracy_ci95": _interval(correct, total), "total_examples": total,
                              "correct_predictions": correct, "ties": ties, "mean_score_difference": mean, "median_score_difference": median,
                              "std_score_difference": std}
        if failed is not None:
            summary["overall"].update(_parse_figures(correct, total, failures))
        for name in GROUPINGS:
            rows = db.execute(
                f"SELECT {name}, count(*), count_if({valid} AND chosen_score > rejected_score), "
                f"count_if({valid} AND chosen_score = rejected_score), count_if(parse_failed) "
                f"FROM scores GROUP BY {name} ORDER BY {name}").fetchall()
            summary[name] = {key: {"accuracy": hits / count, "accuracy_ci95": _interval(hits, count), "count": count, "correct": hits,
                                   "ties": tied, **({"parse_failures": lost} if failed is not None else {})}
                             for key, count, hits, tied, lost in rows}
    metadata = scores.schema.metadata or {}
    if RUN_METADATA_KEY in metadata:
        summary["run"] = json.loads(metadata[RUN_METADATA_KEY])
    return summary


def _parse_failures(scores: pa.Table) -> pa.Array | None:
    """Per pair, whether the model's answer did not parse (any of PARSE_COLUMNS true; empty counts as false), or None
    when the table has none of those columns (a reward model's scores: every pair must have both)."""
    present = [c for c in PARSE_COLUMNS if c in scores.column_names]
    if not present:
        return None
    flags = [pc.fill_null(scores.column(c).cast(pa.bool_()), False) for c in present]
    combined = flags[0]
    for flag in flags[1:]:
        combined = pc.or_(combined, flag)
    return combined.combine_chunks() if isinstance(combined, pa.ChunkedArray) else combined


def _parse_figures(correct: int, total: int, failures: int) -> dict[str, Any]:
    """The published generative runs' extra figures: accuracy over the pairs whose answers parsed, and the failures."""
    valid = total - failures
    return {"accuracy_valid_only": correct / valid if valid else None, "valid_pairs": valid, "total_parse_failures": failures,
            "parse_failure_rate": failures / total}


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
