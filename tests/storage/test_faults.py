"""Storage under faults: table rows that are not UTF-8, and a write the disk refuses."""

from __future__ import annotations

import errno
import subprocess

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


# --- git repositories that lead nowhere ---------------------------------------------------------

MISSING = "0123456789abcdef" * 2 + "01234567"


def _history(path):
    from tests.support.git_fixtures import GitRepo

    repo = GitRepo(path)
    repo.write("m.py", "x = 1\n")
    repo.commit("Start the module with a value")
    repo.write("m.py", "x = 2\n")
    repo.commit("Change the value to two for now")
    return repo


def _walk(path, refs):
    from pipelines.mine.git import BrokenRefError, open_repository, walk_changes

    items = list(walk_changes(open_repository(str(path)), refs))
    return [str(i) for i in items if isinstance(i, BrokenRefError)], [i.commit for i in items if not isinstance(i, Exception)]


def test_references_that_lead_to_no_commit_are_reported_and_the_others_walked(tmp_path):
    repo = _history(tmp_path / "repo")
    commits = repo.git("rev-list", "--reverse", "HEAD").split()
    tree = repo.git("rev-parse", "HEAD^{tree}")
    repo.git("tag", "tree-tag", tree)  # a tag of a tree: no history behind it, and nothing broken
    repo.git("tag", "-a", "-m", "The tree, annotated", "annotated-tree-tag", tree)
    repo.write_ref("refs/heads/ghost", MISSING + "\n")
    repo.write_ref("refs/heads/garbled", "not an id\n")  # libgit2 leaves it out of its listing
    tag = subprocess.run(["git", "hash-object", "-t", "tag", "-w", "--literally", "--stdin"], cwd=repo.path, check=True,
                         capture_output=True, input=f"object {MISSING}\ntype commit\ntag lost\ntagger Dev <d@e> 1 +0000\n\nLost\n".encode())
    repo.write_ref("refs/tags/lost", tag.stdout.decode().strip() + "\n")

    broken, walked = _walk(repo.path, "all")
    assert walked == commits
    assert sorted(broken) == [
        "refs/heads/garbled is not a readable reference file",
        f"refs/heads/ghost points to {MISSING}, which is not in the repository",
        f"refs/tags/lost points to {MISSING} (through 1 tag objects), which is not in the repository",
    ]
    assert _walk(repo.path, "head") == ([], commits)  # HEAD's history is whole

    repo.write_ref("refs/heads/main", MISSING + "\n")
    assert _walk(repo.path, "head") == ([f"HEAD (refs/heads/main) points to {MISSING}, which is not in the repository"], [])


def test_a_garbage_head_or_packed_refs_file_is_a_broken_ref_error_not_an_exception(tmp_path):
    from pipelines.mine.git import (
        BrokenRefError,
        head_commit,
        license_text,
        open_repository,
        reference_targets,
    )

    repo = _history(tmp_path / "repo")
    tip = repo.git("rev-parse", "HEAD")
    repo.write_ref("HEAD", "garbage\n")
    opened = open_repository(str(repo.path))
    for read in (head_commit, license_text):
        with pytest.raises(BrokenRefError, match="HEAD cannot be read .*corrupted loose reference file: HEAD"):
            read(opened)
    assert reference_targets(opened)["HEAD"].startswith("unreadable: ")
    assert _walk(repo.path, "head") == (["HEAD cannot be read (corrupted loose reference file: HEAD)"], [])
    broken, walked = _walk(repo.path, "all")  # the branches are still there
    assert broken == ["HEAD cannot be read (corrupted loose reference file: HEAD)"] and walked[-1] == tip

    packed = _history(tmp_path / "packed")
    packed.git("pack-refs", "--all")
    (packed.git_dir / "packed-refs").write_text("garbage\n")  # HEAD -> main, which only packed-refs held
    for refs in ("head", "all"):  # libgit2 says either, depending on which it reads first
        broken, walked = _walk(packed.path, refs)
        assert walked == [] and broken and all(
            text.startswith(("HEAD cannot be read (reference 'refs/heads/main' not found)", "references cannot be listed"))
            for text in broken), broken


def test_a_commit_whose_encoding_header_names_no_codec_is_read_as_utf8(tmp_path):
    repo = _history(tmp_path / "repo")
    repo.write("m.py", "x = 3\n")
    repo.git("add", "-A")
    odd = repo.commit_object("encoding no-such-codec\n", "Fix the caf\u00e9 value, and \xff".encode("utf-8")[:-2] + b"\xff\n")
    _, walked = _walk(repo.path, "head")
    assert walked[-1] == odd
    from pipelines.mine.git import open_repository, walk_changes

    [change] = [c for c in walk_changes(open_repository(str(repo.path))) if c.commit == odd]
    assert change.message == "Fix the caf\u00e9 value, and \ufffd\n" and change.shape == "modified"
