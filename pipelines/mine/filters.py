"""The mining rules shared by the git and commit-table sources; each returns a drop reason or None."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import cached_property
from importlib.resources import files
from typing import Any

import yaml

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


@dataclass(frozen=True)
class MessageRules:
    """Message filters of the reference query, applied to the stripped message."""

    min_chars: int = 10
    max_chars: int = 15_000
    blocklist: frozenset[str] = frozenset()

    def check(self, message: str) -> str | None:
        text = message.strip()
        lowered = text.lower()
        if len(text) <= self.min_chars:
            return "message_too_short"
        if len(text) >= self.max_chars:
            return "message_too_long"
        if lowered in self.blocklist:
            return "blocklisted_message"
        if lowered.startswith("merge"):
            return "merge_message"
        if "pi push" in lowered or "push pi" in lowered:
            return "ci_push_message"
        return None


def split_of(repo: str, benchmark_share: float) -> str:
    """The split of a repository, from a stable hash of its lower-cased name: all its commits go there."""
    digest = hashlib.blake2b(repo.lower().encode("utf-8"), digest_size=8).digest()
    return "benchmark" if int.from_bytes(digest, "big") / 2**64 < benchmark_share else "train"


def _timestamp(day: date | None) -> int | None:
    return None if day is None else int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class TimeWindows:
    """Train commits before `train_end`; benchmark commits in [`bench_start`, `bench_end`) (UTC days)."""

    train_end: date | None = None
    bench_start: date | None = None
    bench_end: date | None = None

    @cached_property
    def bounds(self) -> tuple[int | None, int | None, int | None]:
        return _timestamp(self.train_end), _timestamp(self.bench_start), _timestamp(self.bench_end)

    @property
    def active(self) -> bool:
        return any(self.bounds)

    def check(self, split: str, committed_at: int | None) -> str | None:
        if not self.active:
            return None
        if committed_at is None:
            return "no_commit_time"
        train_end, bench_start, bench_end = self.bounds
        if split == "train":
            return "outside_train_window" if train_end is not None and committed_at >= train_end else None
        if bench_start is not None and committed_at < bench_start:
            return "outside_benchmark_window"
        if bench_end is not None and committed_at >= bench_end:
            return "outside_benchmark_window"
        return None


def decode_source(data: bytes | None) -> tuple[str | None, str | None]:
    """(text, None) for non-empty valid UTF-8 without NUL bytes, else (None, reason with detail)."""
    if data is None or not data.strip():
        return None, "empty_file"
    if b"\0" in data:
        return None, "binary: NUL byte"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, f"not_utf8: invalid byte {data[error.start:error.start + 1].hex()} at offset {error.start}"


class RevertIndex:
    """Commit ids (full or abbreviated) named by `This reverts commit <sha>` trailers."""

    def __init__(self, messages: list[str] | None = None):
        self._by_prefix: dict[str, set[str]] = {}
        for message in messages or ():
            self.add_message(message)

    def add_message(self, message: str) -> bool:
        """Index the ids a message reverts; True when it reverts something."""
        found = REVERT_TRAILER.findall(message)
        for sha in found:
            sha = sha.lower()
            self._by_prefix.setdefault(sha[:7], set()).add(sha)
        return bool(found)

    def __contains__(self, commit: object) -> bool:
        if not isinstance(commit, str):
            return False
        return any(commit.startswith(sha) for sha in self._by_prefix.get(commit[:7], ()))

    def __len__(self) -> int:
        return sum(map(len, self._by_prefix.values()))
