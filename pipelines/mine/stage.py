"""The `mine` stage: single-file, modified-in-place commits from git history and commit tables."""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from pydantic import Field, model_validator

from parsers import LanguageRegistry
from pipelines.core import (
    DROPPED,
    Rejection,
    Stage,
    StageConfig,
    StageResult,
    metrics_namespace,
    register_stage,
    route,
)
from pipelines.mine.filters import (
    COMMIT_TABLE,
    DECLARERS,
    GIT,
    MINE_REASONS,
    ONE_PER_COMMIT,
    REFERENCE_LICENSES,
    REVERTS,
    ChangeShape,
    FileContents,
    LicenseDetector,
    MessageRules,
    RepositoryRules,
    RevertIndex,
    TimeWindows,
    decode_source,
    default_blocklist,
    split_of,
)
from pipelines.mine.git import (
    BrokenRefError,
    Change,
    GitReadError,
    head_commit,
    is_repository,
    license_text,
    open_repository,
    read_blob,
    reference_targets,
    truncated_history_objects,
    walk_changes,
)
from pipelines.run.config import ConfigError
from schemas import Commit, to_row

STAGE = "mine"
TABLE_COLUMNS = ("commit", "subject", "message", "repos", "license", "unix_time", "old_contents", "new_contents")
PATH_COLUMNS = ("file_path", "old_file", "new_file")
LATEST_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: a commit time past this is not a time in seconds


class MineConfig(StageConfig):
    """Where commits come from and which ones are kept."""

    repos: list[str] = Field(default_factory=list, description="Git repositories (bare or with a work tree), or folders of them.")
    repo_manifest: str | None = Field(None, description="CSV or JSONL of repositories: path, and optional name, license, stars.")
    tables: list[str] = Field(default_factory=list, description="Commit tables (JSONL or Parquet) mined elsewhere.")
    refs: Literal["head", "all"] = Field("head", description="History to walk: 'head' (HEAD's ancestry) or 'all' (every branch and tag).")
    licenses: list[str] = Field(list(REFERENCE_LICENSES), description="Allowed SPDX licence ids (case-insensitive).")
    repo_allowlist: list[str] | None = Field(None, description="If set, only these repositories (names, case-insensitive).")
    min_message_chars: int = Field(10, description="Messages must be longer than this (stripped).")
    max_message_chars: int = Field(15_000, description="Messages must be shorter than this (stripped).")
    max_file_bytes: int = Field(1_000_000, gt=0, description="Largest file version kept.")
    merged_pull_requests: str | None = Field(
        None, description="Table (CSV, JSONL or Parquet) with a `commit` column of merged-PR commits; if set, only those are kept."
    )
    train_end: date | None = Field(None, description="Train commits must be committed before this day (UTC).")
    bench_start: date | None = Field(None, description="Benchmark commits must be committed on or after this day.")
    bench_end: date | None = Field(None, description="Benchmark commits must be committed before this day.")
    benchmark_share: float = Field(0.0, ge=0.0, le=1.0, description="Share of repositories assigned to the benchmark split.")

    @model_validator(mode="after")
    def _ordered_bounds(self) -> MineConfig:
        if self.min_message_chars >= self.max_message_chars - 1:
            raise ValueError(f"min_message_chars ({self.min_message_chars}) leaves no message length below max_message_chars "
                             f"({self.max_message_chars}); every commit would be dropped")
        if self.bench_start is not None and self.bench_end is not None and self.bench_start >= self.bench_end:
            raise ValueError(f"bench_start ({self.bench_start}) is not before bench_end ({self.bench_end}); "
                             "no commit would be in the benchmark window")
        return self


