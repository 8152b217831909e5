"""Storage under faults: table rows that are not UTF-8, and a write the disk refuses."""

from __future__ import annotations

import errno

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from schemas import Commit
from storage import write_rows
from storage.tables import ReadTableRows


def test_rows_that_are_not_utf8_come_back_as_text_saying_so_and_the_others_as_rows(tmp_path):
    (tmp_path / "rows.jsonl").write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n{"a": 3}\n')
    (tmp_path / "array.json").write_bytes(b'[{"b": 1}, {"b": "\xff\xfe"}, {"b": 3}]')
    (tmp_path / "lines.json").write_bytes(b'{"c": 1}\n\xff{"c": 2}\n')

    def shown(item):
        file, row = item
        return file.rsplit("/", 1)[-1], row if isinstance(row, dict) else row.split(": ", 1)[0]

    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        rows = pipeline | ReadTableRows(str(tmp_path)) | beam.Map(shown)
        assert_that(rows, equal_to([
            ("rows.jsonl", {"a": 1}), ("rows.jsonl", "not UTF-8 (invalid byte e9 at character 10)"), ("rows.jsonl", {"a": 3}),
            ("array.json", {"b": 1}), ("array.json", "not UTF-8 (invalid byte ff at character 7)"), ("array.json", {"b": 3}),
            ("lines.json", {"c": 1}), ("lines.json", "not UTF-8 (invalid byte ff at character 0)"),
        ]))


def test_a_write_the_disk_refuses_names_the_file():
    row = {"repo": "octo/demo", "commit": "a" * 40, "parent": None, "path": "m.py", "language": "Python", "license": "mit",
           "committed_at": 1, "subject": "s", "message": "m", "before": "x = 1\n", "after": "x = 2\n", "split": "train"}
    with pytest.raises(OSError, match=r"/dev/full: cannot be written \(No space left on device\); free space and rerun") as error:
        write_rows("/dev/full", [row] * 50, Commit)  # the kernel's always-full device
    assert error.value.errno == errno.ENOSPC
