"""Writing a dataset as deterministic shards in bounded memory: workers spill sorted runs, one step per shard merges them.

Memory is bounded by bytes, not rows (a row of mined file contents can be a megabyte): a worker spills a shard's
buffer at `spill_rows` rows or `spill_bytes` bytes, and the largest buffer whenever all of them together pass
`BUFFERED_SHARDS` times that; each spill is sorted. The merge reads only the sort columns of a shard's spills
to fix the order, then streams the rows through in slices, never holding the shard whole: it holds one row group
of SPILL_GROUP_BYTES from each of at most MAX_OPEN_SPILLS spills (measured on 39 spills of mined files: 83 MB
with 1 MB groups, 44 MB with 256 kB ones) and one output row group of GROUP_BYTES.
"""

from __future__ import annotations

import pickle
import uuid
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from storage.parquet import (
    ROW_GROUP_ROWS,
    SPILL_DIR,
    _dictionary_columns,
    _schema_for,
    created,
    rows_table,
    shard_name,
    shard_of,
)

SPILL_BYTES = 8 << 20  # a shard's buffer is spilled at this many bytes of text
BUFFERED_SHARDS = 4  # all buffers of a worker together stay under this many times SPILL_BYTES
MERGE_SLICE_ROWS = 64  # rows taken from the spills at a time
SPILL_GROUP_BYTES = 256 << 10  # a spill's row groups hold about this many bytes
GROUP_BYTES = 8 << 20  # a row group of the merged shard is cut at about ROW_GROUP_ROWS rows or this many bytes
MAX_OPEN_SPILLS = 64  # more spills than this are first merged in groups of this many


TIEBREAK = "__content"  # a spill's extra column: a digest of the row, which orders rows with equal keys


def _sort_columns(key_field: str) -> list[str]:
    """Key first, then the row's digest: rows with equal keys are ordered by content, never by arrival, and the
    merge sorts on two small columns, not on the contents."""
    return [key_field, TIEBREAK]


def _weigh(row: dict[str, Any]) -> tuple[bytes, int]:
    """(a digest of the row's contents, about how many bytes it holds), from one serialisation of it (pickle's,
    which depends only on the values and the field order every producer of a record type keeps)."""
    data = pickle.dumps(tuple(row.values()), protocol=5)
    return zlib.crc32(data).to_bytes(4, "big"), len(data)


def _sorted(table: pa.Table, columns: list[str]) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in columns])