def _repository_entries(config: MineConfig) -> list[dict[str, Any]]:
    """Every repository to mine: explicit paths, folders of repositories, and manifest rows."""
    entries: list[dict[str, Any]] = []
    for text in config.repos:
        path = Path(text).expanduser()
        if not path.exists():
            raise ConfigError(f"stages.mine.repos: {text!r} does not exist")
        if is_repository(path):
            entries.append({"path": str(path.resolve())})
            continue
        if not path.is_dir():
            raise ConfigError(f"stages.mine.repos: {text!r} is neither a git repository nor a folder of them")
        try:
            children = sorted(child for child in path.iterdir() if child.is_dir())
        except OSError as error:
            raise ConfigError(f"stages.mine.repos: the folder {text!r} cannot be listed ({error})") from None
        # A member that cannot even be looked at is kept: mining it drops it as unreadable, naming it.
        found = [child for child in children if _looks_like_repository(child)]
        if not found:
            raise ConfigError(f"stages.mine.repos: {text!r} is neither a git repository nor a folder of them")
        entries.extend({"path": str(child.resolve())} for child in found)
    for table in (*config.tables, *([config.merged_pull_requests] if config.merged_pull_requests else [])):
        if "://" not in table and not Path(table).is_file():
            raise ConfigError(f"stages.mine: {table!r} is not a file")
    by_path = {entry["path"]: entry for entry in entries}
    if config.repo_manifest:  # a manifest row says more (name, licence) than a bare path
        by_path.update((entry["path"], entry) for entry in _manifest_rows(Path(config.repo_manifest)))
    for entry in by_path.values():
        entry.setdefault("name", Path(entry["path"]).name.removesuffix(".git"))
    return sorted(by_path.values(), key=lambda e: (e["name"].lower(), e["path"]))


def _sources(config: MineConfig) -> list[dict[str, Any]]:
    """The repositories to mine; fails when the config names nothing to mine, or a path that is not there."""
    entries = _repository_entries(config)
    if not entries and not config.tables:
        raise ConfigError("stages.mine: nothing to mine; give `repos`, `repo_manifest` or `tables`")
    return entries


def _looks_like_repository(path: Path) -> bool:
    try:
        return is_repository(path)
    except OSError:
        return True


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"stages.mine.repo_manifest: {path} is not a file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as error:
                    raise ConfigError(f"{path}:{number}: not a JSON object ({error})") from None
    out = []
    for number, row in enumerate(rows, 1):
        if not row.get("path"):
            raise ConfigError(f"{path}: row {number} has no 'path'")
        repo_path = Path(row["path"]).expanduser()
        if not repo_path.is_absolute():
            repo_path = (path.parent / repo_path).resolve()
        entry = {"path": str(repo_path)}
        for key in ("name", "license"):
            if row.get(key):
                entry[key] = str(row[key])
        out.append(entry)
    return out


