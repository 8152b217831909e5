"""The `dedup` stage: exact and MinHash-LSH near deduplication with explanations."""

from pipelines.dedup.stage import Dedup, DedupConfig, Deduplicate, NearDuplicates, SimilarPairs

__all__ = ["Dedup", "DedupConfig", "Deduplicate", "NearDuplicates", "SimilarPairs"]
