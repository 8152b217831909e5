"""The `parse` stage: tree-sitter facts for both sides of every candidate pair, and code-aware filters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from pydantic import Field

from parsers import LanguageRegistry, parse
from pipelines.core import (
    DROPPED,
    Filter,
    Rejection,
    Stage,
    StageConfig,
    StageResult,
    inputs_field,
    register_stage,
    route,
)
from pipelines.parse.filters import (
    FILTERS,
    DiffersInCode,
    KnownLanguage,
    MinDepth,
    ParsedPair,
    ParsesCleanly,
    SizeLimit,
    TwoSides,
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
    """Applies the filters of the pair as it comes, parses chosen and rejected once, applies the filters of
    the facts, and attaches the facts to kept pairs (pipelines.parse.filters has the filters, in order)."""

    def __init__(self, config: ParseConfig, registry: LanguageRegistry):
        self.config = config
        self.registry = registry
        self.before_parse = (TwoSides(), KnownLanguage(registry))
        self.after_parse = (SizeLimit(config.max_bytes, config.max_lines), ParsesCleanly(registry, config.max_error_share),
                            MinDepth(config.min_depth), DiffersInCode())

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        candidate = from_row(Candidate, row)
        checked = self.check(candidate)
        if isinstance(checked, tuple):
            by, rejection = checked
            yield route(STAGE, candidate.pair_id, rejection, _brief(row), by)
            return
        yield to_row(dataclasses.replace(candidate, chosen_facts=checked.chosen.summary(), rejected_facts=checked.rejected.summary()))

    def check(self, candidate: Candidate) -> ParsedPair | tuple[Filter, Rejection]:
        """The pair with both sides parsed, or the first filter that drops it and why."""
        for pair_filter in self.before_parse:
            rejection = pair_filter.check(candidate)
            if rejection is not None:
                return pair_filter, rejection
        spec = self.registry[candidate.language]
        parsed = ParsedPair(candidate, spec, parse(candidate.chosen, spec), parse(candidate.rejected, spec))
        for facts_filter in self.after_parse:
            rejection = facts_filter.check(parsed)
            if rejection is not None:
                return facts_filter, rejection
        return parsed


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
    drops = FILTERS

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
