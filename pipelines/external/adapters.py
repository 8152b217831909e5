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
from pathlib import PurePosixPath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from parsers import LanguageRegistry
from pipelines.registry import Registry
from pipelines.stage import Rejection
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


def _ratio_text(ratio: float) -> str:
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


class Adapter:
    """Maps rows of one public set to candidates. Subclasses set the class attributes and implement
    `prepare` and `pairs`; a set whose pairs span rows sets `grouped` and keys rows by group."""

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
            return Rejection("unknown_language", "the row has no language, and the source sets no `language`")
        spelled = self.spellings.get(text.casefold(), text)
        if spelled not in self.registry:
            return Rejection("unknown_language", f"{text!r} is not in the language registry")
        name = self.registry[spelled].name
        if self.selected is not None and name not in self.selected:
            return Rejection("language_not_selected", f"{name} is not among {sorted(self.selected)}")
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
            return Rejection("empty_side", "the chosen or the rejected program is empty")
        if chosen.strip() == rejected.strip():
            return Rejection("identical_sides", "chosen and rejected are the same program")
        if prompt is not None and not prompt.strip():
            return Rejection("missing_prompt", "the row has no question or instruction")
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


# ---------------------------------------------------------------------------------------------
# Runtime / memory sets


class MeasuredOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pairs_per_group: int = Field(1, ge=1, description="Most pairs per criterion drawn from one group (each program in one pair).")
    time_floor: float = Field(10.0, ge=0, description="Runtimes below this count as this (timer resolution, the set's unit).")
    memory_floor: float = Field(1.0, ge=0, description="Memory below this counts as this (the set's unit).")


class CodeNetOptions(MeasuredOptions):
    statuses: tuple[str, ...] = Field(("Accepted",), description="Judge statuses whose submissions are paired.")


@register_adapter
class CodeNet(Adapter):
    """Runtime and memory pairs between accepted submissions of one user for one problem (Project CodeNet).

    Layout checked: the card https://huggingface.co/datasets/iNeil77/CodeNet/blob/c3ef4d3c06c97547073077f501ae7a285dc44a53/README.md
    (and its later revision f1e1be86; one config per language, split train, every column a string):
    s_id, p_id, u_id, date, language, original_language, filename_ext, status, cpu_time (ms),
    memory (KB), code_size, code. IBM's metadata uses submission_id / problem_id /
    user_id (github.com/IBM/Project_CodeNet README), tried second. Problem statements are not in the
    set: give a `problems` table (e.g. PIE's English translations) or get the fallback prompt.
    Rule (reference, per submitter): chosen at least `min_ratio` times faster (Runtime Efficiency) or
    smaller (Memory Efficiency) than rejected; only `statuses` (Accepted) are paired.
    """

    name = "codenet"
    roles = {
        "submission_id": ("s_id", "submission_id"),
        "problem_id": ("p_id", "problem_id"),
        "user_id": ("u_id", "user_id"),
        "language": ("language",),
        "status": ("status",),
        "cpu_time": ("cpu_time",),
        "memory": ("memory",),
        "code": ("code",),
    }
    optional = frozenset({"language"})  # else the source's `language`
    Options = CodeNetOptions
    grouped = True
    measures = True

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        status = self.text(row, "status")
        submission, problem, user = self.text(row, "submission_id"), self.text(row, "problem_id"), self.text(row, "user_id")
        code = self.text(row, "code")
        if status not in self.options.statuses:
            return Rejection("not_accepted", f"status {status!r}")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        cpu_time, memory = number(self.get(row, "cpu_time")), number(self.get(row, "memory"))
        if cpu_time is None or memory is None or cpu_time < 0 or memory < 0:
            return Rejection("invalid_measurement", f"cpu_time {self.get(row, 'cpu_time')!r}, memory {self.get(row, 'memory')!r}")
        if not code.strip():
            return Rejection("empty_side", f"submission {submission} has no code")
        item = {"submission_id": submission, "problem_id": problem, "user_id": user, "language": language,
                "cpu_time": cpu_time, "memory": memory, "code": code}
        return f"{self.fence(language)}/{problem}/{user}", item

    def row_key(self, file: str, row: Any) -> str:
        if isinstance(row, dict):
            for column in self.columns["submission_id"]:
                if row.get(column):
                    return f"external/codenet/{row[column]}"
        return super().row_key(file, row)

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        items = sorted(items, key=lambda item: item["submission_id"])
        if len(items) < 2:
            yield Rejection("single_submission", f"{key}: one accepted submission")
            return
        first = items[0]
        language, problem, user = first["language"], first["problem_id"], first["user_id"]
        prompt = self.contest_prompt(problem, language, statements, "IBM Project CodeNet")
        for criterion, measure, floor, unit in ((RUNTIME_EFFICIENCY, "cpu_time", self.options.time_floor, "ms"),
                                                (MEMORY_EFFICIENCY, "memory", self.options.memory_floor, "KB")):
            solutions = [Solution(item["submission_id"], item["code"], item[measure]) for item in items]
            chosen, best = select_pairs(solutions, f"{key}/{measure}", self.settings.min_ratio, floor, self.options.pairs_per_group)
            if not chosen:
                yield Rejection("ratio_below_threshold", f"{criterion}: best ratio {_ratio_text(best)} < {self.settings.min_ratio}")
            for pair in chosen:
                yield self.candidate(
                    f"{problem}/{user}/{slug(criterion)}/{pair.better.id}-{pair.worse.id}", f"{pair.better.id}-{pair.worse.id}",
                    criterion, language, prompt, pair.better.code, pair.worse.code,
                    verification=f"unverified here; CodeNet judge measured {measure} {pair.better.value:g} vs "
                                 f"{pair.worse.value:g} {unit} ({_ratio_text(pair.ratio)}x)",
                )


