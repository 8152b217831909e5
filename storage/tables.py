"""Tables from outside a run: rows of JSONL, JSON or Parquet files (one file, a folder or a glob),
or of a `datasets` folder written by save_to_disk; and the fingerprint of such files.

Nothing here downloads: a path is a local file or folder, or a Beam filesystem path (`gs://`, `s3://`).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

DATA_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".json")
DATASET_FOLDER_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)
METADATA_FILES = frozenset({"dataset_dict.json", "state.json", "dataset_info.json", "dataset_infos.json"})


class TableError(ValueError):
    """A table path cannot be read as rows; the message names the path and what to do."""


def is_dataset_folder(path: str) -> bool:
    """Whether `path` is a local folder written by `datasets` save_to_disk."""
    folder = Path(path)
    return folder.is_dir() and any((folder / marker).is_file() for marker in DATASET_FOLDER_MARKERS)


def load_dataset_folder(path: str, split: str | None) -> Any:
    """A `datasets` folder written by save_to_disk (memory-mapped, read offline); `split` picks one of a DatasetDict."""
    import datasets  # imported lazily: datasets is slow to import

    try:
        loaded = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError) as error:
        raise TableError(f"{path}: not a `datasets` folder written by save_to_disk ({error})") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise TableError(f"{path}: holds splits {sorted(loaded)}; name one with `split`")
        return loaded[split]
    return loaded


def dataset_folder_shards(path: str, split: str | None, rows_per_shard: int = 5_000, max_shards: int = 64) -> int:
    """How many contiguous shards to read a `datasets` folder in (about `rows_per_shard` rows each)."""
    return max(1, min(max_shards, load_dataset_folder(path, split).num_rows // rows_per_shard + 1))


def dataset_folder_rows(index: int, path: str, split: str | None, shards: int) -> Iterator[dict[str, Any]]:
    """The rows of shard `index` of `shards` of a `datasets` folder."""
    yield from load_dataset_folder(path, split).shard(num_shards=shards, index=index, contiguous=True)


def _is_pattern(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _is_data_file(relative: Path) -> bool:
    """A JSONL/JSON/Parquet file that is not metadata (a dataset card's JSON, a hidden download cache)."""
    name = relative.name.lower()
    hidden = any(part.startswith(".") for part in relative.parts)
    return name.endswith(DATA_SUFFIXES) and name not in METADATA_FILES and not hidden


def table_files(path: str, keep: Callable[[str], bool] | None = None) -> list[str]:
    """The data files of `path` (a file, a folder walked for JSONL/JSON/Parquet files, or a glob), sorted.

    `keep` filters them by path. Fails with the path when nothing is there.
    """
    if _is_pattern(path) or "://" in path:
        pattern = path if _is_pattern(path) else path.rstrip("/") + "/**"
        found = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
        files = [f for f in found if f.lower().endswith(DATA_SUFFIXES)] if not _is_pattern(path) else found
    elif Path(path).is_dir():
        root = Path(path)
        files = sorted(str(p) for p in root.rglob("*") if p.is_file() and _is_data_file(p.relative_to(root)))
    elif Path(path).is_file():
        files = [path]
    else:
        raise TableError(f"{path}: no such file or folder")
    if keep is not None:
        files = [f for f in files if keep(f)]
    if not files:
        raise TableError(f"{path}: holds no {'/'.join(DATA_SUFFIXES)} files{' that this source reads' if keep else ''}")
    return files


def fingerprint_files(places: list[str]) -> dict[str, list[int] | None]:
    """Size and modification time of every local file under `places` (files, folders walked, globs).

    A new or changed file changes the fingerprint, so a stage reading them is redone. Remote paths
    (`gs://`, `s3://`) are left out: their objects are named by the user, and rarely rewritten in place.
    """
    paths: list[Path] = []
    for place in places:
        if "://" in place:
            continue
        if _is_pattern(place) and not Path(place).exists():
            paths.extend(Path(p) for p in sorted(glob.glob(place, recursive=True)))
        elif Path(place).is_dir():
            paths.extend(sorted(Path(place).rglob("*")))
        else:
            paths.append(Path(place))
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else None for p in paths}