class _Rules:
    """The configured rules, built once per worker."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry
        self.messages = MessageRules(config.min_message_chars, config.max_message_chars, default_blocklist())
        self.windows = TimeWindows(config.train_end, config.bench_start, config.bench_end)
        self.repositories = RepositoryRules(config.licenses, config.repo_allowlist)
        self.shape = ChangeShape()

    def has_language(self, path: str) -> bool:
        return bool(self.registry.candidates_for_path(path))

    def contents(self, before: bytes, after: bytes, path: str) -> tuple[str, str, str] | Rejection:
        """(before text, after text, language), or why the file is dropped."""
        if before == after:
            return FileContents.reject("no_change")
        old, rejection = decode_source(before)
        if rejection is not None:
            return rejection
        new, rejection = decode_source(after)
        if rejection is not None:
            return rejection
        spec = self.registry.for_path(path, after)
        if spec is None:
            return FileContents.reject("unknown_language")
        return old, new, spec.name  # type: ignore[return-value]


def _drop(key: str, rejection: Rejection, record: Any, count: int = 1) -> beam.pvalue.TaggedOutput:
    return route(STAGE, key, rejection, record, MINE_REASONS, count)


class MineRepository(beam.DoFn):
    """All kept commits of one repository, and a drop record for every other commit."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = _Rules(self.config, self.registry)
        self.detector = LicenseDetector()

    def process(self, entry: dict[str, Any]) -> Iterator[Any]:
        """Accounting: every commit walked counts as one record in, and so does every broken reference
        and a repository that cannot be read or walked at all; each of them is one record out or dropped."""
        records_in = beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in")
        name, path = entry["name"], entry["path"]
        if not (_is_unicode(name) and _is_unicode(path)):  # a record naming it could not be written
            records_in.inc()
            rejection = GIT.reject("unreadable_repository", "{path}: the repository's path or name is not UTF-8; rename it to mine it",
                                   path=_printable(path))
            yield _drop(_printable(path), rejection, {"path": _printable(path)})
            return
        where = {"repo": name, "path": path}
        try:
            repo = open_repository(path)
        except GitReadError as error:
            records_in.inc()
            yield _drop(path, GIT.reject("unreadable_repository", "{error}", error=str(error)), entry)
            return
        truncated = truncated_history_objects(repo)  # before libgit2 reads any: it would hang on them
        if truncated:
            records_in.inc()
            rejection = GIT.reject("corrupt_object", "{count} truncated loose objects ({first}); `git fsck` lists them; none of its commits mined",
                                   count=len(truncated), first=", ".join(truncated[:3]))
            yield _drop(name, rejection, where)
            return

        changes: list[Change] = []
        for item in walk_changes(repo, self.config.refs):
            records_in.inc()
            if isinstance(item, BrokenRefError):
                yield _drop(name, GIT.reject("broken_ref", "{path}: {error}", path=path, error=str(item)), where)
            elif isinstance(item, GitReadError):
                yield _drop(name, GIT.reject("corrupt_object", "{error}", error=str(item)), where)
            else:
                changes.append(item)
        if not changes:
            return

        license_id = entry.get("license")
        if license_id is None:
            try:
                found = license_text(repo)
            except GitReadError as error:  # the licence cannot be known, so none of the commits can be kept
                reason = "broken_ref" if isinstance(error, BrokenRefError) else "corrupt_object"
                rejection = GIT.reject(reason, "{path}: {error}; none of its {commits} commits mined", path=path, error=str(error),
                                       commits=len(changes))
                yield _drop(name, rejection, where, count=len(changes))
                return
            license_id = self.detector.detect(found[1]) if found else None
        license_id = license_id.lower() if license_id else None

        refused = self.rules.repositories.check(name, license_id)
        if refused is not None:
            rejection = RepositoryRules.reject(refused.reason, "{commits} commits; licence {license}", commits=len(changes),
                                               license=license_id or "not detected")
            yield _drop(name, rejection, where, count=len(changes))
            return

        reverts = RevertIndex()
        reverting = {change.commit for change in changes if reverts.add_message(change.message)}
        inverse = _inverse_pairs(changes)
        split = split_of(name, self.config.benchmark_share)
        for change in changes:
            rejection = self._rejection(change, split, reverts, reverting, inverse)
            if rejection is None:
                rejection, record = self._record(repo, change, name, license_id, split)
                if rejection is None:
                    yield to_row(record)
                    continue
            summary = {"repo": name, "commit": change.commit, "shape": change.shape, "path": change.path, "message": change.message[:500]}
            yield _drop(change.commit, rejection, summary)

    def _rejection(self, change: Change, split: str, reverts: RevertIndex, reverting: set[str], inverse: set[str]) -> Rejection | None:
        """The first rule the commit breaks, in the order the rules are cheapest (no blob is read)."""
        if change.shape in ChangeShape.PARENTS:
            return self.rules.shape.check(change)
        rejection = self.rules.messages.check(change.message) or self.rules.shape.check(change)
        if rejection is not None:
            return rejection
        assert change.path is not None
        if not _is_unicode(change.path):
            return FileContents.reject("not_utf8", "file path {path!r} is not UTF-8", path=change.path)
        if not self.rules.has_language(change.path):
            return FileContents.reject("unknown_language")
        rejection = self.rules.windows.check(split, change.committed_at)
        if rejection is not None:
            return rejection
        if change.commit in reverts:
            return REVERTS.reject("reverted_later")
        if change.commit in reverting:
            return REVERTS.reject("reverts_other_commit")
        if change.commit in inverse:
            return REVERTS.reject("inverse_change")
        return None

    def _record(self, repo: Any, change: Change, name: str, license_id: str | None, split: str) -> tuple[Rejection | None, Commit | None]:
        before, rejection = read_blob(repo, change.old_blob, self.config.max_file_bytes)  # type: ignore[arg-type]
        if rejection is not None:
            return rejection, None
        after, rejection = read_blob(repo, change.new_blob, self.config.max_file_bytes)  # type: ignore[arg-type]
        if rejection is not None:
            return rejection, None
        contents = self.rules.contents(before, after, change.path)  # type: ignore[arg-type]
        if isinstance(contents, Rejection):
            return contents, None
        old, new, language = contents
        subject = change.message.strip().splitlines()[0] if change.message.strip() else ""
        return None, Commit(
            repo=name, commit=change.commit, parent=change.parents[0], path=change.path, language=language,  # type: ignore[arg-type]
            license=license_id, committed_at=change.committed_at, subject=subject, message=change.message,
            before=old, after=new, split=split,  # type: ignore[arg-type]
        )


