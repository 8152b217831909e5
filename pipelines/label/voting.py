"""How the label stage turns votes into a decision: each vote's outcome, counts per order, the margin, keep rules.

A verdict that agrees with the expected direction is a match; the opposite is a contradiction; TIE is a tie;
an answer without a parseable verdict is an error, counted, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from schemas import OrderCounts, Vote

Consensus = Literal["all", "pooled"]  # how several judges' votes decide: each judge must pass, or the votes pooled
Aggregation = Literal["keep_rule", "weighted"]  # the keep rule's vote counts, or judges weighted by measured accuracy


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
    consensus: Consensus = "all"

    def __post_init__(self) -> None:
        if self.consensus not in get_args(Consensus):  # LabelConfig refuses other values; this guards direct callers
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


def side(votes: list[Vote]) -> str | None:
    """The side a set of votes picks: more matches than contradictions, `chosen`; fewer, `rejected`; else none."""
    matches = sum(v.outcome == "match" for v in votes)
    contradictions = sum(v.outcome == "contradiction" for v in votes)
    return "chosen" if matches > contradictions else "rejected" if contradictions > matches else None


@dataclass(frozen=True)
class WeightedRule:
    """Weighted majority of judges (Nitzan and Paroush): each judge's votes pick a side, x = +1 (chosen), -1
    (rejected) or 0 (none); the pair is kept when S = sum over judges of w_j * x_j > 0, w_j the judge's weight, the
    log-odds of its accuracy measured by qualification (pipelines.label.qualify.weight). A judge of accuracy 0.95
    (w = 2.94) thus outvotes two of 0.6 (w = 0.41 each)."""

    weights: dict[str, float]

    def score(self, votes: list[Vote]) -> float:
        total = 0.0
        for judge in sorted({v.judge for v in votes}):
            picked = side([v for v in votes if v.judge == judge])
            total += self.weights.get(judge, 0.0) * (1 if picked == "chosen" else -1 if picked == "rejected" else 0)
        return total

    def decide(self, votes: list[Vote]) -> tuple[bool, str]:
        """(kept, reason) for a pair's votes."""
        score = self.score(votes)
        return (True, "kept") if score > 0 else (False, f"weighted_score_not_positive: {score:.3f}")
