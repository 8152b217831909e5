"""The judge answer cache: every raw answer under (model, template version, pair id, order, sample,
seed), in SQLite, so that a stopped or repeated run never asks for an answer it already has.

The file lives in the run directory (local runs; WAL mode lets several worker processes read and
write it). Raw texts are kept, so votes can be re-parsed with a newer parser without new calls.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    sample_order TEXT NOT NULL,
    sample INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class AnswerKey:
    model: str
    template: str
    pair_id: str
    order: str
    sample: int
    seed: int

    @property
    def key(self) -> str:
        identity = [self.model, self.template, self.pair_id, self.order, self.sample, self.seed]
        return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()[:32]


class AnswerCacheError(OSError):
    """The answer cache file cannot be written (a full disk, most often); the message names the file and says that
    a rerun resumes from the answers stored so far."""


class AnswerCache:
    """Raw judge answers by AnswerKey."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Beam may call a DoFn's setup and its process methods from different threads (one at a time):
        # the connection is not bound to the thread that opened it.
        self._connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            self._use_wal()
            self._connection.execute(SCHEMA)
        except sqlite3.Error as error:
            self._connection.close()
            raise self._cannot_write(error) from error

    def _cannot_write(self, error: sqlite3.Error) -> AnswerCacheError:
        full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        why = "the disk is full" if full else f"SQLite: {error}"
        return AnswerCacheError(f"{self.path}: the answer cache could not be written ({why}); the answers stored before "
                                "are kept: free space (or fix the cause) and rerun the same command, it resumes from them")

    def _use_wal(self) -> None:
        """Switch the file to write-ahead logging once (the mode is kept in the file). The switch needs the
        file to itself, and the busy timeout does not cover it, so a reader (another worker, a progress bar)
        that has it open makes us wait and try again."""
        for attempt in range(100):
            try:
                if self._connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    def get_many_by_key(self, keys: Iterable[str]) -> dict[str, str]:
        """Answers by their key strings (as votes record them)."""
        wanted = list(keys)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._connection.execute(f"SELECT key, text FROM answers WHERE key IN ({marks})", chunk).fetchall())
        return found

    def get_many(self, keys: Iterable[AnswerKey]) -> dict[str, str]:
        """Answers already stored, by key string; missing ones are simply absent."""
        return self.get_many_by_key(k.key for k in keys)

    def put_many(self, answers: Iterable[tuple[AnswerKey, str]]) -> int:
        """Store answers (an existing key keeps its first answer); returns how many were new."""
        rows = [(k.key, k.model, k.template, k.pair_id, k.order, k.sample, k.seed, text, time.time()) for k, text in answers]
        before = len(self)
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._connection.execute("COMMIT")
        except BaseException as error:
            if self._connection.in_transaction:  # SQLite has rolled back already after some errors (a full disk)
                self._connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise self._cannot_write(error) from error
            raise
        return len(self) - before

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._connection.close()


def count_answers(path: str | Path, models: Iterable[str]) -> int:
    """Answers stored for these models, read without writing (0 when there is no cache yet): for progress bars."""
    if not Path(path).is_file():
        return 0
    models = list(models)
    connection = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=5)
    try:
        marks = ",".join("?" * len(models))
        return int(connection.execute(f"SELECT COUNT(*) FROM answers WHERE model IN ({marks})", models).fetchone()[0])
    except sqlite3.Error:
        return 0  # busy or not created yet: no news this time
    finally:
        connection.close()
