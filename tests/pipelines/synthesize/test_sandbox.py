"""The execution sandbox on the real bubblewrap: what a program can read, write and print.

test_synthesize.py::test_sandbox_contains covers time, memory, network and process limits, and
test_security.py what leaves the sandbox through the pipeline; here: the host's environment is not
readable inside (not even in /proc), the root is read-only and the writable places are bounded,
and however much a program prints, the run's memory stays bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipelines.synthesize.sandbox import OUTPUT_LIMIT, SandboxLimits, run_python

LIMITS = SandboxLimits(seconds=5, memory_bytes=256 * 2**20, processes=16)
CANARY = "sk-codepref-canary-123"

# Prints every environment it can find, then every readable file outside the read-only system
# directories (/usr and its links) that holds the canary (built at run time, so that program.py itself
# does not hold it; the program plants one copy in /tmp to show the search finds it).
EVERYTHING_READABLE = r'''
import json, os, stat
canary = "sk-codepref-" + "canary-123"
environments = {"os.environ": dict(os.environ)}
for pid in ["self", "thread-self", str(os.getppid())] + [p for p in os.listdir("/proc") if p.isdigit()]:
    for name in ("environ", "cmdline"):
        try:
            environments[f"/proc/{pid}/{name}"] = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
        except OSError as error:
            environments[f"/proc/{pid}/{name}"] = f"unreadable: {error}"
open("/tmp/planted", "w").write(canary)  # proves the search finds a file that holds it
holding = []
for top in [p for p in os.listdir("/") if p not in ("usr", "bin", "lib", "lib64", "sbin")]:
    for folder, dirs, files in os.walk("/" + top):
        dirs[:] = [d for d in dirs if not (folder == "/proc" and d == "sys")]
        for name in files:
            path = os.path.join(folder, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode) or name in ("kcore", "kmsg", "pagemap", "mem"):
                    continue
                with open(path, "rb") as file:
                    if canary.encode() in file.read(1 << 20):
                        holding.append(path)
            except OSError:
                pass
print(json.dumps({"environments": environments, "holding": holding}))
'''


def test_nothing_of_the_hosts_environment_is_readable_inside(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    result = run_python(EVERYTHING_READABLE, SandboxLimits(seconds=20, memory_bytes=256 * 2**20, processes=16))
    assert result.passed, result.stderr
    assert CANARY not in result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert found["holding"] == ["/tmp/planted"]
    environments = found["environments"]
    assert environments["/proc/self/environ"] == "PATH=/usr/bin:/bin\0HOME=/sandbox\0PWD=/sandbox\0"
    assert set(environments["os.environ"]) <= {"PATH", "HOME", "PWD", "LC_CTYPE"}  # LC_CTYPE: Python's own C-locale coercion
    # bubblewrap's init (pid 1, the program's parent) is the one other process visible; its environment is PATH alone
    assert environments["/proc/1/environ"] == "PATH=/usr/bin:/bin\0"
    visible = {key.split("/")[2] for key in environments if key.startswith("/proc/") and key.split("/")[2].isdigit()}
    assert visible == {"1", "2"}


def test_the_root_is_read_only_and_only_the_work_folder_and_tmp_are_writable():
    program = """
for path in ["/newfile", "/usr/x", "/etc/x", "/dev/x", "/dev/shm/x", "/sandbox/x", "/tmp/x", "/sandbox/program.py"]:
    try:
        open(path, "a").write("x")
        print(path, "written")
    except OSError as error:
        print(path, "refused", error.strerror)
open("/dev/null", "w").write("devices still work")
"""
    result = run_python(program, LIMITS)
    assert result.passed, result.stderr
    outcome = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert outcome == {
        "/newfile": "refused Read-only file system",
        "/usr/x": "refused Read-only file system",
        "/etc/x": "refused Read-only file system",
        "/dev/x": "refused Read-only file system",
        "/dev/shm/x": "refused Read-only file system",
        "/sandbox/x": "written",
        "/tmp/x": "written",
        "/sandbox/program.py": "written",
    }


def test_the_work_folder_and_tmp_hold_at_most_write_bytes_each():
    limits = SandboxLimits(seconds=5, memory_bytes=256 * 2**20, processes=16, file_bytes=2**20, write_bytes=4 * 2**20)
    program = """
