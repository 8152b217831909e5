"""The `parse` stage: tree-sitter facts for both sides of every candidate pair, and code-aware filters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from pydantic import Field

from parsers import CodeFacts, LanguageRegistry, parse
from pipelines.core import (
    DROPPED,
    Stage,
    StageConfig,
    StageResult,
    drop_record,
    inputs_field,
    register_stage,
)
from pipelines.run.config import ConfigError
from schemas import Candidate, from_row, to_row

STAGE = "parse"


class ParseConfig(StageConfig):
    """Which candidates are read and which are dropped."""

    inputs: list[str] = inputs_field("synthesize", description="Stages whose Candidate records are parsed.")
    max_error_share: dict[str, float] = Field(
        default_factory=lambda: {"default": 0.1},
        description="Largest share of bytes under ERROR nodes per side, by language ('default' for the rest). "
        "has_error alone is no gate: compiling C, C++ and C# files often have some.",
    )
    min_depth: int = Field(3, ge=1, description="Smallest named-node tree depth of each side.")
    max_bytes: int = Field(100_000, gt=0, description="Largest side, in bytes.")
    max_lines: int = Field(3_000, gt=0, description="Largest side, in lines.")


class ParseBothSides(beam.DoFn):
    """Parses chosen and rejected, applies the filters in order, and attaches the facts to kept pairs."""

    def __init__(self, config: ParseConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        candidate = from_row(Candidate, row)
        reason, detail, facts = self.check(candidate)
        if reason is not None:
            yield drop_record(STAGE, candidate.pair_id, reason, detail, _brief(row))
            return
        chosen, rejected = facts  # type: ignore[misc]
        yield to_row(dataclasses.replace(candidate, chosen_facts=chosen.summary(), rejected_facts=rejected.summary()))

    def threshold(self, language: str) -> float:
        shares = self.config.max_error_share
        return shares.get(language, shares.get("default", 1.0))

    def check(self, candidate: Candidate) -> tuple[str | None, str, tuple[CodeFacts, CodeFacts] | None]:
        """(reason, detail, None) for a pair to drop, else (None, "", (chosen facts, rejected facts))."""
        if not candidate.chosen.strip() or not candidate.rejected.strip():
            return "empty_side", "chosen" if not candidate.chosen.strip() else "rejected", None
        if candidate.chosen == candidate.rejected:
            return "identical_sides", "", None
        if candidate.language not in self.registry:
            return "unknown_language", candidate.language, None
        spec = self.registry[candidate.language]
        chosen, rejected = parse(candidate.chosen, spec), parse(candidate.rejected, spec)
        for side, facts in (("chosen", chosen), ("rejected", rejected)):
            if facts.bytes > self.config.max_bytes:
                return "too_long", f"{side}: {facts.bytes} bytes", None
            if facts.lines > self.config.max_lines:
                return "too_long", f"{side}: {facts.lines} lines", None
        limit = self.threshold(spec.name)
        failing = [(side, facts) for side, facts in (("chosen", chosen), ("rejected", rejected)) if facts.error_share > limit]
        if len(failing) == 1:
            side, facts = failing[0]
            other = self._clean_elsewhere(candidate.chosen if side == "chosen" else candidate.rejected, spec.name)
            if other is not None:
                return "language_mismatch", f"{side} parses as {other}, the pair is {spec.name}", None
        if failing:
            side, facts = failing[0]
            return "error_share_above_threshold", f"{side}: {facts.error_share:.3f} > {limit}", None
        shallow = [(side, f.depth) for side, f in (("chosen", chosen), ("rejected", rejected)) if f.depth < self.config.min_depth]
        if shallow:
            return "too_shallow", f"{shallow[0][0]}: depth {shallow[0][1]}", None
        if chosen.tokens == rejected.tokens:
            return "identical_after_normalisation", "same tokens once comments and white space are ignored", None
        return None, "", (chosen, rejected)

    def _clean_elsewhere(self, code: str, language: str) -> str | None:
        """Another registered language that parses `code` without errors, if any.

        Several grammars accept many snippets; the one that also finds the most functions and
        classes in it wins (a Java class parses in the C grammar too, but as nothing in particular).
        """
        scores = []
        for spec in self.registry:
            if spec.name == language:
                continue
            facts = parse(code, spec)
            if not facts.has_error:
                scores.append((-(len(facts.functions) + len(facts.classes)), spec.name))
        return min(scores)[1] if scores else None


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "pair_id": row["pair_id"], "source": row["source"], "language": row["language"], "criterion": row["criterion"],
        "chosen": row["chosen"][:1000], "rejected": row["rejected"][:1000],
    }


@register_stage
class Parse(Stage[ParseConfig]):
    """Tree-sitter facts on both sides of each pair; drops pairs that are broken, trivial or too long."""

    name = STAGE
    Config = ParseConfig
    input_type = Candidate
    output_type = Candidate
    key_field = "pair_id"

    @classmethod
    def check(cls, config: ParseConfig, registry: LanguageRegistry) -> None:
        unknown = [key for key in config.max_error_share if key != "default" and key not in registry]
        if unknown:
            raise ConfigError(f"stages.parse.max_error_share: unknown languages {unknown}; known: {', '.join(registry.names)} "
                              "(and 'default')")

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        candidates = list(inputs.values()) | "AllCandidates" >> beam.Flatten()
        parsed = candidates | "ParseBothSides" >> beam.ParDo(ParseBothSides(config, self.context.languages)).with_outputs(
            DROPPED, main="kept"
        )
        return StageResult(parsed.kept, [parsed[DROPPED]])
