"""Git history, read with libgit2 (pygit2) and git's own object access: no process per commit, no fetches.

`history` lists the commits reachable from the chosen refs, oldest first (libgit2's walker, which also
resolves the references and says which are broken). `changes_of` gives, for a run of those commits, the
shape of each one's change against its parent (which paths, how they changed) without reading any file
contents: one `git log --raw --no-walk --stdin` for the whole run, with libgit2 commit by commit as the
fallback for a run git cannot read (a corrupt object), so one bad commit is reported on its own.
`BlobReader` reads file versions through one `git cat-file --batch-command`, only for the commits that
pass the cheap rules. Both are 3 to 5 times cheaper per commit than libgit2's tree diffs and blob reads.

git runs on untrusted repositories: with an explicit `--git-dir`, no `GIT_*` variable of the caller's
environment, no external diff or text conversion, no optional locks, no prompt, and never through a shell.

libgit2 1.9 (in pygit2 1.21) loops forever when it reads a truncated loose object (libgit2#7342,
fixed upstream after 1.9.x). Loose objects are therefore checked with Python's zlib before libgit2
reads them: `truncated_history_objects` for the commits and trees a walk reads, `BlobReader` for
each blob it is asked for.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import zlib
from collections.abc import Iterator, Sequence
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


def loose_object_problem(repo: pygit2.Repository | str, oid: str) -> str | None:
    """Why the loose object `oid` would hang libgit2 (a truncated stream), or None (packed objects too)."""
    path = os.path.join(repo if isinstance(repo, str) else repo.path, "objects", oid[:2], oid[2:])
    try:
        with open(path, "rb") as handle:  # a string path: asked for every blob read, most of them packed
            data = handle.read()
    except OSError:
        return None  # packed, or missing: libgit2 answers those
    kind, inflater = _loose_header(data)
    if inflater is not None and (kind == "" or _truncated(inflater)):
        return f"loose object {path} is truncated"
    return None


def truncated_history_objects(repo: pygit2.Repository) -> list[str]:
    """The truncated loose objects a history walk would read (commits, trees, tags, and those whose
    type cannot be told), each as 'TYPE ID'; blobs are checked when read (`BlobReader`)."""
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


def walk_changes(repo: pygit2.Repository, refs: str = "head", chunk: int = 2_000) -> Iterator[Change | GitReadError]:
    """Every commit reachable from HEAD (or all branches and tags), oldest first, with its change shape.

    A commit whose objects cannot be read is yielded as a GitReadError naming it, not raised,
    so one corrupt object does not end the walk; a reference that leads to no commit (a corrupt
    HEAD, a branch pointing to a missing commit) is yielded first, as a BrokenRefError.
    """
    ids: list[str] = []
    for item in history(repo, refs):
        if isinstance(item, GitReadError):
            yield item
        else:
            ids.append(item)
    for start in range(0, len(ids), chunk):
        yield from changes_of(repo, ids[start:start + chunk])


def history(repo: pygit2.Repository, refs: str = "head") -> Iterator[str | GitReadError]:
    """The ids of every commit reachable from HEAD (or all branches and tags), oldest first (topological,
    then by time), with no diff computed; broken references first as BrokenRefErrors, and a GitReadError
    when the walk itself stops at an unreadable commit (the ids before it are still yielded)."""
    for item in _walk(repo, refs):
        yield item if isinstance(item, GitReadError) else str(item.id)


def _walk(repo: pygit2.Repository, refs: str) -> Iterator[pygit2.Commit | GitReadError]:
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
        yield commit


def changes_of(repo: pygit2.Repository, ids: Sequence[str]) -> list[Change | GitReadError]:
    """The change shape of each commit in `ids`, in that order: a Change, or a GitReadError naming a commit
    whose objects cannot be read. One `git log` reads them all; when git cannot (a corrupt object stops it),
    libgit2 reads them one by one, so the others are still read."""
    if not ids:
        return []
    changes = _git_changes(repo, ids)
    if changes is not None:
        return changes
    out: list[Change | GitReadError] = []
    for commit_id in ids:
        try:
            out.append(_change_of(repo, repo[commit_id]))
        except (pygit2.GitError, KeyError, ValueError) as error:
            out.append(GitReadError(f"commit {commit_id}: {error}"))
    return out


# git's options that make its output depend on nothing but the repository's objects (not the user's or the
# repository's configuration), and never run a program a repository's configuration names.
GIT_SAFE_OPTIONS = ("-c", "core.fsmonitor=false", "-c", "core.quotePath=false", "--no-pager",
                    # Memory: git maps packs in windows of up to 1 GB, and caches 96 MB of delta bases, by default. Reading
                    # 20,000 blobs of redis oldest first: 74 MB peak with windows of 16 MB up to 96 MB and a 24 MB cache,
                    # 31 MB as here, for 7 % more CPU in git (2.19 -> 2.35 s); seven repositories on two workers peak
                    # about 40 MB lower (1,043-1,064 -> 989-1,017 MB).
                    "-c", "core.packedGitWindowSize=8m", "-c", "core.packedGitLimit=32m", "-c", "core.deltaBaseCacheLimit=8m")
LOG_FORMAT = "tformat:\x01%H %P%x00%ct%x00%B"
LOG_OPTIONS = ("--no-walk=unsorted", "--stdin", "--raw", "--no-renames", "--no-abbrev", "--diff-merges=off", "--no-ext-diff",
               "--no-textconv", "--no-color", "--no-notes", "--no-show-signature", "-z", f"--format={LOG_FORMAT}")
_COMMIT_LINE = re.compile(rb"\x01([0-9a-f]{40})((?: [0-9a-f]{40})*) ?")  # a root commit: "%H " (no parents)


def git_environment() -> dict[str, str]:
    """The caller's environment without `GIT_*` variables (a GIT_DIR or GIT_OBJECT_DIRECTORY there would make git
    read another repository), with git's prompts and optional locks off."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    return {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def git_command(git_dir: str, *args: str) -> list[str]:
    return ["git", f"--git-dir={git_dir}", *GIT_SAFE_OPTIONS, *args]


