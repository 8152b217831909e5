"""The judge's answer cache: opening it while others read it, and a disk that fills while it is written."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import threading
import time

import pytest

from llm.cache import AnswerCache, AnswerCacheError, AnswerKey, count_answers


def test_the_cache_opens_while_a_reader_holds_the_file_and_readers_see_every_answer(tmp_path):
    path = tmp_path / "answers.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE early (x)").connection.close()  # an existing file, not in WAL mode yet
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM sqlite_master").fetchall()  # a read transaction: the mode switch must wait for it
    release = threading.Timer(0.5, reader.rollback)
    release.start()
    started = time.monotonic()
    cache = AnswerCache(path)
    assert time.monotonic() - started >= 0.4  # it waited rather than failing with "database is locked"
    release.join()
    cache.put_many([(AnswerKey("judge", "t1", f"p{i}", "chosen_first", 0, 1), "A") for i in range(3)])
    assert count_answers(path, ["judge"]) == 3 and count_answers(path, ["other"]) == 0
    assert count_answers(tmp_path / "missing.sqlite", ["judge"]) == 0
    assert AnswerCache(path).get_many([AnswerKey("judge", "t1", "p1", "chosen_first", 0, 1)])


def test_workers_opening_a_new_cache_at_once_all_get_it(tmp_path):
    """Two workers switching a new file to WAL at once deadlock inside SQLite, which answers one of
    them "database is locked" at once (the busy timeout does not apply): the loser must retry."""
    failures: list[BaseException] = []
    for round_ in range(15):
        path = tmp_path / f"round{round_}.sqlite"
        barrier = threading.Barrier(4)

        def open_cache() -> None:
            barrier.wait()
            try:
                AnswerCache(path).put_many([(AnswerKey("judge", "t1", "p", "chosen_first", 0, 1), "A")])
            except BaseException as error:  # noqa: BLE001 - collected for the assertion
                failures.append(error)

        threads = [threading.Thread(target=open_cache) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def answers(batch: int, count: int = 10, size: int = 2000) -> list[tuple[AnswerKey, str]]:
    return [(AnswerKey("judge", "t1", f"b{batch}-p{i}", "chosen_first", 0, 1), "x" * size) for i in range(count)]


def assert_cannot_write_names_the_file(error: AnswerCacheError, path) -> None:
    message = str(error)
    assert message.startswith(f"{path}: the answer cache could not be written (the disk is full)"), message
    assert "rerun the same command, it resumes from them" in message and "\n" not in message
    assert "cannot rollback" not in message


def test_a_full_database_says_the_cache_file_could_not_be_written_and_keeps_what_it_had(tmp_path):
    """SQLite's own limit on the file's size gives the error a full disk gives (SQLITE_FULL, "database or disk is full")."""
    path = tmp_path / "answers.sqlite"
    cache = AnswerCache(path)
    cache.put_many(answers(0))
    pages = cache._connection.execute("PRAGMA page_count").fetchone()[0]
    cache._connection.execute(f"PRAGMA max_page_count = {pages + 2}")  # room for about two more answers
    with pytest.raises(AnswerCacheError) as error:
        cache.put_many(answers(1))
    assert_cannot_write_names_the_file(error.value, path)
    assert len(cache) == 10  # the batch was rolled back whole; what was stored before is intact
    cache._connection.execute("PRAGMA max_page_count = 1073741823")  # room again: the rerun stores what failed
    assert cache.put_many(answers(1)) == 10 and len(cache) == 20


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: a disk that really fills (needs root; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_a_really_full_disk_says_the_cache_file_could_not_be_written_and_a_rerun_resumes(tiny_disk):
    path = tiny_disk / "label_answers.sqlite"
    cache = AnswerCache(path)
    cache.put_many(answers(0))
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # another file takes the rest of the disk
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with pytest.raises(AnswerCacheError) as error:
        cache.put_many(answers(1, count=20))
    assert_cannot_write_names_the_file(error.value, path)
    filler.unlink()  # room again
    rerun = AnswerCache(path)
    assert len(rerun) == 10 and rerun.put_many(answers(1, count=20)) == 20 and len(rerun) == 30
    rerun.close()
    cache.close()
