"""Dedup's transforms on their own, in Beam's TestPipeline (no orchestrator, no files): `Create` a few
records, apply the composite, `assert_that` on what comes out."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import (
    TestPipeline as BeamTestPipeline,  # aliased: pytest would collect "Test*"
)
from apache_beam.testing.util import assert_that, equal_to

from pipelines.dedup.stage import DedupConfig
from pipelines.dedup.transforms import (
    Analyse,
    FindDuplicates,
    SimilarPairs,
    VerifyPairs,
    candidate_rank,
    candidate_text,
    compact_signature,
    exact_groups,
)
from schemas import to_row
from tests.support.stage_fixtures import candidate


def words(prefix: str, count: int, edit_every: int = 0) -> str:
    """`count` distinct tokens; every `edit_every`-th one replaced (a near copy of the unedited text)."""
    return " ".join(f"x{i}" if edit_every and i % edit_every == edit_every // 2 else f"{prefix}{i}" for i in range(count))


BASE = words("t", 200)
CLOSE = words("t", 200, edit_every=50)  # 4 tokens of 200 changed: estimated Jaccard well above 0.7
FAR = words("t", 200, edit_every=6)  # 33 changed: far below


def rows() -> list[dict]:
    return [to_row(record) for record in (
        candidate("exact-late", BASE, "old", committed_at=300),
        candidate("exact-early", BASE + "  ", "old", committed_at=200),  # the same token sequence, earlier
        candidate("near", CLOSE, "old", committed_at=400),
        candidate("far", FAR, "old", committed_at=100),
        candidate("short", "a b", "old", committed_at=50),  # too short to shingle: only exact dedup applies
    )]


def find_duplicates(pipeline: beam.Pipeline) -> tuple[beam.PCollection, beam.PCollection]:
    config = DedupConfig(ngram=5, threshold=0.7, num_perm=128)
    return (pipeline | beam.Create(rows())) | FindDuplicates("dedup", "pair_id", candidate_rank, candidate_text("chosen"), config)


def test_find_duplicates_decides_exact_and_near_copies_and_explains_every_cluster():
    with BeamTestPipeline() as pipeline:
        decisions, members = find_duplicates(pipeline)
        # The exact copy goes to the earlier record; the near copy to the cluster's representative (the earliest).
        assert_that(decisions | "Decided" >> beam.Map(lambda d: (d[0], d[1][0], d[1][1].split(" (")[0])), equal_to([
            ("exact-late", "exact_duplicate", "same token sequence as exact-early"),
            ("near", "near_duplicate", "similar to exact-early"),
        ]), label="Decisions")
        assert_that(members | "Members" >> beam.Map(lambda m: (m["record_id"], m["representative_id"], m["kind"], m["kept"])), equal_to([
            ("exact-early", "exact-early", "exact", True),
            ("exact-late", "exact-early", "exact", False),
            ("exact-early", "exact-early", "near", True),
            ("near", "exact-early", "near", False),
        ]), label="Clusters")


def test_analyse_signs_long_documents_and_leaves_short_ones_unsigned():
    with BeamTestPipeline() as pipeline:
        analysed = (pipeline | beam.Create(rows())) | Analyse("dedup", "pair_id", candidate_rank, candidate_text("chosen"), ngram=5,
                                                             num_perm=64, seed=1, batch_size=2)
        shapes = analysed | beam.Map(lambda doc: (doc[0], tuple(doc[1]), None if doc[3] is None else len(doc[3])))  # 64 uint32 values
        assert_that(shapes, equal_to([("exact-late", (300, "exact-late"), 256), ("exact-early", (200, "exact-early"), 256),
                                      ("near", (400, "near"), 256), ("far", (100, "far"), 256), ("short", (50, "short"), None)]))


def test_similar_pairs_verifies_only_pairs_above_the_threshold_and_skips_the_excluded():
    def edges(pipeline: beam.Pipeline, excluded: list[str]) -> beam.PCollection:
        analysed = (pipeline | "Rows" >> beam.Create(rows())) | Analyse("dedup", "pair_id", candidate_rank, candidate_text("chosen"),
                                                                         ngram=5, num_perm=128, seed=1, batch_size=8)
        skip = pipeline | "Excluded" >> beam.Create([(name, True) for name in excluded])
        found, _ = analysed | SimilarPairs(threshold=0.7, num_perm=128, max_bucket_pairs=64, excluded=skip)
        # A pair sharing several bands is found (and verified) once per band: the distinct edges are what counts.
        return found | "Unordered" >> beam.Map(lambda edge: (tuple(sorted(edge[:2])), edge[2] >= 0.7)) | "Distinct" >> beam.Distinct()

    with BeamTestPipeline() as pipeline:
        assert_that(edges(pipeline, []), equal_to([(("exact-early", "exact-late"), True), (("exact-late", "near"), True),
                                                    (("exact-early", "near"), True)]))
    with BeamTestPipeline() as pipeline:
        assert_that(edges(pipeline, ["exact-late"]), equal_to([(("exact-early", "near"), True)]))


def test_verify_pairs_keeps_a_candidate_pair_only_at_the_threshold_or_above():
    with BeamTestPipeline() as pipeline:
        analysed = (pipeline | "Rows" >> beam.Create(rows())) | Analyse("dedup", "pair_id", candidate_rank, candidate_text("chosen"),
                                                                         ngram=5, num_perm=128, seed=1, batch_size=8)
        signed = beam.pvalue.AsDict(analysed | "Signed" >> beam.FlatMap(
            lambda doc: [(doc[0], (doc[1], compact_signature(doc[3])))] if doc[3] is not None else []))
        proposed = pipeline | "Proposed" >> beam.Create([[("exact-early", "near"), ("exact-early", "far")], [("near", "far")]])
        verified = proposed | beam.ParDo(VerifyPairs(0.7), signed)
        assert_that(verified | beam.Map(lambda edge: (edge[0], edge[1], 0.7 <= edge[2] <= 1.0)), equal_to([("exact-early", "near", True)]))


def test_exact_groups_keep_the_earliest_and_say_nothing_of_singletons():
    group = ("hash", [((300, "b"), "b"), ((200, "a"), "a"), ((200, "c"), "c")])
    with BeamTestPipeline() as pipeline:
        grouped = (pipeline | beam.Create([group, ("alone", [((1, "z"), "z")])])
                   | beam.FlatMap(exact_groups).with_outputs("members", main="decisions"))
        assert_that(grouped.decisions, equal_to([("b", ("exact_duplicate", "same token sequence as a")),
                                                 ("c", ("exact_duplicate", "same token sequence as a"))]), label="Decisions")
        assert_that(grouped.members | beam.Map(lambda m: (m["record_id"], m["kept"])), equal_to([("a", True), ("b", False), ("c", False)]),
                    label="Members")