class VenusOptions(MeasuredOptions):
    pairs_per_group: int = Field(4, ge=1, description="Most pairs per criterion drawn from one problem (each solution in one pair).")
    time_floor: float = Field(1.0, ge=0, description="Runtimes below this count as this (ms).")


@register_adapter
class Venus(Adapter):
    """Runtime and memory pairs among the LeetCode solutions of one problem (Elfsong/Venus).

    Layout checked: https://huggingface.co/datasets/Elfsong/Venus/viewer (configs cpp, golang,
    java, javascript, python3, rust; split train; a row is one problem); the crawler in
    github.com/Elfsong/Venus (training_data_constructor.py reads `rt_list` / `mm_list` entries as
    {code, runtime|memory} with `int(solution[metric])`, and `content` as the problem description);
    and the sibling card https://huggingface.co/datasets/Elfsong/Venus_BP/blob/main/README.md:
    question_id, name, content (HTML statement), rt_list, mm_list, ... The runtime unit is ms; the
    memory unit is UNCONFIRMED (probably KB); both only enter as ratios. The config is per
    language: set the source's `language` (default Python, the reference's choice).
    Rule (reference): chosen at least `min_ratio` times faster / smaller than rejected.
    """

    name = "venus"
    roles = {
        "question_id": ("question_id", "id"),
        "content": ("content", "problem_description"),
        "runtime_solutions": ("rt_list",),
        "memory_solutions": ("mm_list",),
    }
    optional = frozenset({"runtime_solutions", "memory_solutions"})
    Options = VenusOptions
    default_language = "Python"
    measures = True

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        question, content = self.text(row, "question_id"), self.text(row, "content")
        language = self.fixed_language()
        if isinstance(language, Rejection):
            return language
        lists = {}
        for role, measure in (("runtime_solutions", "runtime"), ("memory_solutions", "memory")):
            value = self.get(row, role)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return Rejection("malformed_row", f"{self.columns[role][0]} is not a JSON list")
            solutions = []
            for index, entry in enumerate(value or []):
                measured = number(entry.get(measure)) if isinstance(entry, dict) else None
                if measured is not None and measured >= 0 and str(entry.get("code") or "").strip():
                    solutions.append({"id": str(index), "code": str(entry["code"]), "value": measured})
            lists[measure] = solutions
        if not lists["runtime"] and not lists["memory"]:
            return Rejection("missing_column", "no solutions with measurements (rt_list / mm_list)")
        row_id = f"{self.fence(language)}-{question}"
        return row_id, {"question_id": question, "prompt": html_to_text(content), "language": language, **lists}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if not item["prompt"]:
            yield Rejection("missing_prompt", "the problem has no statement")
            return
        prompt = (item["prompt"], PROMPT_ORIGIN)
        for criterion, measure, floor, unit in ((RUNTIME_EFFICIENCY, "runtime", self.options.time_floor, "ms"),
                                                (MEMORY_EFFICIENCY, "memory", self.options.memory_floor, "")):
            solutions = [Solution(s["id"], s["code"], s["value"]) for s in item[measure]]
            if len(solutions) < 2:
                yield Rejection("too_few_solutions", f"{criterion}: {len(solutions)} measured solution(s)")
                continue
            chosen, best = select_pairs(solutions, f"{key}/{measure}", self.settings.min_ratio, floor, self.options.pairs_per_group)
            if not chosen:
                yield Rejection("ratio_below_threshold", f"{criterion}: best ratio {_ratio_text(best)} < {self.settings.min_ratio}")
            for pair in chosen:
                sides = f"{pair.better.id}-{pair.worse.id}"
                yield self.candidate(
                    f"{key}/{slug(criterion)}/{sides}", f"{key}/{measure}/{sides}", criterion, item["language"], prompt,
                    pair.better.code, pair.worse.code,
                    verification=f"unverified here; LeetCode measured {measure} {pair.better.value:g} vs "
                                 f"{pair.worse.value:g}{(' ' + unit) if unit else ''} ({_ratio_text(pair.ratio)}x)",
                )


