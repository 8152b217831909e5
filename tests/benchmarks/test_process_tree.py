"""The benchmarks' process-tree measure: a child between fork and exec shares its parent's memory and is not counted
twice; a child that runs its own program is counted."""

from __future__ import annotations

import sys

from benchmarks.process_tree import measured

HOLD_MB = 200

# The parent fills HOLD_MB, then forks a child that holds the same pages without exec for 0.6 s (50 ms samples).
FORK = f"""
import os, time
held = bytearray({HOLD_MB} << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
pid = os.fork()
if pid == 0:
    time.sleep(0.6)
    os._exit(0)
os.waitpid(pid, 0)
"""

# The parent fills HOLD_MB, then runs another Python that fills HOLD_MB of its own for 0.6 s.
SPAWN = f"""
import subprocess, sys
held = bytearray({HOLD_MB} << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
child = "import time\\nheld = bytearray({HOLD_MB} << 20)\\nfor i in range(0, len(held), 4096): held[i] = 1\\ntime.sleep(0.6)"
subprocess.run([sys.executable, "-c", child], check=True)
"""


def test_a_child_between_fork_and_exec_is_not_counted_twice():
    result, figures = measured([sys.executable, "-c", FORK])
    assert result.returncode == 0, result.stderr
    assert HOLD_MB <= figures["peak_rss_mb"] < 1.5 * HOLD_MB


def test_a_child_running_its_own_program_is_counted():
    result, figures = measured([sys.executable, "-c", SPAWN])
    assert result.returncode == 0, result.stderr
    assert figures["peak_rss_mb"] >= 2 * HOLD_MB
