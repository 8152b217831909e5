"""The answer cache: answer files any worker can write at once, read whole by the next opening, written whole or not
at all, counted for progress bars; an older run's SQLite cache read as answers; a disk that fills while it is written."""

from __future__ import annotations

import errno
import multiprocessing
import sqlite3
import subprocess
import threading

import pytest

from llm.backends import BACKENDS, BackendUnavailable, Sampling
from llm.cache import (
    AnswerCache,
    AnswerCacheError,
    AnswerKey,
    answer_files,
    count_answers,
    read_answer_file,
    read_answers,
)
from llm.generation import CachedGenerator, Request
from tests.support.fake_openai import FakeOpenAI
from tests.support.memory_fs import MemoryFileSystem


def answers(batch: int, count: int = 10, size: int = 2000, model: str = "judge") -> list[tuple[AnswerKey, str]]:
    return [(AnswerKey(model, "t1", f"b{batch}-p{i}", "chosen_first", 0, 1), f"{batch}/{i}:" + "x" * size) for i in range(count)]


@pytest.fixture(params=["local", "memfs"])
def folder(request, tmp_path):
    """A cache folder on a local disk, or on an object store reached only through Beam's FileSystems."""
    if request.param == "local":
        yield str(tmp_path / "label_answers")
    else:
        MemoryFileSystem.clear()
        yield "memfs://bucket/run/label_answers"
        MemoryFileSystem.clear()


def test_answers_are_written_as_whole_files_and_the_next_opening_reads_them_all(folder):
    cache = AnswerCache(folder)
    assert cache.put_many(answers(0, count=3)) == 3
    assert answer_files(folder) == [] and count_answers(folder, ["judge"]) == 0  # not written before the flush
    cache.flush()
    cache.put_many(answers(1, count=2))
    cache.close()  # the rest
    assert len(answer_files(folder)) == 2
    again = AnswerCache(folder)
    assert len(again) == 5 and again.get_many([key for key, _ in answers(1, count=2)])
    assert count_answers(folder, ["judge"]) == 5 and count_answers(folder, ["other"]) == 0
    assert {a["pair_id"] for a in read_answers(folder)} == {"b0-p0", "b0-p1", "b0-p2", "b1-p0", "b1-p1"}


def test_a_long_batch_is_written_every_flush_seconds_not_only_at_its_end(folder):
    cache = AnswerCache(folder, flush_seconds=0)  # every answer is late: each put is written at once
    for batch in range(3):
        cache.put_many(answers(batch, count=1))
        assert len(answer_files(folder)) == batch + 1  # a killed worker loses nothing already put
    assert count_answers(folder, ["judge"]) == 3


def test_answers_that_came_before_the_server_went_down_are_written_before_the_error(folder, faulty_judge):
    FakeOpenAI.down_after = 3  # 3 of the 5 requests answered, then 503 for ever
    judge = BACKENDS["openai"]("judge", base_url=faulty_judge, backoff=0.01, max_backoff=0.02, timeout=1.0, concurrency=1, max_retries=1)
    generator = CachedGenerator(AnswerCache(folder), judge, "judge", "t1", "test")
    requests = [Request(f"p{i}", "chosen_first", i, [{"role": "user", "content": f"Task p{i}. A or B?"}]) for i in range(5)]
    with pytest.raises(BackendUnavailable):
        generator.answers(requests, Sampling(n=2))
    assert count_answers(folder, ["judge"]) == 3 * 2  # in an answer file, the cache not even closed: a killed worker keeps them


def test_a_key_answered_twice_keeps_its_first_answer(folder):
    first = AnswerCache(folder)
    first.put_many(answers(0, count=2))
    first.close()
    second = AnswerCache(folder)  # knows the first's answers: stores only the new one
    key = answers(0)[0][0]
    assert second.put_many([(key, "a different answer"), *answers(1, count=1)]) == 1
    second.close()
    assert AnswerCache(folder).get_many([key])[key.key].startswith("0/0:")
    assert count_answers(folder, ["judge"]) == 3


