"""The `dedup` stage: exact and MinHash-LSH near deduplication with explanations."""

from pipelines.dedup.stage import Analyse, Dedup, DedupConfig, FindDuplicates, SimilarPairs

__all__ = ["Analyse", "Dedup", "DedupConfig", "FindDuplicates", "SimilarPairs"]
