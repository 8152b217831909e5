"""LLM tasks: a versioned Jinja2 template plus a parser, nothing else.

`format_input(record)` renders chat messages from a record; `parse_output(text)` returns the
parsed fields, or None and a reason. Tags in answers are read from their last complete
occurrence and tolerate `[/TAG]`, `[\\TAG]`, any case and inner white space.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, ClassVar

import jinja2

from pipelines.core.registry import Registry

INSTRUCTION_STYLES: tuple[str, ...] = (
    "graduate course assignment",
    "question on a Q&A site",
    "Stack Overflow question",
    "search engine query",
    "programming contest problem",
)

CHECKLISTS: dict[str, tuple[str, ...]] = {
    "Functional Correctness": ("wrong results fixed", "edge and boundary cases handled", "errors handled instead of ignored"),
    "Runtime Efficiency": ("less work per input (complexity, repeated work)", "faster data structures or algorithms", "no slower paths added"),
    "Memory Efficiency": ("fewer or smaller allocations", "data released or streamed instead of held", "no leaks added"),
    "Security Hardness": ("untrusted input validated or escaped", "unsafe calls replaced", "secrets and permissions handled safely"),
    "Readability and Maintainability": ("clearer names and structure", "duplication removed", "behaviour unchanged"),
}


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@cache
def _template(name: str) -> jinja2.Template:
    source = (files("llm") / "templates" / name).read_text(encoding="utf-8")
    return _environment().from_string(source)


def last_tag(text: str, tag: str) -> tuple[str | None, str | None]:
    """(content of the last complete [TAG]...[/TAG] block, None) or (None, reason)."""
    opening = re.compile(rf"\[\s*{re.escape(tag)}\s*\]", re.IGNORECASE)
    closing = re.compile(rf"\[\s*[/\\]\s*{re.escape(tag)}\s*\]", re.IGNORECASE)
    closings = list(closing.finditer(text))
    # The last block ends at the last closing tag and starts at the first opening tag after the
    # closing before it, so that a tag quoted inside the block (in code, say) does not cut it.
    for index in range(len(closings) - 1, -1, -1):
        floor = closings[index - 1].end() if index > 0 else 0
        start = opening.search(text, floor, closings[index].start())
        if start is not None:
            return text[start.end() : closings[index].start()].strip(), None
    if opening.search(text):
        return None, f"truncated: [{tag}] is never closed"
    return None, f"no [{tag}] block"


def rating_tag(text: str, digits: str, scale: int, refusal: str) -> tuple[int | None, str | None]:
    """(the rating in the last [RATING] block, None) or (None, reason): `digits` is the pattern of a valid rating, which
    may be written out of `scale` ("4/5") and end with a full stop."""
    value, reason = last_tag(text, "RATING")
    if value is None:
        return None, reason
    match = re.fullmatch(rf"\s*({digits})(?:\s*/\s*{scale})?\s*\.?\s*", value)
    if match is None:
        return None, f"{refusal}: {value[:40]!r}"
    return int(match.group(1)), None


_FENCE = re.compile(r"^\s*```[\w+#.-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fence(code: str) -> str:
    """The code inside a Markdown fence, if the text is one fenced block."""
    match = _FENCE.match(code)
    return match.group(1) if match else code


@dataclass(frozen=True)
class Parsed:
    fields: dict[str, Any] | None
    reason: str | None = None


class Task:
    """Base of LLM tasks: a template file named `<name>.v<version>.j2` and a parser."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    # The shape of a parseable answer, for constrained decoding (vLLM structured outputs); None: free text only.
    answer_pattern: ClassVar[str | None] = None

    @property
    def template_id(self) -> str:
        return f"{self.name}.v{self.version}"

    def messages(self, **variables: Any) -> list[dict[str, str]]:
        return [{"role": "user", "content": _template(f"{self.template_id}.j2").render(**variables)}]

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        raise NotImplementedError

    def parse_output(self, text: str) -> Parsed:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("LLM task")


