"""What codepref may replace, and one run per directory.

codepref deletes or replaces only what it wrote itself: a stage directory that holds its manifest or an
attempt marker, or an empty one. A folder holding anything else, a file where a folder is wanted, a git
work tree (or a folder of it that git does not ignore) and a repository's git directory are refused with
the path named, before anything is touched. A run directory is held by one run at a time (`RunLock`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from apache_beam.io.filesystems import FileSystems

from pipelines.run.config import ConfigError
from storage import MANIFEST_NAME
from storage.staging import is_object_store

ATTEMPT_DIR = "_attempt"
ATTEMPT_MARKER = "_attempt_config"  # a task stage's unfinished attempt: the config hash it runs under
RUN_MARKER = "_codepref_run.json"  # written into a run directory codepref created or claimed
LOCK_NAME = "_codepref.lock"
OWN_MARKERS = (MANIFEST_NAME, ATTEMPT_DIR, ATTEMPT_MARKER, RUN_MARKER)


class OutputRefused(ConfigError):
    """An output path holds something codepref did not write, or lies where writing would harm a repository."""


class RunLocked(ConfigError):
    """Another codepref process holds the directory."""


def _is_bare_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _git_guard(path: Path) -> str | None:
    """Why writing at `path` would touch a git repository's files, or None."""
    for folder in (path, *path.parents):
        if folder.name == ".git" or _is_bare_repository(folder):
            return f"it is inside the git directory {folder}"
        if (folder / ".git").exists():
            if folder == path:
                return f"it is the work tree of the git repository {folder}"
            if not _ignored_by_git(folder, path):
                return (f"it is inside the work tree of the git repository {folder} and git does not ignore it; "
                        f"add it to {folder / '.gitignore'} or choose a folder outside the work tree")
            return None
    return None


def _ignored_by_git(work_tree: Path, path: Path) -> bool:
    import pygit2

    try:
        repo = pygit2.Repository(str(work_tree))
    except (pygit2.GitError, KeyError, ValueError):
        return False  # an unreadable repository protects its work tree all the same
    relative = path.relative_to(work_tree).as_posix()
    try:
        return bool(repo.path_is_ignored(relative) or repo.path_is_ignored(relative + "/"))
    except (pygit2.GitError, ValueError):
        return False


def owned_by_codepref(directory: str) -> bool:
    """Whether a directory holds a codepref marker (a manifest, an attempt, a run marker)."""
    return any(FileSystems.exists(FileSystems.join(directory, marker)) for marker in OWN_MARKERS)


def check_output(directory: str, what: str = "output") -> None:
    """Refuse (OutputRefused, naming the path) an output directory that codepref may not replace."""
    if is_object_store(directory):
        entries = [m.path for r in FileSystems.match([FileSystems.join(directory, "*")]) for m in r.metadata_list]
        if entries and not owned_by_codepref(directory):
            raise OutputRefused(f"{what} {directory} holds {len(entries)} objects codepref did not write "
                                "(no _manifest.json or attempt marker); choose another location")
        return
    path = _local_folder(directory, what)
    if path.is_dir() and not owned_by_codepref(str(path)):
        others = sorted(child.name for child in path.iterdir() if child.name != LOCK_NAME)
        if others:
            listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise OutputRefused(f"{what} {directory} is not empty and was not written by codepref ({listed}); "
                                "nothing was touched: choose a new or empty folder (--force redoes only codepref's own outputs)")


def _local_folder(directory: str, what: str) -> Path:
    """The absolute path of a local output folder, refused when it is a file or lies in a git repository's way."""
    path = Path(directory).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise OutputRefused(f"{what} {directory} is a file, not a folder; nothing was touched: choose a folder")
    reason = _git_guard(Path(os.path.realpath(path)))
    if reason:
        raise OutputRefused(f"{what} {directory} is refused: {reason}; nothing was touched")
    return path


def check_run_dir(run_dir: str) -> None:
    """Refuse a run directory that is not empty and shows no sign of codepref (its marker or a stage directory of it)."""
    if is_object_store(run_dir):
        return
    path = _local_folder(run_dir, "run directory")
    if not path.is_dir() or (path / RUN_MARKER).exists():
        return
    children = [child for child in path.iterdir() if child.name != LOCK_NAME]
    ours = [child for child in children if child.is_dir() and owned_by_codepref(str(child))]
    if children and not ours:
        listed = ", ".join(sorted(child.name for child in children)[:5])
        raise OutputRefused(f"run directory {run_dir} is not empty and holds no codepref run ({listed}); nothing was "
                            "touched: choose a new or empty folder")


def mark_run_dir(run_dir: str) -> None:
    """Create the run directory if needed and mark it as codepref's."""
    if not FileSystems.exists(run_dir):
        FileSystems.mkdirs(run_dir)
    marker = FileSystems.join(run_dir, RUN_MARKER)
    if not FileSystems.exists(marker):
        with FileSystems.create(marker) as handle:
            handle.write(json.dumps({"created_by": "codepref", "created": _now()}).encode("utf-8"))


def clear_dir(directory: str) -> None:
    """Empty a directory codepref owns (check_output said so), keeping its lock file; create it if missing."""
    if not FileSystems.exists(directory):
        FileSystems.mkdirs(directory)
        return
    if is_object_store(directory):
        FileSystems.delete([directory])
        FileSystems.mkdirs(directory)
        return
    children = [str(child) for child in Path(directory).iterdir() if child.name != LOCK_NAME]
    if children:
        FileSystems.delete(children)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLock:
    """An exclusive lock on a local directory, held while a run or a stage writes into it.

    `flock` on `DIR/_codepref.lock`: the kernel releases it when its process dies, so the lock of a killed
    run is stale by construction and the next run takes it over. The file says who holds it (pid, host,
    start time) for the message of the run that is refused; it is removed on release.
    Object stores cannot be locked this way: there the lock does nothing.
    """

    def __init__(self, directory: str, purpose: str = "run"):
        self.directory = directory
        self.purpose = purpose
        self.path = Path(directory) / LOCK_NAME
        self._handle: int | None = None
        self.took_over: dict[str, object] | None = None  # what a stale lock said, when one was taken over

    def acquire(self) -> RunLock:
        if is_object_store(self.directory):
            return self
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read_holder(handle)
                os.close(handle)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLocked(f"{self.directory} is in use by another codepref {holder.get('purpose', 'run')} "
                                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}); "
                                "wait for it to finish or use another directory") from None
            if _same_file(handle, self.path):
                break
            os.close(handle)  # the holder removed the file between our open and our lock: lock the new one
        previous = _read_holder(handle)
        if previous:
            self.took_over = previous
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                                      "purpose": self.purpose}).encode("utf-8"), 0)
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._handle)  # closing releases the flock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()


def _read_holder(handle: int) -> dict[str, object]:
    try:
        data = os.pread(handle, 4096, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _same_file(handle: int, path: Path) -> bool:
    try:
        return os.fstat(handle).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False
