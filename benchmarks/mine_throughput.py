"""Mining throughput: the `mine` stage against what the reference did for every commit.

The reference fetched each selected commit on its own: a fresh `git init`, `git fetch --depth 2`
of that commit from the remote, then a checkout of the file after and before. The baseline here
does exactly that from a `file://` remote (no network cost, so it flatters the baseline), on a
sample of the commits the stage keeps. The stage walks the whole history of a synthetic
repository (every change shape) with one worker (so figures are per core).

The history comes from benchmarks.corpus.synthetic_history.

    .venv/bin/python -m benchmarks.mine_throughput [--commits 5000] [--sample 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import synthetic_history
from pipelines.run.config import RunConfig, import_builtin_stages
from pipelines.run.orchestrator import run
from schemas import Commit
from storage import read_rows

GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=GIT_ENV).stdout


def reference_style(remote: Path, commit: str, path: str, scratch: Path) -> tuple[str, str]:
    """One commit the way the reference fetched it: init, shallow fetch, checkout after and before."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    git("init", "-q", str(work))
    git("fetch", "-q", "--depth", "2", f"file://{remote}", commit, cwd=work)
    git("checkout", "-q", "FETCH_HEAD", "--", path, cwd=work)
    after = (work / path).read_text()
    git("checkout", "-q", "FETCH_HEAD~1", "--", path, cwd=work)
    before = (work / path).read_text()
    return before, after


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=5000, help="Commits in the synthetic history.")
    parser.add_argument("--sample", type=int, default=30, help="Commits fetched the reference way.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        repo = synthetic_history(tmp_path / "synth.git", args.commits)
        git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=repo)
        manifest = tmp_path / "repos.jsonl"
        manifest.write_text(json.dumps({"path": str(repo), "name": "octo/synth", "license": "mit"}) + "\n")

        import_builtin_stages()
        config = RunConfig(run_dir=str(tmp_path / "run"), num_shards=4, runner={"running_mode": "in_memory", "workers": 1},
                           stages={"mine": {"repo_manifest": str(manifest)}})
        start = time.perf_counter()
        (outcome,) = run(config, force=True)
        stage_s = time.perf_counter() - start
        kept = list(read_rows(str(tmp_path / "run" / "mine"), Commit))

        sample = random.Random(0).sample(kept, min(args.sample, len(kept)))
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        start = time.perf_counter()
        for row in sample:
            before, after = reference_style(repo, row["commit"], row["path"], scratch)
            assert (before, after) == (row["before"], row["after"]), row["commit"]
        baseline_s = time.perf_counter() - start

    walked = outcome.manifest.records_in
    result = {
        "history_commits": walked,
        "kept_commits": len(kept),
        "stage_seconds": round(stage_s, 2),
        "stage_commits_walked_per_s": round(walked / stage_s, 1),
        "stage_commits_kept_per_s": round(len(kept) / stage_s, 1),
        "baseline_commits": len(sample),
        "baseline_seconds": round(baseline_s, 2),
        "baseline_commits_per_s": round(len(sample) / baseline_s, 2),
    }
    result["speedup_walked"] = round(result["stage_commits_walked_per_s"] / result["baseline_commits_per_s"], 1)
    result["speedup_kept"] = round(result["stage_commits_kept_per_s"] / result["baseline_commits_per_s"], 1)
    for key, value in result.items():
        print(f"{key:32} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
