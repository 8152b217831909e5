"""The judge's answer cache: opening it while others read it."""

from __future__ import annotations

import sqlite3
import threading
import time

from storage.answers import AnswerCache, AnswerKey, count_answers


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
