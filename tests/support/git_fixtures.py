"""Real git repositories built in tests (and benchmarks) with git itself."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from benchmarks.corpus import synthetic_history

__all__ = ["GPL3", "MIT", "GitRepo", "large_file_history", "synthetic_history"]

MIT = (
    "MIT License\n\nCopyright (c) 2024 Test\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n"
    "of this software and associated documentation files (the \"Software\"), to deal\nin the Software without restriction.\n"
)
GPL3 = "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n\nEveryone is permitted to copy and distribute verbatim copies.\n"


class GitRepo:
    """A work-tree repository driven through the git command line (no shell), with set dates."""

    def __init__(self, path: Path, *, bare_clone: bool = False):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "dev@example.com")
        self.git("config", "user.name", "Dev")
        self.git("config", "commit.gpgsign", "false")
        self.clock = 1_600_000_000

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, check=True,
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.path), **(env or {})},
        )
        return result.stdout.strip()

    def write(self, name: str, content: str | bytes) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(self, message: str, *, when: int | None = None, allow_empty: bool = False) -> str:
        """Commit everything in the work tree; returns the new commit id."""
        self.clock = when if when is not None else self.clock + 3600
        stamp = f"{self.clock} +0000"
        self.git("add", "-A")
        args = ["commit", "-q", "-m", message] + (["--allow-empty"] if allow_empty else [])
        self.git(*args, env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
        return self.git("rev-parse", "HEAD")

    @property
    def git_dir(self) -> Path:
        return self.path / ".git"

    def write_ref(self, name: str, content: str) -> None:
        """Write a loose reference file (`refs/heads/x`, `HEAD`) as is: a missing commit's id, or garbage."""
        target = self.git_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def damage_object(self, oid: str, data: bytes | None = None, *, keep: int | None = None) -> None:
        """Overwrite a loose object's file with `data`, or cut it to its first `keep` bytes (a truncated object)."""
        path = self.git_dir / "objects" / oid[:2] / oid[2:]
        path.chmod(0o644)
        path.write_bytes(data if data is not None else path.read_bytes()[:keep])

    def commit_object(self, header: str, message: bytes) -> str:
        """Write a commit object on HEAD's tree and parent, with extra `header` lines and raw message bytes,
        make it the current branch's tip, and return its id (for commits git itself would not write)."""
        self.clock += 3600
        person = f"Dev <dev@example.com> {self.clock} +0000"
        raw = (f"tree {self.git('write-tree')}\nparent {self.git('rev-parse', 'HEAD')}\nauthor {person}\n"
               f"committer {person}\n{header}\n").encode() + message
        oid = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"], input=raw, cwd=self.path,
                             capture_output=True, check=True).stdout.decode().strip()
        self.git("update-ref", "HEAD", oid)
        return oid


def large_file_history(path: Path, commits: int, seed: int = 0, files: int = 30, functions: int = 900) -> Path:
    """A bare repository (MIT licence) of one import commit, then `commits - 1` single-file edits to Python files
    of about 30 KB each, written with `git fast-import`: many large records from one repository walk."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path)}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True, env=env)
    sources = {f"pkg/mod{i}.py": [f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(functions)] for i in range(files)}
    messages = ["Fix off-by-one in loop bound", "Speed up parsing of large inputs", "Sanitize user input before query",
                "Reduce memory used by cache", "Fix crash on empty input"]

    def blob(data: bytes) -> bytes:
        return b"data %d\n%s\n" % (len(data), data)

    stream = []
    for n in range(commits):
        header = b"commit refs/heads/main\nmark :%d\ncommitter Dev <dev@example.com> %d +0000\n" % (n + 1, 1_500_000_000 + n * 600)
        if n == 0:
            ops = [b"M 100644 inline LICENSE\n" + blob(b"MIT License\n\nPermission is hereby granted, free of charge, to any "
                                                          b"person obtaining a copy\n")]
            ops += [b"M 100644 inline %s\n" % name.encode() + blob("".join(lines).encode()) for name, lines in sources.items()]
        else:
            name = rng.choice(sorted(sources))
            line = rng.randrange(functions)
            sources[name][line] = f"def g{n}_{line}(x):\n    return x - {n}\n"
            ops = [b"M 100644 inline %s\n" % name.encode() + blob("".join(sources[name]).encode())]
        parent = b"from :%d\n" % n if n else b""
        stream.append(header + blob(f"{rng.choice(messages)} (#{n})".encode()) + parent + b"".join(ops) + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=path, check=True, env=env)
    return path
