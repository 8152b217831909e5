"""Parquet datasets of records: deterministic shards, schema checks, Beam reads (the sharded writer: storage.shards).

All paths go through Beam's FileSystems, so a run directory may be local, `gs://` or `s3://`.
A shard's name depends only on the shard count, and its rows only on their keys, so two runs
of the same config can be compared file by file.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas import arrow_schema, class_label_names, schema_of

PART_GLOB = "part-*.parquet"
ROW_GROUP_ROWS = 1_000


class SchemaMismatch(ValueError):
    """A Parquet file does not hold the record type a stage expects."""


class InputNotVisible(FileNotFoundError):
    """An input the run found when the stage started (an upstream shard, a repository) is not there for the worker
    that reads it: the workers do not see the files the driver sees. An error, never fewer rows."""


def not_visible(what: str, where: str) -> InputNotVisible:
    """The error for `what` missing on this worker; `where` says what every worker must see."""
    return InputNotVisible(f"{what} is not there for this worker ({socket.gethostname()}), though the run found it when the stage "
                           f"started: every worker must see {where} at the same path (a file system all of them mount, "
                           "or an object store such as gs://)")


def require_visible(path: str) -> str:
    """`path`, or InputNotVisible naming it when this worker cannot see it."""
    if not FileSystems.exists(path):
        raise not_visible(path, "the run directory")
    return path


def shard_name(shard: int, num_shards: int) -> str:
    return f"part-{shard:05d}-of-{num_shards:05d}.parquet"


def shard_of(key: str, num_shards: int) -> int:
    """Stable shard of a record key (the same on every worker and every run)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def write_rows(path: str, rows: list[dict[str, Any]], record_type: type, schema: pa.Schema | None = None) -> int:
    """Write rows of `record_type` to one Parquet file at `path`; returns the row count. `schema`: the record type's
    schema with run-dependent metadata (e.g. `arrow_schema(CorpusRow, {"language": ...})`); default the static one."""
    table = rows_table(path, rows, record_type, schema)
    _write_table(path, table)
    return table.num_rows


def rows_table(path: str, rows: list[dict[str, Any]], record_type: type, schema: pa.Schema | None = None) -> pa.Table:
    """Rows of `record_type` as an Arrow table, or SchemaMismatch naming `path` (where they were going) and the
    first row that does not fit."""
    schema = _schema_for(record_type, schema)
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as error:
        bad = _first_bad_row(rows, schema)
        raise SchemaMismatch(f"{path}: rows do not fit {record_type.SCHEMA} v{record_type.VERSION}: {error}{bad}") from None


@contextlib.contextmanager
def created(path: str) -> Iterator[Any]:
    """`FileSystems.create(path)`, with an OSError naming the file (a full disk says only "No space left on device")."""
    try:
        with FileSystems.create(path) as handle:
            yield handle
    except OSError as error:
        raise OSError(error.errno, f"{path}: cannot be written ({error.strerror or error}); free space and rerun "
                                   "(finished stages are kept, this one is redone)") from error


def _schema_for(record_type: type, schema: pa.Schema | None) -> pa.Schema:
    """`schema` (which must have the record type's columns, name and version), or the record type's static schema."""
    static = arrow_schema(record_type)
    if schema is None:
        return static
    if not schema.equals(static, check_metadata=False) or schema_of(schema.metadata) != schema_of(static.metadata):
        raise SchemaMismatch(f"the schema given for {record_type.SCHEMA} v{record_type.VERSION} differs from it in more "
                             "than its metadata")
    return schema


def class_labels(path: str, column: str) -> list[str] | None:
    """The label names of a ClassLabel column as the Parquet file at `path` records them (its `huggingface` metadata),
    or None when it records none: a corpus's `language` ints mean these names, not necessarily the published ones."""
    with FileSystems.open(path) as handle:
        return class_label_names(pq.read_schema(handle).metadata, column)


DICTIONARY_MAX_MEAN_BYTES = 256  # a column whose values are longer than this on average (file contents) is not dictionary-encoded


def _dictionary_columns(table: pa.Table) -> list[str] | bool:
    """Columns worth a dictionary (True: all): short repeated values (names, languages), not file contents, which
    dictionary encoding only slows down, writing and reading, for no smaller file."""
    rows = max(table.num_rows, 1)
    short = [name for name in table.column_names if table.column(name).nbytes / rows <= DICTIONARY_MAX_MEAN_BYTES]
    return True if len(short) == table.num_columns else short


def _write_table(path: str, table: pa.Table) -> None:
    with created(path) as handle:
        if table.num_rows == 0:
            # No row group at all (pq.write_table would write one of 0 rows, which `datasets` cannot read: "BatchSize
            # must be greater than 0"), so an empty shard still loads with `datasets.load_dataset("parquet", ...)`.
            pq.ParquetWriter(handle, table.schema, compression="zstd").close()
        else:
            # Small row groups let readers stream a shard instead of loading it whole.
            pq.write_table(table, handle, compression="zstd", row_group_size=ROW_GROUP_ROWS, use_dictionary=_dictionary_columns(table))


