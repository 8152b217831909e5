"""Mining throughput: `codepref mine` against the plain git pass (also with Parquet writing), PyDriller, the
reference's fetch per commit, and the start-up floor of one Beam process.

On the same repositories (synthetic histories of several sizes from benchmarks.corpus.synthetic_history,
written with `git fast-import`, plus any real repository given with `--repo`), one run times:

- **codepref**: `codepref mine` as its own process (one worker, the in-memory runner, so figures are
  per core), every mine rule. The repository is declared MIT in the manifest so the licence rule
  keeps it (a real repository's licence is not detected; this benchmark is about throughput).
- **plain git**: `git log --raw --no-renames` over the history for the cheap single-file rule (one
  parent, one path modified in place, same regular-file mode, an extension of a registered language),
  then one `git cat-file --batch` fed both blobs of every kept commit (benchmarks/mine_peers.py). It writes nothing.
- **plain git + write** (`plain_git_write`): the same pass, plus every pair it reads (UTF-8 ones; others are counted
  as `undecodable`) written into one Parquet file in the work directory the way codepref's stages write output:
  pyarrow, zstd, row groups of storage.parquet's ROW_GROUP_ROWS rows, no dictionary for the file contents, group by
  group through one `pq.ParquetWriter` (about 16 MB of text a group), no sorting. Columns repo, commit, parent, path,
  message (always "": the plain pass reads no messages), before, after. Its interpreter imports pyarrow but not Beam.
  Every codepref row also gets its ratio to this pass: the floor of reading the pairs and writing them.
- **PyDriller** (2.12): a peer in its own virtual environment (`--pydriller-venv`, created with
  `python3 -m venv` and `pip install PyDriller==2.12` when missing; never a codepref dependency),
  walking `Repository(path).traverse_commits()` with the same rule and reading both versions.
  If it cannot be installed the peer is reported unavailable, with the reason. `--no-pydriller` skips it.
- **reference fetch**: the reference fetched each selected commit on its own: a fresh `git init`,
  `git fetch --depth 2` of that commit, then a checkout of the file after and before. It runs here
  from a `file://` remote (no network cost, so it flatters the baseline) on a sample of the commits
  codepref keeps, and checks codepref's contents against it.

- **process floor** (`process_floor`, once per run): `python -c "import pipelines.mine.stage"` (Beam imported as codepref imports it), the CPU
  seconds and peak RSS of one process that has imported Beam and the stage's code and done nothing else. Every
  codepref run pays it once per process; the default multi-processing runner runs 1 + workers such processes.

The plain git passes and PyDriller apply the same rule, so their examined and kept counts are equal; codepref's
kept count is lower (its message, revert, time-window and content rules drop more).

Measures, per method and repository: commits examined and kept, wall seconds, CPU seconds of the
whole process tree (`getrusage(RUSAGE_CHILDREN)` before and after: the process and every descendant
it waited for), commits examined per CPU second (= per core), and peak RSS of the process tree: the
sum of the resident set of the process and all its descendants (psutil), sampled every 50 ms, the
largest sum kept (a peak shorter than 50 ms can be missed). The ratio is commits per core over the
plain git pass's. The machine's load average is recorded at the start and the end.

    .venv/bin/python -m benchmarks.mine_throughput [--commits 1000 5000 20000] [--repo PATH ...] [--together]
        [--workers 2] [--sample 30] [--no-pydriller] [--work DIR] [--json out.json]

`--workers 2` adds a run of codepref with two worker processes on each repository (the history of one repository
is walked in runs spread over the workers); `--together` adds one codepref run over all the `--repo` repositories.
`--work DIR` keeps the synthetic histories and the Parquet the write pass wrote (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.corpus import synthetic_history
from benchmarks.process_tree import measured, peer_python, process_floor
from parsers import languages
from schemas import Commit
from storage import MANIFEST_NAME, read_rows
from storage.parquet import DICTIONARY_MAX_MEAN_BYTES, ROW_GROUP_ROWS

GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
PEERS = Path(__file__).with_name("mine_peers.py")
CODEPREF = Path(sys.executable).with_name("codepref")
PYDRILLER = "PyDriller==2.12"
DEFAULT_VENV = Path.home() / ".cache" / "codepref" / "bench-venvs" / "pydriller"
METHODS = ("codepref", "plain_git", "plain_git_write", "pydriller")
FLOOR_IMPORTS = "import pipelines.mine.stage"  # as codepref imports Beam (pipelines/__init__.py: without pandas)
FLOOR_NOTE = ("one Python process that imported Beam and the mine stage and did nothing else; the in-memory runner runs one "
              "such process, the default multi-processing runner 1 + workers")


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=GIT_ENV).stdout


def reference_style(remote: Path, commit: str, path: str, scratch: Path) -> tuple[str, str]:
    """One commit the way the reference fetched it: init, shallow fetch, checkout after and before."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    git("init", "-q", str(work))
    # The remote's upload-pack is told to serve any commit, so the repository's own config is not touched.
    git("fetch", "-q", "--upload-pack", "git -c uploadpack.allowAnySHA1InWant=true upload-pack", "--depth", "2",
        f"file://{remote}", commit, cwd=work)
    git("checkout", "-q", "FETCH_HEAD", "--", path, cwd=work)
    after = (work / path).read_text()
    git("checkout", "-q", "FETCH_HEAD~1", "--", path, cwd=work)
    before = (work / path).read_text()
    return before, after


