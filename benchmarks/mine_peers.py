"""The peers `benchmarks/mine_throughput.py` times against `codepref mine`, one per process, so each is
timed and measured (CPU, peak memory) alone. Standard library only: it runs under codepref's interpreter
(the plain git pass) and under the PyDriller peer's own virtual environment (PyDriller is never a
dependency of codepref), so it imports nothing from codepref.

Both apply the same cheap rule as the stage's first checks: a commit with one parent whose diff
against it changes exactly one path, modified in place (same path, same regular-file mode, different
blob), with an extension of a registered language (passed in with `--ext`). Both read the two
versions of every kept file. Each prints one JSON object: commits examined, commits kept, bytes read.

    python benchmarks/mine_peers.py plain-git REPO --ext .py --ext .c ...
    <venv>/bin/python benchmarks/mine_peers.py pydriller REPO --ext .py ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

REGULAR = {b"100644", b"100755", "100644", "100755", 0o100644, 0o100755}
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}


def suffix(path: str) -> str:
    """The lower-cased extension, as the language registry reads it (`.bashrc` has none)."""
    return os.path.splitext(os.path.basename(path))[1].lower()


def _records(stream, chunk: int = 1 << 20) -> Iterator[bytes]:
    """NUL-separated fields of `git log -z`, read in chunks (the history is never held whole)."""
    rest = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        fields = (rest + data).split(b"\0")
        rest = fields.pop()
        yield from fields
    if rest:
        yield rest


def plain_git(repo: str, extensions: set[str]) -> dict[str, int]:
    """`git log --raw` for the cheap rule, then one `git cat-file --batch` for the kept blobs."""
    log = subprocess.Popen(
        ["git", "-C", repo, "log", "--raw", "--no-renames", "--no-abbrev", "--root", "-z", "--format=tformat:\x01%H %P", "HEAD"],
        stdout=subprocess.PIPE, env=GIT_ENV,
    )
    examined = 0
    kept: list[tuple[str, str]] = []  # (old blob, new blob) of each kept commit
    parents = 0
    entries: list[tuple[bytes, bytes]] = []  # (":old_mode new_mode old new status", path) of the commit being read

    def close_commit() -> None:
        if parents == 1 and len(entries) == 1:
            (meta, path), = entries
            old_mode, new_mode, old, new, status = meta[1:].split(b" ")
            if status == b"M" and old_mode == new_mode and new_mode in REGULAR and old != new \
                    and suffix(path.decode("utf-8", "surrogateescape")) in extensions:
                kept.append((old.decode(), new.decode()))

    fields = _records(log.stdout)  # type: ignore[arg-type]
    for field in fields:
        field = field.lstrip(b"\n")
        if field.startswith(b"\x01"):  # a commit: "\x01<id> <parent ids>"
            if examined:
                close_commit()
            examined += 1
            parents = len(field[1:].split(b" ")) - 1
            entries = []
        elif field.startswith(b":"):  # one raw diff line; its path is the next field
            entries.append((field, next(fields)))
    if examined:
        close_commit()
    if log.wait() != 0:
        raise SystemExit(f"git log failed in {repo}")

    batch = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=GIT_ENV)

    def feed() -> None:
        for old, new in kept:
            batch.stdin.write(f"{old}\n{new}\n".encode())  # type: ignore[union-attr]
        batch.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed)
    writer.start()
    read = 0
    out = batch.stdout
    for _ in range(2 * len(kept)):
        header = out.readline().split()  # type: ignore[union-attr]
        if len(header) != 3 or header[1] != b"blob":
            raise SystemExit(f"git cat-file: unexpected answer {header!r}")
        size = int(header[2])
        data = out.read(size + 1)[:-1]  # type: ignore[union-attr]
        read += len(data)
    writer.join()
    if batch.wait() != 0:
        raise SystemExit(f"git cat-file failed in {repo}")
    return {"examined": examined, "kept": len(kept), "bytes_read": read}


def pydriller(repo: str, extensions: set[str]) -> dict[str, int]:
    """PyDriller's idiomatic walk: `Repository(path).traverse_commits()` and each commit's `modified_files`.

    PyDriller exposes no file mode, so the mode test reads GitPython's diff under `ModifiedFile`
    (`_c_diff.a_mode`, `b_mode`); without it a mode-only change would be kept where the others drop it.
    """
    from pydriller import ModificationType, Repository

    if not os.path.exists(os.path.join(repo, ".git")):  # a bare repository: GitPython runs git in it only with GIT_DIR set
        os.environ["GIT_DIR"] = os.path.abspath(repo)
    examined = kept = read = 0
    for commit in Repository(repo).traverse_commits():
        examined += 1
        if len(commit.parents) != 1:
            continue
        files = commit.modified_files
        if len(files) != 1:
            continue
        (file,) = files
        if file.change_type != ModificationType.MODIFY or file.old_path != file.new_path:
            continue
        diff = file._c_diff
        if diff.a_mode != diff.b_mode or diff.b_mode not in REGULAR or suffix(file.new_path) not in extensions:
            continue
        before, after = file.content_before, file.content
        if before is None or after is None or before == after:
            continue
        kept += 1
        read += len(before) + len(after)
    return {"examined": examined, "kept": kept, "bytes_read": read}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=["plain-git", "pydriller"])
    parser.add_argument("repo")
    parser.add_argument("--ext", action="append", default=[], help="An extension of a registered language (repeatable).")
    args = parser.parse_args(argv)
    method = plain_git if args.method == "plain-git" else pydriller
    print(json.dumps(method(args.repo, {e.lower() for e in args.ext})))


if __name__ == "__main__":
    sys.exit(main())