def _inverse_pairs(changes: list[Change]) -> set[str]:
    """Commits undone later by an exact inverse change (same path, blobs swapped), and those undoing them."""
    seen: dict[tuple[str, str, str], str] = {}
    pairs: set[str] = set()
    for change in changes:  # oldest first
        if change.shape != "modified":
            continue
        undone = seen.get((change.path, change.new_blob, change.old_blob))  # type: ignore[arg-type]
        if undone is not None:
            pairs.update((undone, change.commit))
        seen[(change.path, change.old_blob, change.new_blob)] = change.commit  # type: ignore[index]
    return pairs


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


def _read_tables(pipeline: beam.Pipeline, paths: list[str]) -> beam.PCollection:
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
        self.rules = _Rules(self.config, self.registry)

    def process(self, item: tuple[str, str, Any], reverted_messages: Iterable[str]) -> Iterator[Any]:
        """Accounting: every row read is one record in (blank lines are not rows), and one record out or dropped."""
        records_in = beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in")
        if not hasattr(self, "reverts"):
            self.reverts = RevertIndex(list(reverted_messages))
        source, place, raw = item
        if isinstance(raw, UnreadableRows):
            records_in.inc(raw.count)
            rejection = COMMIT_TABLE.reject("unreadable_table", "{place}: {problem}", place=place, problem=raw.detail)
            yield _drop(source, rejection, {"source": source, "at": place}, count=raw.count)
            return
        records_in.inc()
        row, rejection = _table_row(raw)
        if row is None:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            yield _drop(source, rejection, {"source": source, "at": place, "row": text[:2000]})  # type: ignore[arg-type]
            return
        summary = {"source": source, "at": place, **{k: row.get(k) for k in ("commit", "repos", "subject", *PATH_COLUMNS)}}
        commit, problems = _table_commit(row)
        if commit is None:
            key = row["commit"] if _is_text(row["commit"]) else source
            yield _drop(key, COMMIT_TABLE.reject("malformed_row", "{place}: {problems}", place=place, problems=problems), summary)
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
            yield _drop(commit.commit, rejection, summary)

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


