"""What untrusted code and data cannot do: escape the execution sandbox (processes, network, files,
environment), steer a path out of the run directory, or carry a secret into logs and manifests.

test_synthesize.py::test_sandbox_contains covers an infinite loop, a memory hog, a connection to
the internet, a write into /usr and a fork bomb that must time out; the tests here add what those
leave open: nothing of a fork bomb outlives the sandbox, a server on the host's own loopback is out
of reach, the host's files (the run directory among them) are neither visible nor writable, and the
host's environment (an API key in it) reaches no record through an instruction row's tests.
test_sandbox.py covers the sandbox's own guarantees (environment, read-only root, bounded writes and output).
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from pipelines.run.ownership import RUN_MARKER
from pipelines.synthesize.sandbox import SandboxLimits, run_python
from schemas import Candidate, Commit, Drop
from storage import read_rows
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import candidates, label_config

LIMITS = SandboxLimits(seconds=2, memory_bytes=256 * 2**20, processes=16)
SANDBOX_COMMAND = ["-I", "-B", "program.py"]  # how the sandbox's interpreter is started (pipelines/synthesize/sandbox.py)


def sandboxed_processes() -> list[int]:
    """Processes running a sandboxed program, found by their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if [a.decode(errors="replace") for a in arguments[1:4]] == SANDBOX_COMMAND:
                found.append(int(entry.name))
    return found


def test_a_fork_bomb_is_held_to_the_process_limit_and_nothing_of_it_outlives_the_sandbox():
    program = (
        "import os, time\n"
        "children = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    children += 1\n"
        "print(children, flush=True)\n"
        "time.sleep(60)\n"
    )
    assert not sandboxed_processes()
    result = run_python(program, LIMITS)
    assert result.timed_out and result.seconds < LIMITS.seconds + 5
    assert 0 <= int(result.stdout.strip()) < LIMITS.processes  # fork refused at the limit
    deadline = time.monotonic() + 5
    while sandboxed_processes() and time.monotonic() < deadline:  # the kernel reaps a dead namespace lazily
        time.sleep(0.05)
    assert not sandboxed_processes()


def test_a_server_on_the_hosts_loopback_is_out_of_reach():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    try:
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')\n"
        result = run_python(program, LIMITS)
        assert not result.passed and "connected" not in result.stdout
        assert "ConnectionRefusedError" in result.stderr or "OSError" in result.stderr
        assert not accepted
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # the host itself reaches it
        thread.join(timeout=2)
        assert accepted
    finally:
        listener.close()


def test_host_files_are_neither_visible_nor_writable_and_the_environment_stays_outside(tmp_path, monkeypatch):
    secret = tmp_path / "run" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("do not read me")
    monkeypatch.setenv("CODEPREF_TEST_SECRET", "hunter2-in-the-environment")
    outside = Path(tempfile.gettempdir())
    before = set(outside.iterdir())
    program = f"""
import os
attempts = {{"read_run_dir": lambda: open({str(secret)!r}).read(),
            "write_run_dir": lambda: open({str(tmp_path / 'run' / 'planted.txt')!r}, "w").write("x"),
            "write_parent": lambda: open("../escape.txt", "w").write("x"),
            "write_tmp": lambda: open("/tmp/escape.txt", "w").write("x"),
            "write_root": lambda: open("/escape.txt", "w").write("x")}}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, "ok")
    except OSError as error:
        print(name, "refused", type(error).__name__)
print("env", sorted(k for k in os.environ if "SECRET" in k or "hunter2" in os.environ[k]))
"""
    result = run_python(program, LIMITS)
    assert result.passed, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines["read_run_dir"].startswith("refused") and lines["write_run_dir"].startswith("refused")
    assert lines["write_root"] == "refused OSError" and lines["write_tmp"] == "ok"  # the root is read-only (EROFS)
    assert lines["env"] == "[]"
    # What the program may write outside its directory (/tmp is the sandbox's own tmpfs) stays there.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["secret.txt"]
    assert not (outside / "escape.txt").exists() and not Path("/escape.txt").exists()
    assert {p for p in set(outside.iterdir()) - before if "escape" in p.name} == set()


def test_names_from_data_never_become_paths_outside_the_run_directory(tmp_path, monkeypatch):
    """Repository names, file paths, commit ids and row ids that look like paths stay data."""
    import_builtin_stages()
    monkeypatch.chdir(tmp_path)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    hostile = ["../../../escape", "/tmp/codepref-abs-escape", "..", "a/../../b"]
    base = {"subject": "Fix bug in the edge case of the loop", "message": "Fix bug in the edge case of the loop",
            "license": "mit", "unix_time": 1_500_000_000,
            "old_contents": "def f(xs):\n    for x in xs:\n        if x:\n            return x\n",
            "new_contents": "def f(xs):\n    for x in xs:\n        if x is not None:\n            return x\n"}
    table = inputs / "commits.jsonl"
    table.write_text("".join(json.dumps({**base, "commit": f"{i:040x}", "repos": name, "file_path": f"{name}/m.py"}) + "\n"
                             for i, name in enumerate(hostile)) + json.dumps({**base, "commit": "../../../../x", "repos": "ok",
                                                                              "file_path": "/etc/passwd.py"}) + "\n")
    rows = inputs / "instruct.jsonl"
    rows.write_text("".join(json.dumps({"id": name, "instruction": "Return the larger.",
                                        "solution": "def larger(a, b):\n    if a > b:\n        return a\n    return b\n"}) + "\n"
                            for name in hostile))
    run_dir = tmp_path / "run"
    stages = {"mine": {"tables": [str(table)]}, "synthesize": {"instruct": [{"name": "rows", "path": str(rows)}]}, "parse": {}}
    before = {p for p in tmp_path.parent.rglob("*") if tmp_path not in p.parents}
    run(RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1}, stages=stages))

    mined = {r["commit"]: r for r in read_rows(str(run_dir / "mine"), Commit)}
    assert {r["repo"] for r in mined.values()} == {*hostile, "ok"}  # kept as data, not altered
    pairs = {r["pair_id"] for r in read_rows(str(run_dir / "parse"), Candidate)}
    assert {f"instruct/rows/{name}" for name in hostile} <= pairs
    assert "commit/../../../escape/" + f"{0:040x}" + "/functional-correctness" in pairs
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert all(run_dir in p.parents or inputs in p.parents for p in written), sorted(map(str, written))
    assert {p for p in tmp_path.parent.rglob("*") if tmp_path not in p.parents} == before  # nothing beside the test's folder
    assert not Path("/tmp/codepref-abs-escape").exists() and not Path("/etc/passwd.py").exists()
    assert not (tmp_path / "../../../escape").resolve().exists()
    parts = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert all(p.split("/")[0] in ("mine", "synthesize", "parse") or p == RUN_MARKER for p in parts)


