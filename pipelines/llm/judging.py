"""The judging protocol: the judge task, both presentation orders, vote outcomes, aggregation and keep rules.

Each pair is shown in both orders: `chosen_first` (the chosen response is A) and `chosen_second`
(it is B), half of the votes each, so that a judge's preference for a position cancels out. A
verdict that agrees with the expected direction is a match; the opposite is a contradiction;
TIE is a tie; an answer without a parseable verdict is an error, counted, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.llm.tasks import CHECKLISTS, TASKS, Parsed, Task, last_tag
from schemas import OrderCounts, Vote

ORDERS = ("chosen_first", "chosen_second")
VERDICTS = ("A", "B", "TIE")
VERDICT_PATTERN = r"\[VERDICT\](A|B|TIE)\[/VERDICT\]"  # for constrained decoding (vLLM structured outputs)


@TASKS.register("judge")
class JudgeTask(Task):
    """A rationale and a verdict (A, B or TIE) on one criterion."""

    name = "judge"

    def format_input(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """`record` holds the pair (prompt, chosen, rejected, criterion, language, fence) and the `order`."""
        chosen_first = record["order"] == "chosen_first"
        first, second = (record["chosen"], record["rejected"]) if chosen_first else (record["rejected"], record["chosen"])
        return self.messages(
            criterion=record["criterion"], checklist=CHECKLISTS[record["criterion"]], language=record["language"],
            fence=record.get("fence", ""), prompt=record["prompt"], response_a=first, response_b=second,
        )

    def parse_output(self, text: str) -> Parsed:
        value, reason = last_tag(text, "VERDICT")
        if value is None:
            return Parsed(None, reason)
        verdict = value.strip().strip(".").upper()
        if verdict not in VERDICTS:
            return Parsed(None, f"not a verdict: {value[:40]!r}")
        return Parsed({"verdict": verdict})


def outcome(order: str, verdict: str | None) -> str:
    """match / contradiction / tie / error of one verdict, given the order the pair was shown in."""
    if verdict is None:
        return "error"
    if verdict == "TIE":
        return "tie"
    chosen_label = "A" if order == "chosen_first" else "B"
    return "match" if verdict == chosen_label else "contradiction"


def count(votes: list[Vote], order: str) -> OrderCounts:
    outcomes = [v.outcome for v in votes if v.order == order]
    return OrderCounts(
        matches=outcomes.count("match"), contradictions=outcomes.count("contradiction"),
        ties=outcomes.count("tie"), errors=outcomes.count("error"),
    )


@dataclass(frozen=True)
class KeepRule:
    """Keep a pair when at least `min_matches` votes agree with the expected direction and at most
    `max_contradictions` oppose it (over both orders); with several judges, `consensus` is `all`
    (every judge's votes pass) or `pooled` (the votes of all judges counted together)."""

    min_matches: int = 6
    max_contradictions: int = 1
    consensus: str = "all"

    def __post_init__(self) -> None:
        if self.consensus not in ("all", "pooled"):
            raise ValueError(f"consensus must be 'all' or 'pooled', got {self.consensus!r}")

    def _passes(self, votes: list[Vote]) -> tuple[bool, str]:
        matches = sum(v.outcome == "match" for v in votes)
        contradictions = sum(v.outcome == "contradiction" for v in votes)
        if matches < self.min_matches:
            return False, f"too_few_matches: {matches} < {self.min_matches}"
        if contradictions > self.max_contradictions:
            return False, f"too_many_contradictions: {contradictions} > {self.max_contradictions}"
        return True, "kept"

    def decide(self, votes: list[Vote]) -> tuple[bool, str]:
        """(kept, reason) for a pair's votes."""
        if self.consensus == "pooled":
            return self._passes(votes)
        judges = sorted({v.judge for v in votes})
        if not judges:
            return False, "no_votes"
        for judge in judges:
            kept, reason = self._passes([v for v in votes if v.judge == judge])
            if not kept:
                return False, f"{reason} ({judge})"
        return True, "kept"


def margin(votes: list[Vote]) -> float:
    """(matches - contradictions) / votes: +1 all agree, -1 all oppose, 0 undecided or errors."""
    if not votes:
        return 0.0
    return (sum(v.outcome == "match" for v in votes) - sum(v.outcome == "contradiction" for v in votes)) / len(votes)
