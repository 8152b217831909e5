"""Synthesize's LLM answer cache as answer files with the run directory reachable only through Beam's FileSystems
(`memfs://`, an object store in this process: the in_memory running mode): commit review and instruction recovery
against the scripted fake OpenAI server, then a redo that asks it for nothing and makes the same pairs."""

from __future__ import annotations

from llm.cache import read_answers
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Candidate, Commit
from storage import read_rows
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import commit
from tests.support.memory_fs import MemoryFileSystem, copy_into
from tests.support.stage_fixtures import write_stage

RUN_DIR = "memfs://bucket/run"


def test_a_redone_synthesize_on_an_object_store_asks_for_nothing(tmp_path, faulty_judge):
    import_builtin_stages()
    FakeOpenAI.answers = [("Commit message:", "Clearly better.\n[RATING]5[/RATING]"),
                          ("Write the task that the improved version solves",
                           "[DESCRIPTION]d[/DESCRIPTION]\n[PROBLEM_STATEMENT]Handle negative numbers.[/PROBLEM_STATEMENT]")]
    commits = [commit(letter * 40, f"Fix broken sign handling in module {name}", after=f"def f(x):\n    return abs(x)  # {name}\n")
               for letter, name in (("a", "alpha"), ("b", "beta"), ("c", "gamma"))]
    write_stage(tmp_path / "run", "mine", commits, Commit)
    MemoryFileSystem.clear()
    copy_into(tmp_path / "run", RUN_DIR)
    llm = {"model": {"backend": "openai", "model": "scripted", "base_url": faulty_judge, "max_retries": 0, "timeout": 10},
           "review_cutoff": 4}
    config = RunConfig(run_dir=RUN_DIR, num_shards=1, runner={"running_mode": "in_memory", "workers": 1},
                       stages={"synthesize": {"llm": llm}})
    try:
        (first,) = run(config)
        pairs = sorted(read_rows(f"{RUN_DIR}/synthesize", Candidate), key=lambda row: row["pair_id"])
        asked = len(FakeOpenAI.requests)
        assert first.manifest.counters["backend_requests"] == asked == 3 + 3  # a review and a recovery per commit
        assert len(pairs) == 3 and {pair["prompt"] for pair in pairs} == {"Handle negative numbers."}
        assert len(list(read_answers(f"{RUN_DIR}/synthesize_answers"))) == asked

        (again,) = run(config, force=True)
        assert again.manifest.counters.get("backend_requests", 0) == 0 and len(FakeOpenAI.requests) == asked
        assert sorted(read_rows(f"{RUN_DIR}/synthesize", Candidate), key=lambda row: row["pair_id"]) == pairs
    finally:
        MemoryFileSystem.clear()
