"""Beam's portable runner on this machine, as a distributed run reaches it: the job service that ships in the Beam
wheel (the job API that Flink's and Spark's job servers and Dataflow Runner v2 speak) and an EXTERNAL worker pool
whose workers have codepref installed from its sdist, not from the checkout (the `portable` fixture of tests/conftest.py).

Both listen on the loopback interface only. The job service runs Beam's FnApiRunner with codepref's fix of its data
plane (`pipelines.run.local_runner.make_local_runs_safe`) and one worker per bundle partition as
`--direct_num_workers` says (Beam's job service otherwise runs everything on one worker). The workers import
codepref from the sdist that `--setup_file pyproject.toml` builds (Beam's own build, `Stager._build_setup_package`),
installed with `pip install --no-deps --target`; they run in a folder outside the repository.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2

# Started with `python -c`, their ports written to the file named by argv[1] once they listen.
JOB_SERVICE = """
import sys
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability import local_job_service_main
from apache_beam.runners.portability.fn_api_runner import fn_runner
from pipelines.run.local_runner import make_local_runs_safe

make_local_runs_safe()
run_via_runner_api = fn_runner.FnApiRunner.run_via_runner_api

def run_on_workers(self, proto, options):
    self._num_workers = int(options.view_as(DirectOptions).direct_num_workers or 1)  # a string once sent as a job
    return run_via_runner_api(self, proto, options)

fn_runner.FnApiRunner.run_via_runner_api = run_on_workers
local_job_service_main.run(["--port=0", "--port_file=" + sys.argv[1], "--staging_dir=" + sys.argv[2]])
"""
WORKER_POOL = """
import os, sys, time
from apache_beam.runners.worker import worker_pool_main
from pipelines.run.local_runner import serve_on_loopback

serve_on_loopback(worker_pool_main)
address, server = worker_pool_main.BeamFnExternalWorkerPoolServicer.start(use_process=True, port=0)
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(address.rsplit(":", 1)[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
"""


@dataclass(frozen=True)
class PortableService:
    """A running job service and worker pool; `options` are the runner options of a stage run on them."""

    job_endpoint: str
    worker_pool: str
    site: Path  # where the workers' codepref is installed
    logs: Path

    def options(self, workers: int = WORKERS) -> list[str]:
        return [f"--job_endpoint={self.job_endpoint}", "--environment_type=EXTERNAL",
                f"--environment_config={self.worker_pool}", f"--direct_num_workers={workers}"]

    def runner(self, workers: int = WORKERS) -> dict:
        """The `runner:` block of a run config on this service."""
        return {"name": "PortableRunner", "options": self.options(workers)}


def install_sdist(base: Path) -> Path:
    """Build codepref's sdist as Beam's `--setup_file pyproject.toml` does and install it (no dependencies: the
    workers share this environment's) into `base/site`; that folder."""
    from apache_beam.runners.portability.stager import Stager

    dist, site = base / "dist", base / "site"
    dist.mkdir(parents=True)
    sdist = Stager._build_setup_package(str(REPO / "pyproject.toml"), str(dist))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), sdist], check=True, capture_output=True, timeout=120)
    return site


def worker_environment(site: Path) -> dict[str, str]:
    """The environment of the services and their workers: codepref from `site` first, this venv's `python` on PATH
    (the worker pool starts each worker as `python -c ...`)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PYTHONPATH": str(site), "PATH": path, "PYTHONUNBUFFERED": "1"}


@contextmanager
def portable_service(base: Path) -> Iterator[PortableService]:
    """Install codepref for the workers, start the job service and the worker pool, and stop both at the end."""
    site = install_sdist(base)
    env, cwd, logs = worker_environment(site), base / "workers", base / "logs"
    cwd.mkdir()
    logs.mkdir()
    imported = subprocess.run([sys.executable, "-c", "import pipelines; print(pipelines.__file__)"], env=env, cwd=cwd,
                              capture_output=True, text=True, check=True).stdout.strip()
    assert Path(imported).is_relative_to(site), f"the workers would import codepref from {imported}, not from {site}"
    processes: list[subprocess.Popen] = []
    try:
        ports = []
        for name, code, extra in (("job_service", JOB_SERVICE, [str(base / "staging")]), ("worker_pool", WORKER_POOL, [])):
            port_file = base / f"{name}.port"
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(subprocess.Popen([sys.executable, "-c", code, str(port_file), *extra], env=env, cwd=cwd,
                                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            ports.append(_wait_for(port_file, processes[-1], logs / f"{name}.log"))
        yield PortableService(f"localhost:{ports[0]}", f"localhost:{ports[1]}", site, logs)
    finally:
        for process in processes:  # each in its own session, with the workers it started
            _signal_group(process, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass


def _wait_for(port_file: Path, process: subprocess.Popen, log: Path, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_file.is_file():
            return int(port_file.read_text())
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {process.returncode} before listening:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{log.stem} did not listen within {seconds} s:\n{log.read_text()[-3000:]}")
