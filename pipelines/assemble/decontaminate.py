"""Benchmark decontamination: a pair is dropped when its prompt shares a word n-gram (13 by
default) with any prompt of a configured benchmark file.

Words are lower-cased runs of letters and digits, so punctuation, case and white space do not
hide an overlap. The index holds 8-byte hashes of the benchmark n-grams (a few MB for tens of
thousands of prompts), mapped to the benchmark that has them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from pydantic import BaseModel, ConfigDict, Field

from storage.staging import is_object_store

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class BenchmarkFile(BaseModel):
    """A benchmark whose prompts must not appear in the corpus (CRB-format files have `prompt`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Benchmark name, as the report shows it.")
    path: str = Field(description="Parquet, JSONL or JSON-array file (or a folder of them).")
    column: str = Field("prompt", description="Column holding the prompt text.")


class BenchmarkError(ValueError):
    """A benchmark file cannot be read; the message names it."""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_hashes(text: str, n: int) -> Iterator[tuple[int, str]]:
    """(hash, the n-gram as text) of every word n-gram of `text`."""
    tokens = words(text)
    for start in range(len(tokens) - n + 1):
        gram = " ".join(tokens[start : start + n])
        yield int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "big"), gram


SUFFIXES = (".parquet", ".jsonl", ".json")


def benchmark_files(benchmark: BenchmarkFile) -> list[str]:
    """The benchmark's file, or the Parquet, JSONL and JSON files under its folder (on an object store such as
    gs://, under its prefix), sorted; BenchmarkError when there is none."""
    root = benchmark.path
    if is_object_store(root):
        found = [m.path for r in FileSystems.match([root.rstrip("/") + "**"]) for m in r.metadata_list]  # it, and under it
        paths = [root] if root in found else sorted(p for p in found if p.startswith(root.rstrip("/") + "/")
                                                    and PurePosixPath(p).suffix in SUFFIXES)
    else:
        local = Path(root)
        paths = sorted(str(p) for p in local.rglob("*") if p.suffix in SUFFIXES) if local.is_dir() else [root]
        paths = paths if all(Path(p).is_file() for p in paths) else []
    if not paths:
        raise BenchmarkError(f"benchmark {benchmark.name!r}: {benchmark.path} holds no Parquet, JSONL or JSON file")
    return paths


def benchmark_prompts(benchmark: BenchmarkFile) -> list[str]:
    """Every prompt of a benchmark file (or folder of files), read through Beam's FileSystems."""
    prompts: list[str] = []
    for path in benchmark_files(benchmark):
        suffix = PurePosixPath(path).suffix
        try:
            if suffix == ".parquet":
                with FileSystems.open(path) as handle:
                    table = pq.read_table(handle)
                if benchmark.column not in table.column_names:
                    raise BenchmarkError(f"benchmark {benchmark.name!r}: {path} has no column {benchmark.column!r} "
                                         f"(columns: {', '.join(table.column_names)})")
                prompts.extend(str(v) for v in table.column(benchmark.column).to_pylist() if v is not None)
                continue
            with FileSystems.open(path) as handle:
                text = handle.read().decode("utf-8")
            rows = json.loads(text) if suffix == ".json" and text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()]
        except (OSError, ValueError) as error:
            if isinstance(error, BenchmarkError):
                raise
            raise BenchmarkError(f"benchmark {benchmark.name!r}: cannot read {path} ({error})") from error
        for number, row in enumerate(rows, 1):
            if not isinstance(row, dict) or benchmark.column not in row:
                raise BenchmarkError(f"benchmark {benchmark.name!r}: {path} row {number} has no {benchmark.column!r}")
            if row[benchmark.column] is not None:
                prompts.append(str(row[benchmark.column]))
    return prompts


@dataclass(frozen=True)
class Hit:
    benchmark: str
    ngram: str


class BenchmarkIndex:
    """n-gram hashes of every benchmark prompt -> the first benchmark that has it."""

    def __init__(self, benchmarks: list[BenchmarkFile], n: int):
        self.n = n
        self.owner: dict[int, str] = {}
        self.prompts: dict[str, int] = {}
        for benchmark in benchmarks:
            prompts = benchmark_prompts(benchmark)
            self.prompts[benchmark.name] = len(prompts)
            for prompt in prompts:
                for digest, _ in ngram_hashes(prompt, n):
                    self.owner.setdefault(digest, benchmark.name)

    def find(self, text: str) -> Hit | None:
        """The first shared n-gram of `text` with any benchmark, if any."""
        for digest, gram in ngram_hashes(text, self.n):
            owner = self.owner.get(digest)
            if owner is not None:
                return Hit(owner, gram)
        return None
