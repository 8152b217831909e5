"""The `dedup` stage: exact and MinHash-LSH near duplicates dropped (the transforms: pipelines.dedup.transforms)."""

from __future__ import annotations

from typing import Literal, get_args

import apache_beam as beam
from pydantic import Field

from pipelines.core import (
    DROPPED,
    SideTable,
    Stage,
    StageConfig,
    StageResult,
    inputs_field,
    register_stage,
)
from pipelines.dedup.filters import DUPLICATES
from pipelines.dedup.transforms import (
    KEYS,
    DropDuplicates,
    FindDuplicates,
    candidate_columns,
    candidate_rank,
    candidate_text,
    packed,
)
from schemas import Candidate, ClusterMember

STAGE = "dedup"
DedupKey = Literal["after", "before", "chosen", "rejected", "pair"]  # the names of transforms.KEYS
assert set(get_args(DedupKey)) == set(KEYS), "DedupKey and pipelines.dedup.transforms.KEYS name the same keys"


class DedupConfig(StageConfig):
    """Which text identifies a pair, and how similar two pairs must be to count as duplicates."""

    inputs: list[str] = inputs_field("parse", description="Stages whose Candidate records are deduplicated.")
    key: DedupKey = Field("after", description="Text compared: after (chosen), before (rejected) or pair (both sides).")
    threshold: float = Field(0.7, gt=0.0, le=1.0, description="Estimated Jaccard similarity at which two pairs are near duplicates.")
    ngram: int = Field(5, ge=1, description="Tokens per shingle (5 for commit contents, 20 for the final corpus).")
    num_perm: int = Field(256, ge=16, le=1024, description="MinHash permutations.")
    seed: int = Field(1, description="MinHash seed.")
    max_bucket_pairs: int = Field(64, ge=1, description="Each bucket member is paired with at most this many later members.")
    batch_size: int = Field(512, ge=1, description="Documents signed per batch.")


@register_stage
class Dedup(Stage[DedupConfig]):
    """Exact and MinHash-LSH near dedup of candidate pairs, with a cluster table that says why."""

    name = STAGE
    Config = DedupConfig
    input_type = Candidate
    output_type = Candidate
    key_field = "pair_id"
    drops = (DUPLICATES,)

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config = self.config
        records = list(inputs.values()) | "AllCandidates" >> beam.Flatten()
        columns = candidate_columns(KEYS[config.key])

        def keys(label: str) -> beam.PCollection:
            """The records read again, as Arrow tables of only the columns that identify, rank and compare them (the
            duplicates are found from these; the whole records are read once, when the decisions are applied)."""
            return self.read_inputs(pipeline, label, columns, batched=True)

        decisions, members = keys("Keys") | "FindDuplicates" >> FindDuplicates(
            STAGE, "pair_id", candidate_rank, candidate_text(KEYS[config.key]), config, reread=keys, tables=True
        )
        applied = records | "ApplyDecisions" >> beam.ParDo(DropDuplicates(STAGE, "pair_id"), packed(decisions, "Decisions")).with_outputs(
            DROPPED, main="kept"
        )
        return StageResult(applied.kept, [applied[DROPPED]], {"clusters": SideTable(members, ClusterMember, "record_id")})
