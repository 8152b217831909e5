"""LLM task templates render, and their parsers handle well-formed, malformed and adversarial answers."""

from __future__ import annotations

import pytest

from llm.tasks import (
    INSTRUCTION_STYLES,
    TASKS,
    BugIntroduction,
    CommitReview,
    InstructionRecovery,
    last_tag,
)

RECORD = {"language": "Python", "fence": "python", "chosen": "def f(x):\n    return x + 1\n", "rejected": "def f(x):\n    return x\n"}


@pytest.mark.parametrize("style", INSTRUCTION_STYLES)
def test_instruction_recovery_renders_each_style(style):
    (message,) = InstructionRecovery().format_input({**RECORD, "style": style})
    text = message["content"]
    assert message["role"] == "user" and style in text
    assert "```python\ndef f(x):\n    return x + 1\n" in text and "[PROBLEM_STATEMENT]" in text
    assert len(INSTRUCTION_STYLES) == 5


def test_missing_variable_is_an_error_not_an_empty_prompt():
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        InstructionRecovery().messages(language="Python")


@pytest.mark.parametrize(
    ("text", "statement", "reason"),
    [
        ("[DESCRIPTION]adds one[/DESCRIPTION]\n[PROBLEM_STATEMENT]Write f.[/PROBLEM_STATEMENT]", "Write f.", None),
        ("[problem_statement] Write f. [\\problem_statement]", "Write f.", None),
        ("[ PROBLEM_STATEMENT ]first[/PROBLEM_STATEMENT] then [PROBLEM_STATEMENT]second[ / PROBLEM_STATEMENT ]", "second", None),
        ("[PROBLEM_STATEMENT]cut off here", None, "truncated"),
        ("I cannot help with that.", None, "no [PROBLEM_STATEMENT] block"),
        ("[PROBLEM_STATEMENT]   [/PROBLEM_STATEMENT]", None, "empty"),
        # A complete block followed by an unfinished one: the last complete block counts.
        ("[PROBLEM_STATEMENT]done[/PROBLEM_STATEMENT] [PROBLEM_STATEMENT]partial", "done", None),
    ],
)
def test_instruction_recovery_parser(text, statement, reason):
    parsed = InstructionRecovery().parse_output(text)
    if statement is None:
        assert parsed.fields is None and parsed.reason.startswith(reason)
    else:
        assert parsed.fields["problem_statement"] == statement


def test_bug_introduction_parser_strips_fences_and_ignores_tags_in_code():
    answer = "Here:\n[BUGGY_CODE]\n```python\ndef f(x):\n    return x - 1  # [BUGGY_CODE] in a comment\n```\n[/BUGGY_CODE]"
    parsed = BugIntroduction().parse_output(answer)
    assert parsed.fields["buggy_code"] == "def f(x):\n    return x - 1  # [BUGGY_CODE] in a comment"
    assert BugIntroduction().parse_output("[BUGGY_CODE]```\n```[/BUGGY_CODE]").reason.startswith("empty")
    (message,) = BugIntroduction().format_input({"language": "Go", "fence": "go", "instruction": "Add.", "solution": "func add() {}"})
    assert "[BUGGY_CODE]" in message["content"] and "func add() {}" in message["content"]


@pytest.mark.parametrize(
    ("text", "rating", "keep"),
    [("Clear gain. [RATING]4[/RATING]", 4, True), ("[rating] 2 [/rating]", 2, False), ("[RATING]5/5[/RATING]", 5, True),
     ("[RATING]3[/RATING] no wait [RATING]5[/RATING]", 5, True)],
)
def test_commit_review_ratings_and_cutoff(text, rating, keep):
    parsed = CommitReview(cutoff=4).parse_output(text)
    assert parsed.fields == {"rating": rating, "keep": keep}


@pytest.mark.parametrize("text", ["[RATING]seven[/RATING]", "[RATING]6[/RATING]", "[RATING]4", "no rating"])
def test_commit_review_malformed(text):
    parsed = CommitReview().parse_output(text)
    assert parsed.fields is None and parsed.reason


def test_commit_review_renders_the_criterion_checklist():
    record = {"language": "C", "fence": "c", "criterion": "Memory Efficiency", "message": "Free the buffer", "before": "a", "after": "b"}
    (message,) = CommitReview().format_input(record)
    assert "memory efficiency" in message["content"] and "fewer or smaller allocations" in message["content"]
    with pytest.raises(ValueError, match="between 1 and 5"):
        CommitReview(cutoff=9)


def test_registry_and_versions():
    assert {"instruction_recovery", "bug_introduction", "commit_review"} <= set(TASKS.names())
    assert InstructionRecovery().template_id == "instruction_recovery.v1"
    with pytest.raises(KeyError, match="unknown LLM task 'nope'"):
        TASKS["nope"]
    assert last_tag("[A]x[/A][A]y[\\A]", "A") == ("y", None)
