"""What the commands print: their own lines, errors and warnings of the pipeline's code, and no library noise
a user cannot act on (Beam's import-time apitools warning, its workers' start-up lines, the judge engine's
start-up logs unless --verbose)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
NOISE = ("apitools not found", "Logging handler created")


def codepref(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=False, capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_commands_print_no_beam_import_warning(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "stages": {"parse": {"inputs": []}}}))
    for args in (("--help",), ("config", "check", str(config)), ("audit", "run", str(tmp_path / "no-run"))):
        result = codepref(*args)
        assert "apitools" not in result.stdout + result.stderr, args
    assert result.returncode == 2 and result.stderr.startswith("error: ")  # the audit's own error still prints


def test_a_multi_process_stage_run_prints_only_its_summary(tmp_path):
    from tests.support.git_fixtures import MIT, GitRepo

    repo = GitRepo(tmp_path / "repo")
    repo.write("LICENSE", MIT)
    repo.write("calc.py", "def add(a, b):\n    return b + a\n")
    repo.commit("Initial import")
    repo.write("calc.py", "def add(a, b):\n    return a + b\n")
    repo.commit("Fix the order of the operands in add")
    config = tmp_path / "mp.yaml"
    config.write_text(yaml.safe_dump({"num_shards": 2, "runner": {"running_mode": "multi_processing", "workers": 2}}))
    result = codepref("mine", "--repos", str(repo.path), "--out", str(tmp_path / "mine"), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "mine: 2 commits read, 1 kept" in result.stdout
    assert result.stderr == ""  # nothing from Beam or its workers ("Logging handler created", apitools)


def test_a_warning_logged_in_a_local_worker_process_still_prints(tmp_path):
    script = textwrap.dedent("""
        import logging
        from pipelines.run.library_logs import drop_unactionable_lines
        drop_unactionable_lines()  # as the command line does, before Beam is imported
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
        from pipelines.run.local_runner import local_runner

        def warn(x):
            logging.getLogger("codepref.example").warning("worker warning about %s", x)
            return x

        options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
        with beam.Pipeline(runner=local_runner(), options=options) as p:
            p | beam.Create(["item-1"]) | beam.Map(warn)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "worker warning about item-1" in result.stderr
    assert not any(line in result.stderr for line in NOISE), result.stderr


def test_the_judge_engine_starts_quietly_unless_verbose(monkeypatch):
    import vllm.envs

    from llm.backends import VERBOSE_ENV, quiet_engine

    for variable in (VERBOSE_ENV, "VLLM_LOGGING_LEVEL", "TORCH_CPP_LOG_LEVEL", "PYTHONWARNINGS"):
        monkeypatch.setenv(variable, "")  # recorded first, so that the test leaves the environment as it was
        monkeypatch.delenv(variable)
    engine_default = vllm.envs.VLLM_LOGGING_LEVEL
    assert engine_default == "INFO"
    assert quiet_engine() and vllm.envs.VLLM_LOGGING_LEVEL == "ERROR"  # what vLLM and the processes it starts read

    monkeypatch.delenv("VLLM_LOGGING_LEVEL")
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert not quiet_engine() and vllm.envs.VLLM_LOGGING_LEVEL == engine_default

    monkeypatch.delenv(VERBOSE_ENV)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")  # the user's own setting wins
    assert quiet_engine() and vllm.envs.VLLM_LOGGING_LEVEL == "DEBUG"


def test_verbose_is_an_option_of_run_and_of_the_stage_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llm.backends import VERBOSE_ENV
    from pipelines.cli import app

    monkeypatch.setenv(VERBOSE_ENV, "0")  # restored after the test
    missing = str(tmp_path / "missing.yaml")
    quiet = CliRunner().invoke(app, ["run", missing])
    assert quiet.exit_code == 2 and os.environ[VERBOSE_ENV] == "0"
    verbose = CliRunner().invoke(app, ["run", "--verbose", missing])
    assert verbose.exit_code == 2 and os.environ[VERBOSE_ENV] == "1"
    monkeypatch.setenv(VERBOSE_ENV, "0")
    label = CliRunner().invoke(app, ["label", "--verbose", "--in", str(tmp_path), "--out", str(tmp_path / "out"),
                                     "--config", missing])
    assert label.exit_code == 2 and "missing.yaml" in label.output and os.environ[VERBOSE_ENV] == "1"