@register_adapter
class Ecco(Adapter):
    """Runtime pairs of ECCO's history-based editing split (CodeEff/ECCO, config `edit`).

    Layout checked: https://huggingface.co/datasets/CodeEff/ECCO/commit/f341a85deaac9dc1643577cd3780e8642e5413ae
    (the card: configs `edit` and `generate`, splits
    train/val/test; `generate_eval` holds runtimes of user solutions for the test problems only) and
    github.com/CodeEff/ECCO src/experiments/inference.py, which reads `input` (the slower program,
    to optimise), `target` (the faster one) and `problem_id` from `edit`, and `problem_description`
    from `generate`. Other `edit` columns and per-program runtimes are UNCONFIRMED, so no ratio rule:
    the set's order is the label (the reference takes the train split as is). Python only.
    Prompt: the `generate` config as the source's `problems` table (problem_id, problem_description),
    else the fallback.
    """

    name = "ecco"
    roles = {"problem_id": ("problem_id",), "slow": ("input",), "fast": ("target",)}
    default_language = "Python"

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        problem, slow, fast = self.text(row, "problem_id"), self.text(row, "slow"), self.text(row, "fast")
        language = self.fixed_language()
        if isinstance(language, Rejection):
            return language
        return content_id(problem, slow, fast), {"problem_id": problem, "slow": slow, "fast": fast, "language": language}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        rejection = self.sides_differ(item["fast"], item["slow"])
        if rejection:
            yield rejection
            return
        prompt = self.contest_prompt(item["problem_id"], item["language"], statements, "IBM Project CodeNet (ECCO)")
        yield self.candidate(key, key, RUNTIME_EFFICIENCY, item["language"], prompt, item["fast"], item["slow"],
                             verification="unverified here; ECCO orders the pair (target faster than input)")


class PieOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_floor: float = Field(0.0, ge=0, description="Runtimes below this count as this (the set's unit; PIE v2 reports seconds).")