def _is_unicode(text: str) -> bool:
    """Whether a string can be written as UTF-8 (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and _is_unicode(value)


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


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


def _revert_messages(item: tuple[str, str, Any]) -> Iterator[str]:
    row, _ = _table_row(item[2])
    message = row.get("message") if row is not None else None
    if isinstance(message, str) and "This reverts commit" in message:
        yield message


class KeepOnePerCommit(beam.DoFn):
    """One record per commit id (forks share commits: the lexicographically first repository wins),
    and, when a merged-PR table is configured, only commits that appear in it."""

    def __init__(self, require_pull_request: bool):
        self.require_pull_request = require_pull_request

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        commit, groups = element
        records = sorted(groups["records"], key=lambda r: (r["repo"].lower(), r["repo"], r["path"]))
        if not records:
            return
        if self.require_pull_request and not groups["pull_requests"]:
            for record in records:
                yield _drop(commit, ONE_PER_COMMIT.reject("not_in_merged_pr", "{repo}", repo=record["repo"]), _brief(record))
            return
        yield records[0]
        for record in records[1:]:
            rejection = ONE_PER_COMMIT.reject("duplicate_commit", "kept {kept}, dropped {dropped}", kept=records[0]["repo"],
                                              dropped=record["repo"])
            yield _drop(commit, rejection, _brief(record))


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("repo", "commit", "path", "subject")}


def _pull_request_commits(pipeline: beam.Pipeline, path: str) -> beam.PCollection:
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


def _history_state(path: str, refs: str) -> Any:
    """What a repository's mined history starts from (HEAD's commit; every reference for refs 'all'),
    or why it cannot be read: part of the config hash, so it never raises for a broken repository."""
    try:
        repo = open_repository(path)
        return head_commit(repo) if refs == "head" else reference_targets(repo)
    except GitReadError as error:
        return f"unreadable: {error}"


@register_stage
class Mine(Stage[MineConfig]):
    """Single-file commits from git repositories and commit tables, as `Commit` records."""

    name = STAGE
    Config = MineConfig
    output_type = Commit
    key_field = "commit"
    drops = DECLARERS

    @classmethod
    def check(cls, config: MineConfig, registry: LanguageRegistry) -> None:
        """The repositories, tables and manifest named exist (a cheap look: no history is read)."""
        _sources(config)

    @classmethod
    def fingerprint(cls, config: MineConfig) -> dict[str, Any]:
        heads = {entry["path"]: _history_state(entry["path"], config.refs) for entry in _repository_entries(config)}
        files = [p for p in (*config.tables, config.repo_manifest, config.merged_pull_requests) if p]
        stats = {}
        for path in files:
            stat = Path(path).stat() if Path(path).exists() else None
            stats[path] = [stat.st_size, stat.st_mtime_ns] if stat else None
        return {"heads": heads, "files": stats}

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        entries = _sources(config)
        mined = []
        dropped = []
        if entries:
            repos = (
                pipeline
                | "Repositories" >> beam.Create(entries)
                | "SpreadRepositories" >> beam.Reshuffle()
                | "MineRepositories" >> beam.ParDo(MineRepository(config, self.context.languages)).with_outputs(DROPPED, main="commits")
            )
            mined.append(repos.commits)
            dropped.append(repos[DROPPED])
        if config.tables:
            table_rows = _read_tables(pipeline, config.tables)
            revert_messages = table_rows | "RevertTrailers" >> beam.FlatMap(_revert_messages)
            tables = table_rows | "MineTableRows" >> beam.ParDo(
                MineTableRow(config, self.context.languages), beam.pvalue.AsList(revert_messages)
            ).with_outputs(DROPPED, main="commits")
            mined.append(tables.commits)
            dropped.append(tables[DROPPED])

        keyed = {
            "records": mined | "AllCommits" >> beam.Flatten() | "ByCommit" >> beam.Map(lambda r: (r["commit"], r)),
            "pull_requests": (
                _pull_request_commits(pipeline, config.merged_pull_requests)
                if config.merged_pull_requests
                else pipeline | "NoPullRequests" >> beam.Create([])
            ),
        }
        unique = (
            keyed
            | "JoinPullRequests" >> beam.CoGroupByKey()
            | "OnePerCommit" >> beam.ParDo(KeepOnePerCommit(config.merged_pull_requests is not None)).with_outputs(DROPPED, main="commits")
        )
        return StageResult(unique.commits, [*dropped, unique[DROPPED]])
