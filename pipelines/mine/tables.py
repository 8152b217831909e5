"""Commit tables mined elsewhere (the reference's BigQuery export, the public single-file commit sets), JSON
lines or Parquet, read row by row with the place of each row, and the merged-pull-request table."""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from parsers import LanguageRegistry
from pipelines.core import Rejection, metrics_namespace
from pipelines.mine.filters import (
    COMMIT_TABLE,
    REVERTS,
    STAGE,
    ChangeShape,
    FileContents,
    RevertIndex,
    Rules,
    drop,
    is_unicode,
    split_of,
)
from pipelines.run.config import ConfigError
from schemas import Commit, to_row

if TYPE_CHECKING:
    from pipelines.mine.stage import MineConfig

TABLE_COLUMNS = ("commit", "subject", "message", "repos", "license", "unix_time", "old_contents", "new_contents")
PATH_COLUMNS = ("file_path", "old_file", "new_file")
LATEST_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: a commit time past this is not a time in seconds


@dataclass(frozen=True)
class UnreadableRows:
    """Rows of a commit table that cannot be read (a corrupt Parquet row group, a compressed file cut short)."""

    detail: str
    count: int


def _parquet_row_groups(path: str) -> list[tuple[str, int, int, int]]:
    """(file, row group, its first row, its number of rows) of a Parquet commit table whose columns are checked."""
    try:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            names, metadata = set(parquet.schema_arrow.names), parquet.metadata
    except (OSError, pa.ArrowException) as error:
        raise ConfigError(f"{path}: not a readable Parquet file ({error})") from None
    missing = [c for c in TABLE_COLUMNS if c not in names]
    if not ({"file_path"} <= names or {"old_file", "new_file"} <= names):
        missing.append("file_path (or old_file and new_file)")
    if missing:
        raise ConfigError(f"{path}: commit table lacks columns {missing}")
    groups, first = [], 0
    for index in range(metadata.num_row_groups):
        count = metadata.row_group(index).num_rows
        groups.append((path, index, first, count))
        first += count
    return groups


def _parquet_rows(group: tuple[str, int, int, int]) -> Iterator[tuple[str, str, Any]]:
    """(file, 'FILE row N', row) for the rows of one Parquet row group (rows counted from 0), a batch at a time."""
    path, index, first, count = group
    done = 0
    try:
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            columns = [c for c in parquet.schema_arrow.names if c in (*TABLE_COLUMNS, *PATH_COLUMNS)]
            for batch in parquet.iter_batches(batch_size=1000, row_groups=[index], columns=columns):
                for row in batch.to_pylist():
                    yield path, f"{path} row {first + done}", row
                    done += 1
    except (OSError, pa.ArrowException) as error:
        detail = f"row group {index} (rows {first} to {first + count - 1}) cannot be read after {done} of its rows ({error})"
        yield path, f"{path} row {first + done}", UnreadableRows(detail, max(count - done, 1))


def _json_lines(path: str) -> Iterator[tuple[str, str, Any]]:
    """(file, 'FILE:LINE', line) for every line of a JSON-lines table that is not blank, as bytes
    (a line that is not UTF-8 is a counted drop naming it, not a crash of the stage)."""
    number = 0
    try:
        with FileSystems.open(path) as handle:
            for number, line in enumerate(iter(handle.readline, b""), 1):
                if line.strip():
                    yield path, f"{path}:{number}", line.rstrip(b"\r\n")
    except (OSError, EOFError, zlib.error) as error:
        yield path, f"{path}:{number + 1}", UnreadableRows(f"cannot be read past line {number} ({error})", 1)


def read_tables(pipeline: beam.Pipeline, paths: list[str]) -> beam.PCollection:
    """(file, place, raw row) of every commit-table row, where place names the file and the line (JSON
    lines) or row (Parquet); Parquet tables are read a row group at a time, spread over the workers."""
    json_tables = [path for path in paths if not path.lower().endswith(".parquet")]
    row_groups = [group for path in paths if path.lower().endswith(".parquet") for group in _parquet_row_groups(path)]
    reads = []
    if json_tables:
        reads.append(pipeline | "JsonTables" >> beam.Create(json_tables) | "SpreadJsonTables" >> beam.Reshuffle()
                     | "ReadJsonLines" >> beam.FlatMap(_json_lines))
    if row_groups:
        reads.append(pipeline | "ParquetRowGroups" >> beam.Create(row_groups) | "SpreadRowGroups" >> beam.Reshuffle()
                     | "ReadParquetRows" >> beam.FlatMap(_parquet_rows))
    if not reads:
        return pipeline | "NoTableRows" >> beam.Create([])
    return reads | "AllTableRows" >> beam.Flatten()


@dataclass(frozen=True)
class TableCommit:
    """A commit-table row whose values are of the kinds its columns promise."""

    commit: str
    message: str
    subject: str | None
    repos: tuple[str, ...]
    license: str | None
    committed_at: int | None
    old_path: str | None
    new_path: str | None
    before: bytes | None
    after: bytes | None


