"""The `mine` stage on real git repositories made in the tests, and on commit tables."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.mine.filters import (
    LicenseDetector,
    MessageRules,
    TimeWindows,
    default_blocklist,
    split_of,
)
from pipelines.run.config import ConfigError
from schemas import Commit, Drop
from storage import StageManifest, read_rows
from tests.support.git_fixtures import GPL3, MIT, GitRepo, synthetic_history
from tests.support.inputs import GOOD

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "octo-demo")
    repo.write("LICENSE", MIT)
    repo.write("src/calc.py", "def add(a, b):\n    return a + b\n")
    repo.write("src/util.c", "int twice(int x) { return 2 * x; }\n")
    repo.commit("Initial import of the calculator")
    return repo


def test_every_git_rule_is_a_counted_reason(tmp_path, repo, run_stage):
    ids = {}
    repo.write("src/calc.py", "def add(a, b):\n    return b + a\n")
    ids["kept"] = repo.commit(GOOD)
    repo.write("src/calc.py", "def add(a, b):\n    return int(a) + int(b)\n")
    repo.write("src/util.c", "int twice(int x) { return x + x; }\n")
    ids["multi_file"] = repo.commit("Change two files at once please")
    repo.git("mv", "src/util.c", "src/helpers.c")
    ids["renamed"] = repo.commit("Rename the helpers module file")
    repo.write("src/new.go", "package main\n")
    ids["added"] = repo.commit("Add a new Go file to the tree")
    (repo.path / "src/new.go").unlink()
    ids["deleted"] = repo.commit("Delete the Go file again, not used")
    (repo.path / "src/calc.py").chmod(0o755)
    ids["mode_change"] = repo.commit("Make the calculator executable")
    repo.write("notes.txt", "hello\n")
    repo.commit("Add notes file with a greeting")
    repo.write("notes.txt", "hello world\n")
    ids["unknown_language"] = repo.commit("Extend the greeting in the notes")
    repo.write("src/calc.py", "def add(a, b):\n    return a + b  # wip\n")
    ids["blocklisted_message"] = repo.commit("Addressed comments")
    repo.write("src/calc.py", "def add(a, b):\n    return a + b  # x\n")
    ids["message_too_short"] = repo.commit("fix bug")
    repo.write("src/calc.py", "def add(a, b):\n    return a + b  # y\n")
    ids["merge_message"] = repo.commit("Merge fixes from the other branch")
    repo.write("src/calc.py", "def add(a, b):\n    return a + b  # z\n")
    ids["ci_push_message"] = repo.commit("Automated pi push of results")
    repo.write("src/blob.c", "int x;\n")
    repo.commit("Add a small C file for data")
    repo.write("src/blob.c", b"int x;\n\0\1\2binary\n")
    ids["binary"] = repo.commit("Embed the binary table in the source")
    repo.write("src/latin.py", "s = 'caf'\n")
    repo.commit("Add the latin-1 strings module")
    repo.write("src/latin.py", b"s = 'caf\xe9'\n")
    ids["not_utf8"] = repo.commit("Use the accented spelling in strings")
    repo.write("src/calc.py", "def add(a, b):\n    return a + b\n" + "# padding\n" * 200)
    ids["too_large"] = repo.commit("Pad the calculator module with notes")

    rows, drops, manifest = run_stage("mine", {"repos": [str(repo.path)], "max_file_bytes": 1000})
    assert set(rows) == {ids["kept"]}
    row = rows[ids["kept"]]
    assert (row["repo"], row["path"], row["language"], row["license"], row["split"]) == ("octo-demo", "src/calc.py", "Python", "mit", "train")
    assert row["before"] == "def add(a, b):\n    return a + b\n" and row["after"] == "def add(a, b):\n    return b + a\n"
    assert row["subject"] == GOOD and row["parent"] and row["committed_at"] > 1_600_000_000
    for reason, commit in ids.items():
        if reason != "kept":
            assert drops[commit] == reason, reason
    assert manifest.dropped["root_commit"] == 1
    assert manifest.records_in == len(repo.git("rev-list", "HEAD").split())
    assert manifest.records_out == 1


def test_merge_commits_are_dropped(tmp_path, repo, run_stage):
    repo.git("checkout", "-q", "-b", "topic")
    repo.write("src/calc.py", "def add(a, b):\n    return sum((a, b))\n")
    topic = repo.commit("Use sum for the addition on topic")
    repo.git("checkout", "-q", "main")
    repo.write("src/util.c", "int twice(int x) { return x << 1; }\n")
    main_side = repo.commit("Shift instead of multiplying by two")
    repo.git("merge", "-q", "--no-ff", "-m", "Bring topic into main line", "topic",
             env={"GIT_COMMITTER_DATE": "1600100000 +0000", "GIT_AUTHOR_DATE": "1600100000 +0000"})
    merge = repo.git("rev-parse", "HEAD")
    rows, drops, _ = run_stage("mine", {"repos": [str(repo.path)]})
    assert set(rows) == {topic, main_side}
    assert drops[merge] == "merge_commit"


def test_reverted_commits_and_their_reverts_are_dropped(tmp_path, repo, run_stage):
    repo.write("src/calc.py", "def add(a, b):\n    return a - b\n")
    broken = repo.commit("Switch to subtraction for the adder")
    repo.git("revert", "--no-edit", broken, env={"GIT_COMMITTER_DATE": "1600200000 +0000"})
    revert = repo.git("rev-parse", "HEAD")
    repo.write("src/util.c", "int twice(int x) { return 3 * x; }\n")
    undone = repo.commit("Triple instead of double, by request")
    repo.write("src/util.c", "int twice(int x) { return 2 * x; }\n")
    manual = repo.commit("Go back to doubling, tripling was wrong")  # exact inverse, no trailer
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 0\n")
    kept = repo.commit(GOOD)
    rows, drops, _ = run_stage("mine", {"repos": [str(repo.path)]})
    assert set(rows) == {kept}
    assert drops[broken] == "reverted_later" and drops[revert] == "reverts_other_commit"
    assert drops[undone] == "inverse_change" and drops[manual] == "inverse_change"


def test_licences_detected_allowlisted_and_recorded(tmp_path, run_stage):
    repos = {}
    for name, text in (("Alpha", MIT), ("beta", GPL3), ("gamma", None)):
        repo = GitRepo(tmp_path / "repos" / name)
        if text:
            repo.write("LICENSE", text)
        repo.write("a.py", "x = 1\n")
        repo.commit("Start the module with a value")
        repo.write("a.py", "x = 2\n")
        repos[name] = repo.commit("Change the value to two for now")
    rows, drops, manifest = run_stage("mine", {"repos": [str(tmp_path / "repos")]})
    assert set(rows) == {repos["Alpha"]} and rows[repos["Alpha"]]["license"] == "mit"
    assert manifest.dropped["license_not_allowed"] == 2 and manifest.dropped["license_unknown"] == 2
    # An allowlist of repositories, matched case-insensitively; a licence from the manifest wins.
    manifest_file = tmp_path / "repos.csv"
    manifest_file.write_text(f"path,name,license\n{tmp_path / 'repos' / 'gamma'},octo/Gamma,Apache-2.0\n")
    rows, drops, manifest = run_stage("mine", {"repos": [str(tmp_path / "repos")], "repo_manifest": str(manifest_file),
                                               "repo_allowlist": ["ALPHA", "OCTO/gamma"]})
    assert set(rows) == {repos["Alpha"], repos["gamma"]}
    assert rows[repos["gamma"]]["license"] == "apache-2.0" and rows[repos["gamma"]]["repo"] == "octo/Gamma"
    assert manifest.dropped["repo_not_allowlisted"] == 2  # beta's two commits


def test_licence_detector():
    detector = LicenseDetector()
    assert detector.detect(MIT.encode()) == "mit"
    assert detector.detect(GPL3.encode()) == "gpl-3.0"
    assert detector.detect(b"// SPDX-License-Identifier: BSD-3-Clause\n") == "bsd-3-clause"
    assert detector.detect(Path("LICENSE").read_bytes()) == "apache-2.0"  # this repository's own
    bsd2 = b"Redistribution and use in source and binary forms, with or without modification, are permitted"
    assert detector.detect(bsd2) == "bsd-2-clause"
    assert detector.detect(bsd2 + b"\nNeither the name of the copyright holder nor") == "bsd-3-clause"
    assert detector.detect(b"All rights reserved.") is None


def test_time_windows_and_splits(tmp_path, run_stage):
    day = 86_400
    train_end = 1_550_000_000 // day * day  # a UTC midnight
    repos = {}
    candidates = [f"repo{i}" for i in range(40)]
    names = [n for n in candidates if split_of(n, 0.5) == "train"][:2] + [n for n in candidates if split_of(n, 0.5) == "benchmark"][:2]
    for name in names:
        repo = GitRepo(tmp_path / "repos" / name)
        repo.write("LICENSE", MIT)
        repo.write("m.rb", f"puts '{name}'\n")
        repo.commit("Create the ruby script file", when=train_end - 10 * day)
        repo.write("m.rb", "puts 2\n")
        early = repo.commit("Print two instead of one, as asked", when=train_end - day)
        repo.write("m.rb", "puts 3\n")
        late = repo.commit("Print three instead of two, as asked", when=train_end + day)
        repos[name] = (early, late)
    from datetime import date, datetime, timezone

    end = datetime.fromtimestamp(train_end, timezone.utc).date()
    rows, drops, manifest = run_stage("mine", {
        "repos": [str(tmp_path / "repos")], "train_end": end.isoformat(), "bench_start": end.isoformat(),
        "bench_end": date(2030, 1, 1).isoformat(), "benchmark_share": 0.5,
    })
    for name, (early, late) in repos.items():
        split = split_of(name, 0.5)
        if split == "train":
            assert early in rows and rows[early]["split"] == "train" and drops[late] == "outside_train_window"
        else:
            assert late in rows and rows[late]["split"] == "benchmark" and drops[early] == "outside_benchmark_window"
    assert {split_of(name, 0.5) for name in repos} == {"train", "benchmark"}  # both splits used, disjoint by repo


def test_dot_h_language_is_decided_by_content(tmp_path, repo, run_stage):
    repo.write("inc/shape.h", "struct shape { int w; };\n")
    repo.commit("Add the shape header for drawing")
    repo.write("inc/shape.h", "namespace geo { class Shape { public: int w; }; }\n")
    cpp = repo.commit("Turn the shape header into a C++ class")
    repo.write("inc/plain.h", "int area(int w);\n")
    repo.commit("Add the plain header with a prototype")
    repo.write("inc/plain.h", "int area(int w, int h);\n")
    c = repo.commit("Take the height in the area prototype")
    rows, _, _ = run_stage("mine", {"repos": [str(repo.path)]})
    assert rows[cpp]["language"] == "C++" and rows[c]["language"] == "C"


def test_forks_keep_one_record_per_commit_and_merged_pr_filter(tmp_path, repo, run_stage):
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 0\n")
    first = repo.commit(GOOD)
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 0 + 0\n")
    second = repo.commit("Second careful change of the adder")
    fork = tmp_path / "zz-fork.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(fork)], check=True)
    rows, drops, manifest = run_stage("mine", {"repos": [str(repo.path), str(fork)]})
    assert set(rows) == {first, second} and {r["repo"] for r in rows.values()} == {"octo-demo"}
    assert manifest.dropped["duplicate_commit"] == 2

    pulls = tmp_path / "merged.csv"
    pulls.write_text(f"repo,commit\nocto-demo,{second}\n")
    rows, drops, manifest = run_stage("mine", {"repos": [str(repo.path)], "merged_pull_requests": str(pulls)})
    assert set(rows) == {second} and drops[first] == "not_in_merged_pr"


def test_a_commit_one_fork_reverts_is_kept_from_the_fork_that_does_not(tmp_path, repo, run_stage):
    """The history rules judge a commit in each repository: the first fork by name reverts it, so the other's copy is kept."""
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 0\n")
    first = repo.commit(GOOD)
    subprocess.run(["git", "clone", "-q", str(repo.path), str(tmp_path / "aa-fork")], check=True, capture_output=True)
    fork = GitRepo(tmp_path / "aa-fork")
    fork.git("revert", "--no-edit", first, env={"GIT_COMMITTER_DATE": "1600300000 +0000", "GIT_AUTHOR_DATE": "1600300000 +0000"})
    revert = fork.git("rev-parse", "HEAD")
    rows, drops, manifest = run_stage("mine", {"repos": [str(repo.path), str(fork.path)]})
    assert set(rows) == {first} and rows[first]["repo"] == "octo-demo"
    assert drops[first] == "reverted_later" and drops[revert] == "reverts_other_commit"
    assert manifest.dropped["reverted_later"] == 1 and "duplicate_commit" not in manifest.dropped
    assert_every_record_accounted_for(manifest)