SECRET = "sk-test-7f3c9e1d5b2a4c6e8f0a1b2c3d4e5f60"


def every_text_in(run_dir: Path) -> str:
    """Every file of a run directory as text: JSON as is, Parquet rows as JSON, the answer cache's rows."""
    texts = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        elif path.suffix == ".sqlite":
            with sqlite3.connect(path) as connection:
                texts.append(json.dumps(connection.execute("SELECT * FROM answers").fetchall()))
        elif path.name.endswith(("-wal", "-shm")):
            texts.append(path.read_bytes().decode("latin-1"))
        else:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_an_api_key_never_reaches_logs_errors_manifests_or_drop_records(tmp_path, faulty_judge, monkeypatch, caplog, capfd):
    monkeypatch.setenv("CODEPREF_JUDGE_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    run_dir = tmp_path / "run"
    candidates(run_dir, 3)
    FakeOpenAI.echo_auth = True  # every error body repeats the Authorization header, key included
    FakeOpenAI.refuse = {"p1"}
    FakeOpenAI.faults = ["500"] * 3  # the first request fails for good (2 retries): the stage stops
    config = label_config(run_dir, faulty_judge, api_key_env="CODEPREF_JUDGE_KEY", max_retries=2)
    with pytest.raises(Exception) as failed:
        run(config)
    error_text = "".join(traceback.format_exception(failed.value))
    assert "scripted 500" in error_text and SECRET not in error_text  # the error is shown, the key is not

    (outcome,) = run(config)  # the server answers now, but still refuses p1 (echoing the key)
    assert outcome.manifest.dropped == {"judge_rejected": 1}
    (drop,) = read_rows(str(run_dir / "label" / "_dropped"), Drop)
    assert "scripted 400 (you sent Bearer [api key])" in drop["detail"]
    assert SECRET not in every_text_in(run_dir)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err and SECRET not in caplog.text


CANARY = "sk-codepref-canary-123"

# Test code of instruction rows that looks for the host's environment every way it can and puts what it
# finds where records keep it: an assertion message (the verification of a pair, the detail of a drop).
FIND_THE_ENVIRONMENT = r'''
import glob, os
def _environment_found():
    texts = ["\0".join(f"{k}={v}" for k, v in os.environ.items())]
    for path in ["/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ", *glob.glob("/proc/*/environ")]:
        try:
            texts.append(open(path, "rb").read().decode(errors="replace"))
        except OSError:
            pass
    entries = {e for text in texts for e in text.split("\0") if e}
    extra = [e for e in entries if e.split("=")[0] not in ("PATH", "HOME", "PWD", "LC_CTYPE")]
    return sorted(extra, key=lambda e: ("KEY" not in e and "TOKEN" not in e, e))  # keys first: the kept line is short
_found = _environment_found()
print("environment found:", _found)
'''


def test_the_hosts_environment_never_reaches_a_record_through_instruction_tests(tmp_path, monkeypatch):
    import_builtin_stages()
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    solution = "def larger(a, b):\n    return a if a > b else b\n"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in [
        # passes for the solution, fails for a mutant with what it found: the pair's verification
        {"id": "verified", "instruction": "Return the larger.", "solution": solution,
         "tests": FIND_THE_ENVIRONMENT + "assert larger(3, 2) == 3 and larger(2, 3) == 3, f'found {_found}'\n"},
        # fails for the solution with what it found: the drop's detail
        {"id": "fails", "instruction": "Return the larger.", "solution": solution,
         "tests": FIND_THE_ENVIRONMENT + "assert not _found and False, f'found {_found}'\n"},
    ]))
    run_dir = tmp_path / "run"
    stages = {"synthesize": {"inputs": [], "instruct": [{"name": "rows", "path": str(rows), "tests_column": "tests"}]}}
    run(RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1}, stages=stages))

    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name.endswith(".json") for p in files)
    assert [p for p in files if CANARY.encode() in p.read_bytes()] == []  # every byte, compressed shards included
    assert CANARY not in every_text_in(run_dir)  # and every decoded row
    (pair,) = read_rows(str(run_dir / "synthesize"), Candidate)
    assert pair["verified"] is True and pair["verification"].endswith("AssertionError: found []")
    (drop,) = read_rows(str(run_dir / "synthesize" / "_dropped"), Drop)
    assert drop["reason"] == "original_fails_tests" and drop["detail"] == "AssertionError: found []"
