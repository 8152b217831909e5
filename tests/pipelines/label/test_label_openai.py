"""The `label` stage through the `openai` backend against a real `vllm serve` that dies mid-run."""

from __future__ import annotations

import threading
import time
from collections import Counter

from llm.cache import read_answers
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Candidate, JudgedPair
from storage import read_rows
from tests.support.stage_fixtures import candidate, write_stage
from tests.support.vllm_server import VLLMServer

PAIRS = 6
VOTES = 4  # 2 per order: one request of n=2 per (pair, order)


def stored_answers(path) -> int:
    return sum(1 for _ in read_answers(str(path)))


def test_a_server_killed_mid_run_and_restarted_leaves_every_pair_judged_once(tmp_path, smollm2):
    import_builtin_stages()
    run_dir = tmp_path / "run"
    pairs = [candidate(f"p{i}", f"def f{i}(xs):\n    return sorted(set(xs))[:{i + 1}]\n",
                       f"def f{i}(xs):\n    out = []\n    for x in xs:\n        if x not in out:\n            out.append(x)\n"
                       f"    out.sort()\n    return out[:{i + 1}]\n") for i in range(PAIRS)]
    write_stage(run_dir, "dedup", pairs, Candidate)
    server = VLLMServer(smollm2, tmp_path / "serve.log")
    server.start()
    judge = {"backend": "openai", "model": "smollm2", "base_url": server.base_url, "concurrency": 1, "timeout": 60,
             "max_retries": 150, "max_backoff": 4}  # rides out a restart of minutes on a busy machine
    config = RunConfig(run_dir=str(run_dir), num_shards=1, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"label": {"judges": [judge], "qualify": None, "votes": VOTES, "max_tokens": 16, "constrained": True, "batch_size": 2,
                                         "min_matches": 3, "max_contradictions": 1}})
    cache = run_dir / "label_answers"
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(outcome=run(config)[0]), daemon=True)
    try:
        worker.start()
        deadline = time.monotonic() + 300
        while stored_answers(cache) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.kill()  # mid-run: some answers stored, requests in flight or still to come
        killed_at = stored_answers(cache)
        assert 0 < killed_at < PAIRS * VOTES and worker.is_alive()
        time.sleep(2)
        server.start()
        worker.join(timeout=400)
        assert not worker.is_alive()
    finally:
        server.kill()

    outcome = result["outcome"]
    judged = list(read_rows(str(run_dir / "label"), JudgedPair))
    assert sorted(row["pair_id"] for row in judged) == sorted(f"p{i}" for i in range(PAIRS))  # none lost, none twice
    stored = Counter((answer["pair_id"], answer["order"], answer["sample"]) for answer in read_answers(str(cache)))
    assert len(stored) == PAIRS * 2 * (VOTES // 2) and set(stored.values()) == {1}  # every answer stored once
    for row in judged:
        assert len(row["votes"]) == VOTES
        assert sum(row["chosen_first"].values()) == sum(row["chosen_second"].values()) == VOTES // 2
    counters = outcome.manifest.counters
    assert counters["backend_requests"] == PAIRS * 2  # each (pair, order) answered and paid for once
    assert counters["backend_retries"] >= 1  # the kill was felt, and ridden out
    assert all(vote["verdict"] for row in judged for vote in row["votes"])  # structured outputs over HTTP

    (again,) = run(config, force=True)  # the server is gone: a redone stage needs it for nothing
    assert again.manifest.counters.get("backend_requests", 0) == 0
    assert again.manifest.counters["answers_from_cache"] == PAIRS * VOTES