def test_corrupt_objects_and_unreadable_repositories_are_counted(tmp_path, repo, run_stage):
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 1\n")
    kept = repo.commit(GOOD)
    repo.write("src/util.c", "int twice(int x) { return x * 2; }\n")
    broken = repo.commit("Multiply on the right side for clarity")
    blob = repo.git("rev-parse", f"{broken}:src/util.c")
    (repo.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # the new version's blob is gone
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "HEAD").write_text("garbage")
    (tmp_path / "empty" / "objects").mkdir()
    rows, drops, manifest = run_stage("mine", {"repos": [str(repo.path), str(tmp_path / "empty")]})
    assert kept in rows
    assert drops[broken] == "corrupt_object"
    assert manifest.dropped["unreadable_repository"] == 1


def table_rows() -> list[dict]:
    base = {"subject": GOOD, "message": GOOD + "\n\nDetails.", "repos": "Octo/A,octo/b", "license": "mit",
            "unix_time": 1_500_000_000, "old_contents": "x = 1\n", "new_contents": "x = 2\n"}
    return [
        {**base, "commit": "a" * 40, "path": "m.py"},
        {**base, "commit": "b" * 40, "path": "m.py", "message": "Addressed comments", "subject": "Addressed comments"},
        {**base, "commit": "c" * 40, "path": "m.txt"},
        {**base, "commit": "d" * 40, "path": "m.py", "license": "gpl-3.0"},
        {**base, "commit": "e" * 40, "path": "m.py", "new_contents": "x = 1\n"},
        {**base, "commit": "f" * 40, "path": "m.py", "message": f"Revert it\n\nThis reverts commit {'a' * 10}."},
        {**base, "commit": "1" * 40, "path": "k.go", "old_contents": "package k\n", "new_contents": "package k // two\n"},
        {**base, "commit": "2" * 40, "path": "m.py", "rename_to": "n.py"},
    ]