def _git_changes(repo: pygit2.Repository, ids: Sequence[str]) -> list[Change | GitReadError] | None:
    """The shapes of `ids` from one `git log --raw`, or None when git fails or says anything other than
    exactly those commits in that order (then libgit2 reads them)."""
    try:
        result = subprocess.run(git_command(repo.path, "log", *LOG_OPTIONS), input="\n".join(ids).encode("ascii"),
                                capture_output=True, env=git_environment(), check=False)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    try:
        parsed = list(_parse_log(result.stdout))
    except ValueError:
        return None
    if [commit for commit, _ in parsed] != list(ids):
        return None
    changes: list[Change | GitReadError] = []
    for commit, change in parsed:
        if change is None:  # one path added and one deleted: libgit2's rename detection says whether it is a rename
            try:
                change = _change_of(repo, repo[commit])
            except (pygit2.GitError, KeyError, ValueError) as error:
                changes.append(GitReadError(f"commit {commit}: {error}"))
                continue
        changes.append(change)
    return changes


def _parse_log(output: bytes) -> Iterator[tuple[str, Change | None]]:
    """(commit id, its change) from `git log -z --raw` output in LOG_FORMAT (None: a change `_raw_change` leaves
    to libgit2); a ValueError when the output is not that."""
    fields = output.split(b"\0")
    if fields and fields[-1] in (b"", b"\n"):
        fields.pop()
    index, count = 0, len(fields)
    while index < count:
        head = _COMMIT_LINE.fullmatch(fields[index].lstrip(b"\n"))
        if head is None or index + 2 >= count:
            raise ValueError(f"not a commit line: {fields[index][:60]!r}")
        commit, parents = head.group(1).decode(), tuple(p.decode() for p in head.group(2).split())
        committed_at = int(fields[index + 1])
        message = fields[index + 2].decode("utf-8", errors="replace")
        index += 3
        entries: list[tuple[bytes, bytes]] = []
        while index < count and fields[index].lstrip(b"\n").startswith(b":"):
            if index + 1 >= count:
                raise ValueError("a raw diff line without its path")
            entries.append((fields[index].lstrip(b"\n"), fields[index + 1]))
            index += 2
        yield commit, _raw_change(commit, parents, committed_at, message, entries)


