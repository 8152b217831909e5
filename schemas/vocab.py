"""Label vocabularies of the published corpus: criteria and languages, in their published order.

The order matters: Themis-CodePreference stores `language` and `aspect` as ClassLabel indices.
Benchmark spellings (Themis-CodeRewardBench: `Cpp`, `Functional_Correctness`, ...) are aliases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def _fold(name: str) -> str:
    """Case-, space-, hyphen- and underscore-insensitive key for alias lookup."""
    return "".join(ch for ch in name.casefold() if ch not in " _-")


@dataclass(frozen=True)
class Vocabulary:
    """An ordered label set with aliases; unknown names fail with the list of known ones."""

    kind: str
    names: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lookup = {_fold(name): name for name in self.names}
        for alias, name in self.aliases.items():
            if name not in self.names:
                raise ValueError(f"{self.kind} alias {alias!r} points at unknown label {name!r}")
            lookup[_fold(alias)] = name
        object.__setattr__(self, "_lookup", lookup)

    def canonical(self, name: str) -> str:
        """The published spelling of `name` (exact label, alias, any case or separator)."""
        try:
            return self._lookup[_fold(name)]  # type: ignore[attr-defined]
        except KeyError:
            known = ", ".join(self.names)
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def index(self, name: str) -> int:
        """ClassLabel index of `name` in the published order."""
        return self.names.index(self.canonical(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _fold(name) in self._lookup  # type: ignore[attr-defined]


# The five judged criteria, in the order the paper lists them.
CRITERIA: tuple[str, ...] = (
    "Functional Correctness",
    "Runtime Efficiency",
    "Memory Efficiency",
    "Security Hardness",
    "Readability and Maintainability",
)

# Themis-CodePreference `aspect` ClassLabel order (the five criteria plus two NL aspects).
ASPECTS = Vocabulary(
    kind="aspect",
    names=(
        "Readability and Maintainability",
        "Runtime Efficiency",
        "Security Hardness",
        "Functional Correctness",
        "Memory Efficiency",
        "Helpfulness",
        "Harmlessness",
    ),
    aliases={
        "Readability_Maintainability": "Readability and Maintainability",
        "Readability & Maintainability": "Readability and Maintainability",
        "readability": "Readability and Maintainability",
        "maintainability": "Readability and Maintainability",
        "Runtime_Efficiency": "Runtime Efficiency",
        "runtime": "Runtime Efficiency",
        "Security_Hardness": "Security Hardness",
        "security": "Security Hardness",
        "Functional_Correctness": "Functional Correctness",
        "correctness": "Functional Correctness",
        "Memory_Efficiency": "Memory Efficiency",
        "memory": "Memory Efficiency",
    },
)

# Themis-CodePreference `language` ClassLabel order (eight code languages plus NL).
LANGUAGES = Vocabulary(
    kind="language",
    names=("JavaScript", "Python", "Ruby", "C++", "C", "Go", "Java", "C#", "NL"),
    aliases={"Cpp": "C++", "CSharp": "C#", "C-Sharp": "C#", "JS": "JavaScript", "Golang": "Go"},
)

# How a run's corpus picks its `language` vocabulary (`assemble.languages`).
CORPUS_LANGUAGE_MODES: tuple[str, ...] = ("registry", "published")


def corpus_languages(registry_names: Iterable[str] = (), mode: str = "registry") -> Vocabulary:
    """The `language` ClassLabel vocabulary of a run's corpus.

    The published names come first, in the published order, so a published index never changes; with
    mode "registry" the run registry's other languages follow in registry order (the packaged entries,
    then the user's and the run config's files, each file in its own order), so a language added by a
    later file is appended after those already there. Mode "published" keeps the published nine only
    (the strict Themis-CodePreference layout). Names the published vocabulary already knows (an alias
    such as `Cpp`) are not added again.
    """
    if mode not in CORPUS_LANGUAGE_MODES:
        raise ValueError(f"corpus language mode {mode!r}; known: {', '.join(CORPUS_LANGUAGE_MODES)}")
    if mode == "published":
        return LANGUAGES
    extra: list[str] = []
    folded: set[str] = set()
    for name in registry_names:
        if name not in LANGUAGES and _fold(name) not in folded:
            extra.append(name)
            folded.add(_fold(name))
    if not extra:
        return LANGUAGES
    return Vocabulary(kind=LANGUAGES.kind, names=(*LANGUAGES.names, *extra), aliases=dict(LANGUAGES.aliases))


# The eight code languages in the order the paper lists them (alphabetical).
CODE_LANGUAGES: tuple[str, ...] = ("C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby")

# Spellings used by Themis-CodeRewardBench (`language` and `aspect` columns).
BENCHMARK_LANGUAGE_SPELLING: dict[str, str] = {
    "C": "C",
    "C#": "CSharp",
    "C++": "Cpp",
    "Go": "Go",
    "Java": "Java",
    "JavaScript": "JavaScript",
    "Python": "Python",
    "Ruby": "Ruby",
}
BENCHMARK_ASPECT_SPELLING: dict[str, str] = {name: name.replace(" and ", "_").replace(" ", "_") for name in CRITERIA}
