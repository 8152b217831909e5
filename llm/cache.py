"""The answer cache of the LLM tasks: every raw answer under (model, template version, pair id, order,
sample, seed), so that a stopped or repeated run never asks for an answer it already has.

The answers are files in a folder of the run directory (`RUN_DIR/<stage>_answers/`), written through
Beam's FileSystems, so that every worker reaches them on an object store as on a local disk. Each
worker writes its own files (JSON lines under a unique name, written under a temporary name and then
renamed: a file is whole or absent), one per flush: a batch's answers, or sooner when a batch runs
long. Opening the cache reads every answer file into a local SQLite index (a temporary file, derived,
never the only copy). Raw texts are kept, so answers can be re-parsed without new calls. A run
directory of an older codepref keeps its answers in `<stage>_answers.sqlite`: they are read too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

ANSWER_FILES = "*.jsonl"
LEGACY_SUFFIX = ".sqlite"  # the cache of codepref before answer files: `RUN_DIR/<stage>_answers.sqlite`
FLUSH_SECONDS = 30.0  # a batch's answers are written at its end, or at the latest this long after the first one

INDEX = "CREATE TABLE answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL)"
FIELDS = ("key", "model", "template", "pair_id", "order", "sample", "seed", "text", "created")

logger = logging.getLogger(__name__)


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
    """An answer file cannot be written (a full disk, a refused bucket); the message names the folder and says
    that a rerun resumes from the answers stored so far."""


def answer_files(directory: str) -> list[str]:
    """The complete answer files in `directory`, in name order (none when it does not exist yet)."""
    (match,) = FileSystems.match([FileSystems.join(directory, ANSWER_FILES)])
    return sorted(metadata.path for metadata in match.metadata_list)


def read_answer_file(path: str) -> Iterator[dict[str, Any]]:
    """The answers of one answer file, as dicts of FIELDS."""
    with FileSystems.open(path) as handle:
        for number, line in enumerate(handle.read().decode("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:  # files are renamed whole, so only a damaged one gets here
                    logger.warning("%s:%d: not an answer, skipped (%s)", path, number, error)


def legacy_answers(directory: str) -> Iterator[dict[str, Any]]:
    """The answers of the SQLite cache an older codepref kept beside the folder (`<folder>.sqlite`, local runs only)."""
    path = Path(directory.rstrip("/") + LEGACY_SUFFIX)
    if "://" in directory or not path.is_file():
        return
    connection = sqlite3.connect(path, timeout=60)
    try:
        rows = connection.execute("SELECT key, model, template, pair_id, sample_order, sample, seed, text, created FROM answers")
        for row in rows:
            yield dict(zip(FIELDS, row))
    finally:
        connection.close()


def read_answers(directory: str) -> Iterator[dict[str, Any]]:
    """Every stored answer of a cache folder (the older SQLite cache's first, then the files in name order), as
    dicts of FIELDS. A key answered twice (a retried bundle on another worker) appears twice; the first in this
    order counts, for every reader alike."""
    yield from legacy_answers(directory)
    for path in answer_files(directory):
        yield from read_answer_file(path)


class AnswerCache:
    """Raw answers by AnswerKey: those of every answer file in `directory`, and this one's own."""

    def __init__(self, directory: str, flush_seconds: float = FLUSH_SECONDS):
        self.directory = directory.rstrip("/")
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()  # Beam may call setup and process from different threads (one at a time)
        self._pending: list[dict[str, Any]] = []
        self._pending_since = 0.0
        self._index_dir = tempfile.mkdtemp(prefix="codepref-answers-")
        self._index = sqlite3.connect(Path(self._index_dir) / "index.sqlite", isolation_level=None, check_same_thread=False)
        self._index.execute(INDEX)
        self._index.execute("BEGIN")
        self._index.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)",
                                ((a["key"], a["model"], a["text"]) for a in read_answers(self.directory)))
        self._index.execute("COMMIT")

    def get_many_by_key(self, keys: Iterable[str]) -> dict[str, str]:
        """Answers by their key strings (as votes record them)."""
        wanted = list(keys)
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._index.execute(f"SELECT key, text FROM answers WHERE key IN ({marks})", chunk).fetchall())
        return found

    def get_many(self, keys: Iterable[AnswerKey]) -> dict[str, str]:
        """Answers already stored, by key string; missing ones are simply absent."""
        return self.get_many_by_key(k.key for k in keys)

    def put_many(self, answers: Iterable[tuple[AnswerKey, str]]) -> int:
        """Store answers (an existing key keeps its first answer): in the index at once, in an answer file at
        the next flush (at the latest `flush_seconds` after the first answer not written yet). Returns how
        many were new."""
        now = time.time()
        with self._lock:
            new = 0
            for key, text in answers:
                if self._index.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)", (key.key, key.model, text)).rowcount:
                    new += 1
                    if not self._pending:
                        self._pending_since = time.monotonic()
                    self._pending.append(dict(zip(FIELDS, (key.key, key.model, key.template, key.pair_id, key.order,
                                                           key.sample, key.seed, text, now))))
            if self._pending and time.monotonic() - self._pending_since >= self.flush_seconds:
                self._flush()
        return new

    def flush(self) -> None:
        """Write the answers not written yet as one answer file (nothing when there are none)."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"{uuid.uuid4().hex}.jsonl"
        temporary, final = FileSystems.join(self.directory, f".{name}.tmp"), FileSystems.join(self.directory, name)
        text = "".join(json.dumps(answer, ensure_ascii=False) + "\n" for answer in self._pending)
        try:
            with FileSystems.create(temporary) as handle:
                handle.write(text.encode("utf-8"))
            FileSystems.rename([temporary], [final])
        except Exception as error:  # every file system has its own errors; all mean the same here
            with contextlib.suppress(Exception):  # never written, or already gone
                FileSystems.delete([temporary])  # a half-written file is no answer file, but it takes room
            raise AnswerCacheError(f"{self.directory}: the answer cache could not be written ({error}); the answers stored "
                                   "before are kept: free space (or fix the cause) and rerun the same command, it resumes "
                                   "from them") from error
        self._pending = []

    def __len__(self) -> int:
        with self._lock:
            return self._index.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        """Write what is pending, then drop the local index."""
        try:
            self.flush()
        finally:
            self._index.close()
            shutil.rmtree(self._index_dir, ignore_errors=True)


class AnswerCounter:
    """Answers stored for some models, for progress bars: each call reads only the answer files new since the
    last (a file is never changed once written); a folder not reachable yet is no news."""

    def __init__(self, directory: str, models: Iterable[str]):
        self.directory, self.models = directory, set(models)
        self._read: set[str] = set()
        self._keys: set[str] = set()
        self._legacy_read = False

    def __call__(self) -> int:
        try:
            if not self._legacy_read:
                self._count(legacy_answers(self.directory))
                self._legacy_read = True
            for path in answer_files(self.directory):
                if path not in self._read:
                    self._count(read_answer_file(path))
                    self._read.add(path)
        except (OSError, sqlite3.Error, ValueError) as error:  # BeamIOError is an OSError
            logger.debug("%s: answers not counted this time (%s)", self.directory, error)
        return len(self._keys)

    def _count(self, answers: Iterable[dict[str, Any]]) -> None:
        self._keys.update(answer["key"] for answer in answers if answer["model"] in self.models)


def count_answers(directory: str, models: Iterable[str]) -> int:
    """Answers stored for these models (0 when there are none yet)."""
    return AnswerCounter(directory, models)()