class SpillByShard(beam.DoFn):
    """Buffers rows per shard and spills a shard's buffer, sorted, to a temporary Parquet file at `spill_rows` rows or
    `spill_bytes` bytes (and the largest buffer when all of them pass BUFFERED_SHARDS times that).

    Rows never gather in one place: each worker writes what it saw, and only the small list of
    spill files goes through the shuffle.
    """

    def __init__(self, directory: str, record_type: type, num_shards: int, key_field: str, spill_rows: int,
                 schema: pa.Schema | None = None, spill_bytes: int = SPILL_BYTES):
        self.directory = directory
        self.record_type = record_type
        self.schema = schema
        self.num_shards = num_shards
        self.key_field = key_field
        self.spill_rows = spill_rows
        self.spill_bytes = spill_bytes

    def start_bundle(self) -> None:
        self.buffers: dict[int, list[dict[str, Any]]] = {}
        self.digests: dict[int, list[bytes]] = {}
        self.sizes: dict[int, int] = {}
        self.buffered = 0

    def process(self, row: dict[str, Any]) -> Iterator[tuple[int, str]]:
        shard = shard_of(str(row[self.key_field]), self.num_shards) if self.num_shards > 1 else 0
        digest, size = _weigh(row)
        self.buffers.setdefault(shard, []).append(row)
        self.digests.setdefault(shard, []).append(digest)
        self.sizes[shard] = self.sizes.get(shard, 0) + size
        self.buffered += size
        if len(self.buffers[shard]) >= self.spill_rows or self.sizes[shard] >= self.spill_bytes:
            yield shard, self._spill(shard)
        while self.buffered >= BUFFERED_SHARDS * self.spill_bytes:
            largest = max(self.sizes, key=lambda s: (self.sizes[s], s))
            yield largest, self._spill(largest)

    def finish_bundle(self) -> Iterator[beam.utils.windowed_value.WindowedValue]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for shard in sorted(self.buffers):
            if self.buffers[shard]:
                yield WindowedValue((shard, self._spill(shard)), 0, [GlobalWindow()])
        self.start_bundle()

    def _spill(self, shard: int) -> str:
        rows, digests = self.buffers.pop(shard), self.digests.pop(shard)
        self.buffered -= self.sizes.pop(shard)
        path = FileSystems.join(self.directory, SPILL_DIR, f"{shard:05d}-{uuid.uuid4().hex}.parquet")
        table = rows_table(path, rows, self.record_type, self.schema)
        table = table.append_column(TIEBREAK, pa.array(digests, pa.binary(4)))
        table = _sorted(table, _sort_columns(self.key_field))
        # Row groups of about SPILL_GROUP_BYTES, so that the merge, which reads every spill of a shard at once,
        # holds one small group of each.
        group_rows = max(1, min(ROW_GROUP_ROWS, SPILL_GROUP_BYTES * table.num_rows // max(table.nbytes, 1)))
        with created(path) as handle:
            pq.write_table(table, handle, compression="none", use_dictionary=False, row_group_size=group_rows)
        return path


class _SpillReader:
    """The rows of one sorted spill, handed out in order, a slice at a time."""

    def __init__(self, path: str, schema: pa.Schema):
        self.handle = FileSystems.open(path)
        self.file = pq.ParquetFile(self.handle)
        self.group = 0
        self.schema = schema
        self.pending: pa.Table | None = None

    def take(self, count: int) -> pa.Table:
        pieces = []
        while count > 0:
            if self.pending is None or self.pending.num_rows == 0:
                # One row group at a time (a batch iterator reads far ahead, and holds it).
                self.pending = self.file.read_row_group(self.group, columns=self.schema.names, use_threads=False).cast(self.schema)
                self.group += 1
            piece = self.pending.slice(0, count)
            self.pending = self.pending.slice(piece.num_rows)
            pieces.append(piece)
            count -= piece.num_rows
        return pa.concat_tables(pieces)

    def close(self) -> None:
        self.handle.close()


def merge_sorted(spills: list[str], schema: pa.Schema, key_field: str, target: str, temporary: bool = False) -> int:
    """The rows of sorted spills, merged in sort order into `target` (`temporary`: a larger spill, digests kept, small
    row groups, uncompressed); returns the row count. Memory: the sort columns of all the spills, one row group of
    each, and one row group of the output."""
    order = _sort_columns(key_field)
    if temporary:
        schema = schema.append(pa.field(TIEBREAK, pa.binary(4)))
    group_bytes = SPILL_GROUP_BYTES if temporary else GROUP_BYTES
    keys = []
    for index, path in enumerate(spills):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle, columns=order)
        keys.append(table.append_column("__spill", pa.array([index] * table.num_rows, pa.int32()))
                    .append_column("__row", pa.array(range(table.num_rows), pa.int64())))
    merged = _sorted(pa.concat_tables(keys), [*order, "__spill", "__row"])
    sources = merged.column("__spill").to_numpy()
    readers = [_SpillReader(path, schema) for path in spills]
    writer: pq.ParquetWriter | None = None
    group: list[pa.Table] = []
    group_rows = size = 0
    try:
        with created(target) as handle:
            for start in range(0, len(sources), MERGE_SLICE_ROWS):
                window = sources[start:start + MERGE_SLICE_ROWS]
                counts = {int(s): int((window == s).sum()) for s in set(window.tolist())}
                taken = {s: readers[s].take(n) for s, n in sorted(counts.items())}
                # Rows of the window in merged order: each spill's rows come in its own order, so the n-th row of
                # spill s in the window is row n of what was taken from s.
                offsets = {s: 0 for s in taken}
                bases, base = {}, 0
                for s in sorted(taken):
                    bases[s] = base
                    base += taken[s].num_rows
                indices = []
                for s in window.tolist():
                    indices.append(bases[s] + offsets[s])
                    offsets[s] += 1
                piece = pa.concat_tables([taken[s] for s in sorted(taken)]).take(pa.array(indices, pa.int64()))
                group.append(piece)
                group_rows += piece.num_rows
                size += piece.nbytes
                if group_rows >= ROW_GROUP_ROWS or size >= group_bytes:
                    writer = _write_group(handle, writer, pa.concat_tables(group), temporary)
                    group, group_rows, size = [], 0, 0
            if group or writer is None:
                writer = _write_group(handle, writer, pa.concat_tables(group) if group else schema.empty_table(), temporary)
            writer.close()
    finally:
        for reader in readers:
            reader.close()
    return len(sources)


def _write_group(handle: Any, writer: pq.ParquetWriter | None, table: pa.Table, temporary: bool) -> pq.ParquetWriter:
    """One row group (none for an empty table: `datasets` cannot read a row group of 0 rows)."""
    if writer is None:
        options = ({"compression": "none", "use_dictionary": False} if temporary
                   else {"compression": "zstd", "use_dictionary": _dictionary_columns(table)})
        writer = pq.ParquetWriter(handle, table.schema, **options)
    if table.num_rows:
        writer.write_table(table, row_group_size=max(table.num_rows, 1))
    return writer


class MergeShard(beam.DoFn):
    """Merges one shard's sorted spills into its final file; yields (file name, rows). More than MAX_OPEN_SPILLS
    spills are first merged in groups into larger sorted spills."""

    def __init__(self, directory: str, record_type: type, num_shards: int, key_field: str, schema: pa.Schema | None = None):
        self.directory = directory
        self.record_type = record_type
        self.schema = schema
        self.num_shards = num_shards
        self.key_field = key_field

    def process(self, element: tuple[int, Iterable[str]]) -> Iterator[tuple[str, int]]:
        shard, spills = element
        spills = sorted(spills)
        schema = _schema_for(self.record_type, self.schema)
        while len(spills) > MAX_OPEN_SPILLS:
            merged = []
            for start in range(0, len(spills), MAX_OPEN_SPILLS):
                part = spills[start:start + MAX_OPEN_SPILLS]
                path = FileSystems.join(self.directory, SPILL_DIR, f"{shard:05d}-{uuid.uuid4().hex}.parquet")
                merge_sorted(part, schema, self.key_field, path, temporary=True)
                FileSystems.delete(part)
                merged.append(path)
            spills = merged
        name = shard_name(shard, self.num_shards)
        rows = merge_sorted(spills, schema, self.key_field, FileSystems.join(self.directory, name))
        FileSystems.delete(spills)
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps what it freed otherwise
        yield name, rows


class WriteShardedParquet(beam.PTransform):
    """Rows -> `directory/part-SSSSS-of-NNNNN.parquet`, shard chosen by a stable hash of `key_field`.

    Workers spill rows to temporary sorted per-shard files; one step per shard merges them. Memory is bounded
    by SPILL_BYTES per buffered shard and worker, and by the sort columns of one shard at merge time.
    Outputs (file name, row count) per written shard; shards with no rows are not written.
    `schema`: the record type's schema with metadata that depends on the run (`Stage.output_schema`); default the
    static `arrow_schema(record_type)`.
    """

    def __init__(self, directory: str, record_type: type, key_field: str, num_shards: int = 4, spill_rows: int = 256,
                 schema: pa.Schema | None = None, spill_bytes: int = SPILL_BYTES):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {num_shards}")
        self.directory = directory
        self.record_type = record_type
        self.key_field = key_field
        self.num_shards = num_shards
        self.spill_rows = spill_rows
        self.spill_bytes = spill_bytes
        self.schema = None if schema is None else _schema_for(record_type, schema)

    def expand(self, rows: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        """`rows`: one collection, or several (each spilled where it is made: a Flatten before the writer would make
        Beam's local runner hold every row of its inputs until the writer starts)."""
        parts = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
        spill = SpillByShard(self.directory, self.record_type, self.num_shards, self.key_field, self.spill_rows, self.schema,
                             self.spill_bytes)
        spills = [part | (f"SpillByShard_{index}" if len(parts) > 1 else "SpillByShard") >> beam.ParDo(spill)
                  for index, part in enumerate(parts)]
        merged = (
            (spills | "AllSpills" >> beam.Flatten() if len(spills) > 1 else spills[0])
            | "GroupSpills" >> beam.GroupByKey()
            | "MergeShards" >> beam.ParDo(MergeShard(self.directory, self.record_type, self.num_shards, self.key_field, self.schema))
        )
        spill_dir = FileSystems.join(self.directory, SPILL_DIR)
        _ = (
            parts[0].pipeline
            | "AfterMerge" >> beam.Create([spill_dir])
            | "RemoveSpillDir" >> beam.Map(_remove_dir, beam.pvalue.AsList(merged))
        )
        return merged


def _remove_dir(directory: str, merged: list[Any]) -> None:
    """Runs once every shard is merged (it waits for them through its side input)."""
    if FileSystems.exists(directory):
        FileSystems.delete([directory])
