"""Mining git repositories without ever grouping file contents, one repository's history across every worker.

1. `PlanRepository` opens each repository, lists its commits (ids only, oldest first), decides its licence,
   and cuts the list into runs of `walk_chunk_commits`.
2. `WalkChunk` reads the change shape of every commit of a run (one `git log`) and applies the rules that
   need only that commit; what the history rules need of the others travels as small facts.
3. `ApplyHistoryRules` applies, per repository, the rules that look across commits (reverts, inverse changes), on
   what they need of each commit (ids and blobs, no message); its verdicts meet the candidates in the stage's join.
4. The stage chooses one record per commit on claims (commit id, repository, path, run: no message), joined with
   the history rules' verdicts and the merged-PR table; what it rejects goes back to the run as a verdict.
5. `ReadChosen` meets each run's candidates (sent once by the walk, with their messages) with those verdicts,
   reads both file versions of the survivors, oldest first, through one `git cat-file`, then applies the content
   rules: contents go straight to the writer.

Steps 2 and 5 are spread over the workers; the results do not depend on how many there are, nor on the
size of the runs. What is grouped is commit metadata, never file versions, and a message only once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import apache_beam as beam

from parsers import LanguageRegistry
from pipelines.core import DROPPED, Rejection, metrics_namespace
from pipelines.mine.filters import (
    GIT,
    REVERT_TRAILER,
    STAGE,
    ChangeShape,
    FileContents,
    LicenseDetector,
    RepositoryRules,
    RevertIndex,
    Rules,
    drop,
    is_unicode,
    printable,
    split_of,
)
from pipelines.mine.git import (
    BlobReader,
    BrokenRefError,
    Change,
    GitReadError,
    changes_of,
    history,
    license_text,
    open_repository,
    path_missing,
    truncated_history_objects,
)
from schemas import Commit, to_row
from storage import not_visible

if TYPE_CHECKING:
    from pipelines.mine.stage import MineConfig

HISTORY = "history"  # what the history rules need of a run: no message, no metadata beyond ids and blobs
RUNS = "runs"  # a run's candidates, whole (message included), keyed by the run: they meet their verdicts to be read


def _records_in() -> Any:
    return beam.metrics.Metrics.counter(metrics_namespace(STAGE), "records_in")


def _open(path: str) -> Any:
    """The repository at `path`; InputNotVisible when this worker does not see it (the run checked it is there)."""
    if path_missing(path):
        raise not_visible(f"repository {printable(path)}", "the repositories")
    return open_repository(path)


class PlanRepository(beam.DoFn):
    """A repository's commit ids in runs of `chunk` (with its name, licence and split), and a drop record for a
    repository, reference or commit that cannot be read, and for every commit of a refused repository.

    Accounting: every commit listed counts as one record in (here when the repository is refused, else where its
    run is walked), and so does every broken reference and a repository that cannot be read at all."""

    def __init__(self, config: MineConfig, chunk: int):
        self.config = config
        self.chunk = chunk

    def setup(self) -> None:
        self.repositories = RepositoryRules(self.config.licenses, self.config.repo_allowlist)
        self.detector = LicenseDetector()

    def process(self, entry: dict[str, Any]) -> Iterator[Any]:
        records_in = _records_in()
        name, path = entry["name"], entry["path"]
        if path_missing(path):  # the run checked it is there: this worker does not see the driver's files
            raise not_visible(f"repository {printable(path)}", "the repositories")
        if not (is_unicode(name) and is_unicode(path)):  # a record naming it could not be written
            records_in.inc()
            rejection = GIT.reject("unreadable_repository", "{path}: the repository's path or name is not UTF-8; rename it to mine it",
                                   path=printable(path))
            yield drop(printable(path), rejection, {"path": printable(path)})
            return
        where = {"repo": name, "path": path}
        try:
            repo = open_repository(path)
        except GitReadError as error:
            records_in.inc()
            yield drop(path, GIT.reject("unreadable_repository", "{error}", error=str(error)), entry)
            return
        truncated = truncated_history_objects(repo)  # before libgit2 reads any: it would hang on them
        if truncated:
            records_in.inc()
            rejection = GIT.reject("corrupt_object", "{count} truncated loose objects ({first}); `git fsck` lists them; none of its commits mined",
                                   count=len(truncated), first=", ".join(truncated[:3]))
            yield drop(name, rejection, where)
            return

        ids: list[str] = []
        for item in history(repo, self.config.refs):
            if isinstance(item, BrokenRefError):
                records_in.inc()
                yield drop(name, GIT.reject("broken_ref", "{path}: {error}", path=path, error=str(item)), where)
            elif isinstance(item, GitReadError):
                records_in.inc()
                yield drop(name, GIT.reject("corrupt_object", "{error}", error=str(item)), where)
            else:
                ids.append(item)
        if not ids:
            return

        refused, license_id = self._license(repo, entry, path, len(ids))
        if refused is None:
            refused = self.repositories.check(name, license_id)
            if refused is not None:
                refused = RepositoryRules.reject(refused.reason, "{commits} commits; licence {license}", commits=len(ids),
                                                 license=license_id or "not detected")
        if refused is not None:
            records_in.inc(len(ids))
            yield drop(name, refused, where, count=len(ids))
            return
        split = split_of(name, self.config.benchmark_share)
        for first in range(0, len(ids), self.chunk):
            yield {"repo": name, "path": path, "license": license_id, "split": split, "first": first,
                   "ids": ids[first:first + self.chunk]}

    def _license(self, repo: Any, entry: dict[str, Any], path: str, commits: int) -> tuple[Rejection | None, str | None]:
        """(None, the licence id from the manifest or the licence file), or (why no commit can be kept, None)."""
        license_id = entry.get("license")
        if license_id is None:
            try:
                found = license_text(repo)
            except GitReadError as error:  # the licence cannot be known, so none of the commits can be kept
                reason = "broken_ref" if isinstance(error, BrokenRefError) else "corrupt_object"
                return GIT.reject(reason, "{path}: {error}; none of its {commits} commits mined", path=path, error=str(error),
                                  commits=commits), None
            license_id = self.detector.detect(found[1]) if found else None
        return None, license_id.lower() if license_id else None


def _path_key(path: str) -> str:
    """A short stable key of a file path (any bytes, undecodable ones included) for the inverse-change rule."""
    return hashlib.blake2b(path.encode("utf-8", errors="surrogateescape"), digest_size=8).hexdigest()


def drop_summary(name: str, change: Change | dict[str, Any]) -> dict[str, Any]:
    """What a drop record keeps of a commit (or of a candidate) of repository `name`."""
    if isinstance(change, dict):
        return {"repo": name, "commit": change["commit"], "shape": "modified", "path": change["path"], "message": change["message"][:500]}
    return {"repo": name, "commit": change.commit, "shape": change.shape, "path": change.path, "message": change.message[:500]}


class WalkChunk(beam.DoFn):
    """The change shapes of one run of a repository's commits, and the rules that need only the commit itself.

    Main output: (commit id, claim) for each commit that passed them: what choosing one record per commit needs
    (repository, path, git dir, run), no message.
    RUNS: ((git dir, first position), candidates) once per run: each candidate's metadata and blob ids, no contents.
    HISTORY: (repository path, what the history rules need of the run): for each candidate, its position, blobs
    and the commits its message says it reverts; for the commits the cheap rules dropped, the commits they revert
    and the blobs of their in-place modifications (the other half of an inverse change). One HISTORY element per
    run, with no message: the runner groups them by repository, and the candidates meet the rules' verdicts in
    the stage's join on commit ids."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = Rules(self.config, self.registry)

    def process(self, chunk: dict[str, Any]) -> Iterator[Any]:
        records_in = _records_in()
        name, path, split = chunk["repo"], chunk["path"], chunk["split"]
        try:
            repo = _open(path)
        except GitReadError as error:  # readable when the run was planned, no longer: each of its commits is counted
            records_in.inc(len(chunk["ids"]))
            rejection = GIT.reject("unreadable_repository", "{error}; {commits} commits not walked", error=str(error), commits=len(chunk["ids"]))
            yield drop(name, rejection, {"repo": name, "path": path}, count=len(chunk["ids"]))
            return
        candidates: list[dict[str, Any]] = []
        facts: list[tuple[int, str, str, str, str, list[str]]] = []  # what the history rules need of each candidate
        reverts: list[str] = []
        modified: list[tuple[int, str, str, str, str]] = []
        for position, item in enumerate(changes_of(repo, chunk["ids"]), chunk["first"]):
            records_in.inc()
            if isinstance(item, GitReadError):
                yield drop(name, GIT.reject("corrupt_object", "{error}", error=str(item)), {"repo": name, "path": path})
                continue
            rejection = self._rejection(item, split)
            if rejection is None:
                candidate = self._candidate(item, chunk, position, repo.path)
                candidates.append(candidate)
                yield item.commit, {"repo": name, "path": candidate["path"], "git_dir": repo.path, "run": chunk["first"]}
                facts.append((position, item.commit, _path_key(item.path), item.old_blob, item.new_blob,  # type: ignore[arg-type]
                                   REVERT_TRAILER.findall(item.message)))
                continue
            yield drop(item.commit, rejection, drop_summary(name, item))
            reverts.extend(REVERT_TRAILER.findall(item.message))
            if item.shape == "modified":
                modified.append((position, item.commit, _path_key(item.path), item.old_blob, item.new_blob))  # type: ignore[arg-type]
        if candidates:
            yield beam.pvalue.TaggedOutput(RUNS, ((repo.path, chunk["first"]), candidates))
        if facts or reverts or modified:
            yield beam.pvalue.TaggedOutput(HISTORY, (path, {"git_dir": repo.path, "candidates": facts, "reverts": reverts,
                                                            "modified": modified}))

    def _rejection(self, change: Change, split: str) -> Rejection | None:
        """The first rule the commit breaks, in the order the rules are cheapest (no blob is read)."""
        if change.shape in ChangeShape.PARENTS:
            return self.rules.shape.check(change)
        rejection = self.rules.messages.check(change.message) or self.rules.shape.check(change)
        if rejection is not None:
            return rejection
        assert change.path is not None
        if not is_unicode(change.path):
            return FileContents.reject("not_utf8", "file path {path!r} is not UTF-8", path=change.path)
        if not self.rules.has_language(change.path):
            return FileContents.reject("unknown_language")
        return self.rules.windows.check(split, change.committed_at)

    @staticmethod
    def _candidate(change: Change, chunk: dict[str, Any], position: int, git_dir: str) -> dict[str, Any]:
        subject = change.message.strip().splitlines()[0] if change.message.strip() else ""
        return {"repo": chunk["repo"], "commit": change.commit, "parent": change.parents[0], "path": change.path,
                "license": chunk["license"], "split": chunk["split"], "committed_at": change.committed_at, "subject": subject,
                "message": change.message, "git_dir": git_dir, "old_blob": change.old_blob, "new_blob": change.new_blob,
                "position": position}