def test_commit_table_in_both_column_layouts(tmp_path, run_stage):
    rows = table_rows()
    jsonl = tmp_path / "commits.jsonl"
    lines = [json.dumps({**{k: v for k, v in r.items() if k not in ("path", "rename_to")}, "file_path": r["path"]})
             for r in rows if "rename_to" not in r]
    lines.append("{broken json")
    jsonl.write_text("\n".join(lines) + "\n")
    parquet = tmp_path / "commits.parquet"
    layout = [{**{k: v for k, v in r.items() if k not in ("path", "rename_to")}, "commit": "9" + r["commit"][1:],
               "old_file": r["path"], "new_file": r.get("rename_to", r["path"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(layout), parquet)

    kept, drops, manifest = run_stage("mine", {"tables": [str(jsonl), str(parquet)]})
    # The Parquet copy's "9aaa..." is not the commit the revert names ("aaaaaaaaaa"), so it stays.
    assert set(kept) == {"1" * 40, "9" + "1" * 39, "9" + "a" * 39}
    row = kept["1" * 40]
    assert (row["repo"], row["language"], row["license"], row["parent"], row["committed_at"]) == ("Octo/A", "Go", "mit", None, 1_500_000_000)
    assert drops["b" * 40] == "blocklisted_message" and drops["c" * 40] == "unknown_language"
    assert drops["d" * 40] == "license_not_allowed" and drops["e" * 40] == "no_change"
    assert drops["a" * 40] == "reverted_later" and drops["f" * 40] == "reverts_other_commit"
    assert drops["9" + "2" * 39] == "renamed"
    assert manifest.dropped["malformed_row"] == 1
    assert manifest.records_in == len(lines) + len(layout)


def test_commit_table_missing_columns_fail_with_the_file_name(tmp_path, run_stage):
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"commit": "a", "message": "m"}]), parquet)
    with pytest.raises(ConfigError, match=r"bad\.parquet: commit table lacks columns .*old_contents"):
        run_stage("mine", {"tables": [str(parquet)]})


def git_log_single_file_commits(path: Path) -> set[str]:
    """Independent count: non-merge, non-root commits whose raw diff is one in-place modification of a
    file with a registered extension, and whose message passes the message rules."""
    from parsers import languages

    out = subprocess.run(
        ["git", "-C", str(path), "log", "--no-merges", "--no-renames", "--raw", "--no-abbrev", "--format=%x00%H%x01%P%x01%B%x02"],
        capture_output=True, text=True, check=True,
    ).stdout
    rules = MessageRules(10, 15_000, default_blocklist())
    kept = set()
    for chunk in out.split("\x00")[1:]:
        head, _, raw = chunk.partition("\x02")
        commit, parents, message = head.split("\x01", 2)
        entries = [line for line in raw.strip().splitlines() if line.startswith(":")]
        if not parents.strip() or len(entries) != 1:
            continue
        meta, path_name = entries[0].split("\t", 1)
        old_mode, new_mode, _, _, status = meta[1:].split()
        if status != "M" or old_mode != new_mode or new_mode not in ("100644", "100755"):
            continue
        if not languages().candidates_for_path(path_name) or rules.check(message):
            continue
        kept.add(commit)
    return kept


def test_matches_plain_git_log_on_a_few_thousand_commits(tmp_path, run_stage):
    history = synthetic_history(tmp_path / "synth.git", 3000)
    expected = git_log_single_file_commits(history)
    manifest_file = tmp_path / "repos.jsonl"
    manifest_file.write_text(json.dumps({"path": str(history), "name": "octo/synth", "license": "mit"}) + "\n")
    rows, drops, manifest = run_stage("mine", {"repo_manifest": str(manifest_file)})
    mined_or_dropped_late = set(rows) | {k for k, reason in drops.items() if reason == "inverse_change"}
    assert manifest.records_in == 3000
    assert len(expected) > 500
    assert mined_or_dropped_late == expected


