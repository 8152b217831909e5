"""Sharded Parquet datasets and stage manifests."""

from __future__ import annotations

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from schemas import LANGUAGES, Candidate, Commit, CorpusRow, arrow_schema
from storage import (
    ReadRecords,
    SchemaMismatch,
    StageManifest,
    WriteShardedParquet,
    check_schema,
    class_labels,
    read_rows,
    shard_of,
    write_rows,
)
from tests.support.inputs import commit_row


def write_with_beam(directory, rows, num_shards=4):
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = pipeline | beam.Create(rows) | WriteShardedParquet(str(directory), Commit, "commit", num_shards)


def test_shards_are_deterministic_and_sorted(tmp_path):
    rows = [commit_row(i, f"message number {i}") for i in range(50)]
    write_with_beam(tmp_path / "a", rows)
    write_with_beam(tmp_path / "b", list(reversed(rows)))
    names_a = sorted(p.name for p in (tmp_path / "a").iterdir())
    names_b = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names_a == names_b == [f"part-{i:05d}-of-00004.parquet" for i in range(4)]
    for shard, name in enumerate(names_a):  # each file holds its shard's rows, sorted by key
        held = [row["commit"] for row in pq.read_table(tmp_path / "a" / name).to_pylist()]
        assert held == sorted(row["commit"] for row in rows if shard_of(row["commit"], 4) == shard), name
    assert list(read_rows(str(tmp_path / "a"), Commit)) == list(read_rows(str(tmp_path / "b"), Commit))


def test_shard_of_is_stable():
    assert shard_of("abc", 7) == shard_of("abc", 7)
    assert len({shard_of(str(i), 8) for i in range(200)}) == 8


def test_reading_the_wrong_record_type_names_the_file(tmp_path):
    path = tmp_path / "part-00000-of-00001.parquet"
    write_rows(str(path), [commit_row(1, "a message here")], Commit)
    check_schema(str(path), Commit)
    with pytest.raises(SchemaMismatch, match=r"part-00000-of-00001\.parquet: holds \('Commit', 1\), expected Candidate v2"):
        list(read_rows(str(tmp_path), Candidate))


def test_rows_that_do_not_fit_name_the_row(tmp_path):
    rows = [commit_row(1, "fine message"), {**commit_row(2, "bad"), "committed_at": "yesterday"}]
    with pytest.raises(SchemaMismatch, match=r"x\.parquet: rows do not fit Commit v1: .*first bad row: #1"):
        write_rows(str(tmp_path / "x.parquet"), rows, Commit)


def test_manifest_round_trip_and_unreadable_manifest(tmp_path):
    manifest = StageManifest(
        stage="mine", config_hash="abc", schema="Commit v1", records_in=3, records_out=2, dropped={"merge": 1},
        started="2026-01-01T00:00:00+00:00", finished="2026-01-01T00:00:01+00:00", seconds=1.0,
        files=["part-00000-of-00001.parquet"], versions={"python": "3.11"}, config={"x": 1},
    )
    manifest.write(str(tmp_path))
    assert StageManifest.read(str(tmp_path)) == manifest
    assert not (tmp_path / "_manifest.json.tmp").exists()
    (tmp_path / "_manifest.json").write_text("{truncated")
    assert StageManifest.read(str(tmp_path)) is None
    assert StageManifest.read(str(tmp_path / "nowhere")) is None


def test_a_shard_the_workers_cannot_see_fails_the_read_naming_it(tmp_path):
    write_with_beam(tmp_path / "a", [commit_row(i, f"message number {i}") for i in range(20)], num_shards=2)
    shards = sorted(str(path) for path in (tmp_path / "a").glob("part-*.parquet"))
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | ReadRecords(str(tmp_path / "a"), Commit, shards) | beam.Map(lambda row: row)
    (tmp_path / "a" / "part-00001-of-00002.parquet").unlink()  # the driver saw it; the workers do not

    with pytest.raises(Exception, match="part-00001-of-00002.parquet is not there for this worker") as failure:
        pipeline.run().wait_until_finish()
    assert "every worker must see the run directory" in str(failure.value)


