"""`memfs://`: an object store in this process's memory, registered with Beam's FileSystems on import (Beam
finds every FileSystem subclass by its scheme). Like gs:// it has no folders, and a file appears whole when
its writer closes it. Only this process sees it: use it with the in_memory running mode. Beam 2.77's Python
SDK has no in-memory file system of its own (Java's is test-only)."""

from __future__ import annotations

import io
import posixpath
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from apache_beam.io.filesystem import (
    BeamIOError,
    CompressionTypes,
    FileMetadata,
    FileSystem,
)

SCHEME = "memfs"


class _Writer(io.BytesIO):
    def __init__(self, store: MemoryFileSystem, path: str):
        super().__init__()
        self.store, self.path = store, path

    def close(self) -> None:
        if not self.closed:
            with MemoryFileSystem.lock:
                MemoryFileSystem.files[self.path] = (self.getvalue(), time.time())
        super().close()


class MemoryFileSystem(FileSystem):
    """Files by full path (`memfs://bucket/a/b`), shared by every instance in the process."""

    files: ClassVar[dict[str, tuple[bytes, float]]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    @classmethod
    def clear(cls) -> None:
        with cls.lock:
            cls.files.clear()

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        head, tail = posixpath.split(path)
        return head, tail

    def mkdirs(self, path: str) -> None:
        pass  # no folders, as on an object store

    def has_dirs(self) -> bool:
        return False

    def _list(self, dir_or_prefix: str):  # type: ignore[no-untyped-def]
        with self.lock:
            listed = [(path, len(data), updated) for path, (data, updated) in self.files.items() if path.startswith(dir_or_prefix)]
        for path, size, updated in listed:
            yield FileMetadata(path, size, updated)

    def create(self, path: str, mime_type: str = "application/octet-stream", compression_type: str = CompressionTypes.AUTO) -> Any:
        return _Writer(self, path)

    def open(self, path: str, mime_type: str = "application/octet-stream", compression_type: str = CompressionTypes.AUTO) -> Any:
        with self.lock:
            if path not in self.files:
                raise BeamIOError(f"{path}: no such file", {path: FileNotFoundError(path)})
            return io.BytesIO(self.files[path][0])

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        with self.lock:
            for source, destination in zip(source_file_names, destination_file_names):
                self.files[destination] = self.files[source]

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        with self.lock:
            for source, destination in zip(source_file_names, destination_file_names):
                self.files[destination] = self.files.pop(source)

    def exists(self, path: str) -> bool:
        with self.lock:
            return path in self.files or any(name.startswith(path.rstrip("/") + "/") for name in self.files)

    def size(self, path: str) -> int:
        return len(self.files[path][0])

    def last_updated(self, path: str) -> float:
        return self.files[path][1]

    def checksum(self, path: str) -> str:
        return str(hash(self.files[path][0]))

    def metadata(self, path: str) -> FileMetadata:
        data, updated = self.files[path]
        return FileMetadata(path, len(data), updated)

    def delete(self, paths: list[str]) -> None:
        with self.lock:
            for path in paths:
                for name in [name for name in self.files if name == path or name.startswith(path.rstrip("/") + "/")]:
                    del self.files[name]


def copy_into(local: Path, url: str) -> str:
    """Every file under the local folder `local` copied to the same place under `url` (e.g. a finished upstream
    stage written by tests.support.stage_fixtures.write_stage); returns `url`."""
    with MemoryFileSystem.lock:
        for path in local.rglob("*"):
            if path.is_file():
                MemoryFileSystem.files[f"{url.rstrip('/')}/{path.relative_to(local)}"] = (path.read_bytes(), path.stat().st_mtime)
    return url
