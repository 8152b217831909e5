"""Exact and MinHash-LSH near deduplication as Beam transforms, and the `dedup` stage.

Recipe (no process ever holds the signatures of all documents):
1. exact: records grouped by a hash of their normalised key text; the best-ranked one of each group stays;
2. sign: token streams -> vectorised shingles -> MinHash signatures, in batches;
3. band: one `(band, band hash) -> id` record per band, grouped with GroupByKey; documents sharing a
   bucket are candidate pairs (each member paired with at most `max_bucket_pairs` later members);
4. verify: only the signatures of candidate documents are gathered (a side input), and a pair is
   an edge when its estimated Jaccard reaches the threshold;
5. cluster: connected components of the edges (the edge list is O(duplicates), not O(documents));
   the representative is the best-ranked member: earliest committer time, then smallest id.
Documents with fewer tokens than the shingle size are never near-deduplicated (only exactly):
they cannot be shingled, and empty shingle sets would all look identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from pydantic import Field, field_validator

from parsers import strip_comments
from pipelines.dedup.minhash import Banding, estimated_jaccard, optimal_banding, signatures, token_hashes
from pipelines.stage import DROPPED, Stage, StageConfig, StageResult, SideTable, drop_record, metrics_namespace, register_stage
from schemas import Candidate, ClusterMember

STAGE = "dedup"
NO_TIME = 2**62  # records without a commit time rank after all dated ones
KEYS = {"after": "chosen", "before": "rejected", "chosen": "chosen", "rejected": "rejected", "pair": "pair"}


class DedupConfig(StageConfig):
    """Which text identifies a pair, and how similar two pairs must be to count as duplicates."""

    inputs: list[str] = Field(default_factory=lambda: ["parse"], description="Stages whose Candidate records are deduplicated.")
    key: str = Field("after", description="Text compared: after (chosen), before (rejected) or pair (both sides).")
    threshold: float = Field(0.7, gt=0.0, le=1.0, description="Estimated Jaccard similarity at which two pairs are near duplicates.")
    ngram: int = Field(5, ge=1, description="Tokens per shingle (5 for commit contents, 20 for the final corpus).")
    num_perm: int = Field(256, ge=16, le=1024, description="MinHash permutations.")
    seed: int = Field(1, description="MinHash seed.")
    max_bucket_pairs: int = Field(64, ge=1, description="Each bucket member is paired with at most this many later members.")
    batch_size: int = Field(512, ge=1, description="Documents signed per batch.")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value not in KEYS:
            raise ValueError(f"must be one of {sorted(KEYS)}")
        return value


def candidate_text(key: str) -> Callable[[dict[str, Any]], bytes]:
    """The comment-free code of a candidate's chosen side, rejected side or both (as UTF-8 bytes)."""

    def side(row: dict[str, Any], name: str) -> bytes:
        facts = row.get(f"{name}_facts")
        spans = facts["comment_spans"] if facts is not None else []  # not parsed: comments are not known
        return strip_comments(row[name], spans)

    def text(row: dict[str, Any]) -> bytes:
        if key == "pair":
            return side(row, "chosen") + b"\n\x00\n" + side(row, "rejected")
        return side(row, key)

    return text


def candidate_rank(row: dict[str, Any]) -> tuple[int, str]:
    committed_at = row.get("committed_at")
    return (NO_TIME if committed_at is None else int(committed_at), row["pair_id"])


class _ExactGroups(beam.DoFn):
    """Keeps the best-ranked record of each group of identical normalised keys."""

    def __init__(self, stage: str, id_field: str, rank: Callable[[dict[str, Any]], tuple]):
        self.stage = stage
        self.id_field = id_field
        self.rank = rank

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        _, rows = element
        ordered = sorted(rows, key=self.rank)
        keeper = ordered[0]
        yield keeper
        if len(ordered) == 1:
            return
        rep = keeper[self.id_field]
        yield beam.pvalue.TaggedOutput("members", _member(rep, rep, "exact", 1.0, True))
        for row in ordered[1:]:
            yield beam.pvalue.TaggedOutput("members", _member(row[self.id_field], rep, "exact", 1.0, False))
            yield drop_record(self.stage, row[self.id_field], "exact_duplicate", f"same normalised text as {rep}", _brief(row))


def _member(record: str, rep: str, kind: str, similarity: float, kept: bool) -> dict[str, Any]:
    return {"record_id": record, "cluster_id": rep, "representative_id": rep, "kind": kind,
            "similarity": round(similarity, 6), "kept": kept}


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:500] if isinstance(v, str) else v) for k, v in row.items() if not k.endswith("_facts")}


