"""Faults a long run meets, and what is left after each: a message naming the input, counted drops,
finished work intact, and a rerun that completes with no pair lost and none twice.

The judge server here is a scripted OpenAI-compatible fake (error paths only; the real `vllm serve`
killed mid-run is test_label_openai.py). A worker killed mid-stage, a full disk, corrupt and huge
git objects, and malformed table rows are real: real Beam workers, real git repositories, real files.
"""

from __future__ import annotations

import json
import re
import time
import types
import zlib
from pathlib import Path

import pytest
import yaml

from llm.backends import BACKENDS, BackendUnavailable, Sampling
from llm.cache import read_answers
from pipelines.run.config import load_config
from pipelines.run.orchestrator import run
from schemas import Commit, Drop, JudgedPair
from storage import MANIFEST_NAME, read_rows
from tests.support.fake_openai import VERDICT, FakeOpenAI
from tests.support.git_fixtures import MIT, GitRepo
from tests.support.inputs import (
    GOOD,
    candidates,
    commit_row,
    label_config,
    write_config,
)

CONVERSATION = [{"role": "user", "content": "Task q1. A or B?"}]


def openai_judge(url: str, **options: object):
    return BACKENDS["openai"]("judge", base_url=url, backoff=0.01, max_backoff=0.02, timeout=1.0, concurrency=1, **options)


# --- the judge server -------------------------------------------------------------------------


def test_malformed_truncated_short_and_late_answers_are_retried_then_the_answer_is_used(faulty_judge):
    FakeOpenAI.faults = ["500", "malformed", "truncated", "no_choices", "few_choices", "html", "slow"]
    judge = openai_judge(faulty_judge, max_retries=7)
    (texts,) = judge.generate([CONVERSATION], Sampling(n=2), seeds=[3])
    assert texts == [VERDICT, VERDICT]
    assert judge.retries == 7
    assert FakeOpenAI.served == [("q1", 3), ("q1", 3)]  # the late answer was served, not used: asked again


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("malformed", r"malformed answer: .*(Expecting|Unterminated|delimiter)"),
        ("truncated", r"APIConnectionError"),
        ("no_choices", r"malformed answer: not a chat completion"),
        ("few_choices", r"malformed answer: 1 choices where 2 were asked for"),
        ("html", r"malformed answer: not a chat completion: '<html>"),
    ],
)
def test_a_server_that_keeps_answering_badly_fails_naming_it_and_what_it_answered(faulty_judge, fault, message):
    FakeOpenAI.faults = [fault] * 3
    judge = openai_judge(faulty_judge, max_retries=2)
    with pytest.raises(BackendUnavailable, match=re.escape(faulty_judge) + r": still failing after 2 retries \(" + message):
        judge.generate([CONVERSATION], Sampling(n=2), seeds=[3])
    assert judge.retries == 2


def answers_stored(run_dir: Path) -> list[tuple[str, str, int]]:
    return sorted((answer["pair_id"], answer["order"], answer["sample"]) for answer in read_answers(str(run_dir / "label_answers")))


def test_label_rides_out_a_flaky_server_and_drops_the_pair_it_refuses_naming_it(tmp_path, faulty_judge):
    run_dir = tmp_path / "run"
    pair_ids = candidates(run_dir, 5)
    FakeOpenAI.faults = ["503", "malformed", "truncated", "few_choices", "slow", "no_choices"]
    FakeOpenAI.refuse = {"p3"}
    (outcome,) = run(label_config(run_dir, faulty_judge))

    judged = sorted(row["pair_id"] for row in read_rows(str(run_dir / "label"), JudgedPair))
    assert judged == [p for p in pair_ids if p != "p3"]
    (drop,) = read_rows(str(run_dir / "label" / "_dropped"), Drop)
    assert (drop["key"], drop["reason"]) == ("p3", "judge_rejected")
    assert drop["detail"].startswith("judge, chosen_") and "400: Error code: 400 - scripted 400" in drop["detail"]
    manifest = outcome.manifest
    assert manifest.dropped == {"judge_rejected": 1} and manifest.records_out == 4
    assert manifest.counters["backend_retries"] == 6
    assert manifest.counters["backend_requests"] == 8 and manifest.counters["backend_rejections"] == 2
    assert len(answers_stored(run_dir)) == 8


