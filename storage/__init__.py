"""Reading and writing datasets: Parquet shards and stage manifests."""

from storage.manifest import MANIFEST_NAME, StageManifest, package_versions
from storage.parquet import (
    PART_GLOB,
    InputNotVisible,
    ReadRecords,
    SchemaMismatch,
    check_schema,
    class_labels,
    list_parts,
    not_visible,
    read_rows,
    read_table,
    shard_name,
    shard_of,
    write_rows,
)
from storage.shards import WriteShardedParquet

__all__ = [
    "PART_GLOB",
    "InputNotVisible",
    "MANIFEST_NAME",
    "ReadRecords",
    "SchemaMismatch",
    "StageManifest",
    "WriteShardedParquet",
    "check_schema",
    "class_labels",
    "list_parts",
    "not_visible",
    "package_versions",
    "read_rows",
    "read_table",
    "shard_name",
    "shard_of",
    "write_rows",
]
