"""Git history through libgit2 (pygit2): one open repository, no process per commit, no fetches.

`walk_changes` yields, for every commit reachable from the chosen refs, the shape of its change
against its parent (which paths, how they changed) without reading any file contents; contents
are read afterwards, only for the commits that pass the cheap rules.

libgit2 1.9 (in pygit2 1.21) loops forever when it reads a truncated loose object (libgit2#7342,
fixed upstream after 1.9.x). Loose objects are therefore checked with Python's zlib before libgit2
reads them: `truncated_history_objects` for the commits and trees a walk reads, `read_blob` for
each blob it is asked for.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import DeltaStatus, DiffOption, FileMode, SortMode

LICENSE_FILE = re.compile(r"^(?:un)?licen[cs]e(?:[-._].*)?$|^copying(?:[-._].*)?$", re.IGNORECASE)


class GitReadError(RuntimeError):
    """A repository or object cannot be read (missing, corrupt, not a repository)."""


@dataclass(frozen=True)
class Change:
    """The shape of one commit's change against its first parent (no contents read)."""

    commit: str
    parents: tuple[str, ...]
    committed_at: int
    message: str
    shape: str  # "modified" | "multi_file" | "no_change" | "added" | "deleted" | "renamed" | "mode_change" | "type_change" | "root" | "merge"
    path: str | None = None
    old_blob: str | None = None
    new_blob: str | None = None


def open_repository(path: str) -> pygit2.Repository:
    """A repository (bare or with a work tree) at `path`, or a GitReadError naming the path."""
    try:
        return pygit2.Repository(path)
    except (pygit2.GitError, KeyError, ValueError, OSError) as error:
        raise GitReadError(f"{path}: not a readable git repository ({error})") from None


HEADER_BYTES = 32  # "commit 123456\0": a loose object's header fits in this many inflated bytes
INFLATE_CHUNK = 1 << 20


def _loose_file(repo: pygit2.Repository, oid: str) -> Path:
    return Path(repo.path) / "objects" / oid[:2] / oid[2:]


def _loose_header(data: bytes) -> tuple[str | None, zlib._Decompress | None]:  # type: ignore[name-defined]
    """(object type, the decompressor after the header), or (None, None) when the stream is not
    zlib at all (libgit2 reports such an object as an error) and ("", d) when it ends inside the header."""
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(data, HEADER_BYTES)
    except zlib.error:
        return None, None
    if b"\0" not in head:
        return "", inflater
    return head.split(b" ", 1)[0].decode("ascii", errors="replace"), inflater


def _truncated(inflater: zlib._Decompress) -> bool:  # type: ignore[name-defined]
    """Whether the rest of a loose object's stream ends before zlib's end marker (output discarded)."""
    try:
        while not inflater.eof:
            # An empty input still drains output zlib holds back; no output and no input left: the end.
            if not inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK) and not inflater.unconsumed_tail:
                break
    except zlib.error:
        return False  # corrupt, but libgit2 says so itself
    return not inflater.eof


def loose_object_problem(repo: pygit2.Repository, oid: str) -> str | None:
    """Why the loose object `oid` would hang libgit2 (a truncated stream), or None (packed objects too)."""
    path = _loose_file(repo, oid)
    try:
        data = path.read_bytes()
    except OSError:
        return None  # packed, or missing: libgit2 answers those
    kind, inflater = _loose_header(data)
    if inflater is not None and (kind == "" or _truncated(inflater)):
        return f"loose object {path} is truncated"
    return None


def truncated_history_objects(repo: pygit2.Repository) -> list[str]:
    """The truncated loose objects a history walk would read (commits, trees, tags, and those whose
    type cannot be told), each as 'TYPE ID'; blobs are checked when read (`read_blob`)."""
    found = []
    for folder in sorted((Path(repo.path) / "objects").glob("[0-9a-f][0-9a-f]")):
        for path in sorted(folder.iterdir()):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            kind, inflater = _loose_header(data)
            if inflater is None or kind == "blob":
                continue
            if kind == "" or _truncated(inflater):
                found.append(f"{kind or 'object'} {folder.name}{path.name}")
    return found