def test_a_server_that_goes_down_stops_the_stage_and_the_rerun_asks_only_for_what_is_missing(tmp_path, faulty_judge):
    run_dir = tmp_path / "run"
    pair_ids = candidates(run_dir, 6)
    dedup_manifest = (run_dir / "dedup" / MANIFEST_NAME).read_text()
    FakeOpenAI.down_after = 5  # 5 of the 12 (pair, order) requests answered, then 503 for ever
    config = label_config(run_dir, faulty_judge, max_retries=2)
    with pytest.raises(Exception, match=re.escape(faulty_judge) + r": still failing after 2 retries \(InternalServerError"):
        run(config)
    assert not (run_dir / "label" / MANIFEST_NAME).exists()
    assert (run_dir / "dedup" / MANIFEST_NAME).read_text() == dedup_manifest  # finished work intact
    assert len(answers_stored(run_dir)) == 5  # every answer that came is kept

    FakeOpenAI.down_after = None  # the server is back
    (outcome,) = run(config)
    judged = sorted(row["pair_id"] for row in read_rows(str(run_dir / "label"), JudgedPair))
    assert judged == pair_ids  # none lost, none twice
    assert outcome.manifest.counters["backend_requests"] == 7 and outcome.manifest.counters["answers_from_cache"] == 5
    assert len(FakeOpenAI.served) == len(set(FakeOpenAI.served)) == 12  # no (pair, order) answered twice
    assert len(answers_stored(run_dir)) == len(set(answers_stored(run_dir))) == 12


# --- workers, disks ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # Beam's gRPC threads see the lost worker
def test_a_worker_killed_mid_stage_fails_the_stage_and_the_rerun_has_every_row_once(tmp_path):
    marker = tmp_path / "killed"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"), "num_shards": 2, "plugins": ["tests.support.fault_stages"],
        "runner": {"running_mode": "multi_processing", "workers": 2},
        "stages": {"dying_source": {"rows": 24, "kill_on": 7, "marker": str(marker)}},
    }))
    config = load_config(path)
    with pytest.raises(Exception) as error:  # Beam reports the lost worker's channel ("Channel closed prematurely")
        run(config)
    assert marker.is_file() and int(marker.read_text()) > 0  # the worker did die
    assert "Channel closed" in str(error.value) or "worker" in str(error.value).lower()
    assert not (tmp_path / "run" / "dying_source" / MANIFEST_NAME).exists()

    # The same stage config (its hash does not depend on the runner), rerun in-process to save the
    # workers' start-up (about 7 s on two cores); the marker is there now, nobody dies.
    rerun = config.model_copy(update={"runner": config.runner.model_copy(update={"running_mode": "in_memory", "workers": 1})})
    (outcome,) = run(rerun)
    rows = [row["commit"] for row in read_rows(str(tmp_path / "run" / "dying_source"), Commit)]
    assert sorted(rows) == [f"{i:040x}" for i in range(24)]  # every row, once
    assert outcome.manifest.records_out == 24 and not (tmp_path / "run" / "dying_source" / "_attempt").exists()


def test_the_cli_names_the_failed_stage_and_says_a_rerun_resumes(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    rows = tmp_path / "commits.jsonl"
    rows.write_text("\n".join(json.dumps(commit_row(i, f"Fix the loop bound {i}")) for i in range(5)) + "\n")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"), "num_shards": 1, "plugins": ["tests.support.sample_stages"],
        "runner": {"running_mode": "in_memory", "workers": 1},
        "stages": {"sample_source": {"path": str(rows), "fail_on": f"{3:040x}"}},
    }))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1  # a message, not a traceback
    assert "sample_source" in result.output and "simulated crash" in result.output and "rerun" in result.output.lower()


def full_disk(victim: str) -> types.SimpleNamespace:
    """Beam's FileSystems, except that a file whose name ends with `victim` is written to /dev/full
    (the kernel answers ENOSPC, as a full disk does, after some bytes are buffered)."""
    from apache_beam.io.filesystems import FileSystems

    def create(path: str, *args: object, **kwargs: object):
        return FileSystems.create("/dev/full" if path.endswith(victim) else path, *args, **kwargs)

    names = {name: getattr(FileSystems, name) for name in dir(FileSystems) if not name.startswith("__")}
    return types.SimpleNamespace(**{**names, "create": create})