RAW_STATUS = {b"A": "added", b"D": "deleted", b"M": "modified"}
LINK_OR_SUBMODULE = (b"120000", b"160000")


def _raw_change(commit: str, parents: tuple[str, ...], committed_at: int, message: str,
                entries: list[tuple[bytes, bytes]]) -> Change | None:
    """A commit's change shape from its raw diff entries, read the way `_change_of` reads libgit2's diff; None for a
    type change, or one path added and one deleted (libgit2's reading decides, as `_change_of` does). git reads a
    non-canonical tree mode (`100664`, in old histories) as the regular mode it means, libgit2 as a mode change:
    here it is git's reading."""
    base = {"commit": commit, "parents": parents, "committed_at": committed_at, "message": message}
    if len(parents) > 1:
        return Change(**base, shape="merge")
    if not parents:
        return Change(**base, shape="root")
    if not entries:
        return Change(**base, shape="no_change")
    statuses = {meta.rsplit(b" ", 1)[1][:1] for meta, _ in entries}
    if b"T" in statuses or (len(entries) == 2 and statuses == {b"A", b"D"}):
        return None  # libgit2 reads a type change as a deletion and an addition, and may pair those as a rename
    if len(entries) > 1:
        return Change(**base, shape="multi_file")
    (meta, raw_path), = entries
    old_mode, new_mode, old_blob, new_blob, status = meta[1:].split(b" ")
    path = raw_path.decode("utf-8", errors="surrogateescape")
    shape = RAW_STATUS.get(status[:1], "modified")
    if shape == "modified" and old_mode != new_mode:
        shape = "mode_change"
    elif shape == "modified" and new_mode in LINK_OR_SUBMODULE:
        shape = "type_change"
    return Change(**base, shape=shape, path=path, old_blob=old_blob.decode(), new_blob=new_blob.decode())


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


BINARY_CHECK_BYTES = 8000  # libgit2 (git_blob_is_binary) and git look at this many bytes
_PRINTABLE = bytes(c for c in range(256) if (c > 0x1F and c != 0x7F) or c in (0x08, 0x1B, 0x0C))
_PRINTABLE_OR_SPACE = _PRINTABLE + b" \t\n\v\f\r"


