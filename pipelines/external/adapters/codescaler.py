"""CodeScaler: a question's solutions that passed all tests against ones that failed some."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipelines.core import Rejection
from pipelines.external.adapters.base import (
    FUNCTIONAL_CORRECTNESS,
    PROMPT_ORIGIN,
    Adapter,
    content_id,
    number,
    register_adapter,
)
from schemas import Candidate


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
    reasons: ClassVar[dict[str, str]] = {
        "invalid_measurement": "a measurement (cpu_time, memory, pass rate) is not a number",
        "pass_rate_out_of_range": "the rejected side's pass rate is outside [`min_rejected_pass_rate`, 1)",
    }
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
                return self.reject("invalid_measurement", "pass rate {value!r}", value=self.get(row, "rejected_pass_rate"))
            rate = rate / 100 if rate > 1 else rate
        return content_id(question, positive, negative), {"question": question, "positive": positive, "negative": negative,
                                                          "language": language, "rate": rate}

    def pairs(self, key: str, items: list[dict[str, Any]], statements: dict[str, str]) -> Iterator[Candidate | Rejection]:
        (item,) = items
        if item["rate"] is not None and not self.options.min_rejected_pass_rate <= item["rate"] < 1.0:
            yield self.reject("pass_rate_out_of_range", "rejected passes {rate:.2f} of the tests; kept: [{least}, 1)",
                              rate=item["rate"], least=self.options.min_rejected_pass_rate)
            return
        sides = self.code_sides(item["positive"], item["negative"], item["question"])
        if isinstance(sides, Rejection):
            yield sides
            return
        chosen, rejected = sides
        detail = f" (rejected passes {item['rate']:.2f} of the tests)" if item["rate"] is not None else ""
        yield self.candidate(key, key, FUNCTIONAL_CORRECTNESS, item["language"], (item["question"], PROMPT_ORIGIN), chosen, rejected,
                             verification=f"unverified here; CodeScaler: chosen passed all tests, rejected failed some{detail}")
