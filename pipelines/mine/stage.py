"""The `mine` stage: single-file, modified-in-place commits from git history and commit tables."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from pydantic import Field, field_validator

from parsers import LanguageRegistry
from pipelines.config import ConfigError
from pipelines.mine.rules import (
    REFERENCE_LICENSES,
    LicenseDetector,
    MessageRules,
    RevertIndex,
    TimeWindows,
    decode_source,
    default_blocklist,
    split_of,
)
from pipelines.stage import DROPPED, Stage, StageConfig, StageResult, drop_record, metrics_namespace, register_stage
from schemas import Commit, to_row
from storage.git import (
    Change,
    GitReadError,
    head_commit,
    is_repository,
    license_text,
    open_repository,
    read_blob,
    truncated_history_objects,
    walk_changes,
)

STAGE = "mine"
TABLE_COLUMNS = ("commit", "subject", "message", "repos", "license", "unix_time", "old_contents", "new_contents")


class MineConfig(StageConfig):
    """Where commits come from and which ones are kept."""

    repos: list[str] = Field(default_factory=list, description="Git repositories (bare or with a work tree), or folders of them.")
    repo_manifest: str | None = Field(None, description="CSV or JSONL of repositories: path, and optional name, license, stars.")
    tables: list[str] = Field(default_factory=list, description="Commit tables (JSONL or Parquet) mined elsewhere.")
    refs: str = Field("head", description="History to walk: 'head' (HEAD's ancestry) or 'all' (every branch and tag).")
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

    @field_validator("refs")
    @classmethod
    def _refs(cls, value: str) -> str:
        if value not in ("head", "all"):
            raise ValueError("must be 'head' or 'all'")
        return value


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
        found = sorted(child for child in path.iterdir() if child.is_dir() and is_repository(child))
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
        self.licenses = {name.lower() for name in config.licenses}
        self.allowlist = None if config.repo_allowlist is None else {name.lower() for name in config.repo_allowlist}

    def repository(self, name: str, license_id: str | None) -> str | None:
        if self.allowlist is not None and name.lower() not in self.allowlist:
            return "repo_not_allowlisted"
        if license_id is None:
            return "license_unknown"
        if license_id.lower() not in self.licenses:
            return "license_not_allowed"
        return None

    def has_language(self, path: str) -> bool:
        return bool(self.registry.candidates_for_path(path))

    def contents(self, before: bytes, after: bytes, path: str) -> tuple[str, str, str] | tuple[None, None, str]:
        """(before text, after text, language) or (None, None, reason)."""
        if before == after:
            return None, None, "no_change"
        old, reason = decode_source(before)
        if reason:
            return None, None, reason
        new, reason = decode_source(after)
        if reason:
            return None, None, reason
        spec = self.registry.for_path(path, after)
        if spec is None:
            return None, None, "unknown_language"
        return old, new, spec.name  # type: ignore[return-value]


def _split_reason(reason: str) -> tuple[str, str]:
    name, _, detail = reason.partition(": ")
    return name, detail


class MineRepository(beam.DoFn):
    """All kept commits of one repository, and a drop record for every other commit."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = _Rules(self.config, self.registry)
        self.detector = LicenseDetector()

    def process(self, entry: dict[str, Any]) -> Iterator[Any]:
        records_in = beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in")
        name, path = entry["name"], entry["path"]
        try:
            repo = open_repository(path)
        except GitReadError as error:
            yield drop_record(STAGE, path, "unreadable_repository", str(error), entry)
            return
        truncated = truncated_history_objects(repo)  # before libgit2 reads any: it would hang on them
        if truncated:
            detail = f"{len(truncated)} truncated loose objects ({', '.join(truncated[:3])}); `git fsck` lists them; none of its commits mined"
            yield drop_record(STAGE, name, "corrupt_object", detail, {"repo": name, "path": path})
            return
        license_id = entry.get("license")
        if license_id is None:
            found = license_text(repo)
            license_id = self.detector.detect(found[1]) if found else None
        license_id = license_id.lower() if license_id else None

        changes: list[Change] = []
        for item in walk_changes(repo, self.config.refs):
            records_in.inc()
            if isinstance(item, GitReadError):
                yield drop_record(STAGE, f"{name}", "corrupt_object", str(item), {"repo": name, "path": path})
                continue
            changes.append(item)

        repo_reason = self.rules.repository(name, license_id)
        if repo_reason:
            detail = f"{len(changes)} commits; licence {license_id or 'not detected'}"
            yield drop_record(STAGE, name, repo_reason, detail, {"repo": name, "path": path}, count=len(changes))
            return

        reverts = RevertIndex()
        reverting = {change.commit for change in changes if reverts.add_message(change.message)}
        inverse = _inverse_pairs(changes)
        split = split_of(name, self.config.benchmark_share)
        for change in changes:
            reason = self._reason(change, split, reverts, reverting, inverse)
            if reason is None:
                reason, record = self._record(repo, change, name, license_id, split)
                if reason is None:
                    yield to_row(record)
                    continue
            reason, detail = _split_reason(reason)
            summary = {"repo": name, "commit": change.commit, "shape": change.shape, "path": change.path, "message": change.message[:500]}
            yield drop_record(STAGE, change.commit, reason, detail, summary)

    def _reason(self, change: Change, split: str, reverts: RevertIndex, reverting: set[str], inverse: set[str]) -> str | None:
        if change.shape == "merge":
            return "merge_commit"
        if change.shape == "root":
            return "root_commit"
        reason = self.rules.messages.check(change.message)
        if reason:
            return reason
        if change.shape != "modified":
            return {"multi_file": "multi_file", "no_change": "no_change"}.get(change.shape, change.shape)
        assert change.path is not None
        if not self.rules.has_language(change.path):
            return "unknown_language"
        reason = self.rules.windows.check(split, change.committed_at)
        if reason:
            return reason
        if change.commit in reverts:
            return "reverted_later"
        if change.commit in reverting:
            return "reverts_other_commit"
        if change.commit in inverse:
            return "inverse_change"
        return None

    def _record(self, repo: Any, change: Change, name: str, license_id: str | None, split: str) -> tuple[str | None, Commit | None]:
        before, reason = read_blob(repo, change.old_blob, self.config.max_file_bytes)  # type: ignore[arg-type]
        if reason:
            return reason, None
        after, reason = read_blob(repo, change.new_blob, self.config.max_file_bytes)  # type: ignore[arg-type]
        if reason:
            return reason, None
        old, new, language = self.rules.contents(before, after, change.path)  # type: ignore[arg-type]
        if old is None:
            return language, None
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