import errno
for folder in ("/sandbox", "/tmp"):
    written = 0
    for index in range(64):  # 64 files of 1 MiB: each within file_bytes, together far beyond write_bytes
        try:
            with open(f"{folder}/part{index}", "wb") as file:
                file.write(b"x" * 2**20)
            written += 1
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
            break
    print(folder, written)
"""
    result = run_python(program, limits)
    assert result.passed, result.stderr
    written = {folder: int(count) for folder, count in (line.split() for line in result.stdout.strip().splitlines())}
    assert written == {"/sandbox": 3, "/tmp": 4}  # 4 MiB each; program.py takes a page of the work folder


def test_a_file_beyond_file_bytes_is_refused():
    limits = SandboxLimits(seconds=5, memory_bytes=256 * 2**20, processes=16, file_bytes=2**20)
    program = "import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nopen('/tmp/big', 'wb').write(b'x' * 2 * 2**20)\n"
    result = run_python(program, limits)
    assert not result.passed and "File too large" in result.stderr


PRINTS_600_MB = """import sys
line = 'x' * 2**20 + '\\n'
for _ in range(600):
    sys.stdout.write(line)
sys.stderr.write('the end\\n')
"""


def test_printing_600_mb_keeps_the_runs_memory_bounded_and_reports_truncation():
    # A fresh interpreter, so that its peak RSS is the run's own, not pytest's.
    measure = f"""
import json, resource
from pipelines.synthesize.sandbox import SandboxLimits, run_python
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = run_python({PRINTS_600_MB!r}, SandboxLimits(seconds=60))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"growth_kib": after - before, "passed": result.passed, "truncated": getattr(result, "truncated", None),
                  "output_bytes": getattr(result, "output_bytes", None), "stdout": len(result.stdout), "stderr": result.stderr}}))
"""
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", measure], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["growth_kib"] < 64 * 1024, outcome  # was 1.8 GiB when the whole output was read at once
    assert outcome["passed"] and outcome["truncated"]
    assert outcome["output_bytes"] == 600 * (2**20 + 1) + len("the end\n")
    assert outcome["stdout"] == OUTPUT_LIMIT and outcome["stderr"] == "the end\n"


def test_output_within_the_limit_is_kept_whole_and_not_marked_truncated():
    result = run_python("import sys\nprint('é' * 1000)\nsys.stderr.write('warning\\n')\n", LIMITS)
    assert result.passed and not result.truncated
    assert result.stdout == "é" * 1000 + "\n" and result.stderr == "warning\n"
    assert result.output_bytes == 2001 + 8


def test_the_last_characters_of_a_long_stderr_are_kept():
    program = "import sys\nsys.stderr.write('ü' * 200_000 + '\\nAssertionError: the last line')\nsys.exit(1)\n"
    result = run_python(program, LIMITS)
    assert not result.passed and result.truncated
    assert len(result.stderr) == OUTPUT_LIMIT and result.last_line == "AssertionError: the last line"


def test_a_program_that_closes_its_output_and_runs_on_still_times_out():
    result = run_python("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n", SandboxLimits(seconds=2))
    assert result.timed_out and result.seconds < 8


def test_a_program_larger_than_the_sandbox_holds_fails_with_the_reason():
    limits = SandboxLimits(seconds=5, file_bytes=2**20)
    result = run_python("x = 1\n" + "#" * 2**20 + "\n", limits)
    assert not result.passed
    assert result.last_line == f"program.py is {2**20 + 7} bytes, more than the sandbox holds ({2**20} bytes)"
    assert run_python("x = 1\n" + "#" * 2**19 + "\n", limits).passed
