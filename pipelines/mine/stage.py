"""The `mine` stage: single-file, modified-in-place commits from git history and commit tables."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
from pydantic import Field, model_validator

from parsers import LanguageRegistry
from pipelines.core import (
    DROPPED,
    Rejection,
    Stage,
    StageConfig,
    StageResult,
    register_stage,
)
from pipelines.mine.filters import (
    DECLARERS,
    ONE_PER_COMMIT,
    REFERENCE_LICENSES,
    REVERTS,
    STAGE,
    drop,
)
from pipelines.mine.git import (
    GitReadError,
    head_commit,
    is_repository,
    open_repository,
    path_missing,
    reference_targets,
)
from pipelines.mine.repositories import MineRepositories, ReadChosen, brief_summary, drop_summary
from pipelines.mine.tables import (
    MineTableRow,
    pull_request_commits,
    read_tables,
    revert_trailers,
)
from pipelines.run.config import ConfigError
from schemas import Commit


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
    walk_chunk_commits: int = Field(
        2_000, ge=1, description="A repository's history is walked, and its kept commits' files read, in runs of this many "
                                 "commits, spread over the workers (the result does not depend on it)."
    )

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
        if path_missing(str(repo_path)):  # else its workers would find it missing too, and fail the stage
            raise ConfigError(f"stages.mine.repo_manifest: {path} row {number}: {str(repo_path)!r} does not exist")
        entry = {"path": str(repo_path)}
        for key in ("name", "license"):
            if row.get(key):
                entry[key] = str(row[key])
        out.append(entry)
    return out



VERDICTS = "verdicts"


class KeepOnePerCommit(beam.DoFn):
    """A git candidate the history rules rejected in its repository is dropped; of the others, one record per
    commit id (forks share commits: the lexicographically first repository wins), and, when a merged-PR table is
    configured, only commits that appear in it.

    A git record here is a claim (repository, path, git dir, run: `WalkChunk`); one not chosen goes back to its run
    as a verdict ((git dir, run), (commit, rejection, whether its drop record is brief)), where `ReadContents` drops
    it with its message and reads the chosen ones. A commit table's row is whole: chosen, it is the main output,
    keyed ("", commit) to travel with the runs; else it is dropped here."""

    def __init__(self, require_pull_request: bool):
        self.require_pull_request = require_pull_request

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        commit, groups = element
        rejected = dict(groups.get("history", ()))  # repository's git dir -> reason
        records = []
        for record in sorted(groups["records"], key=lambda r: (r["repo"].lower(), r["repo"], r["path"])):
            reason = rejected.get(record.get("git_dir"))
            if reason is None:
                records.append(record)
            else:
                yield self._reject(commit, record, REVERTS.reject(reason), brief=False)
        if not records:
            return
        if self.require_pull_request and not groups["pull_requests"]:
            for record in records:
                yield self._reject(commit, record, ONE_PER_COMMIT.reject("not_in_merged_pr", "{repo}", repo=record["repo"]))
            return
        if "git_dir" not in records[0]:
            yield ("", commit), records[0]
        for record in records[1:]:
            rejection = ONE_PER_COMMIT.reject("duplicate_commit", "kept {kept}, dropped {dropped}", kept=records[0]["repo"],
                                              dropped=record["repo"])
            yield self._reject(commit, record, rejection)

    @staticmethod
    def _reject(commit: str, record: dict[str, Any], rejection: Rejection, brief: bool = True) -> Any:
        if "git_dir" in record:
            return beam.pvalue.TaggedOutput(VERDICTS, ((record["git_dir"], record["run"]), (commit, rejection, brief)))
        return drop(commit, rejection, brief_summary(record) if brief else drop_summary(record["repo"], record))


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
            claims, runs, rejected, repository_drops = (
                pipeline
                | "Repositories" >> beam.Create(entries)
                | "MineRepositories" >> MineRepositories(config, self.context.languages)
            )
            mined.append(claims)
            dropped.extend(repository_drops)
        else:
            runs = pipeline | "NoRuns" >> beam.Create([])
            rejected = pipeline | "NoHistory" >> beam.Create([])
        if config.tables:
            table_rows = read_tables(pipeline, config.tables)
            revert_messages = table_rows | "RevertTrailers" >> beam.FlatMap(revert_trailers)
            tables = table_rows | "MineTableRows" >> beam.ParDo(
                MineTableRow(config, self.context.languages), beam.pvalue.AsList(revert_messages)
            ).with_outputs(DROPPED, main="commits")
            mined.append(tables.commits | "TableRowsByCommit" >> beam.Map(lambda r: (r["commit"], r)))
            dropped.append(tables[DROPPED])

        keyed = {
            "records": mined | "AllCommits" >> beam.Flatten(),
            "pull_requests": (
                pull_request_commits(pipeline, config.merged_pull_requests)
                if config.merged_pull_requests
                else pipeline | "NoPullRequests" >> beam.Create([])
            ),
            "history": rejected,
        }
        unique = (
            keyed
            | "JoinPullRequests" >> beam.CoGroupByKey()
            | "OnePerCommit" >> beam.ParDo(KeepOnePerCommit(config.merged_pull_requests is not None)).with_outputs(
                DROPPED, VERDICTS, main="rows")
        )
        chosen = {
            "runs": runs,
            "verdicts": unique[VERDICTS],
            "rows": unique.rows,
        }
        commits, read_drops = chosen | "ReadContents" >> ReadChosen(config, self.context.languages)
        return StageResult(commits, [*dropped, unique[DROPPED], read_drops])