def _table_rows(path: str) -> beam.PTransform:
    """Rows of one commit table: Parquet through Beam's Parquet IO, JSON lines through its text IO."""
    if path.lower().endswith(".parquet"):
        with FileSystems.open(path) as handle:
            names = set(pq.read_schema(handle).names)
        missing = [c for c in TABLE_COLUMNS if c not in names]
        if not ({"file_path"} <= names or {"old_file", "new_file"} <= names):
            missing.append("file_path (or old_file and new_file)")
        if missing:
            raise ConfigError(f"{path}: commit table lacks columns {missing}")
        return beam.io.ReadFromParquet(path) | beam.Map(lambda row, source=path: (source, row))
    # Lines as bytes: one that is not UTF-8 is a counted drop naming the file, not a crash of the stage.
    return beam.io.ReadFromText(path, coder=beam.coders.BytesCoder()) | beam.Map(lambda line, source=path: (source, line))


class MineTableRow(beam.DoFn):
    """One commit-table row checked against the same rules as git commits."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = _Rules(self.config, self.registry)

    def process(self, item: tuple[str, Any], reverted_messages: Iterable[str]) -> Iterator[Any]:
        beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in").inc()
        if not hasattr(self, "reverts"):
            self.reverts = RevertIndex(list(reverted_messages))
        source, raw = item
        row, reason = _table_row(raw)
        if row is None:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            yield drop_record(STAGE, source, *_split_reason(reason), {"source": source, "row": text[:2000]})  # type: ignore[arg-type]
            return
        try:
            reason, record = self._check(row)
        except (TypeError, ValueError) as error:  # a value of the wrong kind (a unix_time that is no number)
            reason, record = f"malformed_row: {type(error).__name__}: {error}", None
        if reason is None:
            yield to_row(record)
        else:
            key = str(row.get("commit") or source)
            summary = {k: row.get(k) for k in ("commit", "repos", "subject", "file_path", "old_file", "new_file")}
            yield drop_record(STAGE, key, *_split_reason(reason), {"source": source, **summary})

    def _check(self, row: dict[str, Any]) -> tuple[str | None, Commit | None]:
        commit = str(row["commit"]).lower()
        message = str(row.get("message") or row.get("subject") or "")
        reason = self.rules.messages.check(message)
        if reason:
            return reason, None
        old_path = row.get("old_file") or row.get("file_path")
        new_path = row.get("new_file") or row.get("file_path")
        if not old_path or not new_path:
            return "missing_columns: no file path", None
        if old_path != new_path:
            return "renamed", None
        if not self.rules.has_language(new_path):
            return "unknown_language", None
        repos = [r.strip() for r in str(row.get("repos") or "").split(",") if r.strip()]
        if not repos:
            return "missing_columns: no repository", None
        license_id = str(row["license"]).lower() if row.get("license") else None
        reasons = {name: self.rules.repository(name, license_id) for name in repos}
        allowed = [name for name in repos if reasons[name] is None]
        if not allowed:
            return reasons[repos[0]], None
        repo = sorted(allowed, key=str.lower)[0]
        split = split_of(repo, self.config.benchmark_share)
        committed_at = int(row["unix_time"]) if row.get("unix_time") is not None else None
        reason = self.rules.windows.check(split, committed_at)
        if reason:
            return reason, None
        if commit in self.reverts:
            return "reverted_later", None
        if RevertIndex().add_message(message):
            return "reverts_other_commit", None
        before, after = _bytes(row.get("old_contents")), _bytes(row.get("new_contents"))
        for data in (before, after):
            if data is not None and len(data) > self.config.max_file_bytes:
                return f"too_large: {len(data)} bytes", None
        old, new, language = self.rules.contents(before, after, new_path)  # type: ignore[arg-type]
        if old is None:
            return language, None
        return None, Commit(
            repo=repo, commit=commit, parent=None, path=new_path, language=language, license=license_id,
            committed_at=committed_at, subject=str(row.get("subject") or message.strip().splitlines()[0]),
            message=message, before=old, after=new, split=split,  # type: ignore[arg-type]
        )


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", errors="surrogatepass")


def _table_row(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, f"malformed_row: not UTF-8 (invalid byte {raw[error.start:error.start + 1].hex()} at offset {error.start})"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            return None, f"malformed_row: not JSON ({error})"
    if not isinstance(raw, dict):
        return None, "malformed_row: not an object"
    missing = [c for c in ("commit", "message") if not raw.get(c)]
    if missing:
        return None, f"missing_columns: {missing}"
    return raw, None


def _revert_messages(item: tuple[str, Any]) -> Iterator[str]:
    row, _ = _table_row(item[1])
    if row is not None and "This reverts commit" in str(row.get("message")):
        yield str(row["message"])


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
                yield drop_record(STAGE, commit, "not_in_merged_pr", record["repo"], _brief(record))
            return
        yield records[0]
        for record in records[1:]:
            yield drop_record(STAGE, commit, "duplicate_commit", f"kept {records[0]['repo']}, dropped {record['repo']}", _brief(record))


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


@register_stage
class Mine(Stage):
    """Single-file commits from git repositories and commit tables, as `Commit` records."""

    name = STAGE
    Config = MineConfig
    output_type = Commit
    key_field = "commit"

    @classmethod
    def check(cls, config: MineConfig, registry: LanguageRegistry) -> None:  # type: ignore[override]
        """The repositories, tables and manifest named exist (a cheap look: no history is read)."""
        _sources(config)

    @classmethod
    def fingerprint(cls, config: MineConfig) -> dict[str, Any]:  # type: ignore[override]
        heads = {}
        for entry in _repository_entries(config):
            try:
                heads[entry["path"]] = head_commit(open_repository(entry["path"]))
            except GitReadError:
                heads[entry["path"]] = None
        files = [p for p in (*config.tables, config.repo_manifest, config.merged_pull_requests) if p]
        stats = {}
        for path in files:
            stat = Path(path).stat() if Path(path).exists() else None
            stats[path] = [stat.st_size, stat.st_mtime_ns] if stat else None
        return {"heads": heads, "files": stats}

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config: MineConfig = self.config  # type: ignore[assignment]
        entries = _sources(config)
        mined = []
        dropped = []
        if entries:
            repos = (
                pipeline
                | "Repositories" >> beam.Create(entries)
                | "SpreadRepositories" >> beam.Reshuffle()
                | "MineRepositories" >> beam.ParDo(MineRepository(config, self.context.registry)).with_outputs(DROPPED, main="commits")
            )
            mined.append(repos.commits)
            dropped.append(repos[DROPPED])
        if config.tables:
            rows = [pipeline | f"ReadTable{i}" >> _table_rows(path) for i, path in enumerate(config.tables)]
            table_rows = rows | "AllTableRows" >> beam.Flatten()
            revert_messages = table_rows | "RevertTrailers" >> beam.FlatMap(_revert_messages)
            tables = table_rows | "MineTableRows" >> beam.ParDo(
                MineTableRow(config, self.context.registry), beam.pvalue.AsList(revert_messages)
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
