"""System prompts of corpus rows: none, the pair's criterion, or all five criteria in a shuffled
order, drawn with configured probabilities; every draw is seeded from the pair id, so a rerun
(or another worker count) gives every row the same system prompt."""

from __future__ import annotations

import hashlib
import random
from functools import cache
from importlib.resources import files

import jinja2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import CRITERIA

TEMPLATE = "system_prompt.v1.j2"
MODES = ("none", "criterion", "all")

DESCRIPTIONS = {
    "Functional Correctness": "it does what the task asks, including edge cases, and handles errors.",
    "Runtime Efficiency": "it does less work for the same result, with better algorithms and data structures.",
    "Memory Efficiency": "it allocates and holds less memory for the same result.",
    "Security Hardness": "it treats input as untrusted, avoids unsafe calls and protects data.",
    "Readability and Maintainability": "it is clear, well named, well structured and easy to change.",
}


class SystemPromptShares(BaseModel):
    """Probabilities of the three kinds of system prompt (reference code: 0.15 / 0.60 / 0.25)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    none: float = Field(0.15, ge=0.0, le=1.0, description="No system prompt.")
    criterion: float = Field(0.60, ge=0.0, le=1.0, description="The pair's criterion.")
    all: float = Field(0.25, ge=0.0, le=1.0, description="All five criteria, in an order shuffled per pair.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> SystemPromptShares:
        total = self.none + self.criterion + self.all
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"system prompt shares must sum to 1, got {total:g}")
        return self


@cache
def _template() -> jinja2.Template:
    source = (files("pipelines.assemble") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(source)


def _generator(seed: int, pair_id: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}/{pair_id}/system".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def draw(pair_id: str, criterion: str, shares: SystemPromptShares, seed: int = 0) -> tuple[str, str]:
    """(mode, system prompt text) of one pair; the text is empty for mode `none`."""
    rng = _generator(seed, pair_id)
    u = rng.random()
    if u < shares.none:
        return "none", ""
    if u < shares.none + shares.criterion:
        return "criterion", _template().render(mode="criterion", criteria=[criterion], descriptions=DESCRIPTIONS).strip()
    order = list(CRITERIA)
    rng.shuffle(order)
    return "all", _template().render(mode="all", criteria=order, descriptions=DESCRIPTIONS).strip()
