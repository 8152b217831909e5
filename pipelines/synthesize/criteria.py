"""Criteria of a commit from seed terms in its subject and message (multi-label).

A term matches at the start of a word and may end inside one: `dry` does not fire in "foundry",
`sanitiz` fires in "sanitize". Words of a multi-word term may be separated by any white space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files

from schemas import CRITERIA

TERM_FILES = {
    "Functional Correctness": "functional_correctness.txt",
    "Runtime Efficiency": "runtime_efficiency.txt",
    "Memory Efficiency": "memory_efficiency.txt",
    "Security Hardness": "security_hardness.txt",
    "Readability and Maintainability": "readability_maintainability.txt",
}


def packaged_terms() -> dict[str, tuple[str, ...]]:
    """The reference's seed terms per criterion (see aspect_terms/SOURCES.md)."""
    folder = files("pipelines.synthesize") / "aspect_terms"
    terms = {}
    for criterion in CRITERIA:
        lines = (folder / TERM_FILES[criterion]).read_text(encoding="utf-8").splitlines()
        terms[criterion] = tuple(dict.fromkeys(line.strip().lower() for line in lines if line.strip()))
    return terms


@dataclass(frozen=True)
class SeedTerms:
    """Seed-term matcher: which criteria a commit message speaks of, and through which terms."""

    terms: dict[str, tuple[str, ...]] = field(default_factory=packaged_terms)

    @cached_property
    def _patterns(self) -> dict[str, re.Pattern[str]]:
        patterns = {}
        for criterion, terms in self.terms.items():
            # Longest first, so that the reported term is the most specific one.
            alternatives = "|".join(r"\s+".join(map(re.escape, term.split())) for term in sorted(terms, key=len, reverse=True))
            patterns[criterion] = re.compile(rf"(?<![\w])(?:{alternatives})", re.IGNORECASE)
        return patterns

    def match(self, text: str) -> dict[str, str]:
        """Criterion -> the first term found in `text`, for every criterion with a match."""
        found = {}
        for criterion, pattern in self._patterns.items():
            hit = pattern.search(text)
            if hit:
                found[criterion] = re.sub(r"\s+", " ", hit.group(0).lower())
        return found

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, criterion) of every term occurrence in `text`, by start; spans of two criteria may overlap."""
        found = [(hit.start(), hit.end(), criterion)
                 for criterion, pattern in self._patterns.items() for hit in pattern.finditer(text)]
        return sorted(found)

    def criteria(self, text: str) -> list[str]:
        """The matched criteria, in the published criterion order."""
        found = self.match(text)
        return [criterion for criterion in CRITERIA if criterion in found]