class MineTableRow(beam.DoFn):
    """One commit-table row checked against the same rules as git commits."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = Rules(self.config, self.registry)

    def process(self, item: tuple[str, str, Any], reverted_messages: Iterable[str]) -> Iterator[Any]:
        """Accounting: every row read is one record in (blank lines are not rows), and one record out or dropped."""
        records_in = beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in")
        if not hasattr(self, "reverts"):
            self.reverts = RevertIndex(list(reverted_messages))
        source, place, raw = item
        if isinstance(raw, UnreadableRows):
            records_in.inc(raw.count)
            rejection = COMMIT_TABLE.reject("unreadable_table", "{place}: {problem}", place=place, problem=raw.detail)
            yield drop(source, rejection, {"source": source, "at": place}, count=raw.count)
            return
        records_in.inc()
        row, rejection = _table_row(raw)
        if row is None:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            yield drop(source, rejection, {"source": source, "at": place, "row": text[:2000]})  # type: ignore[arg-type]
            return
        summary = {"source": source, "at": place, **{k: row.get(k) for k in ("commit", "repos", "subject", *PATH_COLUMNS)}}
        commit, problems = _table_commit(row)
        if commit is None:
            key = row["commit"] if _is_text(row["commit"]) else source
            yield drop(key, COMMIT_TABLE.reject("malformed_row", "{place}: {problems}", place=place, problems=problems), summary)
            return
        try:
            rejection, record = self._check(commit)
        except (TypeError, ValueError) as error:  # a value of a kind _table_commit let through
            rejection = COMMIT_TABLE.reject("malformed_row", "{place}: {kind}: {error}", place=place, kind=type(error).__name__,
                                            error=str(error))
            record = None
        if rejection is None:
            yield to_row(record)
        else:
            yield drop(commit.commit, rejection, summary)

    def _check(self, row: TableCommit) -> tuple[Rejection | None, Commit | None]:
        commit, message = row.commit.lower(), row.message
        rejection = self.rules.messages.check(message)
        if rejection is not None:
            return rejection, None
        if not row.old_path or not row.new_path:
            return COMMIT_TABLE.reject("missing_columns", "no file path"), None
        if row.old_path != row.new_path:
            return ChangeShape.reject("renamed"), None
        if not self.rules.has_language(row.new_path):
            return FileContents.reject("unknown_language"), None
        if not row.repos:
            return COMMIT_TABLE.reject("missing_columns", "no repository"), None
        license_id = row.license.lower() if row.license else None
        refusals = {name: self.rules.repositories.check(name, license_id) for name in row.repos}
        allowed = [name for name in row.repos if refusals[name] is None]
        if not allowed:
            return refusals[row.repos[0]], None
        repo = sorted(allowed, key=str.lower)[0]
        split = split_of(repo, self.config.benchmark_share)
        rejection = self.rules.windows.check(split, row.committed_at)
        if rejection is not None:
            return rejection, None
        if commit in self.reverts:
            return REVERTS.reject("reverted_later"), None
        if RevertIndex().add_message(message):
            return REVERTS.reject("reverts_other_commit"), None
        for data in (row.before, row.after):
            if data is not None and len(data) > self.config.max_file_bytes:
                return FileContents.reject("too_large", "{bytes} bytes", bytes=len(data)), None
        contents = self.rules.contents(row.before, row.after, row.new_path)  # type: ignore[arg-type]
        if isinstance(contents, Rejection):
            return contents, None
        old, new, language = contents
        return None, Commit(
            repo=repo, commit=commit, parent=None, path=row.new_path, language=language, license=license_id,
            committed_at=row.committed_at, subject=row.subject or message.strip().splitlines()[0],
            message=message, before=old, after=new, split=split,  # type: ignore[arg-type]
        )


class _Malformed(ValueError):
    """A table value of the wrong kind; its message names the column and the value."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and is_unicode(value)


def _text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    if value is None or _is_text(value):
        return value
    if isinstance(value, str):
        raise _Malformed(f"{column} {_shown(value)} is not valid Unicode (it holds a lone surrogate)")
    raise _Malformed(f"{column} {_shown(value)} is not text")


def _repos(row: dict[str, Any]) -> tuple[str, ...]:
    """The repositories of a row: comma-separated text, or a list of texts (a Parquet list column, a JSON array)."""
    value = row.get("repos")
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(_is_text(name) for name in names):
        raise _Malformed(f"repos {_shown(value)} is neither comma-separated text nor a list of texts")
    return tuple(name.strip() for name in names if name.strip())


def _contents(row: dict[str, Any], column: str) -> bytes | None:
    value = row.get(column)
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):  # lone surrogates (JSON escapes of undecodable bytes) become a not_utf8 drop
        return value.encode("utf-8", errors="surrogatepass")
    raise _Malformed(f"{column} {_shown(value)} is neither text nor bytes")