def is_binary(data: bytes) -> bool:
    """libgit2's binary heuristic (`git_blob_is_binary`) on the first 8000 bytes: a UTF-16 or UTF-32 byte order
    mark, a NUL byte, or more than one non-printable, non-space byte per 128 printable ones."""
    head = data[:BINARY_CHECK_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        return True
    if b"\0" in head:
        return True
    printable = len(head) - len(head.translate(None, _PRINTABLE))
    other = len(head.translate(None, _PRINTABLE_OR_SPACE))
    return (printable >> 7) < other


BATCH_COMMANDS = 256  # commands written to git at once: about 13 kB, well inside a pipe's buffer


def _within(parts: list[bytes], max_bytes: int) -> bool:
    """Whether git's `info` answer ("<id> blob <size>") is a blob of at most `max_bytes`."""
    return len(parts) == 3 and parts[1] == b"blob" and int(parts[2]) <= max_bytes


def _text_or_binary(data: bytes) -> tuple[bytes | None, Rejection | None]:
    return (None, FileContents.reject("binary", "git's binary heuristic")) if is_binary(data) else (data, None)


class BlobReader:
    """File versions of one repository through one `git cat-file --batch-command`, started on the first read and
    started again after git stops on a corrupt object; `close` ends it. The size is asked first, so a blob
    over the limit is refused without being read."""

    def __init__(self, git_dir: str):
        self.git_dir = git_dir
        self.process: subprocess.Popen[bytes] | None = None

    def read(self, blob_id: str, max_bytes: int) -> tuple[bytes | None, Rejection | None]:
        """(contents, None), or (None, why not: corrupt_object, too_large or binary)."""
        problem = loose_object_problem(self.git_dir, blob_id)
        if problem:
            return None, GIT.reject("corrupt_object", "blob {blob}: {problem}", blob=blob_id, problem=problem)
        headers = self._ask_all([f"info {blob_id}"])
        if headers is None:
            return None, self._died(blob_id)
        parts = headers[0].split()
        if not _within(parts, max_bytes):
            return self._refusal(blob_id, parts)
        contents = self._ask_all([f"contents {blob_id}"], with_data=True)
        if contents is None:
            return None, self._died(blob_id)
        return _text_or_binary(contents[0])

    def read_many(self, blob_ids: list[str], max_bytes: int) -> list[tuple[bytes | None, Rejection | None]]:
        """`read` for each of `blob_ids`, in two exchanges with git for all of them (the sizes, then the contents of
        those within the limit) rather than two for each; one by one when git stops on a corrupt object."""
        if any(loose_object_problem(self.git_dir, blob_id) for blob_id in blob_ids):
            return [self.read(blob_id, max_bytes) for blob_id in blob_ids]
        headers = self._ask_all([f"info {blob_id}" for blob_id in blob_ids])
        if headers is None:
            self.close()
            return [self.read(blob_id, max_bytes) for blob_id in blob_ids]
        wanted = [blob_id for blob_id, header in zip(blob_ids, headers) if _within(header.split(), max_bytes)]
        contents = self._ask_all([f"contents {blob_id}" for blob_id in wanted], with_data=True) if wanted else []
        if contents is None:
            self.close()
            return [self.read(blob_id, max_bytes) for blob_id in blob_ids]
        data_of = dict(zip(wanted, contents))
        return [_text_or_binary(data_of[blob_id]) if blob_id in data_of else self._refusal(blob_id, header.split())
                for blob_id, header in zip(blob_ids, headers)]

    @staticmethod
    def _refusal(blob_id: str, parts: list[bytes]) -> tuple[None, Rejection]:
        """Why git's `info` answer (`parts`) refuses a blob: missing, not a blob, or too large."""
        if len(parts) != 3 or parts[1] != b"blob":
            what = "missing or unreadable" if parts[-1:] == [b"missing"] else "not a blob"
            return None, GIT.reject("corrupt_object", "blob {blob}: {what}", blob=blob_id, what=what)
        return None, FileContents.reject("too_large", "{bytes} bytes", bytes=int(parts[2]))

    def _ask_all(self, commands: list[str], with_data: bool = False) -> list[bytes] | None:
        """git's answers to `commands` (their header lines, or with `with_data` the contents each announces), or
        None when git stops. The commands are written in slices small enough for a pipe's buffer, so neither side
        waits on the other."""
        answers: list[bytes] = []
        for start in range(0, len(commands), BATCH_COMMANDS):
            part = commands[start:start + BATCH_COMMANDS]
            if self._send(part) is None:
                return None
            for _ in part:
                line = self.process.stdout.readline()  # type: ignore[union-attr]
                if not line.endswith(b"\n"):
                    return None
                if not with_data:
                    answers.append(line)
                    continue
                fields = line.split()
                if len(fields) != 3 or fields[1] != b"blob":
                    return None
                data = self.process.stdout.read(int(fields[2]) + 1)  # type: ignore[union-attr]
                if len(data) != int(fields[2]) + 1:
                    return None
                answers.append(data[:-1])
        return answers

    def _send(self, commands: list[str]) -> bool | None:
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write("".join(f"{c}\n" for c in commands).encode("ascii"))  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            return None
        return True

    def _start(self) -> None:
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(git_command(self.git_dir, "cat-file", "--batch-command"), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.errors, env=git_environment())

    def _died(self, blob_id: str) -> Rejection:
        """git stopped while reading `blob_id` (it stops on an object it cannot inflate): why, in git's words."""
        said: list[str] = []
        if self.process is not None:
            self.errors.seek(0)
            said = self.errors.read().decode("utf-8", errors="replace").strip().splitlines()
        self.close()
        return GIT.reject("corrupt_object", "blob {blob}: {error}", blob=blob_id,
                          error=said[-1] if said else "git cat-file stopped")

    def close(self) -> None:
        if self.process is not None:
            process, self.process = self.process, None
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.errors.close()


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
