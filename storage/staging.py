"""Files staged between a run directory on any Beam file system (gs://, s3://, memfs://) and a local folder,
for programs that need local paths (the trainer's checkpoints, a model folder transformers loads)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_RAW = CompressionTypes.UNCOMPRESSED  # bytes as stored: a .gz file stays compressed


def is_object_store(path: str) -> bool:
    """gs://, s3:// and the like: Beam's file systems reach them, plain file APIs (SQLite, DuckDB, locks) do not."""
    return "://" in path and not path.startswith("file://")


def _prefix(folder: str) -> str:
    return folder.rstrip("/") + "/"


def remote_files(folder: str) -> list[str]:
    """Paths of every file under `folder` (an object-store prefix or a local folder), sorted."""
    found = FileSystems.match([_prefix(folder) + "**"])[0].metadata_list
    return sorted(meta.path for meta in found)


def download(path: str, target: Path) -> Path:
    """One file (any FileSystems path) written to the local `target`, its folder made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileSystems.open(path, compression_type=_RAW) as source, target.open("wb") as out:
        shutil.copyfileobj(source, out)
    return target


def copy_down(folder: str, local: Path, keep: tuple[str, ...] = ()) -> int:
    """Every file under `folder` into `local` at the same relative path (only those under one of `keep`'s
    relative prefixes, when given); returns how many files were copied."""
    prefix, copied = _prefix(folder), 0
    for path in remote_files(folder):
        relative = path[len(prefix):]
        if keep and not relative.startswith(keep):
            continue
        download(path, local / relative)
        copied += 1
    if not copied and not keep:
        raise FileNotFoundError(f"{folder}: no files there to copy down (is the path right, and readable from here?)")
    return copied


def copy_up(local: Path, folder: str) -> None:
    """`local` (a file, or a folder's every file at its relative path) written under `folder` through FileSystems;
    a file appears whole when written (as on an object store)."""
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        relative = path.name if path == local else path.relative_to(local).as_posix()
        with path.open("rb") as source, FileSystems.create(FileSystems.join(folder, relative), compression_type=_RAW) as out:
            shutil.copyfileobj(source, out)


@contextmanager
def written_locally(out: str) -> Iterator[Path]:
    """A local folder for a program to write `out`'s files into: `out` itself when it is local, else a temporary
    folder whose files are copied up under `out` when the block ends without an error."""
    if not is_object_store(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="codepref-out-") as work:
        yield Path(work)
        copy_up(Path(work), out)
