"""The execution sandbox: untrusted Python runs under bubblewrap with time, memory and process limits.

Inside: a fresh temporary directory (the only writable place besides a private /tmp), the system
interpreter and its standard library read-only, no network (all namespaces unshared), no view of
other processes. As root the program runs as `nobody`, so the process limit counts only its own
processes (a fork bomb stops there). On time-out the whole process group is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
OUTPUT_LIMIT = 64_000  # characters of stdout/stderr kept


class SandboxUnavailable(RuntimeError):
    """bubblewrap or the sandbox interpreter is missing."""


@dataclass(frozen=True)
class SandboxLimits:
    seconds: float = 10.0
    memory_bytes: int = 512 * 2**20
    processes: int = 32
    file_bytes: int = 16 * 2**20


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def last_line(self) -> str:
        """The last line of the output (where a test failure says what failed)."""
        if self.timed_out:
            return "timed out"
        lines = [line for line in (self.stderr or self.stdout).strip().splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit status {self.returncode}"


@dataclass(frozen=True)
class BugCheck:
    """Whether a buggy variant is a verified bug: the solution passes the tests, the variant fails."""

    drop_reason: str | None  # "original_fails_tests", "passes_tests", or None for a verified bug
    verification: str


def check_bug(solution: str, buggy: str, tests: str, limits: SandboxLimits, interpreter: str) -> BugCheck:
    """Run the tests after the solution, then after the buggy variant, each in the sandbox."""
    original = run_python(f"{solution}\n\n{tests}\n", limits, interpreter)
    if not original.passed:
        return BugCheck("original_fails_tests", original.last_line)
    outcome = run_python(f"{buggy}\n\n{tests}\n", limits, interpreter)
    if outcome.passed:
        return BugCheck("passes_tests", "the buggy variant passes the tests")
    return BugCheck(None, f"solution passed; mutant failed: {outcome.last_line}")


def _read_only_binds() -> list[str]:
    """The system directories a Python program needs, bound read-only (merged-/usr aware)."""
    args: list[str] = []
    for path in ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for name in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _limit_command(limits: SandboxLimits, as_root: bool) -> list[str]:
    """`prlimit` (and, as root, `setpriv` to become nobody) in front of bubblewrap.

    Limits are set by these small util-linux programs rather than in a `preexec_fn`: a Python
    callback between fork and exec runs in a copy of a multi-threaded Beam worker, where gRPC's
    fork handlers can crash the child (seen as SIGABRT/SIGSEGV before the program even starts).
    """
    cpu = int(limits.seconds) + 1
    command = [
        "prlimit", f"--as={limits.memory_bytes}", f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}",
        f"--cpu={cpu}:{cpu + 1}", "--core=0", "--",
    ]
    if as_root:
        command += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return command


BUSY = ("Resource temporarily unavailable",)  # a namespace, fork or exec refused for now (EAGAIN)
LAUNCHERS = ("bwrap:", "setpriv:", "prlimit:")  # messages of the programs that start the sandbox


def run_python(program: str, limits: SandboxLimits = SandboxLimits(), interpreter: str = "/usr/bin/python3") -> SandboxResult:
    """Run `program` (Python source) in the sandbox and report how it ended.

    The kernel releases the namespaces and processes of a finished sandbox lazily, and sandboxes
    running side by side share the process limit of `nobody`: when the launchers (prlimit,
    setpriv, bubblewrap) cannot exec, fork or create a namespace (EAGAIN), the start is retried
    after a growing wait; if it never succeeds, that is a SandboxUnavailable, never a failure of
    the program.
    """
    for attempt in range(10):
        result = _run_once(program, limits, interpreter)
        launcher_failed = result.stderr.startswith(LAUNCHERS)
        if not (launcher_failed and any(b in result.stderr for b in BUSY)):
            if launcher_failed:
                raise SandboxUnavailable(f"the sandbox could not start: {result.stderr.strip()[:300]}")
            return result
        time.sleep(0.05 * 2**attempt)
    raise SandboxUnavailable(f"the sandbox kept failing to start: {result.stderr.strip()[:300]}")


def _run_once(program: str, limits: SandboxLimits, interpreter: str) -> SandboxResult:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; `apt-get install bubblewrap` (the Makefile does it)")
    if shutil.which("prlimit") is None or shutil.which("setpriv") is None:
        raise SandboxUnavailable("prlimit and setpriv (util-linux) are needed to limit the sandbox")
    if not os.access(interpreter, os.X_OK):
        raise SandboxUnavailable(f"sandbox interpreter {interpreter} is missing; install Debian's python3")
    workdir = Path(tempfile.mkdtemp(prefix="codepref-sandbox-"))
    try:
        (workdir / "program.py").write_text(program, encoding="utf-8")
        as_root = os.geteuid() == 0
        if as_root:
            os.chown(workdir, NOBODY, NOBODY)
            os.chown(workdir / "program.py", NOBODY, NOBODY)
        command = [
            *_limit_command(limits, as_root), bwrap, *_read_only_binds(),
            "--tmpfs", "/tmp", "--bind", str(workdir), "/sandbox", "--dev", "/dev", "--proc", "/proc",
            "--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", "/sandbox", "--chdir", "/sandbox", interpreter, "-I", "-B", "program.py",
        ]
        start = time.monotonic()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        return SandboxResult(
            returncode=process.returncode,
            stdout=stdout.decode("utf-8", "replace")[:OUTPUT_LIMIT],
            stderr=stderr.decode("utf-8", "replace")[-OUTPUT_LIMIT:],
            timed_out=timed_out,
            seconds=round(time.monotonic() - start, 3),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
