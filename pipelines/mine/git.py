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

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import DeltaStatus, DiffOption, FileMode, SortMode

from pipelines.core import Rejection
from pipelines.mine.filters import GIT, FileContents

LICENSE_FILE = re.compile(r"^(?:un)?licen[cs]e(?:[-._].*)?$|^copying(?:[-._].*)?$", re.IGNORECASE)


class GitReadError(RuntimeError):
    """A repository or object cannot be read (missing, corrupt, not a repository)."""


class BrokenRefError(GitReadError):
    """A branch, tag or HEAD that does not lead to a commit: a corrupt reference file, or a missing object."""


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


def path_missing(path: str) -> bool:
    """Whether nothing at all is at `path`: a path that is there but cannot be looked at (no permission) is not missing."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


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
        try:
            paths = sorted(folder.iterdir())
        except OSError:
            continue  # unreadable folder: libgit2 reports its objects as missing
        for path in paths:
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
    """The commit id HEAD points at, or None for an empty repository; a BrokenRefError for a HEAD
    that cannot be read (a corrupt HEAD file). The id is not looked up: `walk_changes` says if it is missing."""
    try:
        if repo.head_is_unborn:
            return None
        return str(repo.head.target)
    except (pygit2.GitError, KeyError, ValueError) as error:
        raise BrokenRefError(f"HEAD cannot be read ({error})") from None


def reference_targets(repo: pygit2.Repository) -> dict[str, str]:
    """What every branch, tag and HEAD points at (an id, a reference name, or why it cannot be read),
    for telling a changed repository from an unchanged one; never raises for a corrupt reference."""
    targets: dict[str, str] = {}
    try:
        names = ["HEAD", *repo.references]
    except pygit2.GitError as error:
        return {"refs": f"unreadable: {error}"}
    for name in names:
        try:
            targets[name] = str(repo.references[name].target)
        except (pygit2.GitError, KeyError, ValueError) as error:
            targets[name] = f"unreadable: {error}"
    return targets


HISTORY_REFS = ("refs/heads/", "refs/tags/")


def _commit_of(repo: pygit2.Repository, name: str, target: pygit2.Oid) -> pygit2.Oid | None:
    """The commit a reference leads to (through annotated tags), None for a tag of a tree or blob
    (there is no history behind it), or a BrokenRefError when an object on the way is missing."""
    seen = 0
    while True:
        obj = repo.get(target)  # None when missing; a GitError when corrupt
        if obj is None:
            hops = f" (through {seen} tag objects)" if seen else ""
            raise BrokenRefError(f"{name} points to {target}{hops}, which is not in the repository")
        if isinstance(obj, pygit2.Commit):
            return obj.id
        if not isinstance(obj, pygit2.Tag):
            return None
        target, seen = obj.target, seen + 1


def _unlisted_ref_files(repo: pygit2.Repository, listed: set[str]) -> list[str]:
    """Loose branch and tag files that libgit2 leaves out of its listing (their contents are not an id)."""
    root = Path(repo.path)
    found = []
    for prefix in HISTORY_REFS:
        for path in sorted((root / prefix).rglob("*")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and not name.endswith(".lock") and name not in listed:
                found.append(name)
    return found


def _starts(repo: pygit2.Repository, refs: str) -> tuple[list[pygit2.Oid], list[str]]:
    """(the commits a walk starts from, why each reference that leads to no commit is broken).

    'head' starts from HEAD; 'all' from every branch and tag, and HEAD when it is detached. A tag
    of a tree or a blob is neither: no history is behind it."""
    starts: list[pygit2.Oid] = []
    broken: list[str] = []

    def add(name: str, resolve: Any) -> None:
        try:
            commit = _commit_of(repo, name, resolve())
        except BrokenRefError as error:
            broken.append(str(error))
        except (pygit2.GitError, KeyError, ValueError) as error:
            broken.append(f"{name} cannot be read ({error})")
        else:
            if commit is None and name.startswith("HEAD"):
                broken.append(f"{name} points to a tree or blob, not a commit")
            elif commit is not None and commit not in starts:
                starts.append(commit)

    try:
        unborn = repo.head_is_unborn
        detached = not unborn and repo.head_is_detached
        head_name = "HEAD" if unborn or detached else f"HEAD ({repo.head.name})"
    except (pygit2.GitError, KeyError, ValueError) as error:
        broken.append(f"HEAD cannot be read ({error})")
    else:
        if not unborn and (refs == "head" or detached):
            add(head_name, lambda: repo.head.target)
    if refs == "head" and (starts or broken):
        return starts, broken
    try:  # a corrupt packed-refs file fails the listing, and leaves HEAD looking unborn
        names = [name for name in repo.references if name.startswith(HISTORY_REFS)]
    except pygit2.GitError as error:
        broken.append(f"references cannot be listed ({error})")
        return starts, broken
    if refs == "head":  # HEAD unborn in a repository whose references can be read: an empty repository
        return starts, broken
    for name in names:
        add(name, lambda name=name: repo.references[name].resolve().target)
    broken.extend(f"{name} is not a readable reference file" for name in _unlisted_ref_files(repo, set(names)))
    return starts, broken


def walk_changes(repo: pygit2.Repository, refs: str = "head") -> Iterator[Change | GitReadError]:
    """Every commit reachable from HEAD (or all branches and tags), oldest first, with its change shape.

    A commit whose objects cannot be read is yielded as a GitReadError naming it, not raised,
    so one corrupt object does not end the walk; a reference that leads to no commit (a corrupt
    HEAD, a branch pointing to a missing commit) is yielded first, as a BrokenRefError.
    """
    starts, broken = _starts(repo, refs)
    for problem in broken:
        yield BrokenRefError(problem)
    if not starts:
        return
    try:
        walker = repo.walk(starts[0], SortMode.TOPOLOGICAL | SortMode.TIME | SortMode.REVERSE)
        for extra in starts[1:]:
            walker.push(extra)
    except (pygit2.GitError, KeyError, ValueError) as error:
        yield GitReadError(f"history walk cannot start: {error}")
        return
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


def _message(commit: pygit2.Commit) -> str:
    """The commit message; one whose `encoding` header names no known codec is read as UTF-8, as pygit2
    reads a message without that header (undecodable bytes become U+FFFD)."""
    try:
        return commit.message
    except LookupError:
        return commit.raw_message.decode("utf-8", errors="replace")


def _change_of(repo: pygit2.Repository, commit: pygit2.Commit) -> Change:
    parents = tuple(str(p) for p in commit.parent_ids)
    base = dict(commit=str(commit.id), parents=parents, committed_at=commit.commit_time, message=_message(commit))
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


def read_blob(repo: pygit2.Repository, blob_id: str, max_bytes: int) -> tuple[bytes | None, Rejection | None]:
    """(contents, None), or (None, why not) for a blob that is too large, binary or unreadable.

    The size comes from the object's header first, so a huge blob is refused without being inflated.
    """
    try:
        kind, size = repo.odb.read_header(blob_id)
        if kind != pygit2.enums.ObjectType.BLOB:
            return None, GIT.reject("corrupt_object", "{blob} is not a blob", blob=blob_id)
        if size > max_bytes:
            return None, FileContents.reject("too_large", "{bytes} bytes", bytes=size)
        problem = loose_object_problem(repo, blob_id)
        if problem:
            return None, GIT.reject("corrupt_object", "blob {blob}: {problem}", blob=blob_id, problem=problem)
        blob = repo[blob_id]
    except (KeyError, ValueError, pygit2.GitError) as error:
        return None, GIT.reject("corrupt_object", "blob {blob}: {error}", blob=blob_id, error=str(error))
    if not isinstance(blob, pygit2.Blob):
        return None, GIT.reject("corrupt_object", "{blob} is not a blob", blob=blob_id)
    try:
        if blob.is_binary:
            return None, FileContents.reject("binary", "git's binary heuristic")
        return blob.data, None
    except pygit2.GitError as error:
        return None, GIT.reject("corrupt_object", "blob {blob}: {error}", blob=blob_id, error=str(error))


def license_text(repo: pygit2.Repository) -> tuple[str, bytes] | None:
    """(file name, contents) of the licence file at the root of HEAD's tree, or None when there is
    none (or no HEAD commit yet). A HEAD that cannot be read is a BrokenRefError, and a licence file
    or tree that cannot be read a GitReadError: the licence is then unknowable, not absent."""
    try:
        if repo.head_is_unborn:
            return None
        head = _commit_of(repo, f"HEAD ({repo.head.name})", repo.head.target)
    except (pygit2.GitError, KeyError, ValueError) as error:
        raise BrokenRefError(f"HEAD cannot be read ({error})") from None
    if head is None:
        raise BrokenRefError("HEAD does not point to a commit")
    try:
        tree = repo[head].tree
        names = [entry.name for entry in tree if entry.type_str == "blob" and LICENSE_FILE.match(entry.name)]
    except (pygit2.GitError, KeyError, ValueError) as error:
        raise GitReadError(f"the tree of HEAD ({head}) cannot be read for its licence file: {error}") from None
    for name in sorted(names, key=len):
        blob_id = str(tree[name].id)
        problem = loose_object_problem(repo, blob_id)
        if problem:
            raise GitReadError(f"licence file {name} (blob {blob_id}): {problem}")
        try:
            return name, repo[blob_id].data[:200_000]
        except (pygit2.GitError, KeyError, ValueError) as error:
            raise GitReadError(f"licence file {name} (blob {blob_id}) cannot be read: {error}") from None
    return None