@register_adapter
class Pie4Perf(Adapter):
    """Runtime pairs from PIE, "Learning Performance-Improving Code Edits" (iNeil77/pie4perf-Train, HQ train).

    The card of iNeil77/pie4perf-Train was not found in any reachable corpus: its columns are
    UNCONFIRMED. Roles try both public PIE layouts: v2 (github.com/LearningOpt/pie,
    finetuning/finetune.py reads `src_code` slow / `tgt_code` fast; `src_id` / `tgt_id`,
    `problem_id`) and v1 (https://huggingface.co/datasets/rootacess/pie-perf/raw/main/README.md and
    github.com/madaan/pie-perf README:
    user_id, problem_id, language, submission_id_v0/v1, cpu_time_v0/v1 (ms), memory_v0/v1,
    status_v0/v1, improvement_frac, `input` slow, `target` fast, ...). Measured runtimes, when a row
    has them (`slow_time` / `fast_time`), get the ratio rule; otherwise the set's order is the label.
    C++ (the reference's use).
    """

    name = "pie4perf"
    roles = {
        "problem_id": ("problem_id",),
        "slow": ("src_code", "input"),
        "fast": ("tgt_code", "target"),
        "slow_id": ("src_id", "submission_id_v0"),
        "fast_id": ("tgt_id", "submission_id_v1"),
        "slow_time": ("cpu_time_v0", "src_agg_runtime"),
        "fast_time": ("cpu_time_v1", "tgt_agg_runtime"),
    }
    optional = frozenset({"problem_id", "slow_id", "fast_id", "slow_time", "fast_time"})
    Options = PieOptions
    default_language = "C++"
    measures = True

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        slow, fast = self.text(row, "slow"), self.text(row, "fast")
        language = self.fixed_language()
        if isinstance(language, Rejection):
            return language
        slow_id, fast_id = self.get(row, "slow_id"), self.get(row, "fast_id")
        row_id = f"{slow_id}-{fast_id}" if slow_id is not None and fast_id is not None else content_id(slow, fast)
        times = (number(self.get(row, "slow_time")), number(self.get(row, "fast_time")))
        return row_id, {"problem_id": self.text(row, "problem_id"), "slow": slow, "fast": fast, "language": language, "times": times}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        rejection = self.sides_differ(item["fast"], item["slow"])
        if rejection:
            yield rejection
            return
        slow_time, fast_time = item["times"]
        verification = "unverified here; PIE orders the pair (target faster than source)"
        if slow_time is not None and fast_time is not None:
            base = max(fast_time, self.options.time_floor)
            ratio = slow_time / base if base > 0 else math.inf
            if ratio < self.settings.min_ratio:
                detail = f"{RUNTIME_EFFICIENCY}: ratio {_ratio_text(ratio)} < {self.settings.min_ratio}"
                yield Rejection("ratio_below_threshold", detail)
                return
            verification = f"unverified here; PIE measured {fast_time:g} vs {slow_time:g} ({_ratio_text(ratio)}x)"
        prompt = self.contest_prompt(item["problem_id"], item["language"], statements, "IBM Project CodeNet (PIE)")
        yield self.candidate(key, key, RUNTIME_EFFICIENCY, item["language"], prompt, item["fast"], item["slow"], verification)


# ---------------------------------------------------------------------------------------------
# Bug-fix sets


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


class CodeScalerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rejected_pass_rate: float = Field(
        0.5, ge=0.0, lt=1.0, description="With a `rejected_pass_rate` column: keep pairs whose rejected side passes at least "
                                         "this share of the tests, and not all (the reference's 'most but not all').")
    extract_code: bool = Field(True, description="Take the longest fenced code block of a Markdown answer.")


