"""The sharded writer in bounded memory: spills cut by bytes, sorted, merged a row group at a time, and merged in
levels when there are many; the shards do not depend on how the rows were spilled."""

from __future__ import annotations

import random

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

import storage.shards as shards
from schemas import Commit, to_row
from storage import check_schema, list_parts, read_rows
from storage.shards import WriteShardedParquet


def commits(count: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        body = "".join(rng.choice("abcdefgh \n") for _ in range(rng.randint(10, 3000)))
        rows.append(to_row(Commit(repo=f"octo/r{n % 5}", commit=f"{rng.getrandbits(160):040x}", parent=None, path=f"m{n}.py",
                                  language="Python", license="mit", committed_at=1_600_000_000 + n, subject="Fix it",
                                  message="Fix it", before=body, after=body + "x = 1\n", split="train")))
    # Two rows with the same key: ordered by their contents, whatever order they arrive in.
    rows.append({**rows[0], "path": "z_same_commit_other_path.py"})
    return rows


def write(directory, rows, **options) -> dict[str, list[dict]]:
    with BeamTestPipeline() as pipeline:
        _ = pipeline | beam.Create(rows) | WriteShardedParquet(str(directory), Commit, "commit", 3, **options)
    return {path.rsplit("/", 1)[-1]: list(pq.read_table(path).to_pylist()) for path in list_parts(str(directory))}


def test_shards_are_the_same_however_the_rows_were_spilled(tmp_path, monkeypatch):
    rows = commits(300)
    whole = write(tmp_path / "whole", rows, spill_rows=10_000, spill_bytes=1 << 30)
    monkeypatch.setattr(shards, "MAX_OPEN_SPILLS", 3)  # many spills: merged in levels first
    monkeypatch.setattr(shards, "MERGE_SLICE_ROWS", 5)
    monkeypatch.setattr(shards, "SPILL_GROUP_BYTES", 4_000)
    shuffled = rows[::-1]
    spilled = write(tmp_path / "spilled", shuffled, spill_rows=7, spill_bytes=20_000)

    assert spilled == whole
    assert sorted(r["commit"] for rows_ in whole.values() for r in rows_) == sorted(r["commit"] for r in rows)
    for shard_rows in whole.values():
        keys = [(r["commit"]) for r in shard_rows]
        assert keys == sorted(keys)
    [same] = [shard_rows for shard_rows in whole.values() if any(r["path"].startswith("z_same") for r in shard_rows)]
    twins = [r["path"] for r in same if r["commit"] == rows[0]["commit"]]
    assert len(twins) == 2
    for path in list_parts(str(tmp_path / "spilled")):
        check_schema(path, Commit)  # the digest column used for sorting is not in the output
        assert "__content" not in pq.read_schema(path).names
    assert not (tmp_path / "spilled" / "_spill").exists()
    assert len(list(read_rows(str(tmp_path / "spilled"), Commit))) == len(rows)


def test_a_spill_is_cut_by_bytes_before_rows(tmp_path):
    spill = shards.SpillByShard(str(tmp_path), Commit, 1, "commit", spill_rows=1_000, spill_bytes=50_000)
    spill.start_bundle()
    rows = commits(60)
    written = [path for row in rows for _, path in spill.process(row)]
    assert written  # 60 rows of up to 6 kB each pass 50 kB long before 1,000 rows
    for path in written:
        table = pq.read_table(path)
        assert table.num_rows < 60
        assert table.column("commit").to_pylist() == sorted(table.column("commit").to_pylist())


def test_several_collections_are_written_as_one(tmp_path):
    """Each collection is spilled where it is made; the shards equal those of the rows in one collection."""
    rows = commits(120)
    whole = write(tmp_path / "whole", rows, spill_rows=11)
    with BeamTestPipeline() as pipeline:
        parts = tuple(pipeline | f"Part{n}" >> beam.Create(rows[n::3]) for n in range(3))
        _ = parts | WriteShardedParquet(str(tmp_path / "parts"), Commit, "commit", 3, spill_rows=11)
    parts = {path.rsplit("/", 1)[-1]: list(pq.read_table(path).to_pylist()) for path in list_parts(str(tmp_path / "parts"))}
    assert parts == whole
    assert sum(len(shard) for shard in parts.values()) == len(rows)
