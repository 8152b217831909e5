"""A multi-processing worker of the local runner: Beam's SDK worker (`sdk_worker_main`), started quietly.

Started as Beam starts its own (`python -m apache_beam.runners.worker.sdk_worker_main`), each worker printed
Beam's import-time apitools warning and then `INFO:__main__:Logging handler created.`: the warning, logged on
a root logger without handlers, makes `logging` add a stderr handler that passes every level, and the harness
logs its start at INFO before it reads the level it is given (WARNING, see `local_runner.worker_provision`).
Here the root logger has a WARNING stderr handler from the start, and the apitools line is dropped; warnings
and errors of the worker still reach stderr.
"""

from __future__ import annotations

import logging
import shlex
import sys

from pipelines.run.library_logs import drop_unactionable_lines

COMMAND = f"{shlex.quote(sys.executable)} -m pipelines.run.local_worker"  # run by a shell, as Beam runs its own


def main() -> None:
    drop_unactionable_lines()
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logging.getLogger().addHandler(stderr)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