def _seconds(row: dict[str, Any]) -> int | None:
    """Unix seconds from an integer (or an integral float, or a Parquet timestamp) between 1970 and 9999."""
    value = row.get("unix_time")
    if value is None:
        return None
    if isinstance(value, datetime):
        seconds: float = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    else:
        raise _Malformed(f"unix_time {_shown(value)} is not a time in seconds (it is not a number)")
    if isinstance(seconds, float) and not (math.isfinite(seconds) and seconds.is_integer()):
        raise _Malformed(f"unix_time {_shown(value)} is not a time in seconds (not a whole number)")
    if not 0 <= seconds <= LATEST_TIME:
        raise _Malformed(f"unix_time {_shown(value)} is not a time in seconds (not between 1970 and 9999)")
    return int(seconds)


def _table_commit(row: dict[str, Any]) -> tuple[TableCommit | None, str]:
    """The row with its values checked, or (None, every problem found, each naming its column and value)."""
    checks: dict[str, Any] = {
        "commit": lambda: _text(row, "commit"),
        "message": lambda: _text(row, "message"),
        "subject": lambda: _text(row, "subject"),
        "repos": lambda: _repos(row),
        "license": lambda: _text(row, "license"),
        "committed_at": lambda: _seconds(row),
        **{column: (lambda column=column: _text(row, column)) for column in PATH_COLUMNS},
        "before": lambda: _contents(row, "old_contents"),
        "after": lambda: _contents(row, "new_contents"),
    }
    values: dict[str, Any] = {}
    problems = []
    for field, check in checks.items():
        try:
            values[field] = check()
        except _Malformed as error:
            problems.append(str(error))
    if problems:
        return None, "; ".join(problems)
    paths = {column: values.pop(column) for column in PATH_COLUMNS}
    return TableCommit(
        **values, old_path=paths["old_file"] or paths["file_path"], new_path=paths["new_file"] or paths["file_path"]
    ), ""


def _table_row(raw: Any) -> tuple[dict[str, Any] | None, Rejection | None]:
    """A JSON line (bytes or text) or Parquet row as a dict that has a commit and a message, or (None, why not)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, COMMIT_TABLE.reject("malformed_row", "not UTF-8 (invalid byte {byte} at offset {offset})",
                                             byte=raw[error.start:error.start + 1].hex(), offset=error.start)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            return None, COMMIT_TABLE.reject("malformed_row", "not JSON ({error})", error=str(error))
    if not isinstance(raw, dict):
        return None, COMMIT_TABLE.reject("malformed_row", "not an object")
    missing = [c for c in ("commit", "message") if not raw.get(c)]
    if missing:
        return None, COMMIT_TABLE.reject("missing_columns", "{missing}", missing=missing)
    return raw, None


def revert_trailers(item: tuple[str, str, Any]) -> Iterator[str]:
    row, _ = _table_row(item[2])
    message = row.get("message") if row is not None else None
    if isinstance(message, str) and "This reverts commit" in message:
        yield message


def pull_request_commits(pipeline: beam.Pipeline, path: str) -> beam.PCollection:
    """(commit id, True) for every commit of the merged-PR table."""
    lowered = path.lower()
    if lowered.endswith(".parquet"):
        rows = pipeline | "ReadPullRequests" >> beam.io.ReadFromParquet(path)
    elif lowered.endswith(".csv"):
        rows = (
            pipeline
            | "ReadPullRequests" >> beam.io.ReadFromText(path, skip_header_lines=1)
            | "ParsePullRequestCsv" >> beam.Map(lambda line, header=_csv_header(path): dict(zip(header, next(csv.reader([line])))))
        )
    else:
        rows = (
            pipeline
            | "ReadPullRequests" >> beam.io.ReadFromText(path, coder=beam.coders.BytesCoder())
            | "ParsePullRequestJson" >> beam.FlatMap(_pull_request_row)
        )
    return rows | "PullRequestKeys" >> beam.FlatMap(
        lambda row: [(str(row.get("commit") or row.get("sha")).lower(), True)] if (row.get("commit") or row.get("sha")) else []
    )


def _pull_request_row(line: bytes) -> Iterator[dict[str, Any]]:
    """A merged-PR JSON line as a dict; a malformed one is counted (it names no commit to keep)."""
    row, _ = _table_row(line)
    if row is None and line.strip():
        beam.metrics.Metrics.counter(metrics_namespace(STAGE), "malformed_pull_request_rows").inc()
    if row is not None:
        yield row


def _csv_header(path: str) -> list[str]:
    with FileSystems.open(path) as handle:
        first = handle.readline().decode("utf-8").strip()
    header = next(csv.reader([first]))
    if "commit" not in header and "sha" not in header:
        raise ConfigError(f"{path}: merged-PR table needs a 'commit' (or 'sha') column; found {header}")
    return header
