"""The mining rules shared by the git and commit-table sources: each declares its drop reasons and gives a
`Rejection` (or None to keep); the steps that are not one rule (reading git, reading tables, one record
per commit) declare theirs as `DropReasons`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import cached_property
from importlib.resources import files
from typing import TYPE_CHECKING, Any, ClassVar

import apache_beam as beam
import yaml

from parsers import LanguageRegistry
from pipelines.core import Declared, DropReasons, Filter, Rejection, route

if TYPE_CHECKING:
    from pipelines.mine.stage import MineConfig

STAGE = "mine"

REVERT_TRAILER = re.compile(r"This reverts commit ([0-9a-fA-F]{7,40})")
_SPDX_LINE = re.compile(rb"SPDX-License-Identifier:\s*([A-Za-z0-9.+-]+)")
_SPACE = re.compile(r"\s+")


def _package_text(name: str) -> str:
    return (files("pipelines.mine") / name).read_text(encoding="utf-8")


def default_blocklist() -> frozenset[str]:
    """The reference's low-signal commit messages (lower case, stripped)."""
    lines = _package_text("commit-message-blocklist.txt").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def _license_table() -> dict[str, Any]:
    return yaml.safe_load(_package_text("licenses.yaml"))


REFERENCE_LICENSES: tuple[str, ...] = tuple(_license_table()["default_allowlist"])


class LicenseDetector:
    """SPDX id of a licence file from its `SPDX-License-Identifier` line or its distinctive phrases."""

    def __init__(self) -> None:
        self.rules = [(rule["id"], [p.lower() for p in rule["all"]]) for rule in _license_table()["detect"]]

    def detect(self, text: bytes) -> str | None:
        spdx = _SPDX_LINE.search(text[:4096])
        if spdx:
            return spdx.group(1).decode("ascii").lower()
        folded = _SPACE.sub(" ", text.decode("utf-8", errors="replace").lower())
        for spdx_id, phrases in self.rules:
            if all(phrase in folded for phrase in phrases):
                return spdx_id
        return None


GIT = DropReasons("git", {
    "unreadable_repository": "the repository cannot be opened (or its path or name is not UTF-8)",
    "broken_ref": "a reference (branch, tag, HEAD) names no readable commit",
    "corrupt_object": "a commit, tree or blob cannot be read (truncated or missing objects)",
})

COMMIT_TABLE = DropReasons("commit_table", {
    "unreadable_table": "rows of a commit table cannot be read (a corrupt Parquet row group, a file cut short)",
    "malformed_row": "a table row that is not a JSON object, or a value of the wrong kind",
    "missing_columns": "a table row without a commit, a message, a file path or a repository",
})

ONE_PER_COMMIT = DropReasons("one_per_commit", {
    "not_in_merged_pr": "not in the merged-pull-request table, when `merged_pull_requests` is set (joined on the commit id)",
    "duplicate_commit": "one record per commit id (forks share commits; the first repository by name wins)",
})

REVERTS = DropReasons("reverts", {
    "reverted_later": "a later commit reverts it (`This reverts commit <sha>`)",
    "reverts_other_commit": "it reverts another commit",
    "inverse_change": "an exact inverse change (same path, blobs swapped) undoes it, or it undoes one",
})


class ChangeShape(Filter):
    """A non-merge commit with a parent whose diff changes exactly one path, modified in place."""

    name = "change_shape"
    reasons: ClassVar[dict[str, str]] = {
        "merge_commit": "a merge commit (more than one parent)",
        "root_commit": "a commit without a parent",
        "multi_file": "the diff against the parent changes more than one path",
        "no_change": "the diff changes nothing (or both versions are the same bytes)",
        "added": "the one path is added",
        "deleted": "the one path is deleted",
        "renamed": "the one path is renamed (or a table row's old and new paths differ)",
        "copied": "the one path is copied",
        "mode_change": "only the file mode changes",
        "type_change": "the path is or becomes a symlink or a submodule",
    }
    PARENTS: ClassVar[dict[str, str]] = {"merge": "merge_commit", "root": "root_commit"}  # shapes decided by the parents alone

    def check(self, change: Any) -> Rejection | None:
        if change.shape == "modified":
            return None
        return self.reject(self.PARENTS.get(change.shape, change.shape))


@dataclass(frozen=True)
class MessageRules(Filter):
    """Message filters of the reference query, applied to the stripped message."""

    name = "message"
    reasons: ClassVar[dict[str, str]] = {
        "message_too_short": "message (stripped) not longer than `min_message_chars`",
        "message_too_long": "message (stripped) not shorter than `max_message_chars`",
        "blocklisted_message": "message is in the packaged blocklist of low-signal messages",
        "merge_message": "message starts with `merge`",
        "ci_push_message": "message has `pi push` or `push pi`",
    }

    min_chars: int = 10
    max_chars: int = 15_000
    blocklist: frozenset[str] = frozenset()

    def check(self, message: str) -> Rejection | None:
        text = message.strip()
        lowered = text.lower()
        if len(text) <= self.min_chars:
            return self.reject("message_too_short")
        if len(text) >= self.max_chars:
            return self.reject("message_too_long")
        if lowered in self.blocklist:
            return self.reject("blocklisted_message")
        if lowered.startswith("merge"):
            return self.reject("merge_message")
        if "pi push" in lowered or "push pi" in lowered:
            return self.reject("ci_push_message")
        return None


