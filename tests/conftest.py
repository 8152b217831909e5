"""Shared fixtures: test isolation (no user registry file or registry env var leaks in from the machine), the
packaged CPU judge and its vLLM engine, the fake OpenAI server, and a runner of one stage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.fake_openai import serving

if TYPE_CHECKING:
    from tests.support.stage_run import StageRun


@pytest.fixture(autouse=True)
def isolated_user_config(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("CODEPREF_LANGUAGES", raising=False)
    return home


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The packaged CPU judge, converted once per test session."""
    from llm.models import prepare_smollm2

    return str(prepare_smollm2(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def vllm_engine(smollm2):
    """One vLLM engine on CPU for the whole test session: backends and stages configured with this
    entry (`{"backend": "vllm", "model": smollm2}`, context 2048) share it instead of starting their own."""
    from llm.backends import BackendConfig, acquire_backend, release_backend

    config = BackendConfig(backend="vllm", model=smollm2, max_model_len=2048)
    backend = acquire_backend(config)
    yield backend
    release_backend(config)


@pytest.fixture
def faulty_judge():
    """The /v1 address of the scripted OpenAI-compatible server (tests.support.fake_openai.FakeOpenAI), reset for each test."""
    with serving() as url:
        yield url


@pytest.fixture(scope="session")
def portable(tmp_path_factory):
    """Beam's local job service and an EXTERNAL pool of two worker processes that run codepref from its sdist, for the
    whole test session: `portable.runner()` is the `runner:` block of a config on them (tests/support/portable.py)."""
    from tests.support.portable import portable_service

    with portable_service(tmp_path_factory.mktemp("portable")) as service:
        yield service


@pytest.fixture
def run_stage(tmp_path):
    """Run one stage alone in `tmp_path / "run"` (or `run_dir=`): `run_stage("synthesize", config, upstream={"mine":
    (commits, Commit)})` -> StageRun(rows, drops, details, manifest); see tests/support/stage_run.py."""
    from tests.support.stage_run import run_one_stage  # here: importing the stages is for the tests that run one

    def run_alone(stage: str, config: dict | None = None, *, run_dir: Path | None = None, **options: object) -> StageRun:
        return run_one_stage(run_dir or tmp_path / "run", stage, config, **options)

    return run_alone
