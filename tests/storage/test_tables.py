"""Tables from outside a run: JSONL, JSON and Parquet files in a folder, and `datasets` folders."""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from storage.tables import ReadTableRows, TableError, load_dataset_folder, table_files


def test_a_folder_of_mixed_files_reads_every_row_and_skips_metadata(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"a": 1}, {"a": 2}]), tmp_path / "part.parquet")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rows.jsonl").write_text('{"a": 3}\n\n{not json\n[1]\n')
    (tmp_path / "array.json").write_text(json.dumps([{"a": 4}, 5]))
    (tmp_path / "dataset_infos.json").write_text('{"default": {}}')  # a card's metadata, not rows
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "stale.jsonl").write_text('{"a": 99}\n')  # a download cache, not rows
    (tmp_path / "README.md").write_text("# card\n")
    files = table_files(str(tmp_path))
    assert [f.rsplit("/", 1)[-1] for f in files] == ["array.json", "part.parquet", "rows.jsonl"]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        rows = pipeline | ReadTableRows(str(tmp_path)) | beam.Map(lambda item: (item[0].rsplit("/", 1)[-1], item[1]))
        assert_that(rows, equal_to([("part.parquet", {"a": 1}), ("part.parquet", {"a": 2}), ("rows.jsonl", {"a": 3}),
                                    ("rows.jsonl", "{not json"), ("rows.jsonl", "[1]"), ("array.json", {"a": 4}),
                                    ("array.json", "5")]))
    assert table_files(str(tmp_path), keep=lambda f: f.endswith(".jsonl"))[0].endswith("rows.jsonl")
    with pytest.raises(TableError, match="holds no"):
        table_files(str(tmp_path), keep=lambda f: False)
    with pytest.raises(TableError, match="no such file"):
        table_files(str(tmp_path / "missing"))


def test_a_datasets_folder_reads_its_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"a": [1, 2, 3]})}).save_to_disk(str(tmp_path / "d"))
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        rows = pipeline | ReadTableRows(str(tmp_path / "d"), split="train")
        assert_that(rows, equal_to([("", {"a": 1}), ("", {"a": 2}), ("", {"a": 3})]))
    with pytest.raises(TableError, match=r"holds splits \['train'\]"):
        load_dataset_folder(str(tmp_path / "d"), None)