def test_matches_plain_git_log_on_this_repository(tmp_path, run_stage):
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    manifest_file = tmp_path / "repos.jsonl"
    manifest_file.write_text(json.dumps({"path": str(REPO_ROOT), "name": "codepref", "license": "apache-2.0"}) + "\n")
    rows, drops, manifest = run_stage("mine", {"repo_manifest": str(manifest_file)})
    expected = git_log_single_file_commits(REPO_ROOT)
    late = {k for k, reason in drops.items() if reason in ("inverse_change", "reverted_later", "reverts_other_commit")}
    assert set(rows) | late == expected
    assert manifest.records_in == len(subprocess.run(["git", "-C", str(REPO_ROOT), "rev-list", "HEAD"], capture_output=True, text=True).stdout.split())


def test_message_rules_and_windows_units():
    rules = MessageRules(10, 15_000, default_blocklist())
    assert rules.check("  Initial commit \n").reason == "blocklisted_message"
    assert rules.check("x" * 10).reason == "message_too_short" and rules.check("x" * 11) is None
    assert rules.check("x" * 15_000).reason == "message_too_long"
    assert rules.check("Push PI results nightly").reason == "ci_push_message"
    windows = TimeWindows()
    assert not windows.active and windows.check("train", None) is None


def test_no_inputs_is_a_config_error(tmp_path, run_stage):
    with pytest.raises(ConfigError, match="nothing to mine"):
        run_stage("mine")
    with pytest.raises(ConfigError, match="does not exist"):
        run_stage("mine", {"repos": [str(tmp_path / "nope")]})


def test_the_published_recipe_preset(tmp_path, run_stage):
    from datetime import date

    from pipelines.run.config import load_config

    config = load_config(REPO_ROOT / "configs" / "themis-codepreference.yaml")
    mine_config = config.stage_config("mine")
    assert (mine_config.train_end, mine_config.bench_start, mine_config.bench_end) == (
        date(2019, 4, 1), date(2019, 6, 1), date(2021, 2, 1))
    assert len(mine_config.licenses) == 12 and "agpl-3.0" in mine_config.licenses
    with pytest.raises(ConfigError, match="github-single-file-commits.parquet' is not a file"):
        run_stage("mine", dict(config.stages["mine"]))


