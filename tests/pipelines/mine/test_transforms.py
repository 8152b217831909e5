"""Mine's transforms on their own, in Beam's TestPipeline (no orchestrator, no run directory): `Create` repository
entries or commit-table rows, apply the transform, `assert_that` on the commits and on the drop records."""

from __future__ import annotations

import json
import subprocess

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import (
    TestPipeline as BeamTestPipeline,  # aliased: pytest would collect "Test*"
)
from apache_beam.testing.util import assert_that, equal_to

from parsers import LanguageRegistry
from parsers.registry import DEFAULT_REGISTRY
from pipelines.core import DROPPED
from pipelines.mine.repositories import MineRepositories, ReadChosen
from pipelines.mine.stage import VERDICTS, KeepOnePerCommit, MineConfig
from pipelines.mine.tables import MineTableRow
from schemas import Commit, to_row
from tests.support.git_fixtures import GPL3, MIT, GitRepo
from tests.support.inputs import GOOD

CALC = "def add(a, b):\n    return a + b\n"
CALC_SWAPPED = "def add(a, b):\n    return b + a\n"


@pytest.fixture(scope="module")
def registry() -> LanguageRegistry:
    return LanguageRegistry.from_files([DEFAULT_REGISTRY])


def reasons(drops: beam.PCollection) -> beam.PCollection:
    """(key, reason) of every drop record."""
    return drops | "Reasons" >> beam.Map(lambda drop: (drop["key"], drop["reason"]))


class Mined:
    """Repository entries through MineRepositories, the history rules' verdicts and ReadChosen (each commit is in one
    repository: no merged-PR table)."""

    def __init__(self, entries: beam.PCollection, registry: LanguageRegistry, config: MineConfig | None = None):
        config = config or MineConfig(repos=[])
        claims, runs, rejected, drops = entries | MineRepositories(config, registry)
        chosen = ({"records": claims, "history": rejected} | beam.CoGroupByKey()
                  | beam.ParDo(KeepOnePerCommit(False)).with_outputs(DROPPED, VERDICTS, main="rows"))
        self.commits, read_drops = {"runs": runs, "verdicts": chosen[VERDICTS], "rows": chosen.rows} | ReadChosen(config, registry)
        self.drops = (*drops, chosen[DROPPED], read_drops) | "AllDrops" >> beam.Flatten()


def test_mine_repository_keeps_a_single_file_edit_and_drops_a_multi_file_commit(tmp_path, registry):
    repo = GitRepo(tmp_path / "octo-demo")
    repo.write("LICENSE", MIT)
    repo.write("src/calc.py", CALC)
    repo.write("src/util.c", "int twice(int x) { return 2 * x; }\n")
    root = repo.commit("Initial import of the calculator")
    repo.write("src/calc.py", CALC_SWAPPED)
    kept = repo.commit(GOOD)
    repo.write("src/calc.py", "def add(a, b):\n    return int(a) + int(b)\n")
    repo.write("src/util.c", "int twice(int x) { return x + x; }\n")
    multi = repo.commit("Change two files at once please")
    # A second repository whose licence is not allowed: one drop for it, none of its commits mined.
    other = GitRepo(tmp_path / "gpl-demo")
    other.write("LICENSE", GPL3)
    other.write("m.py", "x = 1\n")
    other.commit("Initial import of the module")
    other.write("m.py", "x = 2\n")
    other.commit(GOOD)

    expected = to_row(Commit(repo="octo-demo", commit=kept, parent=root, path="src/calc.py", language="Python", license="mit",
                             committed_at=1_600_007_200, subject=GOOD, message=GOOD + "\n", before=CALC, after=CALC_SWAPPED,
                             split="train"))
    entries = [{"name": "octo-demo", "path": str(repo.path)}, {"name": "gpl-demo", "path": str(other.path)}]
    with BeamTestPipeline() as pipeline:
        mined = Mined(pipeline | beam.Create(entries), registry)
        assert_that(mined.commits, equal_to([expected]), label="Commits")
        assert_that(reasons(mined.drops), equal_to([(root, "root_commit"), (multi, "multi_file"),
                                                       ("gpl-demo", "license_not_allowed")]), label="Drops")


