"""Adapters for the public preference sets the reference mixed into its corpus.

An adapter maps rows of a LOCAL copy of one set (nothing is downloaded) to `Candidate` pairs with
their criterion and the set's selection rule, or to a rejection that names why a row gave nothing.
Column names come from the set's public layout (each adapter says where it was checked) and can be
overridden per source (`columns: {role: column}`); a role lists the spellings tried in order.

Two steps, so that sets whose pairs span rows (CodeNet: submissions of one user for one problem)
work like the others: `prepare` validates one row and keys it (by its row id, or by its group),
`pairs` turns the rows of one key into candidates.

Ids: `pair_id` = `external/<set>/<row id>[/<criterion>/<sides>]`, where the row id is the set's own
id when it has one and a hash of the row's content otherwise, so reruns give the same ids.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from parsers import LanguageRegistry
from pipelines.core import Declared, DropReasons, Rejection, declared
from pipelines.core.registry import Registry
from schemas import Candidate, Origin
from schemas.vocab import ASPECTS

# The published criterion names (schemas.vocab), looked up by their aliases.
FUNCTIONAL_CORRECTNESS = ASPECTS.canonical("correctness")
RUNTIME_EFFICIENCY = ASPECTS.canonical("runtime")
MEMORY_EFFICIENCY = ASPECTS.canonical("memory")
SECURITY_HARDNESS = ASPECTS.canonical("security")

PROMPT_ORIGIN = "external"  # the set's own problem statement or question
FALLBACK_PROMPT_ORIGIN = "external_fallback"  # the set has none for this row: see `Adapter.fallback_prompt`


# ---------------------------------------------------------------------------------------------
# Small deterministic helpers


def stable_rank(text: str) -> int:
    """A 64-bit rank of `text`, the same on every worker and run (caps and pair choices use it)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def content_id(*parts: Any) -> str:
    """A short stable id from the content of a row that has no id of its own."""
    text = "\0".join(json.dumps(p, sort_keys=True, default=str) if not isinstance(p, str) else p for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def number(value: Any) -> float | None:
    """A measurement as a float: numbers, or strings such as "52", "52 ms", "16.4MB" (the leading number)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", str(value))
    return float(match.group(1)) if match else None


_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The code of a Markdown answer: its longest fenced block; text without fences is returned unchanged."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    return max(blocks, key=len).strip("\n") + "\n"


class _TextOfHtml(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "ul", "ol", "li", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif tag == "sup":
            self.parts.append("^")
        elif tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(text: str) -> str:
    """Readable text of an HTML problem statement (LeetCode's `content`); plain text passes through."""
    if "<" not in text:
        return html.unescape(text).strip()
    parser = _TextOfHtml()
    parser.feed(text)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True)
class Solution:
    """One program of a set with a measurement (runtime or memory; lower is better)."""

    id: str
    code: str
    value: float


@dataclass(frozen=True)
class MeasuredPair:
    better: Solution
    worse: Solution
    ratio: float


def select_pairs(solutions: list[Solution], key: str, min_ratio: float, floor: float, limit: int) -> tuple[list[MeasuredPair], float]:
    """Pairs whose worse side measures at least `min_ratio` times the better one, and the best ratio seen.

    A measurement below `floor` counts as `floor` (timer resolution: 0 ms against 4 ms is no 5x gap).
    Qualifying pairs are taken in the order of a hash of (key, ids), each solution in at most one
    pair, up to `limit`: deterministic, and spread over the set rather than always the extremes.
    """
    qualifying: list[tuple[int, MeasuredPair]] = []
    best = 0.0
    for better in solutions:
        for worse in solutions:
            if better.value >= worse.value:
                continue
            base = max(better.value, floor)
            ratio = worse.value / base if base > 0 else math.inf
            best = max(best, ratio)
            if ratio >= min_ratio and better.code.strip() != worse.code.strip():
                qualifying.append((stable_rank(f"{key}\0{better.id}\0{worse.id}"), MeasuredPair(better, worse, ratio)))
    chosen: list[MeasuredPair] = []
    used: set[str] = set()
    for _, pair in sorted(qualifying, key=lambda item: item[0]):
        if pair.better.id in used or pair.worse.id in used:
            continue
        chosen.append(pair)
        used.update((pair.better.id, pair.worse.id))
        if len(chosen) == limit:
            break
    return chosen, best


def ratio_text(ratio: float) -> str:
    return "inf" if math.isinf(ratio) else f"{ratio:.2f}"


# ---------------------------------------------------------------------------------------------
# The adapter base


class NoOptions(BaseModel):
    """This set has no options of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class AdapterSettings:
    """What a source's config tells its adapter (see pipelines.external.stage.ExternalSource)."""

    columns: dict[str, str] = field(default_factory=dict)  # role -> column, replacing the role's default spellings
    language: str | None = None  # language of every row, for sets without a language column
    languages: tuple[str, ...] | None = None  # keep only these languages
    min_ratio: float = 5.0
    options: dict[str, Any] = field(default_factory=dict)


class Missing(Exception):
    """A row lacks a column the adapter needs (the stage counts it as `missing_column`)."""


# The reasons every adapter can give; an adapter declares its own besides these in `reasons`.
ADAPTER_ROWS = DropReasons("every adapter", {
    "malformed_row": "a row that is not a JSON object, or a value of the wrong kind",
    "missing_column": "a row lacks a column the adapter needs",
    "unknown_language": "the row's language (or the source's `language`) is not in the language registry",
    "language_not_selected": "the row's language is not among the source's `languages`",
    "empty_side": "the chosen or the rejected program is empty",
    "identical_sides": "chosen and rejected are the same program",
    "missing_prompt": "the row has no question, instruction or problem statement",
})


class Adapter(Declared):
    """Maps rows of one public set to candidates. Subclasses set the class attributes and implement
    `prepare` and `pairs`; a set whose pairs span rows sets `grouped` and keys rows by group. `reasons`
    declares the set's own drop reasons, besides those of `ADAPTER_ROWS`."""

    name: ClassVar[str]
    roles: ClassVar[dict[str, tuple[str, ...]]]  # role -> column spellings tried in order
    optional: ClassVar[frozenset[str]] = frozenset()  # roles a row may lack
    Options: ClassVar[type[BaseModel]] = NoOptions
    default_language: ClassVar[str | None] = None  # for sets without a language column
    spellings: ClassVar[dict[str, str]] = {}  # the set's language spellings the registry does not know
    grouped: ClassVar[bool] = False
    measures: ClassVar[bool] = False  # whether the set has measurements, so that `min_ratio` applies

    def __init__(self, settings: AdapterSettings, registry: LanguageRegistry):
        unknown = sorted(set(settings.columns) - set(self.roles))
        if unknown:
            raise ValueError(f"{self.name}: unknown column roles {unknown}; known: {', '.join(self.roles)}")
        self.settings = settings
        self.registry = registry
        self.options: Any = self.Options.model_validate(settings.options)
        self.columns = {role: (settings.columns[role],) if role in settings.columns else names for role, names in self.roles.items()}
        self.selected = None
        if settings.languages:
            missing = [name for name in settings.languages if name not in registry]
            if missing:
                known = ", ".join(registry.names)
                raise ValueError(f"{self.name}: languages {missing} are not in the language registry; known: {known}")
            self.selected = frozenset(registry[name].name for name in settings.languages)

    @classmethod
    def declares(cls) -> DropReasons:
        """Every reason this adapter can give: its own and those of every adapter."""
        return DropReasons(cls.name, {**ADAPTER_ROWS.reasons, **cls.reasons})

    @classmethod
    def reject(cls, reason: str, template: str = "", /, **fields: Any) -> Rejection:
        """A rejection for one of `declares()`'s reasons (`UndeclaredReason` for any other)."""
        return declared(cls.declares(), Rejection(reason, template, **fields))

    # -- what subclasses implement

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        """(key, item) of one valid row: the row id, or the group key of a grouped set."""
        raise NotImplementedError

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        """The candidates of the items of one key (one item unless the set is grouped)."""
        raise NotImplementedError

    def wants_file(self, path: str) -> bool:
        """Whether to read a data file of the source at all (sets laid out as many files)."""
        return True

    def row_key(self, file: str, row: Any) -> str:
        """An id for a drop record of a row that did not prepare (best effort)."""
        return f"external/{self.name}/{content_id(row)}"

    # -- shared steps

    def get(self, row: dict[str, Any], role: str) -> Any:
        """The value of a role's column; `Missing` when no spelling is present (None for optional roles)."""
        for column in self.columns[role]:
            if column in row and row[column] is not None:
                return row[column]
        if role in self.optional:
            return None
        raise Missing(f"lacks column {' / '.join(self.columns[role])} ({role})")

    def text(self, row: dict[str, Any], role: str) -> str:
        value = self.get(row, role)
        return "" if value is None else str(value)

    def language(self, value: Any) -> str | Rejection:
        """The registry's canonical name of a set's language value, or why the row is dropped."""
        text = str(value if value is not None else self.settings.language or self.default_language or "").strip()
        if not text:
            return self.reject("unknown_language", "the row has no language, and the source sets no `language`")
        spelled = self.spellings.get(text.casefold(), text)
        if spelled not in self.registry:
            return self.reject("unknown_language", "{value!r} is not in the language registry", value=text)
        name = self.registry[spelled].name
        if self.selected is not None and name not in self.selected:
            return self.reject("language_not_selected", "{language} is not among {selected}", language=name, selected=sorted(self.selected))
        return name

    def fixed_language(self) -> str | Rejection:
        """The language of a set without a language column: the source's `language`, else the set's."""
        return self.language(None)

    def fence(self, language: str) -> str:
        return self.registry[language].fence

    def candidate(self, suffix: str, row_id: str, criterion: str, language: str, prompt: tuple[str, str],
                  chosen: str, rejected: str, verification: str | None = None) -> Candidate:
        text, origin = prompt
        return Candidate(
            pair_id=f"external/{self.name}/{suffix}",
            source=f"external:{self.name}",
            criterion=criterion,
            language=language,
            prompt=text,
            prompt_origin=origin,
            chosen=chosen,
            rejected=rejected,
            origin=Origin(instruct_source=self.name, instruct_row=row_id),
            verification=verification,
        )

    def contest_prompt(self, problem_id: str, language: str, statements: dict[str, str], archive: str) -> tuple[str, str]:
        """The problem statement from the source's `problems` table, else the documented fallback:
        the problem named by id, with its archive and language (prompt_origin `external_fallback`,
        so that instruction recovery can replace it)."""
        statement = statements.get(problem_id, "").strip() if problem_id else ""
        if statement:
            return html_to_text(statement), PROMPT_ORIGIN
        return self.fallback_prompt(problem_id, language, archive), FALLBACK_PROMPT_ORIGIN

    @staticmethod
    def fallback_prompt(problem_id: str, language: str, archive: str) -> str:
        return (f"Solve programming contest problem {problem_id or '(unnamed)'} from {archive} in {language}. "
                "The program reads the test input from standard input and writes the answer to standard output.")

    @staticmethod
    def sides_differ(chosen: str, rejected: str, prompt: str | None = None) -> Rejection | None:
        """Why a pair is no preference: an empty side, the same program twice, or (given) an empty prompt."""
        if not chosen.strip() or not rejected.strip():
            return ADAPTER_ROWS.reject("empty_side", "the chosen or the rejected program is empty")
        if chosen.strip() == rejected.strip():
            return ADAPTER_ROWS.reject("identical_sides", "chosen and rejected are the same program")
        if prompt is not None and not prompt.strip():
            return ADAPTER_ROWS.reject("missing_prompt", "the row has no question or instruction")
        return None

    def code_sides(self, chosen: str, rejected: str, prompt: str | None = None) -> tuple[str, str] | Rejection:
        """(chosen, rejected) as programs (the longest fenced block of each where the options say `extract_code`),
        or why they are no preference."""
        if getattr(self.options, "extract_code", False):
            chosen, rejected = extract_code(chosen), extract_code(rejected)
        return self.sides_differ(chosen, rejected, prompt) or (chosen, rejected)


ADAPTERS: Registry[type[Adapter]] = Registry("external preference set")


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    return ADAPTERS.register(cls.name)(cls)
