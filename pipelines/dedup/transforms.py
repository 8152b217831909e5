"""Exact and MinHash-LSH near deduplication as Beam transforms (the `dedup` stage, and assemble's final pass).

Recipe (no process ever holds the records, nor the signatures of all documents):
1. analyse: batches of comment-free texts -> token hashes -> the hash of each token sequence (for
   exact dedup) and a MinHash signature from vectorised shingles;
2. exact: (token-sequence hash -> id) grouped; the best-ranked id of each group stays;
3. band: one `(band, band hash) -> id` record per band, packed per worker into blobs by partition of
   the key space and grouped with GroupByKey; documents sharing a bucket are candidate pairs (each
   member paired with at most `max_bucket_pairs` later members);
4. verify: only the signatures of candidate documents are gathered (a side input), and a pair is
   an edge when its estimated Jaccard reaches the threshold;
5. cluster: connected components of the edges (the edge list is O(duplicates), not O(documents));
   the representative is the best-ranked member: earliest committer time, then smallest id;
6. apply: the records are read again and the drop decisions (a side input of dropped ids) applied,
   so records are streamed, never held while duplicates are being found.
Side inputs of many small entries (ids, signatures, decisions) travel as one pickled blob each (`packed`):
Beam weighs every side input it caches object by object, which cost seconds per worker for a dict of tens of
thousands of entries, and nothing for one bytes object. Candidate pairs travel as one list per partition.
Documents with fewer tokens than the shingle size are never near-deduplicated (only exactly):
they cannot be shingled, and empty shingle sets would all look identical.
"""


from __future__ import annotations

import itertools
import pickle
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from parsers import strip_comments
from pipelines.core import (
    metrics_namespace,
    route,
)
from pipelines.dedup.filters import DUPLICATES
from pipelines.dedup.minhash import Banding, analyse, estimated_jaccard, optimal_banding

if TYPE_CHECKING:
    from pipelines.dedup.stage import DedupConfig

NO_TIME = 2**62  # records without a commit time rank after all dated ones
KEYS = {"after": "chosen", "before": "rejected", "chosen": "chosen", "rejected": "rejected", "pair": "pair"}


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


def candidate_columns(key: str) -> list[str]:
    """The columns `candidate_text(key)` and `candidate_rank` read: a projection for passes that need no more."""
    sides = ["chosen", "rejected"] if key == "pair" else [key]
    return ["pair_id", "committed_at", *(column for side in sides for column in (side, f"{side}_facts.comment_spans"))]


def candidate_rank(row: dict[str, Any]) -> tuple[int, str]:
    committed_at = row.get("committed_at")
    return (NO_TIME if committed_at is None else int(committed_at), row["pair_id"])


def exact_groups(element: tuple[str, Iterable[tuple[tuple, str]]]) -> Iterator[Any]:
    """Members and drop decisions of one group of identical token sequences (ids with their ranks)."""
    _, ranked = element
    ordered = sorted((tuple(rank), doc_id) for rank, doc_id in ranked)
    if len(ordered) == 1:
        return
    rep = ordered[0][1]
    yield beam.pvalue.TaggedOutput("members", _member(rep, rep, "exact", 1.0, True))
    for _, doc_id in ordered[1:]:
        yield beam.pvalue.TaggedOutput("members", _member(doc_id, rep, "exact", 1.0, False))
        yield doc_id, ("exact_duplicate", f"same token sequence as {rep}")


def _member(record: str, rep: str, kind: str, similarity: float, kept: bool) -> dict[str, Any]:
    return {"record_id": record, "cluster_id": rep, "representative_id": rep, "kind": kind,
            "similarity": round(similarity, 6), "kept": kept}


def brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:500] if isinstance(v, str) else v) for k, v in row.items() if not k.endswith("_facts")}


def packed(entries: beam.PCollection, label: str) -> beam.pvalue.AsSingleton:
    """A side input of `entries` ((key, value) pairs, or ids), as one pickled list (read it with `Unpacked`)."""
    return beam.pvalue.AsSingleton(entries | f"{label}List" >> beam.combiners.ToList() | f"{label}Pack" >> beam.Map(pickle.dumps))