def inverse_pairs(changes: Iterable[tuple[str, str, str, str]]) -> set[str]:
    """Commits undone later by an exact inverse change (same path, blobs swapped), and those undoing them;
    `changes`: (commit, path key, old blob, new blob) of every in-place modification, oldest first."""
    seen: dict[tuple[str, str, str], str] = {}
    pairs: set[str] = set()
    for commit, path, old, new in changes:
        undone = seen.get((path, new, old))
        if undone is not None:
            pairs.update((undone, commit))
        seen[(path, old, new)] = commit
    return pairs


class ApplyHistoryRules(beam.DoFn):
    """One repository's history against its candidates: a candidate reverted later, reverting another commit, or one
    half of an inverse change is rejected; yields (commit id, (repository's git dir, reason)) for each one."""

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[tuple[str, tuple[str, str]]]:
        _, runs = element
        reverts = RevertIndex()
        candidates: list[tuple[int, str]] = []
        reverting: set[str] = set()
        modified: list[tuple[Any, ...]] = []
        git_dir = ""
        for run in runs:
            git_dir = run["git_dir"]
            reverts.add_ids(run["reverts"])
            modified.extend(tuple(fact) for fact in run["modified"])
            for position, commit, path_key, old, new, reverted in run["candidates"]:
                candidates.append((position, commit))
                modified.append((position, commit, path_key, old, new))
                reverts.add_ids(reverted)
                if reverted:
                    reverting.add(commit)
        inverse = inverse_pairs(change[1:] for change in sorted(modified))
        for _, commit in sorted(candidates):
            if commit in reverts:
                yield commit, (git_dir, "reverted_later")
            elif commit in reverting:
                yield commit, (git_dir, "reverts_other_commit")
            elif commit in inverse:
                yield commit, (git_dir, "inverse_change")