def test_a_full_disk_fails_the_stage_naming_the_file_and_the_rerun_has_the_same_rows(tmp_path, monkeypatch):
    import storage.manifest
    import storage.parquet
    import storage.shards
    from schemas import from_row, to_row

    rows = tmp_path / "commits.jsonl"
    expected = [to_row(from_row(Commit, commit_row(i, f"Fix the off-by-one in loop {i}"))) for i in range(30)]
    rows.write_text("\n".join(json.dumps(row) for row in expected) + "\n")
    config = load_config(write_config(tmp_path, rows))
    run(config, selected=["sample_source"])
    source = (tmp_path / "run" / "sample_source" / MANIFEST_NAME).read_text()

    # The disk fills while a shard is written, then (a second run) while the manifest is.
    for victim in ("part-00001-of-00003.parquet", MANIFEST_NAME + ".tmp"):
        with monkeypatch.context() as patch:
            for module in (storage.parquet, storage.shards, storage.manifest):
                patch.setattr(module, "FileSystems", full_disk(victim))
            with pytest.raises(Exception, match=r"No space left on device") as error:
                run(config)
        if victim.endswith(".parquet"):
            assert re.search(r"sample_filter/_attempt/part-00001-of-00003\.parquet: cannot be written", str(error.value))
        assert not (tmp_path / "run" / "sample_filter" / MANIFEST_NAME).exists()
        assert (tmp_path / "run" / "sample_source" / MANIFEST_NAME).read_text() == source  # the finished stage is intact

    outcomes = run(config)  # room again
    assert [(o.stage, o.skipped) for o in outcomes] == [("sample_source", True), ("sample_filter", False)]
    assert outcomes[1].manifest.records_out == 30
    assert sorted(read_rows(str(tmp_path / "run" / "sample_filter"), Commit), key=lambda r: r["commit"]) == expected
    assert sorted(p.name for p in (tmp_path / "run" / "sample_filter").glob("part-*")) == [f"part-{i:05d}-of-00003.parquet" for i in range(3)]


# --- git objects and tables -------------------------------------------------------------------


def write_loose_blob(repo: GitRepo, data: bytes) -> str:
    """Store `data` as a loose blob the way git does (zlib of 'blob SIZE\\0' + data), fast: level 1, no work-tree copy."""
    import hashlib

    header = b"blob %d\0" % len(data)
    digest = hashlib.sha1(header)
    digest.update(data)
    oid = digest.hexdigest()
    compressor = zlib.compressobj(1)
    target = repo.path / ".git" / "objects" / oid[:2] / oid[2:]
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(compressor.compress(header) + compressor.compress(data) + compressor.flush())
    return oid


def overwrite(repo: GitRepo, oid: str, data: bytes | None = None, keep: int = 0) -> None:
    """Replace a loose object's file with `data`, or cut it to its first `keep` bytes."""
    path = repo.path / ".git" / "objects" / oid[:2] / oid[2:]
    path.chmod(0o644)
    path.write_bytes(data if data is not None else path.read_bytes()[:keep])