class UnionOfIds(beam.CombineFn):
    """Collections of ids -> the distinct ids, as one pickled list (a `packed` side input)."""

    def create_accumulator(self) -> set[str]:
        return set()

    def add_input(self, ids: set[str], more: Iterable[str]) -> set[str]:
        ids.update(more)
        return ids

    def merge_accumulators(self, accumulators: Iterable[set[str]]) -> set[str]:
        merged: set[str] = set()
        for ids in accumulators:
            merged.update(ids)
        return merged

    def extract_output(self, ids: set[str]) -> bytes:
        return pickle.dumps(sorted(ids))


class Unpacked:
    """The value of a `packed` side input, built (by `build`, from the unpickled list) once per blob; a value that
    is not packed (a dict or set given directly, as the benchmarks' plain loop does) is used as it is."""

    def __init__(self, build: Callable[[list], Any]):
        self.build = build
        self.blob: bytes | None = None
        self.value: Any = None

    def __call__(self, side: Any) -> Any:
        if not isinstance(side, bytes):
            return side
        if side is not self.blob:
            self.blob, self.value = side, self.build(pickle.loads(side))
        return self.value


def _ids(entries: list) -> set[str]:
    """The ids of a packed side input of ids or of (id, value) pairs."""
    return {entry[0] if isinstance(entry, tuple) else entry for entry in entries}


class AnalyseBatch(beam.DoFn):
    """(id, rank, token-sequence hash, signature bytes or None) per document; short ones are counted."""

    def __init__(self, stage: str, ngram: int, num_perm: int, seed: int):
        self.stage = stage
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed

    def process(self, batch: list[tuple[str, tuple, bytes]]) -> Iterator[tuple[str, tuple, str, bytes | None]]:
        results = analyse([text for _, _, text in batch], ngram=self.ngram, num_perm=self.num_perm, seed=self.seed)
        short = Metrics.counter(metrics_namespace(self.stage), "short_documents_not_near_deduplicated")
        for (doc_id, rank, _), (exact, sig) in zip(batch, results):
            if sig is None:
                short.inc()
            yield doc_id, rank, exact, None if sig is None else sig.tobytes()


ANALYSE_BATCH_BYTES = 1 << 20  # a batch's texts together: minhash.token_hashes makes several 8-byte arrays per text byte


def text_batches(docs: Iterable[tuple[str, tuple, bytes]], batch_size: int) -> Iterator[list[tuple[str, tuple, bytes]]]:
    """(id, rank, text) documents in batches of at most `batch_size` documents and, unless one document is longer,
    ANALYSE_BATCH_BYTES of text (each document's analysis does not depend on the batch it is in)."""
    batch: list[tuple[str, tuple, bytes]] = []
    size = 0
    for doc in docs:
        if batch and (len(batch) == batch_size or size + len(doc[2]) > ANALYSE_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += len(doc[2])
    if batch:
        yield batch


class AnalyseTables(AnalyseBatch):
    """AnalyseBatch for records read as Arrow tables (storage.ReadRecords(batched=True)): the rows of each table
    (only those whose id is in the `wanted` side input, when given), analysed in `text_batches`, with no
    per-record step before."""

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, *, ngram: int, num_perm: int, seed: int, batch_size: int):
        super().__init__(stage, ngram, num_perm, seed)
        self.id_field, self.rank, self.text, self.batch_size = id_field, rank, text, batch_size
        self.wanted = Unpacked(_ids)

    def process(self, table: Any, wanted: Any = None) -> Iterator[tuple[str, tuple, str, bytes | None]]:  # type: ignore[override]
        id_field, rank, text = self.id_field, self.rank, self.text
        rows = table.to_pylist()
        if wanted is not None:
            ids = self.wanted(wanted)
            rows = [row for row in rows if row[id_field] in ids]
        for batch in text_batches(((row[id_field], rank(row), text(row)) for row in rows), self.batch_size):
            yield from super().process(batch)