class MineRepositories(beam.PTransform):
    """Repository entries -> (claims keyed by commit id, each run's candidates keyed by the run, the history rules'
    verdicts keyed by commit id, the drop records of each step): every rule but the content rules, which
    `ReadContents` applies once one record per commit is chosen on the claims (`KeepOnePerCommit`)."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        super().__init__()
        self.config = config
        self.registry = registry

    def expand(self, entries: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection,
                                                         tuple[beam.PCollection, ...]]:
        planned = (
            entries
            | "SpreadRepositories" >> beam.Reshuffle()
            | "PlanRepositories" >> beam.ParDo(PlanRepository(self.config, self.config.walk_chunk_commits)).with_outputs(DROPPED, main="runs")
        )
        walked = (
            planned.runs
            | "SpreadRuns" >> beam.Reshuffle()
            | "WalkRuns" >> beam.ParDo(WalkChunk(self.config, self.registry)).with_outputs(DROPPED, HISTORY, RUNS, main="claims")
        )
        rejected = (
            walked[HISTORY]
            | "ByRepository" >> beam.GroupByKey()
            | "HistoryRules" >> beam.ParDo(ApplyHistoryRules())
        )
        return walked.claims, walked[RUNS], rejected, (planned[DROPPED], walked[DROPPED])


READ_BATCH = 32  # candidates whose file versions are read in one exchange with git


class ReadChosen(beam.PTransform):
    """{"runs": each run's candidates, "verdicts": ((git dir, run), (commit, rejection, brief)) for each candidate not
    chosen, "rows": ("", commit) -> a chosen commit table row} -> (`Commit` rows, drops). A run's candidates meet
    their verdicts in one join (metadata only) and the others are read together, oldest first, so that git reads
    neighbouring versions from its delta-base cache and a worker runs one `git cat-file` at a time; a table row
    passes. One collection throughout: a Flatten after the read would make Beam's local runner hold every file
    version until the writer starts."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        super().__init__()
        self.config = config
        self.registry = registry

    def expand(self, inputs: dict[str, beam.PCollection]) -> tuple[beam.PCollection, beam.PCollection]:
        read = (
            inputs
            | "GatherRuns" >> beam.CoGroupByKey()
            | "ReadContents" >> beam.ParDo(ReadContents(self.config, self.registry)).with_outputs(DROPPED, main="commits")
        )
        return read.commits, read[DROPPED]