class ReadTableRows(beam.PTransform):
    """`(file, row)` pairs of a table: a row is a dict, or the raw text of a JSON line that is not an object.

    JSONL and Parquet files are split by Beam's readers; a JSON file (an array, or JSON lines) is read
    whole; a `datasets` folder is read in contiguous shards, and its rows come with the file name "".
    """

    def __init__(self, path: str, split: str | None = None, keep: Callable[[str], bool] | None = None):
        super().__init__()
        self.path = path
        self.split = split
        self.keep = keep

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if is_dataset_folder(self.path):
            shards = dataset_folder_shards(self.path, self.split)
            return (
                pbegin
                | "Shards" >> beam.Create(range(shards))
                | "ReadShards" >> beam.FlatMap(_dataset_shard_rows, self.path, self.split, shards)
            )
        files = table_files(self.path, self.keep)
        kinds: dict[str, list[str]] = {"parquet": [], "json": [], "jsonl": []}
        for file in files:
            name = file.lower()
            kinds["parquet" if name.endswith(".parquet") else "json" if name.endswith(".json") else "jsonl"].append(file)
        parts = []
        if kinds["parquet"]:
            parts.append(pbegin | "ParquetFiles" >> beam.Create(kinds["parquet"])
                         | "ReadParquet" >> beam.io.ReadAllFromParquet(with_filename=True))
        if kinds["jsonl"]:
            parts.append(pbegin | "JsonlFiles" >> beam.Create(kinds["jsonl"])
                         | "ReadJsonl" >> beam.io.ReadAllFromText(with_filename=True, coder=beam.coders.BytesCoder())
                         | "ParseJsonl" >> beam.FlatMap(_jsonl_row))
        if kinds["json"]:
            parts.append(pbegin | "JsonFiles" >> beam.Create(kinds["json"])
                         | "SpreadJson" >> beam.Reshuffle()
                         | "ReadJson" >> beam.FlatMap(_json_file_rows))
        return parts[0] if len(parts) == 1 else tuple(parts) | "AllFiles" >> beam.Flatten()


def _dataset_shard_rows(index: int, path: str, split: str | None, shards: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in dataset_folder_rows(index, path, split, shards):
        yield "", row


def _not_utf8(text: str) -> str | None:
    """Why text decoded with surrogateescape was not valid UTF-8, or None when it was."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = text[error.start].encode("utf-8", errors="surrogateescape").hex()
        return f"not UTF-8 (invalid byte {byte} at character {error.start}): "
    return None


def _json_row(line: str) -> dict[str, Any] | str:
    """A JSON line as a dict, or the line itself when it is not a JSON object (prefixed with why,
    when it is not UTF-8: such a row is dropped, never read with its bytes replaced)."""
    bad = _not_utf8(line)
    if bad:
        return bad + line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    try:
        row = json.loads(line)
    except ValueError:
        return line
    return row if isinstance(row, dict) else line


def _jsonl_row(item: tuple[str, bytes]) -> Iterator[tuple[str, dict[str, Any] | str]]:
    file, line = item
    if line.strip():
        yield file, _json_row(line.decode("utf-8", errors="surrogateescape"))


def _json_file_rows(file: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The rows of a JSON file: the elements of a top-level array, else its JSON lines."""
    with FileSystems.open(file) as handle:
        text = handle.read().decode("utf-8", errors="surrogateescape")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError:
            rows = None
        if isinstance(rows, list):
            for row in rows:
                encoded = json.dumps(row, ensure_ascii=False)
                bad = _not_utf8(encoded)
                if bad:
                    yield file, bad + encoded.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
                else:
                    yield file, row if isinstance(row, dict) else encoded
            return
    for line in text.split("\n"):
        if line.strip():
            yield file, _json_row(line)


__all__ = [
    "DATA_SUFFIXES",
    "ReadTableRows",
    "TableError",
    "dataset_folder_rows",
    "dataset_folder_shards",
    "fingerprint_files",
    "is_dataset_folder",
    "load_dataset_folder",
    "table_files",
]
