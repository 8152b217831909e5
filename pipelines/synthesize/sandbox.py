"""The execution sandbox: untrusted Python runs under bubblewrap with time, memory, process, output and disk limits.

What a sandboxed program can do, exactly:
- read: the system interpreter and its standard library (/usr, /bin, /lib*, /sbin, bound read-only;
  from /etc only alternatives, ld.so.cache and localtime), its own /proc (a fresh pid namespace:
  it sees only itself and bubblewrap's init, none of the host's processes) and /dev's device nodes;
- write: its work folder /sandbox (which holds program.py) and a private /tmp, each a tmpfs of at
  most `write_bytes`, and one file at most `file_bytes`; the root, /usr, /etc and /dev are read-only;
- see an environment of PATH, HOME and PWD only: every process that starts it (prlimit, setpriv,
  bubblewrap) is itself started with PATH alone, so no /proc/<pid>/environ holds a host variable;
- not: reach any network (all namespaces unshared, loopback included), see host files (a
  run directory among them), outlive its time limit (the whole process group is killed), exceed
  `processes` (as root it runs as `nobody`, so a fork bomb stops there) or `memory_bytes`.
Its stdout and stderr are read as they come: the first (stdout) and last (stderr) OUTPUT_LIMIT
characters are kept, the rest is counted and discarded (`truncated`), so memory stays bounded however
much it prints.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
OUTPUT_LIMIT = 64_000  # characters of stdout (the first) and stderr (the last) kept
OUTPUT_KEPT_BYTES = 4 * OUTPUT_LIMIT  # bytes kept per stream: OUTPUT_LIMIT characters of UTF-8 at most
READ_CHUNK = 1 << 16
KILL_GRACE_SECONDS = 5.0  # after a time-out, how long the pipes may take to close
LAUNCHER_ENVIRONMENT = {"PATH": "/usr/bin:/bin"}  # the whole environment of prlimit, setpriv and bubblewrap


class SandboxUnavailable(RuntimeError):
    """bubblewrap or the sandbox interpreter is missing."""


@dataclass(frozen=True)
class SandboxLimits:
    seconds: float = 10.0  # wall-clock time of the run (and CPU time, rounded up)
    memory_bytes: int = 512 * 2**20  # address space of each process
    processes: int = 32  # processes of the sandbox's user (nobody, when run as root)
    file_bytes: int = 16 * 2**20  # size of any one file written
    write_bytes: int = 32 * 2**20  # size of /sandbox (program.py included) and of /tmp, each a tmpfs in memory


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str  # the first OUTPUT_LIMIT characters
    stderr: str  # the last OUTPUT_LIMIT characters
    timed_out: bool
    seconds: float
    truncated: bool = False  # stdout or stderr was longer than what is kept
    output_bytes: int = 0  # bytes the program wrote to stdout and stderr, kept or not

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


def _limit_command(limits: SandboxLimits, as_root: bool, prlimit: str, setpriv: str) -> list[str]:
    """`prlimit` (and, as root, `setpriv` to become nobody) in front of bubblewrap.

    Limits are set by these small util-linux programs rather than in a `preexec_fn`: a Python
    callback between fork and exec runs in a copy of a multi-threaded Beam worker, where gRPC's
    fork handlers can crash the child (seen as SIGABRT/SIGSEGV before the program even starts).
    """
    cpu = int(limits.seconds) + 1
    command = [
        prlimit, f"--as={limits.memory_bytes}", f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}",
        f"--cpu={cpu}:{cpu + 1}", "--core=0", "--",
    ]
    if as_root:
        command += [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return command


BUSY = ("Resource temporarily unavailable",)  # a namespace, fork or exec refused for now (EAGAIN)
LAUNCHERS = ("bwrap:", "setpriv:", "prlimit:")  # messages of the programs that start the sandbox


TEST_LANGUAGES = ("Python",)  # the languages whose tests the sandbox runs; other languages' pairs are written unverified


def unverifiable(language: str, tests: str | None) -> str | None:
    """Why a row's tests cannot verify its pair (tests in a language the sandbox does not run), or None."""
    if tests is not None and language not in TEST_LANGUAGES:
        return f"unverified: the sandbox runs {', '.join(TEST_LANGUAGES)} tests, not {language}"
    return None


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
    bwrap, prlimit, setpriv = shutil.which("bwrap"), shutil.which("prlimit"), shutil.which("setpriv")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; `apt-get install bubblewrap` (the Makefile does it)")
    if prlimit is None or setpriv is None:
        raise SandboxUnavailable("prlimit and setpriv (util-linux) are needed to limit the sandbox")
    if not os.access(interpreter, os.X_OK):
        raise SandboxUnavailable(f"sandbox interpreter {interpreter} is missing; install Debian's python3")
    encoded = program.encode("utf-8")
    room = min(limits.file_bytes, limits.write_bytes)
    if len(encoded) > room:  # bubblewrap would die copying it in (SIGXFSZ) or fail (ENOSPC): say why instead
        return SandboxResult(returncode=None, stdout="", timed_out=False, seconds=0.0,
                             stderr=f"program.py is {len(encoded)} bytes, more than the sandbox holds ({room} bytes)")
    source = os.memfd_create("program.py")  # bubblewrap copies it into the work folder's tmpfs
    try:
        data = memoryview(encoded)
        while data:
            data = data[os.write(source, data):]
        os.lseek(source, 0, os.SEEK_SET)
        size = str(limits.write_bytes)
        command = [
            *_limit_command(limits, os.geteuid() == 0, prlimit, setpriv), bwrap, *_read_only_binds(),
            "--size", size, "--tmpfs", "/sandbox", "--file", str(source), "/sandbox/program.py",
            "--size", size, "--tmpfs", "/tmp", "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc",
            "--remount-ro", "/",  # last: the mount points above are made, now nothing else of the root changes
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
            pass_fds=(source,),
            env=LAUNCHER_ENVIRONMENT,
        )
    finally:
        os.close(source)
    stdout, stderr = _CappedOutput(keep_tail=False), _CappedOutput(keep_tail=True)
    with process:
        timed_out = _read_until_exit(process, {process.stdout: stdout, process.stderr: stderr}, start + limits.seconds)
    return SandboxResult(
        returncode=process.returncode,
        stdout=stdout.text(),
        stderr=stderr.text(),
        timed_out=timed_out,
        seconds=round(time.monotonic() - start, 3),
        truncated=stdout.truncated or stderr.truncated,
        output_bytes=stdout.total + stderr.total,
    )