class _SignBatch(beam.DoFn):
    """(id, rank, signature bytes) per document; short documents are counted and left out."""

    def __init__(self, stage: str, ngram: int, num_perm: int, seed: int):
        self.stage = stage
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed

    def process(self, batch: list[tuple[str, tuple, bytes]]) -> Iterator[tuple[str, tuple, bytes]]:
        sigs = signatures([text for _, _, text in batch], ngram=self.ngram, num_perm=self.num_perm, seed=self.seed)
        short = Metrics.counter(metrics_namespace(self.stage), "short_documents_not_near_deduplicated")
        for (doc_id, rank, _), sig in zip(batch, sigs):
            if sig is None:
                short.inc()
                continue
            yield doc_id, rank, sig.tobytes()


def _bucket_pairs(limit: int) -> Callable[[tuple[bytes, Iterable[str]]], Iterator[tuple[str, str]]]:
    def pairs(element: tuple[bytes, Iterable[str]]) -> Iterator[tuple[str, str]]:
        members = sorted(set(element[1]))
        for i, first in enumerate(members):
            for second in members[i + 1 : i + 1 + limit]:
                yield first, second

    return pairs


def _as_signature(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint32)


class _Verify(beam.DoFn):
    """Keeps candidate pairs whose estimated Jaccard reaches the threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, pair: tuple[str, str], signed: dict[str, tuple[tuple, bytes]]) -> Iterator[tuple[str, str, float]]:
        first, second = signed[pair[0]], signed[pair[1]]
        similarity = estimated_jaccard(_as_signature(first[1]), _as_signature(second[1]))
        if similarity >= self.threshold:
            yield pair[0], pair[1], similarity


class _Components(beam.DoFn):
    """Connected components of the verified edges; each member is compared with its representative."""

    def process(self, element: tuple[int, Iterable[tuple[str, str, float]]], signed: dict[str, tuple[tuple, bytes]]) -> Iterator[dict[str, Any]]:
        parent: dict[str, str] = {}

        def find(node: str) -> str:
            root = node
            while parent.setdefault(root, root) != root:
                root = parent[root]
            while parent[node] != root:
                parent[node], node = root, parent[node]
            return root

        for first, second, _ in element[1]:
            a, b = find(first), find(second)
            if a != b:
                parent[max(a, b)] = min(a, b)
        components: dict[str, list[str]] = {}
        for node in sorted(parent):
            components.setdefault(find(node), []).append(node)
        for members in components.values():
            rep = min(members, key=lambda m: (tuple(signed[m][0]), m))
            rep_sig = _as_signature(signed[rep][1])
            for member in members:
                similarity = 1.0 if member == rep else estimated_jaccard(_as_signature(signed[member][1]), rep_sig)
                yield _member(member, rep, "near", similarity, member == rep)


class SimilarPairs(beam.PTransform):
    """Records -> (verified edges (id, id, similarity), signatures of the candidate documents as a side input)."""

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, *, threshold: float, ngram: int,
                 num_perm: int, seed: int, max_bucket_pairs: int, batch_size: int):
        super().__init__()
        self.stage, self.id_field, self.rank, self.text = stage, id_field, rank, text
        self.threshold, self.ngram, self.num_perm, self.seed = threshold, ngram, num_perm, seed
        self.max_bucket_pairs, self.batch_size = max_bucket_pairs, batch_size
        self.banding: Banding = optimal_banding(threshold, num_perm)

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.pvalue.AsDict]:
        id_field, rank, text, banding = self.id_field, self.rank, self.text, self.banding
        signed = (
            records
            | "Texts" >> beam.Map(lambda row: (row[id_field], rank(row), text(row)))
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self.batch_size), max_batch_size=self.batch_size)
            | "Sign" >> beam.ParDo(_SignBatch(self.stage, self.ngram, self.num_perm, self.seed))
        )
        pairs = (
            signed
            | "BandKeys" >> beam.FlatMap(lambda doc: [(key, doc[0]) for key in banding.keys(_as_signature(doc[2]))])
            | "GroupBands" >> beam.GroupByKey()
            | "BucketPairs" >> beam.FlatMap(_bucket_pairs(self.max_bucket_pairs))
            | "DistinctPairs" >> beam.Distinct()
        )
        candidates = (
            pairs
            | "CandidateIds" >> beam.FlatMap(lambda pair: [(pair[0], True), (pair[1], True)])
            | "OneEach" >> beam.CombinePerKey(any)
        )
        candidate_signatures = signed | "KeepCandidates" >> beam.FlatMap(
            lambda doc, ids: [(doc[0], (doc[1], doc[2]))] if doc[0] in ids else [], ids=beam.pvalue.AsDict(candidates)
        )
        lookup = beam.pvalue.AsDict(candidate_signatures)
        return pairs | "Verify" >> beam.ParDo(_Verify(self.threshold), lookup), lookup


class NearDuplicates(beam.PTransform):
    """Records -> ClusterMember rows for every record in a near-duplicate cluster (see module docstring)."""

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, **options: Any):
        super().__init__()
        self.similar = SimilarPairs(stage, id_field, rank, text, **options)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        edges, lookup = records | "SimilarPairs" >> self.similar
        return (
            edges
            | "AllEdges" >> beam.Map(lambda edge: (0, edge))
            | "GatherEdges" >> beam.GroupByKey()
            | "Components" >> beam.ParDo(_Components(), lookup)
        )


def _split_members(element: tuple[str, dict[str, list[Any]]], stage: str) -> Iterator[Any]:
    """Joins records with their near-duplicate membership: representatives and loners stay."""
    _, groups = element
    for row in groups["records"]:
        members = groups["members"]
        if members and not members[0]["kept"]:
            member = members[0]
            detail = f"similar to {member['representative_id']} (estimated Jaccard {member['similarity']:.3f})"
            yield drop_record(stage, member["record_id"], "near_duplicate", detail, _brief(row))
        else:
            yield row


class Deduplicate(beam.PTransform):
    """Exact then near dedup of records; outputs kept records, drop records and cluster members.

    `text(record)` gives the code compared (comment-free bytes); exact duplicates have the same
    token sequence, so white space and comments never keep two copies apart.
    """

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, config: DedupConfig):
        super().__init__()
        self.stage, self.id_field, self.rank, self.text, self.config = stage, id_field, rank, text, config

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection, beam.PCollection]:
        config, id_field, text = self.config, self.id_field, self.text
        exact = (
            records
            | "ExactKey" >> beam.Map(lambda row: (_token_sequence_hash(text(row)), row))
            | "GroupExact" >> beam.GroupByKey()
            | "KeepFirstExact" >> beam.ParDo(_ExactGroups(self.stage, id_field, self.rank)).with_outputs(DROPPED, "members", main="kept")
        )
        near_members = exact.kept | "Near" >> NearDuplicates(
            self.stage, id_field, self.rank, text, threshold=config.threshold, ngram=config.ngram,
            num_perm=config.num_perm, seed=config.seed, max_bucket_pairs=config.max_bucket_pairs, batch_size=config.batch_size,
        )
        joined = (
            {
                "records": exact.kept | "RecordsById" >> beam.Map(lambda row: (row[id_field], row)),
                "members": near_members | "MembersById" >> beam.Map(lambda m: (m["record_id"], m)),
            }
            | "JoinMembers" >> beam.CoGroupByKey()
            | "DropNear" >> beam.FlatMap(_split_members, self.stage).with_outputs(DROPPED, main="kept")
        )
        members = (exact.members, near_members) | "AllMembers" >> beam.Flatten()
        dropped = (exact[DROPPED], joined[DROPPED]) | "AllDropped" >> beam.Flatten()
        return joined.kept, dropped, members


def _token_sequence_hash(text: bytes) -> str:
    hashes, _ = token_hashes([text])
    return hashlib.blake2b(hashes.tobytes(), digest_size=16).hexdigest()


@register_stage
class Dedup(Stage):
    """Exact and MinHash-LSH near dedup of candidate pairs, with a cluster table that says why."""

    name = STAGE
    Config = DedupConfig
    inputs = ("parse",)
    input_type = Candidate
    output_type = Candidate
    key_field = "pair_id"

    def build(self, pipeline: beam.Pipeline, inputs: dict[str, beam.PCollection]) -> StageResult:
        config: DedupConfig = self.config  # type: ignore[assignment]
        records = list(inputs.values()) | "AllCandidates" >> beam.Flatten()
        kept, dropped, members = records | "Deduplicate" >> Deduplicate(
            STAGE, "pair_id", candidate_rank, candidate_text(KEYS[config.key]), config
        )
        return StageResult(kept, [dropped], {"clusters": SideTable(members, ClusterMember, "record_id")})
