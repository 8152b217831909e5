"""Bug-fix sets: a failing submission and its accepted fix (RunBugRun)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipelines.core import Rejection
from pipelines.external.adapters.base import (
    FUNCTIONAL_CORRECTNESS,
    Adapter,
    content_id,
    register_adapter,
)
from schemas import Candidate


@register_adapter
class RunBugRun(Adapter):
    """Program-repair pairs: a user's failing submission and their later accepted one (ASSERT-KTH/RunBugRun-Final).

    Layout checked: https://huggingface.co/datasets/ASSERT-KTH/RunBugRun-Final/commit/1f0cf9e2d1b07bddf2d2a236e3aea88d264ffe37
    (the card's YAML before it was removed: config default, split train, 456,749 rows):
    problem_id, buggy_code, fixed_code, labels, buggy_submission_id, fixed_submission_id, user_id,
    language; github.com/giganticode/run_bug_run
    lib/run_bug_run/bugs.rb names the languages c, cpp, go, java, javascript, php, python, ruby and
    gives upstream JSONL rows an `id`. Functional Correctness, chosen = fixed. The reference kept
    Python only: set `languages: [Python]` to match. Prompt: a `problems` table by problem_id, else
    the fallback.
    """

    name = "runbugrun"
    roles = {
        "id": ("id",),
        "problem_id": ("problem_id",),
        "buggy": ("buggy_code",),
        "fixed": ("fixed_code",),
        "language": ("language",),
        "buggy_id": ("buggy_submission_id",),
        "fixed_id": ("fixed_submission_id",),
    }
    optional = frozenset({"id", "buggy_id", "fixed_id", "language"})

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        problem, buggy, fixed = self.text(row, "problem_id"), self.text(row, "buggy"), self.text(row, "fixed")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        own, buggy_id, fixed_id = self.get(row, "id"), self.get(row, "buggy_id"), self.get(row, "fixed_id")
        if own is not None:
            row_id = str(own)
        elif buggy_id is not None and fixed_id is not None:
            row_id = f"{buggy_id}-{fixed_id}"
        else:
            row_id = content_id(problem, buggy, fixed)
        return row_id, {"problem_id": problem, "buggy": buggy, "fixed": fixed, "language": language}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        rejection = self.sides_differ(item["fixed"], item["buggy"])
        if rejection:
            yield rejection
            return
        prompt = self.contest_prompt(item["problem_id"], item["language"], statements, "IBM Project CodeNet (RunBugRun)")
        yield self.candidate(key, key, FUNCTIONAL_CORRECTNESS, item["language"], prompt, item["fixed"], item["buggy"],
                             verification="unverified here; RunBugRun: the fixed submission was accepted, the buggy one failed")