def is_repository(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def head_commit(repo: pygit2.Repository) -> str | None:
    """The commit HEAD points at, or None for an empty repository."""
    if repo.head_is_unborn:
        return None
    return str(repo.head.target)


def _starts(repo: pygit2.Repository, refs: str) -> list[pygit2.Oid]:
    if refs == "head":
        return [] if repo.head_is_unborn else [repo.head.target]
    starts = []
    for name in repo.references:
        if name.startswith(("refs/heads/", "refs/tags/")) or name == "HEAD":
            try:
                target = repo.references[name].peel(pygit2.Commit).id
            except (pygit2.GitError, ValueError, KeyError):
                continue
            if target not in starts:
                starts.append(target)
    return starts


def walk_changes(repo: pygit2.Repository, refs: str = "head") -> Iterator[Change | GitReadError]:
    """Every commit reachable from HEAD (or all branches and tags), oldest first, with its change shape.

    A commit whose objects cannot be read is yielded as a GitReadError naming it, not raised,
    so one corrupt object does not end the walk.
    """
    starts = _starts(repo, refs)
    if not starts:
        return
    walker = repo.walk(starts[0], SortMode.TOPOLOGICAL | SortMode.TIME | SortMode.REVERSE)
    for extra in starts[1:]:
        walker.push(extra)
    while True:
        try:
            commit = next(walker)
        except StopIteration:
            return
        except (pygit2.GitError, KeyError, ValueError) as error:
            yield GitReadError(f"history walk stopped early: {error}")
            return
        try:
            yield _change_of(repo, commit)
        except (pygit2.GitError, KeyError, ValueError) as error:
            yield GitReadError(f"commit {commit.id}: {error}")


def _change_of(repo: pygit2.Repository, commit: pygit2.Commit) -> Change:
    parents = tuple(str(p) for p in commit.parent_ids)
    base = dict(commit=str(commit.id), parents=parents, committed_at=commit.commit_time, message=commit.message)
    if len(parents) > 1:
        return Change(**base, shape="merge")
    if not parents:
        return Change(**base, shape="root")
    # Binary detection is done later, only for the blobs of commits that pass the cheap rules.
    diff = commit.parents[0].tree.diff_to_tree(commit.tree, flags=DiffOption.SKIP_BINARY_CHECK)
    deltas = list(diff.deltas)
    if len(deltas) == 2 and {d.status for d in deltas} == {DeltaStatus.ADDED, DeltaStatus.DELETED}:
        diff.find_similar()
        deltas = list(diff.deltas)
    if not deltas:
        return Change(**base, shape="no_change")
    if len(deltas) > 1:
        return Change(**base, shape="multi_file")
    delta = deltas[0]
    path = delta.new_file.path or delta.old_file.path
    shape = {
        DeltaStatus.ADDED: "added",
        DeltaStatus.DELETED: "deleted",
        DeltaStatus.RENAMED: "renamed",
        DeltaStatus.COPIED: "copied",
        DeltaStatus.TYPECHANGE: "type_change",
    }.get(delta.status, "modified")
    if shape == "modified":
        if delta.old_file.path != delta.new_file.path:
            shape = "renamed"
        elif delta.old_file.mode != delta.new_file.mode:
            shape = "mode_change"
        elif delta.new_file.mode in (FileMode.LINK, FileMode.COMMIT):
            shape = "type_change"  # symlinks and submodules are not source files
    return Change(**base, shape=shape, path=path, old_blob=str(delta.old_file.id), new_blob=str(delta.new_file.id))


def read_blob(repo: pygit2.Repository, blob_id: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(contents, None), or (None, reason) for a blob that is too large, binary or unreadable.

    The size comes from the object's header first, so a huge blob is refused without being inflated.
    """
    try:
        kind, size = repo.odb.read_header(blob_id)
        if kind != pygit2.enums.ObjectType.BLOB:
            return None, f"corrupt_object: {blob_id} is not a blob"
        if size > max_bytes:
            return None, f"too_large: {size} bytes"
        problem = loose_object_problem(repo, blob_id)
        if problem:
            return None, f"corrupt_object: blob {blob_id}: {problem}"
        blob = repo[blob_id]
    except (KeyError, ValueError, pygit2.GitError) as error:
        return None, f"corrupt_object: blob {blob_id}: {error}"
    if not isinstance(blob, pygit2.Blob):
        return None, f"corrupt_object: {blob_id} is not a blob"
    try:
        if blob.is_binary:
            return None, "binary: git's binary heuristic"
        return blob.data, None
    except pygit2.GitError as error:
        return None, f"corrupt_object: blob {blob_id}: {error}"


def license_text(repo: pygit2.Repository) -> tuple[str, bytes] | None:
    """(file name, contents) of the licence file at the root of HEAD's tree, if there is one."""
    if repo.head_is_unborn:
        return None
    try:
        tree = repo[repo.head.target].peel(pygit2.Tree)
    except (pygit2.GitError, KeyError, ValueError):
        return None
    candidates = sorted((entry.name for entry in tree if entry.type_str == "blob" and LICENSE_FILE.match(entry.name)), key=len)
    for name in candidates:
        blob = tree[name]
        if loose_object_problem(repo, str(blob.id)):
            continue
        try:
            return name, repo[blob.id].data[:200_000]
        except (pygit2.GitError, KeyError):
            continue
    return None