def test_cli_mine_writes_the_output_directory_and_skips_when_done(tmp_path, repo):
    import os
    import sys

    repo.write("src/calc.py", "def add(a, b):\n    return b + a\n")
    kept = repo.commit(GOOD)
    out = tmp_path / "mined"
    command = [sys.executable, "-m", "pipelines.cli", "mine", "--repos", str(repo.path), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "mine: 2 commits read, 1 kept" in first.stdout, first.stdout
    assert "root_commit 1" in first.stdout, first.stdout
    assert [r["commit"] for r in read_rows(str(out), Commit)] == [kept]
    assert StageManifest.read(str(out)).records_out == 1
    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert "already done" in second.stdout
    repo.write("src/calc.py", "def add(a, b):\n    return (b + a)\n")
    newer = repo.commit("Parenthesise the sum for readability")
    third = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert "3 commits read, 2 kept" in third.stdout  # a new commit changes the fingerprint
    assert {r["commit"] for r in read_rows(str(out), Commit)} == {kept, newer}


# --- hostile repositories and commit tables: counted drops, never a crash, the rest still mined -------------------

MISSING = "0123456789abcdef" * 2 + "01234567"  # a commit id no repository here holds


def healthy(path: Path, value: int) -> tuple[GitRepo, str]:
    """An MIT-licensed repository of a root commit and one commit the stage keeps (its id returned);
    `value` makes the commits differ from those of the test's other repositories."""
    repo = GitRepo(path)
    repo.write("LICENSE", MIT)
    repo.write("m.py", "x = 1\n")
    repo.commit("Start the module with a value")
    repo.write("m.py", f"x = {value}\n")
    return repo, repo.commit(GOOD)


def drop_rows(tmp_path: Path, reason: str | None = None) -> list[dict]:
    rows = read_rows(str(tmp_path / "run" / "mine" / "_dropped"), Drop)
    return [row for row in rows if reason is None or row["reason"] == reason]


def assert_every_record_accounted_for(manifest: StageManifest) -> None:
    assert manifest.records_in == manifest.records_out + sum(manifest.dropped.values()), (
        manifest.records_in, manifest.records_out, manifest.dropped)


@pytest.mark.parametrize("refs", ["head", "all"])
def test_a_branch_pointing_to_a_missing_commit_is_a_broken_ref_drop(tmp_path, refs, run_stage):
    _, alpha = healthy(tmp_path / "repos" / "alpha", 2)
    forked, forked_kept = healthy(tmp_path / "repos" / "forked", 3)
    forked.write_ref("refs/heads/ghost", MISSING + "\n")  # read with refs 'all' only
    headless, _ = healthy(tmp_path / "repos" / "headless", 4)
    headless.write_ref("refs/heads/main", MISSING + "\n")  # HEAD -> main -> no such commit

    rows, _, manifest = run_stage("mine", {"repos": [str(tmp_path / "repos")], "refs": refs})
    assert set(rows) == {alpha, forked_kept}
    broken = {d["key"]: d["detail"] for d in drop_rows(tmp_path, "broken_ref")}
    assert set(broken) == ({"headless", "forked"} if refs == "all" else {"headless"})
    assert str(headless.path) in broken["headless"] and "refs/heads/main" in broken["headless"] and MISSING in broken["headless"]
    if refs == "all":
        assert str(forked.path) in broken["forked"] and "refs/heads/ghost" in broken["forked"] and MISSING in broken["forked"]
    assert manifest.dropped["broken_ref"] == len(broken)
    assert_every_record_accounted_for(manifest)


@pytest.mark.parametrize("refs", ["head", "all"])
def test_a_garbage_head_is_a_broken_ref_drop_and_the_config_hash_survives_it(tmp_path, refs, run_stage):
    from pipelines.mine.stage import Mine, MineConfig

    _, kept = healthy(tmp_path / "alpha", 2)
    garbled, garbled_tip = healthy(tmp_path / "garbled", 3)
    garbled.write_ref("HEAD", "garbage\n")
    config = MineConfig(repos=[str(tmp_path / "alpha"), str(garbled.path)], refs=refs)
    state = Mine.fingerprint(config)["heads"][str(garbled.path.resolve())]
    assert "corrupted loose reference file: HEAD" in json.dumps(state)

    rows, _, manifest = run_stage("mine", {"repos": [str(tmp_path / "alpha"), str(garbled.path)], "refs": refs})
    assert set(rows) == {kept}
    broken = drop_rows(tmp_path, "broken_ref")
    assert {d["key"] for d in broken} == {"garbled"}
    assert all(str(garbled.path) in d["detail"] and "HEAD cannot be read" in d["detail"] for d in broken)
    # 'head': nothing to walk. 'all': main's two commits are walked, but their licence (HEAD's) cannot be known.
    assert manifest.dropped["broken_ref"] == (1 if refs == "head" else 3)
    assert_every_record_accounted_for(manifest)

    garbled.write_ref("HEAD", "ref: refs/heads/main\n")  # repaired: the hash sees the repository again
    repaired = Mine.fingerprint(config)["heads"][str(garbled.path.resolve())]
    assert repaired == garbled_tip if refs == "head" else repaired["HEAD"] == "refs/heads/main"


def test_a_folder_with_broken_members_mines_the_healthy_ones_and_drops_each_broken_one(tmp_path, run_stage):
    folder = tmp_path / "repos"
    _, alpha = healthy(folder / "alpha", 2)
    _, beta = healthy(folder / "beta", 3)
    (folder / "empty-git" / ".git").mkdir(parents=True)  # a work tree whose .git holds nothing
    (folder / "lost-gitdir").mkdir()
    (folder / "lost-gitdir" / ".git").write_text("gitdir: /nowhere/at/all\n")
    garbled, _ = healthy(folder / "garbled-head", 4)
    garbled.write_ref("HEAD", "garbage\n")
    (folder / "notes").mkdir()  # not a repository at all: not a member

    rows, _, manifest = run_stage("mine", {"repos": [str(folder)]})
    assert set(rows) == {alpha, beta}
    unreadable = {d["key"]: d["detail"] for d in drop_rows(tmp_path, "unreadable_repository")}
    assert set(unreadable) == {str((folder / "empty-git").resolve()), str((folder / "lost-gitdir").resolve())}
    assert all(key in detail for key, detail in unreadable.items())
    assert [d["key"] for d in drop_rows(tmp_path, "broken_ref")] == ["garbled-head"]
    assert manifest.dropped == {"root_commit": 2, "unreadable_repository": 2, "broken_ref": 1}
    assert_every_record_accounted_for(manifest)


@pytest.mark.timeout(120, method="thread")  # libgit2 1.9 loops for ever on a truncated object it reads
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_licence_blob_is_a_corrupt_object_drop_not_an_unknown_licence(tmp_path, damage, run_stage):
    _, kept = healthy(tmp_path / "alpha", 2)
    damaged, _ = healthy(tmp_path / "damaged", 3)
    blob = damaged.git("rev-parse", "HEAD:LICENSE")
    if damage == "truncated":
        damaged.damage_object(blob, keep=len((damaged.git_dir / "objects" / blob[:2] / blob[2:]).read_bytes()) // 2)
    else:
        damaged.damage_object(blob, b"not zlib at all")

    rows, _, manifest = run_stage("mine", {"repos": [str(tmp_path / "alpha"), str(damaged.path)]})
    assert set(rows) == {kept}
    [drop] = [d for d in drop_rows(tmp_path) if d["key"] == "damaged"]
    assert drop["reason"] == "corrupt_object"
    assert "LICENSE" in drop["detail"] and blob in drop["detail"] and str(damaged.path) in drop["detail"]
    assert manifest.dropped == {"root_commit": 1, "corrupt_object": 2}  # alpha's root; both of damaged's commits
    assert_every_record_accounted_for(manifest)


def test_a_file_path_that_is_not_utf8_is_a_not_utf8_drop(tmp_path, run_stage):
    _, kept = healthy(tmp_path / "alpha", 2)
    odd = GitRepo(tmp_path / "odd")
    odd.write("LICENSE", MIT)
    name = "caf\udce9.py"  # the file name's bytes are b"caf\xe9.py", not UTF-8
    odd.write(name, "x = 1\n")
    odd.commit("Start the module with a value")
    odd.write(name, "x = 2\n")
    odd_commit = odd.commit(GOOD + " in the odd file")
    rows, drops, manifest = run_stage("mine", {"repos": [str(tmp_path / "alpha"), str(odd.path)]})
    assert set(rows) == {kept} and drops[odd_commit] == "not_utf8"
    [drop] = [d for d in drop_rows(tmp_path, "not_utf8")]
    assert "caf\\udce9.py" in drop["detail"]
    assert_every_record_accounted_for(manifest)


def table_base() -> dict:
    return {"subject": GOOD, "message": GOOD, "repos": "octo/a", "license": "mit", "unix_time": 1_500_000_000,
            "old_contents": "x = 1\n", "new_contents": "x = 2\n", "file_path": "m.py"}


def test_table_values_of_the_wrong_kind_are_malformed_rows_naming_file_line_and_column(tmp_path, run_stage):
    cases = [  # (commit, values changed, what the drop's detail says after FILE:LINE, or None: kept)
        ("a" * 40, {}, None),
        ("b" * 40, {"file_path": 7}, "file_path 7 is not text"),
        ("c" * 40, {"unix_time": 1e20}, "unix_time 1e+20 is not a time in seconds"),
        ("d" * 40, {"unix_time": -1e14}, "unix_time -100000000000000.0 is not a time in seconds"),
        ("e" * 40, {"unix_time": 1_500_000_000.5}, "unix_time 1500000000.5 is not a time in seconds (not a whole number)"),
        ("f" * 40, {"unix_time": True}, "unix_time True is not a time in seconds"),
        ("0" * 40, {"unix_time": "1500000000"}, "unix_time '1500000000' is not a time in seconds"),
        ("1" * 40, {"repos": ["Octo/B", " octo/c "]}, None),  # a list of names is a list of repositories
        ("2" * 40, {"repos": ["octo/a", 3]}, "repos ['octo/a', 3] is neither comma-separated text nor a list of texts"),
        ("3" * 40, {"repos": {"name": "octo/a"}}, "repos {'name': 'octo/a'} is neither"),
        ("4" * 40, {"old_contents": 12345}, "old_contents 12345 is neither text nor bytes"),
        ("5" * 40, {"message": 12345678901234}, "message 12345678901234 is not text"),
        ("6" * 40, {"subject": ["Fix it"]}, "subject ['Fix it'] is not text"),
        ("7" * 40, {"license": 3}, "license 3 is not text"),
        ("8" * 40, {"unix_time": 1_500_000_000.0}, None),  # a whole number of seconds, written as a float
        ("9" * 40, {"file_path": "caf\udce9.py"}, "file_path 'caf\\udce9.py' is not valid Unicode"),
        (42, {}, "commit 42 is not text"),
        ("ab" * 20, {"unix_time": 1e20, "license": ["mit"]},  # every problem of the row, in column order
         "license ['mit'] is not text; unix_time 1e+20 is not a time in seconds (not between 1970 and 9999)"),
    ]
    table = tmp_path / "commits.jsonl"
    lines, line_of = [], {}
    for number, (commit, changes, _) in enumerate(cases):
        if number % 4 == 1:
            lines += ["", "   \t"]  # blank lines are no rows: neither read nor dropped
        lines.append(json.dumps({**table_base(), "commit": commit, **changes}))
        line_of[commit] = len(lines)
    table.write_text("\n".join(lines) + "\n\n")

    rows, drops, manifest = run_stage("mine", {"tables": [str(table)]})
    assert set(rows) == {commit for commit, _, said in cases if said is None}
    assert rows["1" * 40]["repo"] == "Octo/B"
    assert rows["8" * 40]["committed_at"] == 1_500_000_000
    malformed = {d["key"]: d for d in drop_rows(tmp_path, "malformed_row")}
    for commit, _, said in cases:
        if said is not None:
            drop = malformed[commit if isinstance(commit, str) else str(table)]
            assert drop["detail"].startswith(f"{table}:{line_of[commit]}: {said}"), (drop["detail"], said)
            assert json.loads(drop["record"])["at"] == f"{table}:{line_of[commit]}"
    assert manifest.records_in == len(cases)
    assert manifest.dropped == {"malformed_row": len(cases) - 3}
    assert_every_record_accounted_for(manifest)


def test_blank_lines_of_a_table_are_not_rows(tmp_path, run_stage):
    table = tmp_path / "commits.jsonl"
    rows = [json.dumps({**table_base(), "commit": c * 40, "old_contents": f"x = '{c}'\n"}) for c in "ab"]
    table.write_text(f"\n{rows[0]}\n\n  \n\t\r\n{rows[1]}\r\n\n")
    kept, _, manifest = run_stage("mine", {"tables": [str(table)]})
    assert set(kept) == {"a" * 40, "b" * 40}
    assert (manifest.records_in, manifest.records_out, manifest.dropped) == (2, 2, {})


def test_parquet_values_of_the_wrong_kind_are_malformed_rows_naming_file_row_and_column(tmp_path, run_stage):
    base = table_base()
    numbers = tmp_path / "numbers.parquet"  # file_path written as a number: every row of the file
    pq.write_table(pa.Table.from_pylist([{**base, "commit": c * 40, "file_path": i} for i, c in enumerate("ab")]), numbers)
    times = tmp_path / "times.parquet"  # unix_time and contents as doubles and bytes; repos as a list column
    values = [1.5e9, 1e20, -1e14, float("nan"), 1.5e9]
    pq.write_table(pa.Table.from_pylist([
        {**base, "commit": f"{i}" * 40, "unix_time": t, "repos": ["octo/y", "Octo/B"], "old_contents": b"x = 1\n",
         "new_contents": f"x = {i + 2}\n".encode()} for i, t in enumerate(values)]), times, row_group_size=2)
    assert pq.ParquetFile(times).metadata.num_row_groups == 3

    rows, drops, manifest = run_stage("mine", {"tables": [str(numbers), str(times)]})
    assert set(rows) == {"0" * 40, "4" * 40} and rows["0" * 40]["repo"] == "Octo/B"
    details = {d["key"]: d["detail"] for d in drop_rows(tmp_path, "malformed_row")}
    assert details["a" * 40] == f"{numbers} row 0: file_path 0 is not text"
    assert details["b" * 40] == f"{numbers} row 1: file_path 1 is not text"
    assert details["1" * 40].startswith(f"{times} row 1: unix_time 1e+20 is not a time in seconds")
    assert details["2" * 40].startswith(f"{times} row 2: unix_time -100000000000000.0")
    assert details["3" * 40].startswith(f"{times} row 3: unix_time nan is not a time in seconds")
    assert (manifest.records_in, manifest.records_out, manifest.dropped) == (7, 2, {"malformed_row": 5})


@pytest.mark.timeout(120, method="thread")
def test_every_drop_path_of_one_run_is_accounted_for(tmp_path, run_stage):
    """records_in (commits walked, references that lead nowhere, unreadable repositories, table rows)
    equals records_out plus every dropped_* counter, in a run that takes every drop path at once."""
    folder = tmp_path / "repos"
    alpha, alpha_kept = healthy(folder / "alpha", 2)
    alpha.write("m.py", "x = 20\n")
    unlisted = alpha.commit("Fix the value once more for the merged list")
    alpha.write("m.py", "x = 21\n")
    alpha.write("n.py", "y = 1\n")
    alpha.commit("Change two modules in one commit, please")  # multi_file
    subprocess.run(["git", "clone", "-q", "--bare", str(alpha.path), str(folder / "zz-fork.git")], check=True)  # duplicate_commit
    forked, forked_kept = healthy(folder / "forked", 3)
    forked.write_ref("refs/heads/ghost", MISSING + "\n")  # broken_ref, one reference
    garbled, _ = healthy(folder / "garbled", 4)
    garbled.write_ref("HEAD", "garbage\n")  # broken_ref, HEAD and (its licence unknowable) both commits
    (folder / "empty-git" / ".git").mkdir(parents=True)  # unreadable_repository
    licence, _ = healthy(folder / "licence", 5)
    licence.damage_object(licence.git("rev-parse", "HEAD:LICENSE"), b"not zlib at all")  # corrupt_object, both commits
    gpl = GitRepo(folder / "gpl")
    gpl.write("LICENSE", GPL3)
    gpl.write("m.py", "x = 1\n")
    gpl.commit("Start the module with a value")
    gpl.write("m.py", "x = 6\n")
    gpl.commit(GOOD)  # license_not_allowed, both commits
    missing_blob, _ = healthy(folder / "missing-blob", 7)
    missing_blob.write("m.py", "x = 70\n")
    gone = missing_blob.commit("Fix the value after the kept one")
    (missing_blob.git_dir / "objects" / (blob := missing_blob.git("rev-parse", f"{gone}:m.py"))[:2] / blob[2:]).unlink()
    cut, _ = healthy(folder / "cut", 8)
    cut.damage_object(cut.git("rev-parse", "HEAD"), keep=40)  # a truncated commit: corrupt_object, the repository

    table = tmp_path / "commits.jsonl"
    table.write_bytes(b"\n".join([
        json.dumps({**table_base(), "commit": "c" * 40}).encode(),  # not in the merged list
        b"",
        json.dumps({**table_base(), "commit": "d" * 40, "unix_time": 1e20}).encode(),
        b"{broken json",
        b'{"commit": "' + b"e" * 40 + b'", "message": "caf\xe9"}',
        json.dumps({"subject": GOOD}).encode(),
        json.dumps({**table_base(), "commit": "f" * 40, "message": "wip"}).encode(),
    ]) + b"\n")
    damaged_table = tmp_path / "damaged.parquet"  # its second row group's data cannot be inflated: unreadable_table
    pq.write_table(pa.Table.from_pylist([{**table_base(), "commit": f"{i:040x}", "new_contents": f"x = {i}\n" * 300}
                                         for i in range(5)]), damaged_table, row_group_size=2)
    group = pq.ParquetFile(damaged_table).metadata.row_group(1)
    [column] = [group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == "new_contents"]
    data = bytearray(damaged_table.read_bytes())
    for offset in range(column.data_page_offset + 20, column.data_page_offset + column.total_compressed_size - 4):
        data[offset] ^= 0x5A
    damaged_table.write_bytes(bytes(data))

    pulls = tmp_path / "merged.csv"
    kept_commits = [alpha_kept, forked_kept]
    # The commit whose blob is gone is in the list too: contents are read only for commits the join keeps.
    pulls.write_text("commit\n" + "".join(f"{c}\n" for c in [*kept_commits, gone]))

    rows, drops, manifest = run_stage("mine", {"repos": [str(folder)], "tables": [str(table), str(damaged_table)], "refs": "all",
                                               "merged_pull_requests": str(pulls)})
    assert set(rows) == set(kept_commits)
    [unreadable] = drop_rows(tmp_path, "unreadable_table")
    assert unreadable["key"] == str(damaged_table) and unreadable["detail"].startswith(f"{damaged_table} row 2: row group 1 ")
    assert manifest.dropped["unreadable_table"] == 2 and manifest.dropped["not_in_merged_pr"] >= 4  # 5th row: its own group
    assert drops[unlisted] in ("not_in_merged_pr", "duplicate_commit")
    assert {"broken_ref", "unreadable_repository", "corrupt_object", "license_not_allowed", "duplicate_commit",
            "not_in_merged_pr", "multi_file", "root_commit", "malformed_row", "missing_columns",
            "message_too_short", "unreadable_table"} <= set(manifest.dropped)
    assert manifest.dropped["broken_ref"] == 1 + 1 + 2
    assert manifest.dropped["corrupt_object"] == 2 + 1 + 1  # licence (2 commits), missing blob, truncated commit
    assert_every_record_accounted_for(manifest)


def test_a_repository_its_workers_cannot_see_fails_the_stage_naming_it(tmp_path, run_stage, monkeypatch):
    """The run checks the repositories are there; one that is gone when the workers start (a disk only the driver
    has) fails the stage naming it, with no manifest, where an unreadable repository would be a counted drop."""
    from pipelines.mine.repositories import PlanRepository
    from pipelines.run.orchestrator import StageFailed

    folder = tmp_path / "repos"
    healthy(folder / "alpha", 2)
    healthy(folder / "beta", 3)
    rows, _, _ = run_stage("mine", {"repos": [str(folder)]})  # both there: both mined
    assert len(rows) == 2

    workers_setup = PlanRepository.setup

    def setup_where_beta_is_gone(self: PlanRepository) -> None:
        shutil.rmtree(folder / "beta")
        workers_setup(self)

    monkeypatch.setattr(PlanRepository, "setup", setup_where_beta_is_gone)
    with pytest.raises(StageFailed) as failure:
        run_stage("mine", {"repos": [str(folder)]})
    assert f"repository {folder / 'beta'} is not there for this worker" in failure.value.summary
    assert "every worker must see the repositories at the same path" in failure.value.summary
    assert StageManifest.read(str(tmp_path / "run" / "mine")) is None


def test_a_manifest_row_naming_a_missing_repository_is_a_config_error(tmp_path, run_stage):
    healthy(tmp_path / "alpha", 2)
    manifest_file = tmp_path / "repos.jsonl"
    manifest_file.write_text(json.dumps({"path": "alpha"}) + "\n" + json.dumps({"path": "gone", "name": "octo/gone"}) + "\n")
    with pytest.raises(ConfigError, match=rf"repo_manifest: {manifest_file} row 2: '{tmp_path / 'gone'}' does not exist"):
        run_stage("mine", {"repo_manifest": str(manifest_file)})


def test_one_repository_split_over_two_workers_mines_exactly_what_one_worker_does(tmp_path, run_stage):
    """A history cut into runs of 7 commits, walked by two worker processes, gives the same commits, the same drop
    records and the same counts as one worker walking it whole: the revert, the inverse change and the fork's
    duplicates span runs, and the history rules still see them, even where the later commit is itself dropped
    by a cheap rule in another run (a multi-file revert, a message too short)."""
    repo = GitRepo(tmp_path / "repos" / "octo")
    repo.write("LICENSE", MIT)
    repo.write("a.py", "a = 0\n")
    repo.write("c.py", "c = 0\n")
    repo.commit("Start the modules a and c")
    expected_late: dict[str, str] = {}
    for n in range(40):
        repo.write(f"b{n % 6}.py", f"b = {n}\n")
        repo.commit(f"Set b to {n} for the next release")
        if n == 3:
            repo.write("a.py", "a = 1\n")
            reverted = repo.commit("Set a to one, as the spec says")
        if n == 20:
            repo.write("a.py", "a = 0\n")
            repo.write("d.py", "d = 0\n")
            expected_late[repo.commit(f"Revert the change of a\n\nThis reverts commit {reverted}.")] = "multi_file"
            expected_late[reverted] = "reverted_later"
        if n == 8:
            repo.write("c.py", "c = 1\n")
            expected_late[repo.commit("Raise c by one for the new limit")] = "inverse_change"
        if n == 30:
            repo.write("c.py", "c = 0\n")
            expected_late[repo.commit("undo c")] = "message_too_short"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(tmp_path / "repos" / "zz-fork.git")], check=True)

    whole = run_stage("mine", {"repos": [str(tmp_path / "repos")]}, run_dir=tmp_path / "one")
    split = run_stage("mine", {"repos": [str(tmp_path / "repos")], "walk_chunk_commits": 7}, run_dir=tmp_path / "two",
                      running_mode="multi_processing", workers=2)

    assert len(whole.rows) == 40 - 6 and whole.manifest.records_in == 2 * 45  # each b file is added once; 45 commits in each
    assert {key: whole.drops[key] for key in expected_late} == expected_late
    assert whole.manifest.dropped["duplicate_commit"] == 34
    assert split.rows == whole.rows
    assert split.manifest.records_in == whole.manifest.records_in and split.manifest.dropped == whole.manifest.dropped

    def drop_records(run: object) -> list[tuple]:
        return sorted((d["key"], d["reason"], d["detail"], d["record"]) for d in run.dropped())  # type: ignore[attr-defined]

    assert drop_records(split) == drop_records(whole)
    for part in sorted((tmp_path / "one" / "mine").glob("part-*.parquet")):
        assert (tmp_path / "two" / "mine" / part.name).read_bytes() == part.read_bytes()