class DropDuplicates(beam.DoFn):
    """A record, or its drop record when the decisions (a side input: id -> (reason, detail)) name its id."""

    def __init__(self, stage: str, id_field: str):
        self.stage, self.id_field = stage, id_field
        self.decisions = Unpacked(dict)

    def process(self, row: dict[str, Any], decisions: Any) -> Iterator[Any]:
        decision = self.decisions(decisions).get(row[self.id_field])
        if decision is None:
            yield row
        else:
            rejection = DUPLICATES.reject(decision[0], "{detail}", detail=decision[1])
            yield route(self.stage, row[self.id_field], rejection, brief(row), DUPLICATES)


BAND_PARTITIONS = 64
PACK_BYTES = 1 << 20


class PackBandKeys(beam.DoFn):
    """Band keys of signed documents, packed into a few large blobs per partition of the key space.

    Shuffling one small element per (band, document) costs the runner hundreds of bytes each;
    blobs of `key (10 bytes) + id length (2) + id` records cost almost nothing beyond their bytes.
    """

    def __init__(self, banding: Banding):
        self.banding = banding

    def start_bundle(self) -> None:
        self.buffers: dict[int, list[bytes]] = {}
        self.sizes: dict[int, int] = {}

    def process(self, doc: tuple[str, tuple, bytes]) -> Iterator[tuple[int, bytes]]:
        doc_id = doc[0].encode("utf-8")
        tail = struct.pack(">H", len(doc_id)) + doc_id
        for key in self.banding.keys(_as_signature(doc[2])):
            partition = int.from_bytes(key[2:4], "big") % BAND_PARTITIONS
            self.buffers.setdefault(partition, []).append(key + tail)
            self.sizes[partition] = self.sizes.get(partition, 0) + len(key) + len(tail)
            if self.sizes[partition] >= PACK_BYTES:
                yield partition, b"".join(self.buffers.pop(partition))
                self.sizes[partition] = 0

    def finish_bundle(self) -> Iterator[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for partition, chunks in sorted(self.buffers.items()):
            if chunks:
                yield WindowedValue((partition, b"".join(chunks)), 0, [GlobalWindow()])
        self.buffers, self.sizes = {}, {}


def _unpack(blob: bytes) -> Iterator[tuple[bytes, str]]:
    position = 0
    while position < len(blob):
        key = blob[position : position + 10]
        (length,) = struct.unpack_from(">H", blob, position + 10)
        start = position + 12
        yield key, blob[start : start + length].decode("utf-8")
        position = start + length


PAIRS_PER_LIST = 10_000


class PartitionPairs(beam.DoFn):
    """Candidate pairs of one key-space partition, in lists of at most PAIRS_PER_LIST: documents sharing a bucket,
    each paired with at most `limit` later members; ids in the excluded side input take no part."""

    def __init__(self, limit: int):
        self.limit = limit
        self.excluded = Unpacked(_ids)

    def process(self, element: tuple[int, Iterable[bytes]], excluded: Any) -> Iterator[list[tuple[str, str]]]:
        excluded = self.excluded(excluded)
        entries = sorted(entry for blob in element[1] for entry in _unpack(blob))
        seen: set[tuple[str, str]] = set()
        pairs: list[tuple[str, str]] = []
        for _, group in itertools.groupby(entries, key=lambda entry: entry[0]):
            members = sorted({doc_id for _, doc_id in group if doc_id not in excluded})
            for i, first in enumerate(members):
                for second in members[i + 1 : i + 1 + self.limit]:
                    if (first, second) not in seen:
                        seen.add((first, second))
                        pairs.append((first, second))
                        if len(pairs) == PAIRS_PER_LIST:
                            yield pairs
                            pairs = []
        if pairs:
            yield pairs


def compact_signature(signature: bytes) -> bytes:
    """The low 16 bits of each MinHash value: half the memory for verification, and a chance
    collision (1 in 65,536 per value) shifts an estimated Jaccard by about 0.00002."""
    return np.frombuffer(signature, dtype=np.uint32).astype(np.uint16).tobytes()


def _as_compact(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint16)


def _as_signature(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint32)


class VerifyPairs(beam.DoFn):
    """Keeps the candidate pairs (a list of them) whose estimated Jaccard reaches the threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.signed = Unpacked(dict)

    def process(self, pairs: list[tuple[str, str]], signed: Any) -> Iterator[tuple[str, str, float]]:
        signed = self.signed(signed)
        for pair in pairs:
            first, second = signed[pair[0]], signed[pair[1]]
            similarity = estimated_jaccard(_as_compact(first[1]), _as_compact(second[1]))
            if similarity >= self.threshold:
                yield pair[0], pair[1], similarity


class Components(beam.DoFn):
    """Connected components of the verified edges; each member is compared with its representative."""

    def __init__(self) -> None:
        self.signed = Unpacked(dict)

    def process(self, element: tuple[int, Iterable[tuple[str, str, float]]], signed: Any) -> Iterator[dict[str, Any]]:
        signed = self.signed(signed)
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
            rep_sig = _as_compact(signed[rep][1])
            for member in members:
                similarity = 1.0 if member == rep else estimated_jaccard(_as_compact(signed[member][1]), rep_sig)
                yield _member(member, rep, "near", similarity, member == rep)


class SimilarPairs(beam.PTransform):
    """Analysed documents (id, rank, exact hash, signature) -> (verified edges (id, id, similarity),
    signatures of the candidate documents as a `packed` side input). Ids in `excluded` (a PCollection of ids or of
    (id, anything) pairs) take no part.

    With `reanalysed` (a function giving a fresh analysis of the records, read again), the
    signatures of candidate documents are computed again from a second read instead of holding
    every signature until the candidates are known: more signing, much less memory.
    """

    def __init__(self, *, threshold: float, num_perm: int, max_bucket_pairs: int, excluded: Any = None,
                 reanalysed: Callable[[str, Any], beam.PCollection] | None = None):
        super().__init__()
        self.threshold, self.max_bucket_pairs, self.excluded, self.reanalysed = threshold, max_bucket_pairs, excluded, reanalysed
        self.banding: Banding = optimal_banding(threshold, num_perm)

    def expand(self, analysed: beam.PCollection) -> tuple[beam.PCollection, beam.pvalue.AsSingleton]:
        banding = self.banding
        excluded = packed(self.excluded if self.excluded is not None else analysed.pipeline | "NothingExcluded" >> beam.Create([]), "Excluded")
        signed = analysed | "Signed" >> beam.FlatMap(lambda doc: [(doc[0], doc[1], doc[3])] if doc[3] is not None else [])
        pairs = (
            signed
            | "BandKeys" >> beam.ParDo(PackBandKeys(banding))
            | "GroupBands" >> beam.GroupByKey()
            | "BucketPairs" >> beam.ParDo(PartitionPairs(self.max_bucket_pairs), excluded)
        )
        candidates = beam.pvalue.AsSingleton(
            pairs
            | "CandidateIds" >> beam.Map(lambda chunk: {doc_id for pair in chunk for doc_id in pair})
            | "OneEach" >> beam.CombineGlobally(UnionOfIds())
        )
        source = signed if self.reanalysed is None else (
            self.reanalysed("Reanalyse", candidates)
            | "SignedAgain" >> beam.FlatMap(lambda doc: [(doc[0], doc[1], doc[3])] if doc[3] is not None else [])
        )
        candidate_signatures = source | "KeepCandidates" >> beam.ParDo(KeepCandidates(), candidates)
        lookup = packed(candidate_signatures, "Signatures")
        return pairs | "Verify" >> beam.ParDo(VerifyPairs(self.threshold), lookup), lookup


class KeepCandidates(beam.DoFn):
    """(id, rank, signature) -> (id, (rank, compact signature)) of the documents in the candidates side input."""

    def __init__(self) -> None:
        self.candidates = Unpacked(_ids)

    def process(self, doc: tuple[str, tuple, bytes], candidates: Any) -> Iterator[tuple[str, tuple[tuple, bytes]]]:
        if doc[0] in self.candidates(candidates):
            yield doc[0], (doc[1], compact_signature(doc[2]))


class Wanted(beam.DoFn):
    """The records whose id is in the `packed` side input of ids."""

    def __init__(self, id_field: str):
        self.id_field = id_field
        self.ids = Unpacked(_ids)

    def process(self, row: dict[str, Any], ids: Any) -> Iterator[dict[str, Any]]:
        if row[self.id_field] in self.ids(ids):
            yield row


class Analyse(beam.PTransform):
    """Records -> (id, rank, token-sequence hash, signature bytes or None), in batches.

    `tables`: the records come as Arrow tables of rows (storage.ReadRecords(batched=True)), analysed table by table;
    `wanted` (a side input of ids) then keeps only those records.
    """

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, *, ngram: int, num_perm: int, seed: int, batch_size: int,
                 tables: bool = False, wanted: Any = None):
        super().__init__()
        self.stage, self.id_field, self.rank, self.text = stage, id_field, rank, text
        self.ngram, self.num_perm, self.seed, self.batch_size = ngram, num_perm, seed, batch_size
        self.tables, self.wanted = tables, wanted

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        id_field, rank, text = self.id_field, self.rank, self.text
        if self.tables:
            analyse = AnalyseTables(self.stage, id_field, rank, text, ngram=self.ngram, num_perm=self.num_perm, seed=self.seed,
                                    batch_size=self.batch_size)
            return records | "AnalyseTables" >> (beam.ParDo(analyse) if self.wanted is None else beam.ParDo(analyse, self.wanted))
        if self.wanted is not None:
            records = records | "Wanted" >> beam.ParDo(Wanted(id_field), self.wanted)
        return (
            records
            | "Texts" >> beam.Map(lambda row: (row[id_field], rank(row), text(row)))
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self.batch_size), max_batch_size=self.batch_size)
            | "AnalyseBatches" >> beam.ParDo(AnalyseBatch(self.stage, self.ngram, self.num_perm, self.seed))
        )


class FindDuplicates(beam.PTransform):
    """Records -> (drop decisions: id -> (reason, detail); ClusterMember rows explaining every cluster)."""

    def __init__(self, stage: str, id_field: str, rank: Callable, text: Callable, config: DedupConfig,
                 reread: Callable[[str], beam.PCollection] | None = None, tables: bool = False):
        super().__init__()
        self.stage, self.id_field, self.rank, self.text, self.config = stage, id_field, rank, text, config
        self.reread = reread  # a fresh read of the same records, labelled; None holds signatures instead
        self.tables = tables  # the records (and the reread's) are Arrow tables of rows (storage.ReadRecords(batched=True))

    def _analyse(self, wanted: Any = None) -> Analyse:
        config = self.config
        return Analyse(self.stage, self.id_field, self.rank, self.text, ngram=config.ngram, num_perm=config.num_perm,
                       seed=config.seed, batch_size=config.batch_size, tables=self.tables, wanted=wanted)

    def expand(self, records: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        config = self.config
        analysed = records | "Analyse" >> self._analyse()
        reanalysed = None
        if self.reread is not None:
            reread = self.reread

            def reanalysed(label: str, wanted: Any) -> beam.PCollection:
                return reread(f"{label}Read") | f"{label}Analyse" >> self._analyse(wanted)

        exact = (
            analysed
            | "ByTokenSequence" >> beam.Map(lambda doc: (doc[2], (doc[1], doc[0])))
            | "GroupExact" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(exact_groups).with_outputs("members", main="decisions")
        )
        edges, lookup = analysed | "SimilarPairs" >> SimilarPairs(
            threshold=config.threshold, num_perm=config.num_perm, max_bucket_pairs=config.max_bucket_pairs,
            excluded=exact.decisions, reanalysed=reanalysed,
        )
        near_members = (
            edges
            | "AllEdges" >> beam.Map(lambda edge: (0, edge))
            | "GatherEdges" >> beam.GroupByKey()
            | "Components" >> beam.ParDo(Components(), lookup)
        )
        near_decisions = near_members | "NearDecisions" >> beam.FlatMap(
            lambda m: [] if m["kept"] else [(m["record_id"], ("near_duplicate", f"similar to {m['representative_id']} (estimated Jaccard {m['similarity']:.3f})"))]
        )
        decisions = (exact.decisions, near_decisions) | "AllDecisions" >> beam.Flatten()
        members = (exact.members, near_members) | "AllMembers" >> beam.Flatten()
        return decisions, members
