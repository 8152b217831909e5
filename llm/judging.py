"""The judge task: a versioned template and its verdict parser, shown in both presentation orders.

Each pair is shown in both orders: `chosen_first` (the chosen response is A) and `chosen_second`
(it is B), half of the votes each, so that a judge's preference for a position cancels out. A
verdict that agrees with the expected direction is a match; the opposite is a contradiction;
TIE is a tie; an answer without a parseable verdict is an error, counted, never dropped.
"""

from __future__ import annotations

from typing import Any

from llm.tasks import CHECKLISTS, TASKS, Parsed, Task, last_tag

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