def test_the_walk_through_git_log_reads_every_change_as_libgit2_does(tmp_path):
    """`changes_of` (one `git log --raw` for a run of commits) against libgit2's tree diff commit by commit, on every
    shape: edits, adds, deletes, a rename, a file swapped for another (added and deleted), a mode change, a symlink
    replaced by a file and back (a type change), an empty commit, a merge, the root; and on a generated history."""
    import os

    from pipelines.mine.git import _change_of, changes_of, history, open_repository

    repo = GitRepo(tmp_path / "shapes")
    repo.write("a.py", "a = 1\n")
    repo.write("b.py", "b = 1\n")
    repo.commit("Start with two modules")
    repo.write("a.py", "a = 2\n")
    repo.commit("Edit one module in place")
    repo.git("mv", "b.py", "c.py")
    repo.commit("Rename b to c")
    repo.write("d.py", "completely different\n" * 5)
    repo.git("rm", "-q", "a.py")
    repo.commit("Swap a for d")
    os.chmod(repo.path / "c.py", 0o755)
    repo.git("add", "c.py")
    repo.commit("Make c executable")
    os.symlink("c.py", repo.path / "link.py")
    repo.git("add", "link.py")
    repo.commit("Link to c")
    (repo.path / "link.py").unlink()
    repo.write("link.py", "now a file\n")
    repo.commit("Replace the link with a file")
    repo.commit("Nothing at all", allow_empty=True)
    repo.git("checkout", "-q", "-b", "side")
    repo.write("e.py", "e = 1\n")
    repo.commit("Add e on a side branch")
    repo.git("checkout", "-q", "main")
    repo.write("d.py", "d = 2\n")
    repo.commit("Edit d on main")
    repo.git("merge", "-q", "--no-edit", "side")

    shapes = []
    for path in (repo.path, synthetic_history(tmp_path / "synth.git", 400)):
        git = open_repository(str(path))
        ids = list(history(git))
        by_libgit2 = [_change_of(git, git[commit]) for commit in ids]
        assert changes_of(git, ids) == by_libgit2
        shapes.append([change.shape for change in by_libgit2])
    assert shapes[0] == ["root", "modified", "renamed", "multi_file", "mode_change", "added", "multi_file", "no_change",
                         "added", "modified", "merge"]


def test_the_binary_heuristic_is_libgit2s(tmp_path):
    """`is_binary` (used on what git cat-file reads) against libgit2's `Blob.is_binary` on texts, control bytes,
    NUL bytes, byte order marks and random bytes."""
    import random

    import pygit2

    from pipelines.mine.git import is_binary

    repo = pygit2.init_repository(str(tmp_path / "blobs"), bare=True)
    rng = random.Random(5)
    samples = [b"", b"x = 1\n", b"\xef\xbb\xbfx = 1\n", b"\xff\xfex\x00", b"\xfe\xffabc", b"a\x00b", b"\x1b[31mred\x1b[0m\n" * 50,
               b"\x01" * 3 + b"a" * 300, b"\x01" * 3 + b"a" * 500, b"a" * 9000 + b"\x00", "é".encode() * 100]
    for _ in range(300):
        alphabet = rng.choice([bytes(range(256)), b"abc \n\t\x01\x7f\x08", b"xyz\x00", b"abcdefgh\n\x02"])
        samples.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 400))))
    verdicts = [is_binary(data) for data in samples]
    assert verdicts == [repo[repo.create_blob(data)].is_binary for data in samples]
    assert True in verdicts and False in verdicts