@TASKS.register("instruction_recovery")
class InstructionRecovery(Task):
    """The task a commit's improved version solves, in one of five styles."""

    name = "instruction_recovery"
    answer_pattern = r"\[DESCRIPTION\][^\[\]]+\[/DESCRIPTION\]\n\[PROBLEM_STATEMENT\][^\[\]]+\[/PROBLEM_STATEMENT\]"

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        return self.messages(
            language=record["language"], fence=record.get("fence", ""), chosen=record["chosen"], rejected=record["rejected"],
            style=record["style"],
        )

    @staticmethod
    def style_for(key: str) -> str:
        """One of the five styles, chosen from `key` (stable across runs and machines)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest()
        return INSTRUCTION_STYLES[int.from_bytes(digest, "big") % len(INSTRUCTION_STYLES)]

    def parse_output(self, text: str) -> Parsed:
        statement, reason = last_tag(text, "PROBLEM_STATEMENT")
        if statement is None:
            return Parsed(None, reason)
        if not statement:
            return Parsed(None, "empty: [PROBLEM_STATEMENT] has no text")
        description, _ = last_tag(text, "DESCRIPTION")
        return Parsed({"problem_statement": statement, "description": description})


@TASKS.register("bug_introduction")
class BugIntroduction(Task):
    """A subtly wrong variant of a correct solution (an alternative to tree-sitter mutation)."""

    name = "bug_introduction"
    answer_pattern = r"\[BUGGY_CODE\]\n[\s\S]+\n\[/BUGGY_CODE\]"

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        return self.messages(
            language=record["language"], fence=record.get("fence", ""), instruction=record["instruction"], solution=record["solution"],
        )

    def parse_output(self, text: str) -> Parsed:
        code, reason = last_tag(text, "BUGGY_CODE")
        if code is None:
            return Parsed(None, reason)
        code = strip_fence(code)
        if not code.strip():
            return Parsed(None, "empty: [BUGGY_CODE] has no code")
        return Parsed({"buggy_code": code})


@TASKS.register("commit_review")
class CommitReview(Task):
    """A 1-5 rating of how much a commit improves its criterion; `keep` applies the cut-off."""

    name = "commit_review"
    answer_pattern = r"\[RATING\][1-5]\[/RATING\]"

    def __init__(self, cutoff: int = 4):
        if not 1 <= cutoff <= 5:
            raise ValueError(f"the review cut-off must be between 1 and 5, got {cutoff}")
        self.cutoff = cutoff

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        criterion = record["criterion"]
        return self.messages(
            language=record["language"], fence=record.get("fence", ""), criterion=criterion, checklist=CHECKLISTS[criterion],
            message=record["message"], before=record["before"], after=record["after"],
        )

    def parse_output(self, text: str) -> Parsed:
        rating, reason = rating_tag(text, r"[1-5]", 5, "not a rating")
        if rating is None:
            return Parsed(None, reason)
        return Parsed({"rating": rating, "keep": rating >= self.cutoff})


@TASKS.register("rating")
class RatingTask(Task):
    """A 1-10 rating of one response on one criterion (pointwise judging: each side of a pair rated alone)."""

    name = "rating"
    answer_pattern = r"\[RATING\](10|[1-9])\[/RATING\]"

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """`record` holds the request (prompt), the `response`, its criterion, language and fence."""
        criterion = record["criterion"]
        return self.messages(
            criterion=criterion, checklist=CHECKLISTS[criterion], language=record["language"], fence=record.get("fence", ""),
            prompt=record["prompt"], response=record["response"],
        )

    def parse_output(self, text: str) -> Parsed:
        rating, reason = rating_tag(text, r"10|[1-9]", 10, "not a rating from 1 to 10")
        return Parsed(None, reason) if rating is None else Parsed({"rating": rating})
