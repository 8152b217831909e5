"""Test isolation: no user registry file or registry env var leaks in from the machine."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_user_config(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("CODEPREF_LANGUAGES", raising=False)
    return home


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The packaged CPU judge, converted once per test session."""
    from pipelines.llm.models import prepare_smollm2

    return str(prepare_smollm2(tmp_path_factory.mktemp("models")))