def test_temporary_and_damaged_files_are_not_answers(tmp_path):
    folder = tmp_path / "label_answers"
    cache = AnswerCache(str(folder))
    cache.put_many(answers(0, count=2))
    cache.close()
    (folder / ".f00d.jsonl.tmp").write_text('{"key": "half')  # a writer that died before its rename
    (folder / "zz.jsonl").write_text((folder / answer_files(str(folder))[0]).read_text() + '{"key": "cut')
    assert len(AnswerCache(str(folder))) == 2 and count_answers(str(folder), ["judge"]) == 2


def write_in_process(folder: str, worker: int, flushes: int) -> None:
    cache = AnswerCache(folder)
    for flush in range(flushes):
        cache.put_many(answers(worker * 1000 + flush, count=5, size=20_000))
        cache.flush()
    cache.close()


def test_workers_writing_at_once_lose_and_damage_no_answer(tmp_path):
    """Four processes and four threads write 20 files each into one folder at the same time, while a reader (a
    progress bar, a worker opening the cache) reads it: every file it sees is whole."""
    folder = str(tmp_path / "label_answers")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=write_in_process, args=(folder, worker, 20)) for worker in range(4)]
    threads = [threading.Thread(target=write_in_process, args=(folder, worker, 20)) for worker in range(4, 8)]
    seen: dict[str, set[int]] = {}  # answers in each file the reader found, each time it read it

    def read_while_written() -> None:
        while any(worker.is_alive() for worker in [*processes, *threads]):
            for path in answer_files(folder):
                if seen.get(path) != {5}:  # new, or not whole when last read
                    seen.setdefault(path, set()).add(sum(1 for _ in read_answer_file(path)))

    for worker in [*processes, *threads]:
        worker.start()
    reader = threading.Thread(target=read_while_written)
    reader.start()
    for worker in [*processes, *threads, reader]:
        worker.join()
    assert seen and all(counts == {5} for counts in seen.values())
    assert [process.exitcode for process in processes] == [0] * 4
    stored = list(read_answers(folder))
    assert len(stored) == len({a["key"] for a in stored}) == 8 * 20 * 5
    expected = {key.key: text for worker in range(8) for flush in range(20) for key, text in answers(worker * 1000 + flush, 5, 20_000)}
    assert {a["key"]: a["text"] for a in stored} == expected and len(AnswerCache(folder)) == 800


def test_an_older_runs_sqlite_cache_is_read_as_answers(tmp_path):
    """Before answer files the cache was RUN_DIR/label_answers.sqlite: its answers count and are never asked again."""
    legacy = sqlite3.connect(tmp_path / "label_answers.sqlite")
    legacy.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, pair_id TEXT NOT NULL,"
                   " sample_order TEXT NOT NULL, sample INTEGER NOT NULL, seed INTEGER NOT NULL, text TEXT NOT NULL, created REAL NOT NULL)")
    old = answers(0, count=3)
    legacy.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(k.key, k.model, k.template, k.pair_id, k.order, k.sample, k.seed, text, 0.0) for k, text in old])
    legacy.commit()
    legacy.close()
    folder = str(tmp_path / "label_answers")
    cache = AnswerCache(folder)
    assert cache.get_many(key for key, _ in old) == {key.key: text for key, text in old}
    assert cache.put_many([*old, *answers(1, count=1)]) == 1
    cache.close()
    assert count_answers(folder, ["judge"]) == 4


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a disk that really fills (needs root; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_a_full_disk_says_the_cache_could_not_be_written_and_a_rerun_resumes(tiny_disk):
    folder = str(tiny_disk / "label_answers")
    cache = AnswerCache(folder)
    cache.put_many(answers(0))
    cache.flush()
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # another file takes the rest of the disk
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    cache.put_many(answers(1, count=20))
    with pytest.raises(AnswerCacheError) as error:
        cache.flush()
    message = str(error.value)
    assert message.startswith(f"{folder}: the answer cache could not be written (") and "No space left on device" in message
    assert "rerun the same command, it resumes from them" in message
    assert count_answers(folder, ["judge"]) == 10  # what was written before is intact; no half file counts
    filler.unlink()  # room again: the answers not written are written at the next flush
    cache.close()
    assert count_answers(folder, ["judge"]) == 30
    assert sorted(path.suffix for path in (tiny_disk / "label_answers").iterdir()) == [".jsonl", ".jsonl"]  # no half file left
