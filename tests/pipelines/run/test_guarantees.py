"""What codepref promises about data, tried as a careless user would: outputs never replace what codepref did not
write, one run holds a run directory, counts add up or the stage fails, local servers listen on loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apache_beam as beam
import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import Field

import storage.parquet
import storage.shards
from pipelines.core import (
    DROPPED,
    Stage,
    StageConfig,
    StageResult,
    drop_record,
    register_stage,
)
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import StageFailed, run
from pipelines.run.ownership import LOCK_NAME, RUN_MARKER, RunLock
from schemas import Candidate, Commit
from storage import StageManifest, list_parts, read_rows
from tests.support.git_fixtures import GitRepo, large_file_history
from tests.support.stage_fixtures import candidate, write_stage

import_builtin_stages()


def codepref(*args: str, cwd: Path | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def small_repository(path: Path, variant: int = 0) -> GitRepo:
    """One kept commit (its id differs with `variant`)."""
    repo = GitRepo(path)
    repo.write("LICENSE", "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n")
    repo.write("app.py", f"def total(xs):\n    return sum(xs) + {variant}\n")
    repo.commit("Initial import of the app")
    repo.write("app.py", f"def total(xs):\n    return sum(x for x in xs if x) + {variant}\n")
    repo.commit("Fix total when the list holds None values")
    return repo


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- output safety ---------------------------------------------------------------------------------------------------

def test_an_output_folder_holding_a_users_files_is_refused_and_left_untouched(tmp_path):
    repo = small_repository(tmp_path / "repo")
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "thesis.tex").write_text("three years of work")
    (out / "notes" / "a.md").write_text("notes")
    before = tree(out)

    result = codepref("mine", "--repos", repo.path, "--out", out)

    assert result.returncode == 2, result.stderr
    assert f"{out} is not empty and was not written by codepref" in result.stderr
    assert "notes, thesis.tex" in result.stderr and "Traceback" not in result.stderr
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["notes", "thesis.tex"]


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    repo = small_repository(tmp_path / "repo")
    out = tmp_path / "corpus.parquet"
    out.write_bytes(b"a user's file")

    result = codepref("mine", "--repos", repo.path, "--out", out)

    assert result.returncode == 2 and f"{out} is a file, not a folder" in result.stderr
    assert out.read_bytes() == b"a user's file"


def test_mining_a_project_into_its_own_work_tree_touches_nothing(tmp_path):
    repo = small_repository(tmp_path / "project")
    before = tree(repo.path)

    result = codepref("mine", "--repos", ".", "--out", ".", cwd=repo.path)

    assert result.returncode == 2, result.stderr
    assert "is the work tree of the git repository" in result.stderr
    assert tree(repo.path) == before
    assert repo.git("status", "--porcelain") == "" and repo.git("fsck", "--no-progress") == ""


def test_an_output_inside_a_work_tree_must_be_ignored_by_git(tmp_path):
    repo = small_repository(tmp_path / "project")

    refused = codepref("mine", "--repos", repo.path, "--out", repo.path / "mined")
    inside_git = codepref("mine", "--repos", repo.path, "--out", repo.path / ".git" / "mined")
    assert refused.returncode == 2 and "git does not ignore it" in refused.stderr
    assert inside_git.returncode == 2 and "inside the git directory" in inside_git.stderr
    assert not (repo.path / "mined").exists() and not (repo.path / ".git" / "mined").exists()

    repo.write(".gitignore", "mined/\n")
    allowed = codepref("mine", "--repos", repo.path, "--out", repo.path / "mined")
    assert allowed.returncode == 0, allowed.stderr
    assert StageManifest.read(str(repo.path / "mined")).records_out == 1


def test_force_redoes_codepref_s_own_output(tmp_path):
    repo = small_repository(tmp_path / "repo")
    out = tmp_path / "mined"
    assert codepref("mine", "--repos", repo.path, "--out", out).returncode == 0
    first = StageManifest.read(str(out))

    again = codepref("mine", "--repos", repo.path, "--out", out, "--force")

    assert again.returncode == 0, again.stderr
    second = StageManifest.read(str(out))
    assert second.finished >= first.finished and second.records_out == first.records_out == 1
    assert not (out / LOCK_NAME).exists()


def test_a_run_directory_holding_a_users_files_is_refused(tmp_path):
    repo = small_repository(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    (home / "taxes.pdf").write_bytes(b"%PDF")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(home), "stages": {"mine": {"repos": [str(repo.path)]}}}))

    result = codepref("run", config)

    assert result.returncode == 2 and f"run directory {home} is not empty and holds no codepref run" in result.stderr
    assert sorted(p.name for p in home.iterdir()) == ["taxes.pdf"]


# --- one run per run directory ---------------------------------------------------------------------------------------

HOLD_LOCK = "import sys, time\nfrom pipelines.run.ownership import RunLock\nRunLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n"


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(tmp_path):
    repo = small_repository(tmp_path / "repo")
    run_dir = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(run_dir), "runner": {"running_mode": "in_memory", "workers": 1},
                                      "stages": {"mine": {"repos": [str(repo.path)]}}}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = codepref("run", config)
        assert refused.returncode == 2, refused.stderr
        assert f"{run_dir} is in use by another codepref run (pid {holder.pid} on {socket.gethostname()}, started 20" in refused.stderr
        assert not (run_dir / "mine").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    assert (run_dir / LOCK_NAME).exists()  # the killed holder could not clean up: a stale lock
    resumed = codepref("run", config)
    assert resumed.returncode == 0, resumed.stderr
    assert StageManifest.read(str(run_dir / "mine")).records_out == 1
    assert not (run_dir / LOCK_NAME).exists() and (run_dir / RUN_MARKER).exists()


def test_two_runs_started_together_on_one_run_directory(tmp_path):
    repos = [small_repository(tmp_path / f"repo{i}", i) for i in range(3)]
    run_dir = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(run_dir), "num_shards": 2, "runner": {"workers": 2},
                                      "stages": {"mine": {"repos": [str(r.path) for r in repos]}}}))
    command = [sys.executable, "-m", "pipelines.cli", "run", str(config)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=180)
    first_out, first_err = first.communicate(timeout=300)

    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stderr
    assert f"in use by another codepref run (pid {first.pid}" in second.stderr
    manifest = StageManifest.read(str(run_dir / "mine"))
    assert manifest.records_out == len(list(read_rows(str(run_dir / "mine"), Commit))) == 3


def test_a_released_lock_leaves_no_file_and_a_killed_holders_lock_is_recognised(tmp_path):
    lock = RunLock(str(tmp_path)).acquire()
    with pytest.raises(Exception, match="in use by another codepref run"):
        RunLock(str(tmp_path)).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(str(tmp_path)) as again:
        assert again.took_over is None and (tmp_path / LOCK_NAME).exists()

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(str(tmp_path)) as taken:
        assert taken.took_over is not None and taken.took_over["pid"] == holder.pid


# --- conservation ----------------------------------------------------------------------------------------------------

def pairs(count: int) -> list[Candidate]:
    return [candidate(f"p{i:03d}", f"def f{i}(x):\n    return x + {i}\n" * 3, f"def f{i}(x):\n    return x - {i}\n" * 3)
            for i in range(count)]


def dedup_run(run_dir: Path, **stages: Any) -> RunConfig:
    return RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                     stages={"dedup": {"inputs": ["parse"]}, **stages})


def test_a_missing_upstream_shard_fails_the_stage_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    upstream = write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    missing = upstream / "part-00001-of-00002.parquet"
    missing.unlink()

    with pytest.raises(StageFailed) as failure:
        run(dedup_run(run_dir), selected=["dedup"])

    assert f"missing {missing}" in failure.value.summary and "rerun stage 'parse'" in failure.value.summary
    assert StageManifest.read(str(run_dir / "dedup")) is None


def test_an_extra_upstream_shard_fails_the_stage_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    upstream = write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    extra = upstream / "part-00007-of-00008.parquet"
    shutil.copy(upstream / "part-00000-of-00002.parquet", extra)

    with pytest.raises(StageFailed) as failure:
        run(dedup_run(run_dir), selected=["dedup"])

    assert f"not in its manifest: {extra}" in failure.value.summary
    assert StageManifest.read(str(run_dir / "dedup")) is None


def test_upstream_rows_that_disagree_with_their_manifest_fail_the_stage(tmp_path):
    run_dir = tmp_path / "run"
    upstream = write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    manifest = StageManifest.read(str(upstream))
    manifest.records_out = 12
    manifest.write(str(upstream))

    with pytest.raises(StageFailed) as failure:
        run(dedup_run(run_dir), selected=["dedup"])

    assert "its shards hold 10 rows, its manifest says records_out 12" in failure.value.summary


def test_a_one_stage_command_reading_a_folder_with_a_deleted_shard_says_so(tmp_path):
    upstream = write_stage(tmp_path / "run", "parse", pairs(10), Candidate, shards=2)
    (upstream / "part-00000-of-00002.parquet").unlink()

    result = codepref("dedup", "--in", upstream, "--out", tmp_path / "deduped")

    assert result.returncode == 1 and "part-00000-of-00002.parquet" in result.stderr and "missing" in result.stderr


class LeakyConfig(StageConfig):
    inputs: list[str] = Field(["parse"], description="Upstream stages.")
    leak: bool = Field(True, description="Lose one record without a drop record.")
    drop_one: bool = Field(False, description="Drop one record with a reason (what a stage should do).")


class PassAlong(beam.DoFn):
    def __init__(self, leak: bool, drop_one: bool):
        self.leak, self.drop_one = leak, drop_one

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        if row["pair_id"] == "p003" and self.leak:
            return
        if row["pair_id"] == "p004" and self.drop_one:
            yield drop_record("leaky", row["pair_id"], "test_drop", "dropped on purpose", row)
            return
        yield row


@register_stage
class Leaky(Stage):
    """A stage that may lose a record: what the conservation check is for."""

    name = "leaky"
    Config = LeakyConfig
    output_type = Candidate
    key_field = "pair_id"

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config: LeakyConfig = self.config  # type: ignore[assignment]
        out = inputs["parse"] | beam.ParDo(PassAlong(config.leak, config.drop_one)).with_outputs(DROPPED, main="rows")
        return StageResult(out.rows, [out[DROPPED]])


def test_a_stage_that_loses_a_record_fails_without_a_manifest_and_a_rerun_redoes_it(tmp_path):
    run_dir = tmp_path / "run"
    write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    config = RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"leaky": {"drop_one": True}})

    with pytest.raises(StageFailed) as failure:
        run(config)

    assert "records in 10 != out 8 + dropped 1 (off by +1)" in failure.value.summary
    assert StageManifest.read(str(run_dir / "leaky")) is None and list_parts(str(run_dir / "leaky")) == []

    fixed = RunConfig(**{**config.model_dump(), "stages": {"leaky": {"drop_one": True, "leak": False}}})
    outcome = run(fixed)[0]
    assert (outcome.manifest.records_in, outcome.manifest.records_out, outcome.manifest.dropped) == (10, 9, {"test_drop": 1})


def test_rows_lost_by_the_writer_fail_the_stage(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    original = storage.shards.merge_sorted

    def lose_first_row(spills: list[str], schema: Any, key_field: str, target: str, temporary: bool = False) -> int:
        rows = original(spills, schema, key_field, target, temporary)
        if "part-00000" in target and rows:
            storage.parquet._write_table(target, pq.read_table(target).slice(1))
        return rows

    monkeypatch.setattr(storage.shards, "merge_sorted", lose_first_row)
    config = RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"leaky": {"leak": False}})

    with pytest.raises(StageFailed) as failure:
        run(config)

    assert "produced 10 rows but its shards hold 9" in failure.value.summary
    assert StageManifest.read(str(run_dir / "leaky")) is None


def test_shards_written_where_the_driver_cannot_see_them_fail_the_stage(tmp_path, monkeypatch):
    """Workers that do not share the driver's run directory write their shards to a disk of their own: the stage
    fails saying so, rather than finishing with empty shards."""
    run_dir = tmp_path / "run"
    write_stage(run_dir, "parse", pairs(10), Candidate, shards=2)
    original = storage.shards.merge_sorted

    def on_the_workers_own_disk(spills: list[str], schema: Any, key_field: str, target: str, temporary: bool = False) -> int:
        own = tmp_path / "worker-disk" / Path(target).relative_to(run_dir)
        own.parent.mkdir(parents=True, exist_ok=True)
        return original(spills, schema, key_field, target if temporary else str(own), temporary)

    monkeypatch.setattr(storage.shards, "merge_sorted", on_the_workers_own_disk)
    config = RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"leaky": {"leak": False}})

    with pytest.raises(StageFailed) as failure:
        run(config)

    assert "produced 10 rows but its shards hold 0 (written where this process cannot see them?" in failure.value.summary
    assert StageManifest.read(str(run_dir / "leaky")) is None


# --- local servers ---------------------------------------------------------------------------------------------------

def test_a_multi_processing_run_listens_on_loopback_only(tmp_path):
    repo = small_repository(tmp_path / "repo")
    listening: set[str] = set()
    done = threading.Event()
    me = psutil.Process()

    def watch() -> None:
        while not done.is_set():
            tree_pids = {me.pid, *(child.pid for child in me.children(recursive=True))}
            listening.update(c.laddr.ip for c in psutil.net_connections(kind="inet")
                             if c.status == psutil.CONN_LISTEN and c.pid in tree_pids)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run(RunConfig(run_dir=str(tmp_path / "run"), runner={"running_mode": "multi_processing", "workers": 2},
                      stages={"mine": {"repos": [str(repo.path)]}}))
    finally:
        done.set()
        watcher.join()

    assert listening, "no listening socket was seen during the run"
    assert listening <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, listening


def test_runner_input_written_while_a_flush_waits_is_sent():
    """The cause of the lost rows: Beam's runner sent bundle input through a stream whose background flush
    clears what is written while it waits on a full send queue. Modelled here with Beam's own sender, a send
    that waits, and a runner thread that writes more slowly than the one-second flush period (a busy machine)."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
    from apache_beam.runners.worker.data_plane import ClosableOutputStream

    from pipelines.run.local_runner import make_local_runs_safe

    make_local_runs_safe()
    sent: list[int] = []

    def slow_send(data: bytes) -> None:
        time.sleep(0.4)
        sent.append(len(data))

    stream = ClosableOutputStream.create(lambda data: sent.append(len(data)), slow_send, worker_handlers.DATA_BUFFER_TIME_LIMIT_MS)
    connection = SimpleNamespace(output_stream=lambda bundle, transform: stream)
    manager = SimpleNamespace(_worker_handler=SimpleNamespace(data_conn=connection))

    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            time.sleep(0.03)
            yield b"r" * (1 << 20)

    fn_runner.BundleManager._send_input_to_worker(manager, "bundle_1", "read", chunks())

    assert sum(sent) == 48 << 20


@pytest.mark.stress
def test_no_commit_is_lost_or_doubled_by_multi_worker_mining_under_contention(tmp_path):
    """Mine over repositories of large files, two worker processes, busy loops on every core. Without the local
    runner's fix, such runs kept 6,560 (old code, no error) and 8,948 (stage failed by the conservation check) of
    9,996 commits."""
    repositories = tmp_path / "repositories"
    for seed in range(4):
        large_file_history(repositories / f"r{seed}", 2500, seed)
    expected = 4 * 2499  # every commit but each repository's first (a root commit)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 2))]
    try:
        for attempt in range(1):
            run_dir = tmp_path / f"run{attempt}"
            outcome = run(RunConfig(run_dir=str(run_dir), num_shards=2, runner={"running_mode": "multi_processing", "workers": 2},
                                    stages={"mine": {"repos": [str(repositories)]}}))[0]
            ids = [row["commit"] for row in read_rows(str(run_dir / "mine"), Commit)]
            assert (len(ids), len(set(ids)), outcome.manifest.records_out) == (expected,) * 3, attempt
            assert outcome.manifest.dropped == {"root_commit": 4}
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
