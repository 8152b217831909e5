"""The peers `benchmarks/mine_throughput.py` times against `codepref mine`, one per process, so each is
timed and measured (CPU, peak memory) alone. It runs under codepref's interpreter (the plain git passes)
and under the PyDriller peer's own virtual environment (PyDriller is never a dependency of codepref), so
it imports nothing from codepref, and pyarrow only in the write mode.

All apply the same cheap rule as the stage's first checks: a commit with one parent whose diff
against it changes exactly one path, modified in place (same path, same regular-file mode, different
blob), with an extension of a registered language (passed in with `--ext`). All read the two
versions of every kept file. Each prints one JSON object: commits examined, commits kept, bytes read.

- `plain-git`: `git log --raw`, then one `git cat-file --batch` for the kept blobs; writes nothing.
- `plain-git-write`: the same pass, plus every pair it reads written to one Parquet file as codepref's
  stages write output (see `ParquetPairs`); also prints rows written, pairs skipped as not UTF-8, bytes written.
- `pydriller`: PyDriller's idiomatic walk.

    python benchmarks/mine_peers.py plain-git REPO --ext .py --ext .c ...
    python benchmarks/mine_peers.py plain-git-write REPO --out DIR --row-group-rows 1000 --dictionary-max-mean-bytes 256 --ext .py ...
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


class ParquetPairs:
    """The pairs of the plain git pass written to `DIR/part-00000.parquet` the way codepref's stages write output
    (storage.parquet): pyarrow, zstd, row groups of `row_group_rows` rows, a dictionary only for the columns whose
    values are `dictionary_max_mean_bytes` or shorter on average (decided on the first group, as codepref decides per
    file), no sorting. Rows are buffered and written group by group (about GROUP_TEXT_BYTES of text at a time) through
    one `pq.ParquetWriter`, so memory stays bounded.

    Columns: repo, commit, parent, path, message, before, after. `message` is always "": the plain pass does not read
    commit messages. A pair that is not UTF-8 is skipped and counted (`undecodable`)."""

    GROUP_TEXT_BYTES = 16 << 20

    def __init__(self, repo: str, out: str, row_group_rows: int, dictionary_max_mean_bytes: int):
        import pyarrow as pa

        self.pa = pa
        self.repo = repo
        self.path = os.path.join(out, "part-00000.parquet")
        os.makedirs(out, exist_ok=True)
        self.row_group_rows = row_group_rows
        self.dictionary_max_mean_bytes = dictionary_max_mean_bytes
        self.schema = pa.schema([("repo", pa.string()), ("commit", pa.string()), ("parent", pa.string()), ("path", pa.string()),
                                 ("message", pa.large_string()), ("before", pa.large_string()), ("after", pa.large_string())])
        self.columns: dict[str, list[str]] = {name: [] for name in self.schema.names}
        self.text_bytes = 0
        self.writer = None
        self.written = self.undecodable = 0

    def add(self, commit: bytes, parent: bytes, path: bytes, before: bytes, after: bytes) -> None:
        try:
            texts = before.decode("utf-8"), after.decode("utf-8")
        except UnicodeDecodeError:
            self.undecodable += 1
            return
        row = (self.repo, commit.decode(), parent.decode(), path.decode("utf-8", "replace"), "", *texts)
        for column, value in zip(self.columns.values(), row):
            column.append(value)
        self.text_bytes += len(before) + len(after)
        if self.text_bytes >= self.GROUP_TEXT_BYTES:
            self.flush()

    def flush(self) -> None:
        import pyarrow.parquet as pq

        table = self.pa.Table.from_pydict(self.columns, schema=self.schema)
        if self.writer is None:
            rows = max(table.num_rows, 1)
            dictionary = [name for name in table.column_names if table.column(name).nbytes / rows <= self.dictionary_max_mean_bytes]
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd", use_dictionary=dictionary)
        if table.num_rows:  # no row group of 0 rows (codepref writes none either)
            self.writer.write_table(table, row_group_size=self.row_group_rows)
        self.written += table.num_rows
        self.columns = {name: [] for name in self.schema.names}
        self.text_bytes = 0

    def close(self) -> dict[str, int]:
        self.flush()
        self.writer.close()  # type: ignore[union-attr]
        return {"written": self.written, "undecodable": self.undecodable, "bytes_written": os.path.getsize(self.path)}


def plain_git(repo: str, extensions: set[str], pairs: ParquetPairs | None = None) -> dict[str, int]:
    """`git log --raw` for the cheap rule, then one `git cat-file --batch` for the kept blobs (given to `pairs`, when
    given, to be written)."""
    log = subprocess.Popen(
        ["git", "-C", repo, "log", "--raw", "--no-renames", "--no-abbrev", "--root", "-z", "--format=tformat:\x01%H %P", "HEAD"],
        stdout=subprocess.PIPE, env=GIT_ENV,
    )
    examined = 0
    kept: list[tuple[str, str, bytes, bytes]] = []  # (old blob, new blob, commit line, path) of each kept commit
    parents = 0
    commit = b""  # "<id> <parent ids>" of the commit being read
    entries: list[tuple[bytes, bytes]] = []  # (":old_mode new_mode old new status", path) of the commit being read

    def close_commit() -> None:
        if parents == 1 and len(entries) == 1:
            (meta, path), = entries
            old_mode, new_mode, old, new, status = meta[1:].split(b" ")
            if status == b"M" and old_mode == new_mode and new_mode in REGULAR and old != new \
                    and suffix(path.decode("utf-8", "surrogateescape")) in extensions:
                kept.append((old.decode(), new.decode(), commit, path))

    fields = _records(log.stdout)  # type: ignore[arg-type]
    for field in fields:
        field = field.lstrip(b"\n")
        if field.startswith(b"\x01"):  # a commit: "\x01<id> <parent ids>"
            if examined:
                close_commit()
            examined += 1
            commit = field[1:]
            parents = len(commit.split(b" ")) - 1
            entries = []
        elif field.startswith(b":"):  # one raw diff line; its path is the next field
            entries.append((field, next(fields)))
    if examined:
        close_commit()
    if log.wait() != 0:
        raise SystemExit(f"git log failed in {repo}")

    batch = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=GIT_ENV)

    def feed() -> None:
        for old, new, _, _ in kept:
            batch.stdin.write(f"{old}\n{new}\n".encode())  # type: ignore[union-attr]
        batch.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed)
    writer.start()
    read = 0
    out = batch.stdout
    for _, _, commit, path in kept:
        before, after = blob(out), blob(out)  # type: ignore[arg-type]
        read += len(before) + len(after)
        if pairs is not None:
            pairs.add(*commit.split(b" "), path, before, after)
    writer.join()
    if batch.wait() != 0:
        raise SystemExit(f"git cat-file failed in {repo}")
    written = pairs.close() if pairs is not None else {}
    return {"examined": examined, "kept": len(kept), "bytes_read": read, **written}


def blob(out) -> bytes:
    """The next answer of `git cat-file --batch`: one blob's contents."""
    header = out.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise SystemExit(f"git cat-file: unexpected answer {header!r}")
    return out.read(int(header[2]) + 1)[:-1]


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
    parser.add_argument("method", choices=["plain-git", "plain-git-write", "pydriller"])
    parser.add_argument("repo")
    parser.add_argument("--ext", action="append", default=[], help="An extension of a registered language (repeatable).")
    parser.add_argument("--out", help="plain-git-write: the folder its Parquet file goes to.")
    parser.add_argument("--row-group-rows", type=int, default=1_000, help="plain-git-write: storage.parquet's ROW_GROUP_ROWS.")
    parser.add_argument("--dictionary-max-mean-bytes", type=int, default=256,
                        help="plain-git-write: storage.parquet's DICTIONARY_MAX_MEAN_BYTES.")
    args = parser.parse_args(argv)
    extensions = {e.lower() for e in args.ext}
    if args.method == "plain-git-write":
        if not args.out:
            parser.error("plain-git-write needs --out")
        pairs = ParquetPairs(args.repo, args.out, args.row_group_rows, args.dictionary_max_mean_bytes)
        print(json.dumps(plain_git(args.repo, extensions, pairs)))
    else:
        print(json.dumps((plain_git if args.method == "plain-git" else pydriller)(args.repo, extensions)))


if __name__ == "__main__":
    sys.exit(main())