class RepositoryRules(Declared):
    """The repository is allowed (`repo_allowlist`, case-insensitive, when set) and so is its licence
    (from the manifest, else detected from the licence file as an SPDX id; `licenses`)."""

    name = "repository"
    reasons: ClassVar[dict[str, str]] = {
        "repo_not_allowlisted": "repository not in `repo_allowlist`, when that is set",
        "license_unknown": "no licence in the manifest and none detected from the licence file",
        "license_not_allowed": "the licence (SPDX id) is not in `licenses`",
    }

    def __init__(self, licenses: list[str], allowlist: list[str] | None):
        self.licenses = {name.lower() for name in licenses}
        self.allowlist = None if allowlist is None else {name.lower() for name in allowlist}

    def check(self, name: str, license_id: str | None) -> Rejection | None:
        if self.allowlist is not None and name.lower() not in self.allowlist:
            return self.reject("repo_not_allowlisted")
        if license_id is None:
            return self.reject("license_unknown")
        if license_id.lower() not in self.licenses:
            return self.reject("license_not_allowed")
        return None


class FileContents(Declared):
    """Both versions of the file: a registered language (by extension; `.h` by content), non-empty UTF-8
    text without NUL bytes, not binary, at most `max_file_bytes`, and not the same bytes."""

    name = "file"
    reasons: ClassVar[dict[str, str]] = {
        "unknown_language": "the path's extension (or, for `.h`, the content) is no registered language",
        "not_utf8": "the path or a version of the file is not UTF-8",
        "empty_file": "a version of the file is empty (or only white space)",
        "binary": "a version of the file is binary (a NUL byte, or git's binary heuristic)",
        "too_large": "a version of the file is larger than `max_file_bytes`",
        "no_change": "both versions are the same bytes",
    }


def split_of(repo: str, benchmark_share: float) -> str:
    """The split of a repository, from a stable hash of its lower-cased name: all its commits go there."""
    digest = hashlib.blake2b(repo.lower().encode("utf-8"), digest_size=8).digest()
    return "benchmark" if int.from_bytes(digest, "big") / 2**64 < benchmark_share else "train"


def _timestamp(day: date | None) -> int | None:
    return None if day is None else int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class TimeWindows(Declared):
    """Train commits before `train_end`; benchmark commits in [`bench_start`, `bench_end`) (UTC days)."""

    name = "time_window"
    reasons: ClassVar[dict[str, str]] = {
        "no_commit_time": "no commit time, while time windows are set",
        "outside_train_window": "a train commit committed on or after `train_end`",
        "outside_benchmark_window": "a benchmark commit committed outside [`bench_start`, `bench_end`)",
    }

    train_end: date | None = None
    bench_start: date | None = None
    bench_end: date | None = None

    @cached_property
    def bounds(self) -> tuple[int | None, int | None, int | None]:
        return _timestamp(self.train_end), _timestamp(self.bench_start), _timestamp(self.bench_end)

    @property
    def active(self) -> bool:
        return any(self.bounds)

    def check(self, split: str, committed_at: int | None) -> Rejection | None:
        if not self.active:
            return None
        if committed_at is None:
            return self.reject("no_commit_time")
        train_end, bench_start, bench_end = self.bounds
        if split == "train":
            return self.reject("outside_train_window") if train_end is not None and committed_at >= train_end else None
        if bench_start is not None and committed_at < bench_start:
            return self.reject("outside_benchmark_window")
        if bench_end is not None and committed_at >= bench_end:
            return self.reject("outside_benchmark_window")
        return None


def decode_source(data: bytes | None) -> tuple[str | None, Rejection | None]:
    """(text, None) for non-empty valid UTF-8 without NUL bytes, else (None, why not)."""
    if data is None or not data.strip():
        return None, FileContents.reject("empty_file")
    if b"\0" in data:
        return None, FileContents.reject("binary", "NUL byte")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, FileContents.reject("not_utf8", "invalid byte {byte} at offset {offset}",
                                         byte=data[error.start:error.start + 1].hex(), offset=error.start)


class RevertIndex:
    """Commit ids (full or abbreviated) named by `This reverts commit <sha>` trailers."""

    def __init__(self, messages: list[str] | None = None):
        self._by_prefix: dict[str, set[str]] = {}
        for message in messages or ():
            self.add_message(message)

    def add_message(self, message: str) -> bool:
        """Index the ids a message reverts; True when it reverts something."""
        found = REVERT_TRAILER.findall(message)
        self.add_ids(found)
        return bool(found)

    def add_ids(self, ids: list[str]) -> None:
        """Index ids (full or abbreviated, as `REVERT_TRAILER` finds them) that some commit reverts."""
        for sha in ids:
            sha = sha.lower()
            self._by_prefix.setdefault(sha[:7], set()).add(sha)

    def __contains__(self, commit: object) -> bool:
        if not isinstance(commit, str):
            return False
        return any(commit.startswith(sha) for sha in self._by_prefix.get(commit[:7], ()))

    def __len__(self) -> int:
        return sum(map(len, self._by_prefix.values()))


# Every rule and step of the stage, in the order its README table lists them; `MINE_REASONS` is their union.
DECLARERS = (GIT, ChangeShape, MessageRules, FileContents, RepositoryRules, TimeWindows, REVERTS, COMMIT_TABLE, ONE_PER_COMMIT)
MINE_REASONS = DropReasons.union("mine", *DECLARERS)


class Rules:
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


def drop(key: str, rejection: Rejection, record: Any, count: int = 1) -> beam.pvalue.TaggedOutput:
    return route(STAGE, key, rejection, record, MINE_REASONS, count)


def is_unicode(text: str) -> bool:
    """Whether a string can be written as UTF-8 (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """The text with undecodable bytes shown as escapes, so that a record naming it can be written."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
