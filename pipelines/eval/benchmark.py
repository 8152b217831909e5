"""Reward-model benchmarks in the Themis-CodeRewardBench (CRB) layout: one preference pair a row,
with the string columns `prompt, chosen, rejected, language, aspect, subset, id`.

Read offline from a Parquet, JSONL (optionally gzipped) or JSON file, a folder or glob of them (e.g.
the `Full/` folder of a CRB snapshot), or a `datasets` folder written by save_to_disk. A row that
cannot be read, or lacks a column, fails with the file and row; nothing is skipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.tables import (
    TableError,
    is_dataset_folder,
    load_dataset_folder,
    table_files,
)

BENCH_COLUMNS = ("prompt", "chosen", "rejected", "language", "aspect", "subset", "id")
SNAPSHOT_HINT = ("a CRB snapshot holds the same pairs in Full/, Stratified_Aspect/ and Stratified_Language/: "
                 "point at one of them (e.g. Full/)")


class BenchmarkError(ValueError):
    """A benchmark cannot be read as CRB-format pairs; the message names the file (and row) and what to do."""


@dataclass(frozen=True)
class BenchPair:
    """One benchmark pair, with the benchmark's own spellings of language and aspect."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    language: str
    aspect: str
    subset: str


def read_benchmark(path: str | Path, split: str | None = None) -> list[BenchPair]:
    """Every pair of the benchmark at `path`, in file order; `split` picks one split of a `datasets` folder.

    Pair ids must be unique: a second row with an id already read is an error naming both places.
    """
    seen: dict[str, str] = {}
    pairs: list[BenchPair] = []
    for where, row in _rows(str(path), split):
        pair = _pair(where, row)
        if pair.id in seen:
            raise BenchmarkError(f"pair id {pair.id!r} appears twice: {seen[pair.id]} and {where}; "
                                 f"ids must be unique ({SNAPSHOT_HINT})")
        seen[pair.id] = where
        pairs.append(pair)
    if not pairs:
        raise BenchmarkError(f"{path}: holds no pairs")
    return pairs


def _rows(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    """(where, row) of every row: `where` names the file and the row (or line) for error messages."""
    try:
        if is_dataset_folder(path):
            yield from _dataset_rows(path, split)
            return
        files = table_files(path)
    except TableError as error:
        raise BenchmarkError(str(error)) from error
    for file in files:
        name = file.lower()
        if name.endswith(".parquet"):
            yield from _parquet_rows(file)
        elif name.endswith(".json"):
            yield from _json_rows(file)
        else:
            yield from _jsonl_rows(file)


def _check_columns(source: str, columns: list[str]) -> None:
    missing = [c for c in BENCH_COLUMNS if c not in columns]
    if missing:
        raise BenchmarkError(f"{source}: no column {', '.join(repr(c) for c in missing)} (it has: {', '.join(columns)}); "
                             f"a CRB-format benchmark has {', '.join(BENCH_COLUMNS)}")


def _dataset_rows(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    dataset = load_dataset_folder(path, split)
    _check_columns(path, list(dataset.column_names))
    for number, row in enumerate(dataset.select_columns(list(BENCH_COLUMNS)), 1):
        yield f"{path}, row {number}", row


def _parquet_rows(file: str) -> Iterator[tuple[str, Any]]:
    try:
        columns = pq.read_schema(file).names
        _check_columns(file, columns)
        table = pq.read_table(file, columns=list(BENCH_COLUMNS))
    except (OSError, pa.ArrowException) as error:
        raise BenchmarkError(f"{file}: cannot be read as Parquet ({error})") from error
    for number, row in enumerate(table.to_pylist(), 1):
        yield f"{file}, row {number}", row


def _parsed_line(file: str, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as error:
        raise BenchmarkError(f"{file}, line {number}: not valid JSON ({error})") from error


def _text(file: str) -> str:
    try:
        if file.lower().endswith(".gz"):
            with gzip.open(file, "rt", encoding="utf-8") as handle:
                return handle.read()
        with open(file, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"{file}: cannot be read as UTF-8 text ({error})") from error


def _jsonl_rows(file: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(_text(file).split("\n"), 1):
        if line.strip():
            yield f"{file}, line {number}", _parsed_line(file, number, line)


def _json_rows(file: str) -> Iterator[tuple[str, Any]]:
    """A JSON file: a top-level array of rows, or JSON lines."""
    text = _text(file)
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as error:
            raise BenchmarkError(f"{file}: not a valid JSON array ({error})") from error
        for number, row in enumerate(rows, 1):
            yield f"{file}, row {number}", row
        return
    yield from _jsonl_rows(file)


def _pair(where: str, row: Any) -> BenchPair:
    """A validated pair: every column present, texts and labels strings (an empty text is allowed)."""
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: not a JSON object but {type(row).__name__}")
    _check_columns(where, list(row))
    pair_id = row["id"]
    if pair_id is None or isinstance(pair_id, (dict, list)) or str(pair_id) == "":
        raise BenchmarkError(f"{where}: `id` is {pair_id!r}; every pair needs an id")
    for column in BENCH_COLUMNS[:-1]:
        if not isinstance(row[column], str):
            raise BenchmarkError(f"{where} (pair {pair_id}): `{column}` is {type(row[column]).__name__}, not a string")
    return BenchPair(id=str(pair_id), **{c: row[c] for c in BENCH_COLUMNS[:-1]})
