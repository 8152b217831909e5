"""The same config gives the same rows: run twice, on one worker or two, in another process.

A small real run (a git repository made here and instruction rows with tests -> mine -> synthesize ->
parse -> dedup -> assemble, the dedup output read as unjudged candidates) is compared by a hash of
every row of every Parquet file it writes: records, drop records and side tables, file by file.

The second run is `codepref run` in a new process with another PYTHONHASHSEED and two worker
processes (FnApiRunner multi-processing): it differs from the first (one worker, in memory) in time,
process, hash seed, worker count and bundle order, so anything that leaked into the rows from those (an
unseeded draw, set order, arrival order) shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from tests.support.inputs import INSTRUCT, small_run_config, small_run_repository

REPO = Path(__file__).resolve().parents[3]

@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sources")
    repo = small_run_repository(base / "octo-stats").path
    rows = base / "instruct.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in INSTRUCT))
    return {"repo": repo, "instruct": rows}


def row_hashes(run_dir: Path) -> dict[str, list[str]]:
    """Every Parquet file of the run (relative path) -> the hashes of its rows, in file order."""
    hashes = {}
    for path in sorted(run_dir.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        hashes[str(path.relative_to(run_dir))] = [
            hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest() for row in rows
        ]
    return hashes


def test_the_same_config_twice_and_on_one_or_two_workers_gives_the_same_rows(tmp_path, sources):
    import_builtin_stages()
    run(RunConfig.model_validate(small_run_config(tmp_path / "first", sources, "in_memory", 1)))
    first = row_hashes(tmp_path / "first")
    corpus = sum(len(rows) for name, rows in first.items() if name.startswith("assemble/part-"))
    assert corpus >= 6  # commit pairs and bug-injected pairs reached the corpus
    assert len(first["dedup/_dropped/part-00000-of-00001.parquet"]) == 1  # the near copy was dropped
    assert {name.split("/")[0] for name in first} == {"mine", "synthesize", "parse", "dedup", "assemble"}

    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(small_run_config(tmp_path / "two", sources, "multi_processing", 2)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "2024"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(path)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert row_hashes(tmp_path / "two") == first
