"""Measuring a command as a whole process tree (wall and CPU seconds, peak RSS), the start-up floor of one Python
process, and the peers' own virtual environments (a library compared against is never a codepref dependency)."""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


PF_FORKNOEXEC = 0x40  # the kernel's flag of a process forked and not yet exec'd (`/proc/PID/stat`, field 9)
FORK_WINDOW_SECONDS = 1.0  # a child that young which has not exec'd is taken as the moment between fork and exec


def between_fork_and_exec(process: psutil.Process) -> bool:
    """Whether `process` was forked under FORK_WINDOW_SECONDS ago and has not exec'd: a child `subprocess` made with
    vfork shares its parent's memory until it execs (git, say), and a forked one its pages, so its RSS is the parent's
    counted twice (seen: a worker of 327 MB counted twice for one 50 ms sample of a mining run). A forked worker that
    lives on (a multiprocessing pool) is counted once it is older."""
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        flags = int(fields[6])
        return bool(flags & PF_FORKNOEXEC) and time.time() - process.create_time() < FORK_WINDOW_SECONDS
    except (OSError, IndexError, ValueError, psutil.Error):
        return False


class TreeSampler(threading.Thread):
    """Samples the RSS (sum over the process and all its descendants) and CPU time of a process tree; a child caught
    between fork and exec is left out of that sample's RSS (`between_fork_and_exec`)."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.peak_processes = 0
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total, members = 0, []
            try:
                members = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                pass
            for member in members:
                try:
                    with member.oneshot():
                        if member is self.root or not between_fork_and_exec(member):
                            total += member.memory_info().rss
                        times = member.cpu_times()
                        self.cpu[member.pid] = times.user + times.system
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, total)
            self.peak_processes = max(self.peak_processes, len(members))
            self.done.wait(self.interval)


def measured(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, float]]:
    """Run `command` (no shell); wall and CPU seconds of its process tree, and the tree's peak RSS: the largest sum of
    the RSS of the process and all its descendants, sampled every 50 ms (a peak shorter than that can be missed).

    CPU is `getrusage(RUSAGE_CHILDREN)` before and after (the process and every descendant it waited for), or the
    sum of the samples' per-process CPU times when that is larger: descendants nobody waited for (a pool's
    workers) are missing from rusage, and the samples saw them."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        sampler: TreeSampler | None = TreeSampler(process.pid, interval=0.05)
        sampler.start()  # type: ignore[union-attr]
    except psutil.NoSuchProcess:
        sampler = None
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if sampler is not None:
        sampler.done.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampled = sum(sampler.cpu.values()) if sampler else 0.0
    figures = {"seconds": round(wall, 3), "cpu_seconds": round(max(waited, sampled), 3),
               "peak_rss_mb": round((sampler.peak_rss if sampler else 0) / 2**20, 1)}
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), figures


def process_floor(imports: str, note: str) -> dict[str, Any]:
    """The floor every codepref process pays: wall and CPU seconds and peak RSS (as `measured`) of this interpreter
    running `python -c imports` (e.g. "import pipelines.mine.stage") from the repository root and
    exiting; `note` says how many such processes a run has."""
    result, figures = measured([sys.executable, "-c", imports], cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"python -c {imports!r} failed: {result.stderr[-2000:]}")
    return {"command": f"python -c {imports!r}", **figures, "note": note}


def peer_python(venv: Path, requirements: list[str], probe: str) -> tuple[Path | None, str | None]:
    """The interpreter of a peer's own virtual environment, created (from the configured index) with `requirements`
    when `import probe` fails there; or (None, why not)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {probe}"]
    if python.exists() and subprocess.run(check, check=False, capture_output=True).returncode == 0:
        return python, None
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = (getattr(error, "stderr", "") or str(error)).strip()
        return None, f"cannot install {' '.join(requirements)} into {venv}: {detail.splitlines()[-1] if detail else error}"
    if subprocess.run(check, check=False, capture_output=True).returncode != 0:
        return None, f"{' '.join(requirements)} installed into {venv} but `import {probe}` fails"
    return python, None