def brief_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a drop record keeps of a record that lost to another one of its commit."""
    return {k: record[k] for k in ("repo", "commit", "path", "subject")}


class ReadContents(beam.DoFn):
    """Both file versions of the chosen candidates of one run of a repository's history, oldest first, READ_BATCH
    commits per exchange with one `git cat-file` (ended after the run), and the content rules: a `Commit` row, or a
    drop; a candidate not chosen is dropped for its verdict's reason. A commit table's row passes."""

    def __init__(self, config: MineConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def setup(self) -> None:
        self.rules = Rules(self.config, self.registry)

    def process(self, element: tuple[tuple[str, int | str], dict[str, Iterable[Any]]]) -> Iterator[Any]:
        (git_dir, _), groups = element
        if not git_dir:
            yield from groups.get("rows", ())
            return
        verdicts = {commit: (rejection, short) for commit, rejection, short in groups.get("verdicts", ())}
        ordered = []
        for candidate in sorted((c for run in groups["runs"] for c in run), key=lambda c: c["position"]):
            verdict = verdicts.get(candidate["commit"])
            if verdict is None:
                ordered.append(candidate)
            else:
                rejection, short = verdict
                summary = brief_summary(candidate) if short else drop_summary(candidate["repo"], candidate)
                yield drop(candidate["commit"], rejection, summary)
        if not ordered:
            return
        reader = BlobReader(git_dir)
        try:
            for start in range(0, len(ordered), READ_BATCH):
                batch = ordered[start:start + READ_BATCH]
                versions = reader.read_many([blob for c in batch for blob in (c["old_blob"], c["new_blob"])], self.config.max_file_bytes)
                for index, candidate in enumerate(batch):
                    rejection, row = self._row(candidate, versions[2 * index], versions[2 * index + 1])
                    if rejection is None:
                        yield row
                    else:
                        yield drop(candidate["commit"], rejection, drop_summary(candidate["repo"], candidate))
        finally:
            reader.close()

    def _row(self, candidate: dict[str, Any], before: tuple[bytes | None, Rejection | None],
             after: tuple[bytes | None, Rejection | None]) -> tuple[Rejection | None, dict[str, Any] | None]:
        for _, rejection in (before, after):
            if rejection is not None:
                return rejection, None
        contents = self.rules.contents(before[0], after[0], candidate["path"])  # type: ignore[arg-type]
        if isinstance(contents, Rejection):
            return contents, None
        old, new, language = contents
        fields = {k: candidate[k] for k in ("repo", "commit", "parent", "path", "license", "committed_at", "subject", "message", "split")}
        return None, to_row(Commit(**fields, language=language, before=old, after=new))