def _first_bad_row(rows: list[dict[str, Any]], schema: pa.Schema) -> str:
    for index, row in enumerate(rows):
        try:
            pa.Table.from_pylist([row], schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
            return f" (first bad row: #{index}, keys {sorted(row)[:12]})"
    return ""


def check_schema(path: str, record_type: type) -> None:
    """Fail with the file's name when it does not hold `record_type` at its current version."""
    try:
        with FileSystems.open(path) as handle:
            found = schema_of(pq.read_schema(handle).metadata)
    except (pa.ArrowInvalid, OSError) as error:  # a truncated shard says only "Parquet magic bytes not found"
        raise SchemaMismatch(f"{path}: not a readable Parquet file ({error}); rerun the stage that wrote it (--force)") from None
    wanted = (record_type.SCHEMA, record_type.VERSION)
    if found != wanted:
        raise SchemaMismatch(f"{path}: holds {found or 'no codepref schema'}, expected {wanted[0]} v{wanted[1]}")


def list_parts(directory: str) -> list[str]:
    """The shard files of a dataset directory, sorted by name."""
    pattern = FileSystems.join(directory, PART_GLOB)
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def read_table(paths: list[str], columns: list[str] | None = None) -> pa.Table:
    """The Parquet files at `paths` (at least one; `columns` only, when given) as one Arrow table, read through
    Beam's FileSystems (a local folder or an object store alike)."""
    tables = []
    for path in paths:
        with FileSystems.open(path) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables)


def read_rows(directory: str, record_type: type | None = None, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of every shard in a dataset directory, in shard order, a thousand rows at a time (for tests and tools);
    `columns`: only these, as ReadRecords reads them."""
    for path in list_parts(directory):
        if record_type is not None:
            check_schema(path, record_type)
        with FileSystems.open(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=1000, columns=columns):
                yield from batch.to_pylist()


SPILL_DIR = "_spill"


class ReadRecords(beam.PTransform):
    """Every row of a dataset directory written by WriteShardedParquet (schema checked up front).

    `files`: exactly these shards (the list a manifest gives, checked by the run), instead of what a glob
    finds in `directory` at the time the pipeline is built.
    `columns`: only these columns (a nested field as `parent.child`: the row's `parent` holds that field alone),
    for reads that need a few small columns of large records; default every column.
    `batched`: one Arrow table per row group instead of one dict per row, for steps that work on many rows at once
    (no per-row element, and rows made in one `to_pylist` call where they are needed).
    """

    def __init__(self, directory: str, record_type: type, files: list[str] | None = None, columns: list[str] | None = None,
                 batched: bool = False):
        super().__init__()
        self.directory = directory
        self.record_type = record_type
        self.files = files
        self.columns = None if columns is None else _checked_columns(record_type, columns)
        self.batched = batched

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        parts = list_parts(self.directory) if self.files is None else list(self.files)
        for path in parts:
            check_schema(path, self.record_type)
        if not parts:
            return pbegin | "NoInput" >> beam.Create([])
        if self.files is None:
            glob = FileSystems.join(self.directory, PART_GLOB)
            read = beam.io.ReadFromParquetBatched(glob, columns=self.columns) if self.batched else beam.io.ReadFromParquet(glob, columns=self.columns)
            return pbegin | "ReadParquet" >> read
        # ReadAllFromParquet skips a file it cannot find: a worker that does not see the run directory must fail instead.
        read_all = beam.io.ReadAllFromParquetBatched if self.batched else beam.io.ReadAllFromParquet
        return (pbegin | "Shards" >> beam.Create(parts) | "Visible" >> beam.Map(require_visible)
                | "ReadParquet" >> read_all(columns=self.columns))


def _checked_columns(record_type: type, columns: list[str]) -> list[str]:
    """`columns`, or ValueError naming those `record_type` does not have (a typo would otherwise read nothing)."""
    schema = arrow_schema(record_type)
    unknown = []
    for column in columns:
        field: pa.DataType | pa.Field | None = None
        for depth, name in enumerate(column.split(".")):
            parent = schema if depth == 0 else field.type  # type: ignore[union-attr]
            if not isinstance(parent, pa.Schema | pa.StructType) or parent.get_field_index(name) < 0:
                unknown.append(column)
                break
            field = parent.field(name)
    if unknown or not columns:
        raise ValueError(f"{record_type.SCHEMA} v{record_type.VERSION} has no column {', '.join(unknown) or '(none named)'}; "
                         f"its columns: {', '.join(schema.names)}")
    return list(columns)