def extensions() -> list[str]:
    return sorted({extension for spec in languages() for extension in spec.extensions})


def run_codepref(repos: list[tuple[Path, str]], work: Path, workers: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`codepref mine` over `repos` (path, name) in one run: the in-memory runner for one worker, else `workers`
    worker processes."""
    manifest = work / "repos.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(repo), "name": name, "license": "mit"}) + "\n" for repo, name in repos))
    config = work / "config.yaml"
    runner = {"running_mode": "in_memory", "workers": 1} if workers == 1 else {"running_mode": "multi_processing", "workers": workers}
    config.write_text(yaml.safe_dump({"run_dir": str(work / "run"), "num_shards": 4, "runner": runner, "stages": {"mine": {}}}))
    out = work / "mine"
    command = [str(CODEPREF), "mine", "--out", str(out), "--repo-manifest", str(manifest), "--config", str(config), "--force"]
    result, figures = measured(command, env=GIT_ENV)
    if result.returncode != 0:
        raise RuntimeError(f"codepref mine failed on {[str(r) for r, _ in repos]}: {result.stderr[-2000:]}")
    stage = json.loads((out / MANIFEST_NAME).read_text())
    kept = list(read_rows(str(out), Commit))
    return {"examined": stage["records_in"], "kept": len(kept), "stage_seconds": round(stage["seconds"], 3), **figures}, kept


def run_peer(method: str, python: Path, repo: Path, options: tuple[str, ...] = ()) -> dict[str, Any]:
    command = [str(python), str(PEERS), method, str(repo), *options] + [f"--ext={e}" for e in extensions()]
    result, figures = measured(command, env=GIT_ENV)
    if result.returncode != 0:
        raise RuntimeError(f"{method} failed on {repo}: {result.stderr[-2000:]}")
    return {**json.loads(result.stdout), **figures}


def run_plain_git_write(repo: Path, out: Path) -> dict[str, Any]:
    """The plain git pass writing its pairs to `out` as codepref's stages write Parquet (mine_peers.ParquetPairs)."""
    options = ("--out", str(out), "--row-group-rows", str(ROW_GROUP_ROWS), "--dictionary-max-mean-bytes", str(DICTIONARY_MAX_MEAN_BYTES))
    return {**run_peer("plain-git-write", Path(sys.executable), repo, options), "out": str(out)}



def reference_fetch(repo: Path, kept: list[dict[str, Any]], sample_size: int, scratch: Path) -> dict[str, Any]:
    sample = random.Random(0).sample(kept, min(sample_size, len(kept)))
    scratch.mkdir()
    start = time.perf_counter()
    for row in sample:
        before, after = reference_style(repo, row["commit"], row["path"], scratch)
        assert (before, after) == (row["before"], row["after"]), row["commit"]
    seconds = time.perf_counter() - start
    return {"commits": len(sample), "seconds": round(seconds, 2), "commits_per_s": round(len(sample) / seconds, 2) if sample else None}


def finish(figures: dict[str, Any]) -> dict[str, Any]:
    figures["commits_per_s"] = round(figures["examined"] / figures["seconds"], 1)
    figures["commits_per_s_per_core"] = round(figures["examined"] / max(figures["cpu_seconds"], 1e-3), 1)
    return figures


def measure_repository(name: str, kind: str, repo: Path, work: Path, args: argparse.Namespace, pydriller: Path | None,
                       unavailable: str | None) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    methods["codepref"], kept = run_codepref([(repo, name)], work)
    if args.workers > 1 and kind in args.parallel_kinds:
        methods[f"codepref_{args.workers}_workers"], _ = run_codepref([(repo, name)], work, args.workers)
    methods["plain_git"] = run_peer("plain-git", Path(sys.executable), repo)
    methods["plain_git_write"] = run_plain_git_write(repo, work / "plain_git_write")
    commits = methods["plain_git"]["examined"]
    if pydriller is not None and commits > args.pydriller_max_commits:
        methods["pydriller"] = {"unavailable": f"skipped: {commits:,} commits, over --pydriller-max-commits "
                                              f"({args.pydriller_max_commits:,}); at its ~250 commits/s that is "
                                              f"{commits / 250 / 60:.0f} min"}
    elif pydriller is not None:
        methods["pydriller"] = run_peer("pydriller", pydriller, repo)
    else:
        methods["pydriller"] = {"unavailable": unavailable}
    ratios(methods)
    entry: dict[str, Any] = {"name": name, "kind": kind, "path": str(repo), "methods": methods}
    if args.sample:
        fetch = reference_fetch(repo, kept, args.sample, work / "scratch")
        if fetch["commits_per_s"]:
            fetch["codepref_speedup_walked"] = round(methods["codepref"]["commits_per_s"] / fetch["commits_per_s"], 1)
            fetch["codepref_speedup_kept"] = round(methods["codepref"]["kept"] / methods["codepref"]["seconds"] / fetch["commits_per_s"], 1)
        entry["reference_fetch"] = fetch
    return entry


def measure_together(repos: list[dict[str, Any]], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All the real repositories in one `codepref mine` run, against the peers' runs on each, summed (peak: the largest)."""
    methods: dict[str, Any] = {}
    methods["codepref"], _ = run_codepref([(Path(entry["path"]), entry["name"]) for entry in repos], work)
    if args.workers > 1:
        methods[f"codepref_{args.workers}_workers"], _ = run_codepref([(Path(entry["path"]), entry["name"]) for entry in repos], work,
                                                                     args.workers)
    for method in ("plain_git", "plain_git_write", "pydriller"):
        runs = [entry["methods"][method] for entry in repos]
        if all("examined" in run for run in runs):
            methods[method] = {key: sum(run[key] for run in runs) for key in ("examined", "kept", "seconds", "cpu_seconds")}
            methods[method]["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
        else:
            missing = [entry["name"] for entry, run in zip(repos, runs) if "examined" not in run]
            methods[method] = {"unavailable": f"not run on {', '.join(missing)}"}
    ratios(methods)
    return {"name": f"all {len(repos)} real, together", "kind": "real", "path": "", "methods": methods}


def ratios(methods: dict[str, Any]) -> None:
    """Per core figures of every method that ran, its ratio to the plain git pass, and each codepref run's to the
    plain git pass with writing."""
    plain = finish(methods["plain_git"])["commits_per_s_per_core"]
    write = finish(methods["plain_git_write"])["commits_per_s_per_core"] if "examined" in methods["plain_git_write"] else None
    for method, figures in methods.items():
        if "examined" in figures:
            finish(figures)
            figures["ratio_to_plain_git"] = round(figures["commits_per_s_per_core"] / plain, 3)
            if method.startswith("codepref") and write:
                figures["ratio_to_plain_git_write"] = round(figures["commits_per_s_per_core"] / write, 3)


def marginal(repositories: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU microseconds per commit between the smallest and the largest synthetic history, per method: the cost of
    one more commit, with the fixed start-up (interpreter, Beam, pipeline) taken out."""
    synthetic = sorted((e for e in repositories if e["kind"] == "generated"), key=lambda e: e["methods"]["plain_git"]["examined"])
    if len(synthetic) < 2:
        return {}
    small, large = synthetic[0]["methods"], synthetic[-1]["methods"]
    out: dict[str, Any] = {"between": [synthetic[0]["name"], synthetic[-1]["name"]]}
    for method in large:
        if "examined" in large[method] and "examined" in small.get(method, {}):
            commits = large[method]["examined"] - small[method]["examined"]
            out[method] = round(1e6 * (large[method]["cpu_seconds"] - small[method]["cpu_seconds"]) / commits, 1)
    if "plain_git" in out:
        out["ratio_to_plain_git"] = {m: round(out["plain_git"] / v, 3) for m, v in out.items() if m not in ("between", "plain_git")}
    return out


def repository_name(path: Path) -> str:
    """The folder's name, or its parent's for a folder called `repo` or `.git` (a mirror's layout)."""
    path = path.resolve()
    return path.parent.name if path.name in ("repo", ".git") else path.name.removesuffix(".git")


def table(results: dict[str, Any]) -> str:
    lines = [("| repository | method | commits examined | kept | seconds (stage) | CPU s | commits/s/core | peak RSS MB "
              "| ratio to plain git | ratio to plain git + write |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in results["repositories"]:
        for method, f in entry["methods"].items():
            if "examined" not in f:
                lines.append(f"| {entry['name']} | {method} | unavailable: {f['unavailable']} | | | | | | | |")
                continue
            stage = f" ({f['stage_seconds']:.2f})" if "stage_seconds" in f else ""
            write = f"{f['ratio_to_plain_git_write']:.3f}" if "ratio_to_plain_git_write" in f else ""
            lines.append(f"| {entry['name']} | {method} | {f['examined']:,} | {f['kept']:,} | {f['seconds']:.2f}{stage} | {f['cpu_seconds']:.2f} "
                         f"| {f['commits_per_s_per_core']:,.0f} | {f['peak_rss_mb']:.0f} | {f['ratio_to_plain_git']:.3f} | {write} |")
    floor = results["process_floor"]
    lines.append(f"| (start-up only) | process_floor | | | {floor['seconds']:.2f} | {floor['cpu_seconds']:.2f} | | {floor['peak_rss_mb']:.0f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, nargs="+", default=[1000, 5000, 20000], help="Sizes of the synthetic histories.")
    parser.add_argument("--repo", type=Path, action="append", default=[], help="A real repository to mine too (repeatable).")
    parser.add_argument("--sample", type=int, default=30, help="Commits fetched the reference way per repository (0: none).")
    parser.add_argument("--no-pydriller", action="store_true", help="Skip the PyDriller peer (no venv is created).")
    parser.add_argument("--pydriller-venv", type=Path, default=DEFAULT_VENV, help="The PyDriller peer's virtual environment.")
    parser.add_argument("--pydriller-max-commits", type=int, default=20_000,
                        help="PyDriller is skipped on a larger history (it walks about 250 commits a second).")
    parser.add_argument("--workers", type=int, default=1,
                        help="Also run codepref with this many worker processes (multi-processing runner), to show one "
                             "repository's history spread over the cores.")
    parser.add_argument("--parallel-kinds", nargs="+", default=["generated", "real"], choices=["generated", "real"],
                        help="Which repositories get the --workers run.")
    parser.add_argument("--together", action="store_true",
                        help="Also mine all the --repo repositories in one codepref run (the peers' runs on each are summed).")
    parser.add_argument("--work", type=Path, help="Work here and keep it (synthetic histories, the write pass's Parquet); "
                                                 "default a temporary folder, removed.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    machine = {"nproc": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
               "git": git("--version").strip(), "python": platform.python_version()}
    if args.no_pydriller:
        pydriller, unavailable = None, "skipped (--no-pydriller)"
    else:
        pydriller, unavailable = peer_python(args.pydriller_venv, [PYDRILLER], "pydriller")
    repositories = []
    floor = process_floor(FLOOR_IMPORTS, FLOOR_NOTE)
    with tempfile.TemporaryDirectory() if args.work is None else contextlib.nullcontext(str(args.work)) as tmp:
        tmp_path = Path(tmp)
        tmp_path.mkdir(parents=True, exist_ok=True)
        targets = [(f"synthetic-{n}", "generated", n) for n in args.commits] + [(repository_name(p), "real", p.resolve()) for p in args.repo]
        for index, (name, kind, source) in enumerate(targets):
            work = tmp_path / f"w{index}"
            work.mkdir()
            repo = synthetic_history(work / "synth.git", source) if kind == "generated" else source
            repositories.append(measure_repository(name, kind, repo, work, args, pydriller, unavailable))
            shutil.rmtree(work / "run", ignore_errors=True)
        real = [entry for entry in repositories if entry["kind"] == "real"]
        if args.together and len(real) > 1:
            work = tmp_path / "together"
            work.mkdir()
            repositories.append(measure_together(real, work, args))
    machine["load_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"command": ["python", "-m", "benchmarks.mine_throughput", *(argv if argv is not None else sys.argv[1:])],
              "machine": machine, "repositories": repositories, "process_floor": floor,
              "marginal_us_per_commit": marginal(repositories)}
    print(f"nproc {machine['nproc']}; load average at start {machine['load_start']}, at end {machine['load_end']}")
    print(table(result))
    print(f"process_floor: {FLOOR_NOTE}")
    if result["marginal_us_per_commit"]:
        print(f"CPU µs per commit, start-up taken out: {result['marginal_us_per_commit']}")
    for entry in repositories:
        if "reference_fetch" in entry:
            print(f"{entry['name']}: reference fetch {entry['reference_fetch']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
