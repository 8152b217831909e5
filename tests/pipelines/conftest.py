"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

import pytest

from tests.fake_judge import serving


@pytest.fixture
def faulty_judge():
    """The /v1 address of a scripted judge server (tests.fake_judge.FaultyJudge), reset for each test."""
    with serving() as url:
        yield url