@register_adapter
class CodeScaler(Adapter):
    """Pairs of on-policy solutions, one passing all tests and one failing some (LARK-Lab/CodeScalerPair-51K).

    Layout: the card https://huggingface.co/datasets/LARK-Lab/CodeScalerPair-51K/blob/refs%2Fpr%2F1/README.md
    describes the data (Qwen3-8B-Base rollouts on DeepCoder problems; passing = positive, failing = negative;
    MIT) but its column list could not be retrieved: `question_content`, `code_pos`, `code_neg` are
    UNCONFIRMED (from third-party notes); set `columns` for your copy. The reference keeps pairs
    whose rejected side "passes most but not all test cases": that needs a pass-rate column, which is
    also UNCONFIRMED; name it as `columns: {rejected_pass_rate: ...}` to apply the rule (fractions in
    [0, 1]; values above 1 are read as percentages). Functional Correctness; Python.
    """

    name = "codescaler"
    roles = {
        "question": ("question_content", "question", "problem"),
        "positive": ("code_pos", "chosen", "pos"),
        "negative": ("code_neg", "rejected", "neg"),
        "rejected_pass_rate": (),
    }
    optional = frozenset({"rejected_pass_rate"})
    Options = CodeScalerOptions
    default_language = "Python"

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        question, positive, negative = self.text(row, "question"), self.text(row, "positive"), self.text(row, "negative")
        language = self.fixed_language()
        if isinstance(language, Rejection):
            return language
        rate = None
        if self.columns["rejected_pass_rate"]:
            rate = number(self.get(row, "rejected_pass_rate"))
            if rate is None:
                return Rejection("invalid_measurement", f"pass rate {self.get(row, 'rejected_pass_rate')!r}")
            rate = rate / 100 if rate > 1 else rate
        return content_id(question, positive, negative), {"question": question, "positive": positive, "negative": negative,
                                                          "language": language, "rate": rate}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if item["rate"] is not None and not self.options.min_rejected_pass_rate <= item["rate"] < 1.0:
            yield Rejection("pass_rate_out_of_range",
                            f"rejected passes {item['rate']:.2f} of the tests; kept: [{self.options.min_rejected_pass_rate}, 1)")
            return
        sides = self.code_sides(item["positive"], item["negative"], item["question"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        detail = f" (rejected passes {item['rate']:.2f} of the tests)" if item["rate"] is not None else ""
        yield self.candidate(key, key, FUNCTIONAL_CORRECTNESS, item["language"], (item["question"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CodeScaler: chosen passed all tests, rejected failed some{detail}")


class CodeRPileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[str, ...] = Field(
        ("code_augmentation_retrieval", "code_example_retrieval", "code_integration_retrieval", "code_refinement_retrieval",
         "code_simplification_retrieval", "pseudocode_retrieval", "tutorial_query_retrieval", "web_code_retrieval"),
        description="Task folders read (the reference's eight subsets, mapped to the generator's task names).")
    nl_languages: tuple[str, ...] = Field(("en",), description="Natural-language folders read.")
    top_k: int = Field(10, ge=1, description="The rejected side is drawn from the first top_k hard negatives.")
    zipf_exponent: float = Field(1.0, ge=0.0, description="P(k) ~ 1/(k+1)^s over the top_k negatives (s=0: uniform).")
    extract_code: bool = Field(True, description="Take the longest fenced code block of a document.")


CODER_PILE_GROUPS = ("text2code", "code2text", "code2code", "hybrid")
CODER_PILE_MAIN_TYPES = {  # generator task -> main type (FlagEmbedding research/BGE_Coder/data_generation/constant.py)
    "web_code_retrieval": "text2code", "code_contest_retrieval": "text2code", "text2sql_retrieval": "text2code",
    "error_message_retrieval": "text2code", "code_explanation_retrieval": "text2code", "api_usage_retrieval": "text2code",
    "bug_desc_retrieval": "text2code", "pseudocode_retrieval": "text2code", "tutorial_query_retrieval": "text2code",
    "algorithm_desc_retrieval": "text2code",
}


@register_adapter
class CodeRPile(Adapter):
    """Correctness pairs from CodeR-Pile retrieval triplets: chosen = the positive document's code,
    rejected = one of the top hard negatives, drawn with Zipfian weights (nebula2025/CodeR-Pile).

    Layout checked: the file tree of https://huggingface.co/datasets/nebula2025/CodeR-Pile (JSONL files
    `<main_type>/<en|zh>/<task>/<nl>-<codelang>-triplets.jsonl`, e.g.
    code2code/en/optimized_code_retrieval/en-python-triplets.jsonl; cc-by-nc-sa-4.0) and the
    generator, github.com/FlagOpen/FlagEmbedding research/BGE_Coder/data_generation
    (triplet_generator.py writes {prompt, query, pos: [one], neg: [...]}; constant.py names the code
    languages java, python, javascript, php, ruby, go, csharp, cplusplus, c, ... and maps tasks to
    text2code / code2text / code2code / hybrid). The order of `neg` in the published files
    (retrieval rank) is UNCONFIRMED. Language and task come from the file path (or `language` /
    `task` columns of other copies). Prompt: for text2code and hybrid tasks the query (a request in
    words); for code2code tasks the task instruction with "retrieve" read as "write", followed by
    the query code. code2text files (whose documents are prose) are not read.
    """

    name = "coder-pile"
    roles = {"instruction": ("prompt",), "query": ("query",), "positives": ("pos",), "negatives": ("neg",),
             "task": ("task_type", "task"), "language": ("code_language", "language")}
    optional = frozenset({"instruction", "task", "language"})
    Options = CodeRPileOptions
    spellings = {"cplusplus": "C++", "csharp": "C#"}

    _NAME = re.compile(r"^(?P<nl>[a-z_]+)-(?P<lang>[a-z_+#]+?)(?:-to-(?P<target>[a-z_+#]+))?-triplets\.jsonl?(?:\.gz)?$")

    def _path_parts(self, path: str) -> dict[str, str] | None:
        parts = PurePosixPath(path.replace("\\", "/")).parts
        match = self._NAME.match(parts[-1]) if parts else None
        if not match or len(parts) < 2:
            return None
        main = parts[-4] if len(parts) >= 4 else ""
        if main not in CODER_PILE_GROUPS:
            main = CODER_PILE_MAIN_TYPES.get(parts[-2], "code2code")
        return {"nl": match["nl"], "language": match["target"] or match["lang"], "task": parts[-2], "main": main}

    def wants_file(self, path: str) -> bool:
        parts = self._path_parts(path)
        if parts is None:
            return True  # not the published layout: rows must say their task and language
        return parts["main"] != "code2text" and parts["nl"] in self.options.nl_languages and parts["task"] in self.options.tasks

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        query, positives, negatives = self.text(row, "query"), self.get(row, "positives"), self.get(row, "negatives")
        parts = self._path_parts(file) or {}
        task = str(self.get(row, "task") or parts.get("task") or "")
        if not task:
            return Rejection("missing_column", "no task: neither a task column nor the published file layout")
        main = parts.get("main") or CODER_PILE_MAIN_TYPES.get(task, "code2code")
        language = self.language(self.get(row, "language") or parts.get("language") or self.settings.language)
        if isinstance(language, Rejection):
            return language
        if not isinstance(positives, list) or not positives or not isinstance(negatives, list):
            return Rejection("malformed_row", "pos must be a non-empty list and neg a list")
        instruction = str(self.get(row, "instruction") or "")
        row_id = f"{task}/{self.fence(language)}/{content_id(query, positives[0])}"
        return row_id, {"task": task, "main": main, "language": language, "instruction": instruction, "query": query,
                        "positive": str(positives[0]), "negatives": [str(n) for n in negatives[: self.options.top_k]]}

    def pick_negative(self, key: str, count: int) -> int:
        """Rank k in [0, count) with P(k) ~ 1/(k+1)^s, drawn from a hash of the row (reproducible)."""
        weights = [1.0 / (k + 1) ** self.options.zipf_exponent for k in range(count)]
        point = stable_rank(f"{key}\0negative") / 2**64 * sum(weights)
        for k, weight in enumerate(weights):
            point -= weight
            if point < 0:
                return k
        return count - 1

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if not item["negatives"]:
            yield Rejection("no_negatives", "the triplet has no hard negatives")
            return
        rank = self.pick_negative(key, len(item["negatives"]))
        sides = self.code_sides(item["positive"], item["negatives"][rank])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        if item["main"] == "code2code":
            instruction = re.sub(r"\bretrieve\b", "write", item["instruction"], count=1).strip()
            code = f"```{self.fence(item['language'])}\n{item['query'].strip()}\n```"
            prompt = f"{instruction}\n\n{code}" if instruction else item["query"]
        else:
            prompt = item["query"].strip()
        if not prompt.strip():
            yield Rejection("missing_prompt", "empty query")
            return
        yield self.candidate(key, key, FUNCTIONAL_CORRECTNESS, item["language"], (prompt, PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CodeR-Pile positive vs hard negative #{rank + 1} ({item['task']})")


# ---------------------------------------------------------------------------------------------
# Security sets


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    extract_code: bool = Field(True, description="Take the longest fenced code block of a Markdown answer.")


@register_adapter
class ProSec(Adapter):
    """Vulnerability fixes for CWE-inducing instructions (prosecalign/prosec-mixed-clm7b-inst).

    Layout checked: github.com/PurCL/ProSec src/mix_and_upload_original_w_fixed_batch.py (writes
    lang, cwe, original_instruction, original_code, fixed_code, benign, empty) and src/ts_utils.py
    (languages java, javascript, csharp, python, cpp, c); the card of
    https://huggingface.co/datasets/prosecalign/prosec-mixed-clm7b-inst holds only its YAML (509
    bytes), which was not readable: the column names are the generator's, UNCONFIRMED on the card.
    `benign == False` rows are security pairs (original_code flagged vulnerable, fixed_code passes
    re-detection); `benign == True` rows are utility-preservation pairs with no security preference
    and are dropped (`benign_pair`). Security Hardness, chosen = fixed_code, prompt =
    original_instruction.
    """

    name = "prosec"
    roles = {"language": ("lang",), "cwe": ("cwe",), "instruction": ("original_instruction",),
             "insecure": ("original_code",), "secure": ("fixed_code",), "benign": ("benign",)}
    optional = frozenset({"cwe", "benign", "language"})
    Options = CodeOptions

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        instruction, insecure, secure = self.text(row, "instruction"), self.text(row, "insecure"), self.text(row, "secure")
        benign = self.get(row, "benign")
        if benign is True or str(benign).lower() == "true":
            return Rejection("benign_pair", "a utility-preservation pair, not a security fix")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        return content_id(instruction, insecure, secure), {"instruction": instruction, "insecure": insecure, "secure": secure,
                                                            "language": language, "cwe": self.text(row, "cwe")}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        sides = self.code_sides(item["secure"], item["insecure"], item["instruction"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        cwe = f" ({item['cwe']})" if item["cwe"] else ""
        yield self.candidate(key, key, SECURITY_HARDNESS, item["language"], (item["instruction"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; ProSec: rejected flagged by a static detector{cwe}, chosen passes it")


@register_adapter
class CyberNative(Adapter):
    """Synthetic secure / vulnerable answers to one question (CyberNative/Code_Vulnerability_Security_DPO).

    Layout checked: https://huggingface.co/datasets/CyberNative/Code_Vulnerability_Security_DPO/tree/main (one file,
    secure_programming_dpo.json, 4.66k rows, apache-2.0) and public loaders of it, which read lang,
    vulnerability, system, question, chosen, rejected. Whether the file is a JSON array or JSON lines,
    and the exact `lang` spellings (e.g. "c++", "c#", "python"), are UNCONFIRMED: both file forms are
    read, and languages resolve through the registry's aliases (PHP, Swift, Kotlin, Fortran are
    dropped as unknown). Answers are Markdown: the longest fenced block is taken. Security Hardness,
    chosen = the secure answer, prompt = question.
    """

    name = "cybernative"
    roles = {"language": ("lang",), "question": ("question",), "chosen": ("chosen",), "rejected": ("rejected",),
             "vulnerability": ("vulnerability",)}
    optional = frozenset({"vulnerability", "language"})
    Options = CodeOptions

    def prepare(self, file: str, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | Rejection:
        question, chosen, rejected = self.text(row, "question"), self.text(row, "chosen"), self.text(row, "rejected")
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        return content_id(question, chosen, rejected), {"question": question, "chosen": chosen, "rejected": rejected,
                                                        "language": language, "vulnerability": self.text(row, "vulnerability")}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        sides = self.code_sides(item["chosen"], item["rejected"], item["question"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        about = f": {item['vulnerability'][:200]}" if item["vulnerability"] else ""
        yield self.candidate(key, key, SECURITY_HARDNESS, item["language"], (item["question"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CyberNative: synthetic vulnerable answer{about}")


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterSettings",
    "FALLBACK_PROMPT_ORIGIN",
    "Missing",
    "PROMPT_ORIGIN",
    "content_id",
    "extract_code",
    "html_to_text",
    "number",
    "register_adapter",
    "select_pairs",
    "stable_rank",
]