def test_mine_table_row_checks_each_row_against_the_git_rules(tmp_path, registry):
    base = {"subject": GOOD, "message": GOOD, "repos": "octo/b,Octo/a", "license": "MIT", "unix_time": 1_500_000_000,
            "old_contents": "x = 1\n", "new_contents": "x = 2\n", "file_path": "m.py"}
    revert = f"Revert the loop change\n\nThis reverts commit {'c' * 12}."
    rows = [
        {**base, "commit": "A" * 40},  # kept, its id lowered
        {**base, "commit": "b" * 40, "message": "Addressed comments"},
        {**base, "commit": "c" * 40},  # reverted by the next row
        {**base, "commit": "d" * 40, "message": revert},
        {**base, "commit": "e" * 40, "file_path": "notes.txt"},
        {**{k: v for k, v in base.items() if k != "file_path"}, "commit": "f" * 40, "old_file": "m.py", "new_file": "n.py"},
        {**base, "commit": "1" * 40, "new_contents": "x = 1\n"},
    ]
    table = tmp_path / "commits.jsonl"
    lines = [json.dumps(row).encode() for row in rows] + [b"{broken json"]
    table.write_bytes(b"\n".join(lines) + b"\n")
    items = [(str(table), f"{table}:{number}", line) for number, line in enumerate(table.read_bytes().splitlines(), 1)]

    expected = to_row(Commit(repo="Octo/a", commit="a" * 40, parent=None, path="m.py", language="Python", license="mit",
                             committed_at=1_500_000_000, subject=GOOD, message=GOOD, before="x = 1\n", after="x = 2\n",
                             split="train"))
    with BeamTestPipeline() as pipeline:
        reverted = beam.pvalue.AsList(pipeline | "Reverts" >> beam.Create([revert]))
        mined = (pipeline | "Rows" >> beam.Create(items)
                 | beam.ParDo(MineTableRow(MineConfig(repos=[]), registry), reverted).with_outputs(DROPPED, main="commits"))
        assert_that(mined.commits, equal_to([expected]), label="Commits")
        assert_that(reasons(mined[DROPPED]), equal_to([
            ("b" * 40, "blocklisted_message"), ("c" * 40, "reverted_later"), ("d" * 40, "reverts_other_commit"),
            ("e" * 40, "unknown_language"), ("f" * 40, "renamed"), ("1" * 40, "no_change"), (str(table), "malformed_row"),
        ]), label="Drops")


def test_mine_repository_fails_naming_a_repository_its_worker_cannot_see(tmp_path, registry):
    """The run found the repository; the worker mining it does not (it vanished, or lies on a disk only the driver
    has): the pipeline fails naming the path, rather than dropping the repository as unreadable."""
    repo = GitRepo(tmp_path / "octo-demo")
    repo.write("src/calc.py", CALC)
    repo.commit("Initial import of the calculator")
    entries = [{"name": "octo-demo", "path": str(repo.path)}, {"name": "gone", "path": str(tmp_path / "gone")}]
    with (pytest.raises(Exception, match=f"repository {tmp_path / 'gone'} is not there for this worker") as failure,
          BeamTestPipeline() as pipeline):
        _ = Mined(pipeline | beam.Create(entries), registry)
    assert "every worker must see the repositories" in str(failure.value)


def test_mine_repository_still_drops_a_path_that_is_there_but_no_repository(tmp_path, registry):
    (tmp_path / "empty-git" / ".git").mkdir(parents=True)
    entries = [{"name": "empty-git", "path": str(tmp_path / "empty-git")}]
    with BeamTestPipeline() as pipeline:
        mined = Mined(pipeline | beam.Create(entries), registry)
        assert_that(reasons(mined.drops), equal_to([(str(tmp_path / "empty-git"), "unreadable_repository")]))


def test_a_candidate_not_chosen_is_dropped_in_its_run_with_its_message_or_in_brief(tmp_path, registry):
    """Choosing one record per commit sees claims without messages; the verdicts go back to each candidate's run,
    where its drop record is made: brief (repository, commit, path, subject) for a copy that lost to another
    repository, with the message for one the history rules rejected."""
    repo = GitRepo(tmp_path / "aa-origin")
    repo.write("LICENSE", MIT)
    repo.write("src/calc.py", CALC)
    repo.commit("Initial import of the calculator")
    repo.write("src/calc.py", CALC_SWAPPED)
    kept = repo.commit(GOOD)
    repo.write("src/calc.py", "def add(a, b):\n    return a + b + 0\n")
    reverted = repo.commit("Add a zero to the adder\n\nIt makes the sum explicit.")
    repo.git("revert", "--no-edit", reverted, env={"GIT_COMMITTER_DATE": "1600300000 +0000", "GIT_AUTHOR_DATE": "1600300000 +0000"})
    revert = repo.git("rev-parse", "HEAD")
    fork = tmp_path / "zz-fork"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(fork)], check=True, capture_output=True)

    entries = [{"name": "aa-origin", "path": str(repo.path)}, {"name": "zz-fork", "path": str(fork)}]
    with BeamTestPipeline() as pipeline:
        mined = Mined(pipeline | beam.Create(entries), registry)
        assert_that(mined.commits | beam.Map(lambda row: (row["repo"], row["commit"])), equal_to([("aa-origin", kept)]),
                    label="Commits")
        records = (mined.drops
                   | beam.Filter(lambda drop: drop["key"] in (kept, reverted))
                   | beam.Map(lambda drop: (drop["key"], drop["reason"], drop["detail"], json.loads(drop["record"]))))
        assert_that(records, equal_to([
            (kept, "duplicate_commit", "kept aa-origin, dropped zz-fork",
             {"repo": "zz-fork", "commit": kept, "path": "src/calc.py", "subject": GOOD}),
            (reverted, "reverted_later", "", {"repo": "aa-origin", "commit": reverted, "shape": "modified", "path": "src/calc.py",
                                              "message": "Add a zero to the adder\n\nIt makes the sum explicit.\n"}),
            (reverted, "reverted_later", "", {"repo": "zz-fork", "commit": reverted, "shape": "modified", "path": "src/calc.py",
                                              "message": "Add a zero to the adder\n\nIt makes the sum explicit.\n"}),
        ]), label="Verdicts")
        assert_that(reasons(mined.drops) | beam.Filter(lambda drop: drop[0] == revert),
                    equal_to([(revert, "reverts_other_commit")] * 2), label="Reverting")
