"""Runtime and memory sets: solutions of one problem with measured run time or memory (CodeNet, Venus, ECCO, PIE)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.core import Rejection
from pipelines.external.adapters.base import (
    MEMORY_EFFICIENCY,
    PROMPT_ORIGIN,
    RUNTIME_EFFICIENCY,
    Adapter,
    Solution,
    content_id,
    html_to_text,
    number,
    ratio_text,
    register_adapter,
    select_pairs,
    slug,
)
from schemas import Candidate


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
    reasons: ClassVar[dict[str, str]] = {
        "not_accepted": "a submission whose status is not among `statuses`",
        "invalid_measurement": "a measurement (cpu_time, memory, pass rate) is not a number",
        "single_submission": "a user's only accepted submission of a problem",
        "ratio_below_threshold": "the most efficient pair is less than `min_ratio` times more efficient",
    }
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
            return self.reject("not_accepted", "status {status!r}", status=status)
        language = self.language(self.get(row, "language"))
        if isinstance(language, Rejection):
            return language
        cpu_time, memory = number(self.get(row, "cpu_time")), number(self.get(row, "memory"))
        if cpu_time is None or memory is None or cpu_time < 0 or memory < 0:
            return self.reject("invalid_measurement", "cpu_time {cpu_time!r}, memory {memory!r}", cpu_time=self.get(row, "cpu_time"),
                               memory=self.get(row, "memory"))
        if not code.strip():
            return self.reject("empty_side", "submission {submission} has no code", submission=submission)
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
            yield self.reject("single_submission", "{key}: one accepted submission", key=key)
            return
        first = items[0]
        language, problem, user = first["language"], first["problem_id"], first["user_id"]
        prompt = self.contest_prompt(problem, language, statements, "IBM Project CodeNet")
        for criterion, measure, floor, unit in ((RUNTIME_EFFICIENCY, "cpu_time", self.options.time_floor, "ms"),
                                                (MEMORY_EFFICIENCY, "memory", self.options.memory_floor, "KB")):
            solutions = [Solution(item["submission_id"], item["code"], item[measure]) for item in items]
            chosen, best = select_pairs(solutions, f"{key}/{measure}", self.settings.min_ratio, floor, self.options.pairs_per_group)
            if not chosen:
                yield self.reject("ratio_below_threshold", "{criterion}: best ratio {best} < {min_ratio}", criterion=criterion,
                                  best=ratio_text(best), min_ratio=self.settings.min_ratio)
            for pair in chosen:
                yield self.candidate(
                    f"{problem}/{user}/{slug(criterion)}/{pair.better.id}-{pair.worse.id}", f"{pair.better.id}-{pair.worse.id}",
                    criterion, language, prompt, pair.better.code, pair.worse.code,
                    verification=f"unverified here; CodeNet judge measured {measure} {pair.better.value:g} vs "
                                 f"{pair.worse.value:g} {unit} ({ratio_text(pair.ratio)}x)",
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
    reasons: ClassVar[dict[str, str]] = {
        "too_few_solutions": "a problem with fewer than two measured solutions for a criterion",
        "ratio_below_threshold": "the most efficient pair is less than `min_ratio` times more efficient",
    }
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
                    return self.reject("malformed_row", "{column} is not a JSON list", column=self.columns[role][0])
            solutions = []
            for index, entry in enumerate(value or []):
                measured = number(entry.get(measure)) if isinstance(entry, dict) else None
                if measured is not None and measured >= 0 and str(entry.get("code") or "").strip():
                    solutions.append({"id": str(index), "code": str(entry["code"]), "value": measured})
            lists[measure] = solutions
        if not lists["runtime"] and not lists["memory"]:
            return self.reject("missing_column", "no solutions with measurements (rt_list / mm_list)")
        row_id = f"{self.fence(language)}-{question}"
        return row_id, {"question_id": question, "prompt": html_to_text(content), "language": language, **lists}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if not item["prompt"]:
            yield self.reject("missing_prompt", "the problem has no statement")
            return
        prompt = (item["prompt"], PROMPT_ORIGIN)
        for criterion, measure, floor, unit in ((RUNTIME_EFFICIENCY, "runtime", self.options.time_floor, "ms"),
                                                (MEMORY_EFFICIENCY, "memory", self.options.memory_floor, "")):
            solutions = [Solution(s["id"], s["code"], s["value"]) for s in item[measure]]
            if len(solutions) < 2:
                yield self.reject("too_few_solutions", "{criterion}: {count} measured solution(s)", criterion=criterion, count=len(solutions))
                continue
            chosen, best = select_pairs(solutions, f"{key}/{measure}", self.settings.min_ratio, floor, self.options.pairs_per_group)
            if not chosen:
                yield self.reject("ratio_below_threshold", "{criterion}: best ratio {best} < {min_ratio}", criterion=criterion,
                                  best=ratio_text(best), min_ratio=self.settings.min_ratio)
            for pair in chosen:
                sides = f"{pair.better.id}-{pair.worse.id}"
                yield self.candidate(
                    f"{key}/{slug(criterion)}/{sides}", f"{key}/{measure}/{sides}", criterion, item["language"], prompt,
                    pair.better.code, pair.worse.code,
                    verification=f"unverified here; LeetCode measured {measure} {pair.better.value:g} vs "
                                 f"{pair.worse.value:g}{(' ' + unit) if unit else ''} ({ratio_text(pair.ratio)}x)",
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
    reasons: ClassVar[dict[str, str]] = {"ratio_below_threshold": "the most efficient pair is less than `min_ratio` times more efficient"}
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
                yield self.reject("ratio_below_threshold", "{criterion}: ratio {ratio} < {min_ratio}", criterion=RUNTIME_EFFICIENCY,
                                  ratio=ratio_text(ratio), min_ratio=self.settings.min_ratio)
                return
            verification = f"unverified here; PIE measured {fast_time:g} vs {slow_time:g} ({ratio_text(ratio)}x)"
        prompt = self.contest_prompt(item["problem_id"], item["language"], statements, "IBM Project CodeNet (PIE)")
        yield self.candidate(key, key, RUNTIME_EFFICIENCY, item["language"], prompt, item["fast"], item["slow"], verification)
