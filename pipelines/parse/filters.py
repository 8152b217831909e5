"""The parse stage's filters, in the order they run: two on the pair as it comes (no parse needed), then,
with both sides parsed once, four on the facts. Each gives a declared reason (see `Parse.drop_reasons`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from parsers import CodeFacts, LanguageRegistry, parse
from pipelines.core import Filter, Rejection
from schemas import Candidate

SIDES = ("chosen", "rejected")


@dataclass(frozen=True)
class ParsedPair:
    """A candidate with its language entry and the facts of both sides."""

    candidate: Candidate
    spec: Any  # the registry's LanguageSpec of the pair's language
    chosen: CodeFacts
    rejected: CodeFacts

    def sides(self) -> tuple[tuple[str, CodeFacts], tuple[str, CodeFacts]]:
        return ("chosen", self.chosen), ("rejected", self.rejected)


class TwoSides(Filter):
    """Both sides have code, and they differ."""

    name = "two_sides"
    reasons: ClassVar[dict[str, str]] = {
        "empty_side": "the chosen or the rejected side is empty (or only white space)",
        "identical_sides": "chosen and rejected are the same text",
    }

    def check(self, record: Candidate) -> Rejection | None:
        if not record.chosen.strip() or not record.rejected.strip():
            return self.reject("empty_side", "{side}", side="chosen" if not record.chosen.strip() else "rejected")
        if record.chosen == record.rejected:
            return self.reject("identical_sides")
        return None


class KnownLanguage(Filter):
    """The pair's language is in the run's language registry."""

    name = "known_language"
    reasons: ClassVar[dict[str, str]] = {"unknown_language": "the pair's language is not in the language registry"}

    def __init__(self, registry: LanguageRegistry):
        self.registry = registry

    def check(self, record: Candidate) -> Rejection | None:
        if record.language not in self.registry:
            return self.reject("unknown_language", "{language}", language=record.language)
        return None


class SizeLimit(Filter):
    """Neither side is longer than `max_bytes` bytes or `max_lines` lines."""

    name = "size_limit"
    reasons: ClassVar[dict[str, str]] = {"too_long": "a side has more than `max_bytes` bytes or `max_lines` lines"}

    def __init__(self, max_bytes: int, max_lines: int):
        self.max_bytes, self.max_lines = max_bytes, max_lines

    def check(self, record: ParsedPair) -> Rejection | None:
        for side, facts in record.sides():
            if facts.bytes > self.max_bytes:
                return self.reject("too_long", "{side}: {bytes} bytes", side=side, bytes=facts.bytes)
            if facts.lines > self.max_lines:
                return self.reject("too_long", "{side}: {lines} lines", side=side, lines=facts.lines)
        return None


class ParsesCleanly(Filter):
    """Each side parses in the pair's language with at most `max_error_share` of its bytes under ERROR nodes
    (per language, with a `default`; `has_error` alone is no gate)."""

    name = "parses_cleanly"
    reasons: ClassVar[dict[str, str]] = {
        "language_mismatch": "one side fails in the pair's language but parses cleanly as another registered language",
        "error_share_above_threshold": "a side's share of bytes under ERROR nodes is above `max_error_share`",
    }

    def __init__(self, registry: LanguageRegistry, max_error_share: dict[str, float]):
        self.registry, self.max_error_share = registry, max_error_share

    def threshold(self, language: str) -> float:
        return self.max_error_share.get(language, self.max_error_share.get("default", 1.0))

    def check(self, record: ParsedPair) -> Rejection | None:
        language = record.spec.name
        limit = self.threshold(language)
        failing = [(side, facts) for side, facts in record.sides() if facts.error_share > limit]
        if len(failing) == 1:
            side = failing[0][0]
            other = self.clean_elsewhere(getattr(record.candidate, side), language)
            if other is not None:
                return self.reject("language_mismatch", "{side} parses as {other}, the pair is {language}",
                                   side=side, other=other, language=language)
        if failing:
            side, facts = failing[0]
            return self.reject("error_share_above_threshold", "{side}: {share:.3f} > {limit}",
                               side=side, share=facts.error_share, limit=limit)
        return None

    def clean_elsewhere(self, code: str, language: str) -> str | None:
        """Another registered language that parses `code` without errors, if any.

        Several grammars accept many snippets; the one that also finds the most functions and
        classes in it wins (a Java class parses in the C grammar too, but as nothing in particular).
        """
        scores = []
        for spec in self.registry:
            if spec.name == language:
                continue
            facts = parse(code, spec)
            if not facts.has_error:
                scores.append((-(len(facts.functions) + len(facts.classes)), spec.name))
        return min(scores)[1] if scores else None


class MinDepth(Filter):
    """Each side's tree of named nodes is at least `min_depth` deep."""

    name = "min_depth"
    reasons: ClassVar[dict[str, str]] = {"too_shallow": "a side's named-node tree is less than `min_depth` deep"}

    def __init__(self, min_depth: int):
        self.min_depth = min_depth

    def check(self, record: ParsedPair) -> Rejection | None:
        for side, facts in record.sides():
            if facts.depth < self.min_depth:
                return self.reject("too_shallow", "{side}: depth {depth}", side=side, depth=facts.depth)
        return None


class DiffersInCode(Filter):
    """The sides differ once comments and white space are ignored."""

    name = "differs_in_code"
    reasons: ClassVar[dict[str, str]] = {
        "identical_after_normalisation": "the same token stream once comments and white space are ignored",
    }

    def check(self, record: ParsedPair) -> Rejection | None:
        if record.chosen.tokens == record.rejected.tokens:
            return self.reject("identical_after_normalisation", "same tokens once comments and white space are ignored")
        return None


# The filters' classes in the order they run (what `Parse.drop_reasons` lists).
FILTERS = (TwoSides, KnownLanguage, SizeLimit, ParsesCleanly, MinDepth, DiffersInCode)
