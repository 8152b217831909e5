"""The judge's answer cache as answer files, through the whole `label` stage and the scripted fake OpenAI server: a
redone stage asks for nothing, with the run directory on a local disk or reachable only through Beam's FileSystems
(`memfs://`, an object store in this process: the in_memory running mode); a server that goes down mid-stage
leaves every answer it gave; an older run's SQLite cache is honoured."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from llm.cache import answer_files, read_answers
from pipelines.run.orchestrator import run
from schemas import JudgedPair
from storage import read_rows
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import candidates, label_config
from tests.support.memory_fs import MemoryFileSystem, copy_into

PAIRS = 6


@pytest.fixture(params=["local", "memfs"])
def run_dir(request, tmp_path):
    """`PAIRS` candidate pairs as a finished dedup stage, in a local run directory or in `memfs://bucket/run`."""
    local = tmp_path / "run"
    candidates(local, PAIRS)
    if request.param == "local":
        yield str(local)
        return
    MemoryFileSystem.clear()
    yield copy_into(local, "memfs://bucket/run")
    MemoryFileSystem.clear()


def config_for(run_dir: str, url: str, **judge: object):
    return label_config(Path("unused"), url, **judge).model_copy(update={"run_dir": run_dir})


def judged(run_dir: str) -> list[dict]:
    return sorted(read_rows(f"{run_dir}/label", JudgedPair), key=lambda row: row["pair_id"])


def stored(run_dir: str) -> list[tuple[str, str, int]]:
    return sorted((answer["pair_id"], answer["order"], answer["sample"]) for answer in read_answers(f"{run_dir}/label_answers"))


def test_a_redone_stage_asks_the_server_for_nothing(run_dir, faulty_judge):
    config = config_for(run_dir, faulty_judge)
    run_redo(run_dir, config)


def test_two_worker_processes_write_their_answers_at_once_and_a_redo_asks_for_nothing(tmp_path, faulty_judge):
    run_dir = str(tmp_path / "run")
    candidates(Path(run_dir), PAIRS)
    config = config_for(run_dir, faulty_judge, concurrency=2)
    config = config.model_copy(update={"runner": config.runner.model_copy(update={"running_mode": "multi_processing", "workers": 2})})
    run_redo(run_dir, config)


def run_redo(run_dir: str, config) -> None:  # type: ignore[no-untyped-def]
    (first,) = run(config)
    assert first.manifest.counters["backend_requests"] == PAIRS * 2 and len(FakeOpenAI.requests) == PAIRS * 2
    assert len(stored(run_dir)) == PAIRS * 2 and answer_files(f"{run_dir}/label_answers")  # votes: 2, one per order
    rows = judged(run_dir)

    (again,) = run(config, force=True)
    assert again.manifest.counters.get("backend_requests", 0) == 0 and len(FakeOpenAI.requests) == PAIRS * 2
    assert again.manifest.counters["answers_from_cache"] == PAIRS * 2
    assert judged(run_dir) == rows and again.manifest.records_out == first.manifest.records_out == PAIRS


def test_a_server_down_mid_stage_leaves_every_answer_it_gave_and_the_rerun_asks_only_for_the_rest(run_dir, faulty_judge):
    FakeOpenAI.down_after = 5  # 5 of the 12 (pair, order) requests answered, then 503 for ever
    config = config_for(run_dir, faulty_judge, max_retries=2)
    with pytest.raises(Exception, match=re.escape(faulty_judge) + r": still failing after 2 retries"):
        run(config)
    assert len(stored(run_dir)) == 5  # written although the batch failed

    FakeOpenAI.down_after = None
    (outcome,) = run(config)
    assert outcome.manifest.counters["backend_requests"] == 7 and outcome.manifest.counters["answers_from_cache"] == 5
    assert [row["pair_id"] for row in judged(run_dir)] == [f"p{i}" for i in range(PAIRS)]
    assert len(stored(run_dir)) == len(set(stored(run_dir))) == PAIRS * 2  # none twice


def test_an_older_runs_sqlite_cache_is_honoured_not_asked_again(tmp_path, faulty_judge):
    """A run directory from before answer files keeps its answers in label_answers.sqlite: a redo reads them."""
    run_dir = str(tmp_path / "run")
    candidates(Path(run_dir), PAIRS)
    config = config_for(run_dir, faulty_judge)
    (first,) = run(config)
    rows = judged(run_dir)
    legacy = sqlite3.connect(Path(run_dir) / "label_answers.sqlite")  # the same answers, as the older codepref kept them
    legacy.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, pair_id TEXT NOT NULL,"
                   " sample_order TEXT NOT NULL, sample INTEGER NOT NULL, seed INTEGER NOT NULL, text TEXT NOT NULL, created REAL NOT NULL)")
    legacy.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [tuple(a[f] for f in ("key", "model", "template", "pair_id", "order", "sample", "seed", "text", "created"))
                        for a in read_answers(f"{run_dir}/label_answers")])
    legacy.commit()
    legacy.close()
    for path in (Path(run_dir) / "label_answers").iterdir():
        path.unlink()

    (again,) = run(config, force=True)
    assert again.manifest.counters.get("backend_requests", 0) == 0 and len(FakeOpenAI.requests) == PAIRS * 2
    assert judged(run_dir) == rows and first.manifest.counters["backend_requests"] == PAIRS * 2
