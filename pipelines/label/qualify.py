"""Judge qualification: before it labels, each judge votes in both orders on calibration pairs whose
better side is known (the run's execution-verified pairs, and optionally a CRB-format file), and is
measured against that truth.

Per judge, over its calibration pairs (its votes in each order decide a side: more matches than
contradictions picks `chosen`, fewer `rejected`, equal none):

- agreement: pairs whose votes (both orders pooled) pick the chosen side / pairs;
- consistency: pairs whose two orders pick the same side / pairs (position consistency);
- tie rate and parse-error rate: tie votes and unparsed votes / votes;

each with its Wilson 95 % interval. A judge qualifies when it was measured on at least `min_pairs`
pairs and the point estimates reach `min_agreement` and `min_consistency`. Its weight for
`aggregation: weighted` is the log-odds of its accuracy where it picked a side, Laplace-smoothed:
w = ln(p / (1 - p)), p = (agree + 1) / (agree + against + 2), and 0 when p <= 1/2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audit.agreement import proportion
from pipelines.label.voting import side
from schemas import EXECUTION, Vote

OnUnqualified = Literal["fail", "drop_judge", "truth_only"]


class QualifyConfig(BaseModel):
    """How judges are measured before they label, and what happens to one that falls short."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pairs: int = Field(64, ge=1, description="Calibration pairs drawn from the run's execution-verified pairs (lowest pair-id hash).")
    benchmark: str | None = Field(
        None, description="A CRB-format file (Parquet, JSONL, JSON, a folder) of further calibration pairs, e.g. a held-out "
        "slice; its `chosen` side is the truth.")
    min_pairs: int = Field(20, ge=1, description="Fewest calibration pairs a judge must be measured on to qualify.")
    min_agreement: float = Field(0.7, ge=0.0, le=1.0, description="Least agreement with the truth (share of calibration pairs).")
    min_consistency: float = Field(0.6, ge=0.0, le=1.0, description="Least position consistency (same side in both orders).")
    on_unqualified: OnUnqualified = Field(
        "fail", description="A judge below the thresholds: 'fail' the stage before any labelling call; 'drop_judge' goes on "
        "with the judges that qualify (fails when none does); 'truth_only' also goes on when none does, labelling by "
        "execution alone and dropping the pairs that need a judge (no_qualified_judge).")


@dataclass(frozen=True)
class Tally:
    """One judge's vote counts over calibration pairs."""

    pairs: int = 0
    agree: int = 0  # pairs whose votes pick the chosen side
    against: int = 0  # pairs whose votes pick the rejected side
    consistent: int = 0  # pairs whose two orders pick the same side
    votes: int = 0
    ties: int = 0
    errors: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def tally(votes: list[Vote]) -> dict[str, Tally]:
    """Each judge's counts from its votes on one calibration pair (execution's votes are the truth, not a judge)."""
    result = {}
    for judge in sorted({v.judge for v in votes if v.judge != EXECUTION}):
        own = [v for v in votes if v.judge == judge]
        picked = side(own)
        first = side([v for v in own if v.order == "chosen_first"])
        second = side([v for v in own if v.order == "chosen_second"])
        result[judge] = Tally(
            pairs=1, agree=int(picked == "chosen"), against=int(picked == "rejected"),
            consistent=int(first is not None and first == second), votes=len(own),
            ties=sum(v.outcome == "tie" for v in own), errors=sum(v.outcome == "error" for v in own),
        )
    return result


def weight(counts: Tally) -> float:
    """The judge's log-odds weight (see the module docstring)."""
    accuracy = (counts.agree + 1) / (counts.agree + counts.against + 2)
    return math.log(accuracy / (1 - accuracy)) if accuracy > 0.5 else 0.0


@dataclass(frozen=True)
class Qualification:
    """What calibration measured of one judge, and whether it may label."""

    judge: str
    pairs: int
    agreement: dict[str, Any]  # audit.agreement.proportion: value, k, n, ci95, reason
    consistency: dict[str, Any]
    tie_rate: dict[str, Any]
    error_rate: dict[str, Any]
    weight: float
    qualified: bool
    shortfalls: list[str]  # why not, one clause per threshold missed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Qualification:
        return cls(**data)

    def summary(self) -> str:
        """One line: the figures and, for a judge that falls short, why."""
        def figure(name: str, estimate: dict[str, Any]) -> str:
            if estimate["value"] is None:
                return f"{name} n/a"
            low, high = estimate["ci95"]
            return f"{name} {estimate['value']:.2f} [{low:.2f}, {high:.2f}]"

        measured = ", ".join((figure("agreement with truth", self.agreement), figure("position consistency", self.consistency),
                              figure("ties", self.tie_rate), figure("parse errors", self.error_rate)))
        verdict = "qualified" if self.qualified else "NOT qualified (" + "; ".join(self.shortfalls) + ")"
        return f"judge {self.judge}: {verdict}; {self.pairs} calibration pairs: {measured}"


def qualify(judge: str, counts: Tally, config: QualifyConfig) -> Qualification:
    """Measure `judge` from its calibration counts against the thresholds of `config`."""
    agreement = proportion(counts.agree, counts.pairs, "no calibration pairs")
    consistency = proportion(counts.consistent, counts.pairs, "no calibration pairs")
    shortfalls = []
    if counts.pairs < config.min_pairs:
        shortfalls.append(f"{counts.pairs} calibration pairs < min_pairs {config.min_pairs}")
    if counts.pairs and agreement["value"] < config.min_agreement:
        shortfalls.append(f"agreement {agreement['value']:.2f} < min_agreement {config.min_agreement:.2f}")
    if counts.pairs and consistency["value"] < config.min_consistency:
        shortfalls.append(f"consistency {consistency['value']:.2f} < min_consistency {config.min_consistency:.2f}")
    return Qualification(
        judge=judge, pairs=counts.pairs, agreement=agreement, consistency=consistency,
        tie_rate=proportion(counts.ties, counts.votes, "no votes"), error_rate=proportion(counts.errors, counts.votes, "no votes"),
        weight=weight(counts), qualified=not shortfalls, shortfalls=shortfalls,
    )


class UnqualifiedJudge(RuntimeError):
    """A judge fell short of the qualification thresholds and the config says to stop before labelling."""


def refusal(refused: list[Qualification], config: QualifyConfig, none_left: bool) -> str:
    """The stage's failure message: each refused judge's figures, then what the user can do (one line)."""
    figures = " | ".join(q.summary() for q in refused)
    what = ("no judge qualified" if none_left else "on_unqualified is 'fail'")
    return (f"{what}, so no pair was labelled: {figures}. Thresholds: min_pairs {config.min_pairs}, min_agreement "
            f"{config.min_agreement:.2f}, min_consistency {config.min_consistency:.2f}. Use a stronger judge, give more calibration "
            "pairs (label.qualify.benchmark), or set label.qualify.on_unqualified to drop_judge or truth_only")