class _CappedOutput:
    """What a program wrote to one pipe: the first (or last) OUTPUT_KEPT_BYTES kept, the rest only counted."""

    def __init__(self, keep_tail: bool):
        self.keep_tail = keep_tail
        self.kept = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if self.keep_tail:
            self.kept += data
            del self.kept[:-OUTPUT_KEPT_BYTES]
        elif len(self.kept) < OUTPUT_KEPT_BYTES:
            self.kept += data[:OUTPUT_KEPT_BYTES - len(self.kept)]

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        return text[-OUTPUT_LIMIT:] if self.keep_tail else text[:OUTPUT_LIMIT]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept) or len(self.kept.decode("utf-8", "replace")) > OUTPUT_LIMIT


def _read_until_exit(process: subprocess.Popen, pipes: dict, deadline: float) -> bool:
    """Read both pipes as the program writes them until it exits; kill it at `deadline`. True when it timed out."""
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for pipe in pipes:
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timed_out:
                    break  # killed, and still the pipes stay open: stop reading
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                deadline = time.monotonic() + KILL_GRACE_SECONDS
                continue
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, READ_CHUNK)
                if data:
                    pipes[key.fileobj].add(data)
                else:
                    selector.unregister(key.fileobj)
    if not timed_out:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:  # it closed its output but runs on
            timed_out = True
    if timed_out:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    return timed_out