def test_a_run_schema_is_written_by_the_sharded_writer_and_must_match_the_record_type(tmp_path):
    grown = arrow_schema(CorpusRow, {"language": (*LANGUAGES.names, "Rust")})
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = pipeline | beam.Create([]) | WriteShardedParquet(str(tmp_path / "none"), CorpusRow, "idx", 2, schema=grown)
    write_rows(str(tmp_path / "part-00000-of-00001.parquet"), [], CorpusRow, grown)
    assert class_labels(str(tmp_path / "part-00000-of-00001.parquet"), "language")[-1] == "Rust"
    with pytest.raises(SchemaMismatch, match="more than its metadata"):
        WriteShardedParquet(str(tmp_path / "x"), Commit, "commit", 2, schema=grown)
    with pytest.raises(SchemaMismatch, match="more than its metadata"):
        write_rows(str(tmp_path / "y.parquet"), [], Commit, grown)


def test_an_empty_shard_has_no_row_group_and_reads_everywhere(tmp_path):
    import datasets

    directory = tmp_path / "empty"
    directory.mkdir()
    write_rows(str(directory / "part-00000-of-00001.parquet"), [], Commit)
    assert pq.ParquetFile(directory / "part-00000-of-00001.parquet").metadata.num_row_groups == 0
    assert list(read_rows(str(directory), Commit)) == []
    assert pq.read_table(directory / "part-00000-of-00001.parquet").num_rows == 0
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        counted = pipeline | ReadRecords(str(directory), Commit) | beam.combiners.Count.Globally()
        beam.testing.util.assert_that(counted, beam.testing.util.equal_to([0]))
    # beside a shard with rows, `datasets` reads it (a row group of 0 rows failed: "BatchSize must be greater than 0")
    write_rows(str(directory / "full.parquet"), [commit_row(1, "message number 1")], Commit)
    loaded = datasets.load_dataset("parquet", data_files=[str(directory / "part-00000-of-00001.parquet"),
                                                          str(directory / "full.parquet")], split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == 1


def test_read_records_reads_only_the_columns_asked_for_nested_fields_included(tmp_path):
    from schemas import CodeSummary, to_row
    from tests.support.stage_fixtures import candidate

    facts = CodeSummary(parse_ok=True, error_share=0.0, has_error=False, depth=3, named_nodes=9, lines=2, functions=1, classes=0,
                        comment_spans=[4, 9])
    rows = [to_row(candidate("p1", "def f(): pass", "old one", committed_at=5, chosen_facts=facts)),
            to_row(candidate("p2", "def g(): pass", "old two", committed_at=None))]
    write_rows(str(tmp_path / "part-00000-of-00001.parquet"), rows, Candidate)
    columns = ["pair_id", "committed_at", "chosen", "chosen_facts.comment_spans"]  # what dedup's analysis reads
    expected = [{"pair_id": "p1", "committed_at": 5, "chosen": "def f(): pass", "chosen_facts": {"comment_spans": [4, 9]}},
                {"pair_id": "p2", "committed_at": None, "chosen": "def g(): pass", "chosen_facts": None}]
    for files in (None, [str(tmp_path / "part-00000-of-00001.parquet")]):  # by glob and by the manifest's list
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:
            read = pipeline | ReadRecords(str(tmp_path), Candidate, files, columns=columns)
            assert_that(read, equal_to(expected))
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:  # batched: Arrow tables of the same rows
            tables = pipeline | ReadRecords(str(tmp_path), Candidate, files, columns=columns, batched=True)
            assert_that(tables | beam.FlatMap(lambda table: table.to_pylist()), equal_to(expected))
    with pytest.raises(ValueError, match="Candidate v2 has no column chosen_facts.comments; its columns: pair_id"):
        ReadRecords(str(tmp_path), Candidate, columns=["pair_id", "chosen_facts.comments"])