@pytest.mark.timeout(120, method="thread")  # libgit2 loops in C on a truncated object: only a thread can end the wait
def test_huge_truncated_and_garbled_git_objects_are_counted_drops_and_do_not_hang_the_stage(tmp_path, run_stage):
    good = GitRepo(tmp_path / "good")
    good.write("LICENSE", MIT)
    for name in ("calc.py", "table.py", "trunc.py", "garbled.py"):
        good.write(f"src/{name}", f"# {name}\nx = 1\n")
    good.commit("Initial import of the calculator")
    good.write("src/calc.py", "# calc.py\nx = 2\n")
    kept = good.commit("Fix the off-by-one error in the loop")
    good.write("src/trunc.py", "# trunc.py\n" + "".join(f"value_{i} = {i * 7919 % 104729}\n" for i in range(400)))
    truncated = good.commit("Fix the table of values in trunc")
    overwrite(good, good.git("rev-parse", f"{truncated}:src/trunc.py"), keep=200)  # libgit2 1.9 would loop for ever on it
    good.write("src/garbled.py", "# garbled.py\nx = 3\n")
    garbled = good.commit("Fix the constant in the garbled module")
    overwrite(good, good.git("rev-parse", f"{garbled}:src/garbled.py"), b"not zlib at all")
    line = b"value = 1  # a generated table, far past any source file's size, still valid Python\n"
    huge = write_loose_blob(good, line * (100 * 2**20 // len(line) + 1))  # 100 MB
    assert int(good.git("cat-file", "-s", huge)) > 100 * 2**20  # git reads it as a blob
    good.git("update-index", "--cacheinfo", f"100644,{huge},src/table.py")
    good.git("commit", "-q", "-m", "Fix the generated table to cover all values",
             env={"GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"})
    too_large = good.git("rev-parse", "HEAD")

    broken = GitRepo(tmp_path / "broken")  # a commit object cut short: no walk can get past it
    broken.write("LICENSE", MIT)
    broken.write("m.py", "a = 1\n")
    broken.commit("Initial import of module m")
    broken.write("m.py", "a = 2\n")
    middle = broken.commit("Fix the constant in the module m")
    broken.write("m.py", "a = 3\n")
    broken.commit("Fix the constant again in module m")
    overwrite(broken, middle, keep=40)

    started = time.monotonic()
    mined = run_stage("mine", {"repos": [str(good.path), str(broken.path)]})
    rows, drops, manifest = mined
    assert time.monotonic() - started < 60
    assert set(rows) == {kept}
    assert drops[too_large] == "too_large" and drops[truncated] == "corrupt_object" and drops[garbled] == "corrupt_object"
    assert drops["broken"] == "corrupt_object"
    details = mined.details
    assert details[too_large] == f"{100 * 2**20 // len(line) * len(line) + len(line)} bytes"
    assert "is truncated" in details[truncated] and str(good.path) in details[truncated]
    assert details["broken"].startswith("1 truncated loose objects (") and middle in details["broken"]
    assert manifest.dropped["corrupt_object"] == 3 and manifest.dropped["too_large"] == 1


def test_table_rows_that_are_not_utf8_malformed_or_missing_columns_are_counted_naming_the_file(tmp_path, run_stage):
    base = {"subject": GOOD, "message": GOOD, "repos": "octo/a", "license": "mit", "unix_time": 1_500_000_000,
            "old_contents": "x = 1\n", "new_contents": "x = 2\n", "file_path": "m.py"}
    table = tmp_path / "commits.jsonl"
    table.write_bytes(b"\n".join([
        json.dumps({**base, "commit": "a" * 40}).encode(),
        json.dumps({**base, "commit": "b" * 40, "new_contents": "x = 'caf\udce9'"}, ensure_ascii=False).encode("utf-8", "surrogateescape"),
        json.dumps({**base, "commit": "c" * 40, "unix_time": "yesterday"}).encode(),
        json.dumps({"subject": GOOD, "file_path": "m.py"}).encode(),  # no commit, no message
    ]) + b"\n")
    mined = run_stage("mine", {"tables": [str(table)]})
    rows, drops, manifest = mined
    assert set(rows) == {"a" * 40}
    assert manifest.dropped == {"malformed_row": 2, "missing_columns": 1} and manifest.records_in == 4
    found = {(d["reason"], d["detail"]) for d in mined.dropped() if d["key"] == str(table)}
    assert any(reason == "malformed_row" and detail.startswith("not UTF-8 (invalid byte e9 at offset") for reason, detail in found)
    assert ("missing_columns", "['commit', 'message']") in found
    assert drops["c" * 40] == "malformed_row"

    instruct = tmp_path / "instruct.jsonl"
    instruct.write_bytes(b"\n".join([
        json.dumps({"id": "r1", "instruction": "Return the larger.", "solution": "def larger(a, b):\n    return a if a > b else b\n"}).encode(),
        b'{"id": "r2", "instruction": "Return the smaller \xff.", "solution": "def smaller(a, b):\\n    return min(a, b)\\n"}',
        json.dumps({"id": "r3", "instruction": None, "solution": "def f():\n    return 1\n"}).encode(),
        b"\x00\x01binary",
    ]) + b"\n")
    synthesized = run_stage("synthesize", {"inputs": [], "instruct": [{"name": "rows", "path": str(instruct)}]})
    pairs, drops, manifest = synthesized
    assert set(pairs) == {"instruct/rows/r1"}
    assert manifest.dropped == {"malformed_row": 3}
    instruct_drops = synthesized.dropped()
    assert {d["key"] for d in instruct_drops} == {str(instruct)}
    details = sorted(d["detail"] for d in instruct_drops)
    assert details[0].startswith("['instruction'] not text") and details[1].startswith("not JSON")
    assert details[2].startswith("not UTF-8 (invalid byte ff at offset")
    assert any('"r2"' in d["record"] for d in instruct_drops)  # the row itself is kept for inspection
