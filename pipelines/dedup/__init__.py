"""The `dedup` stage: exact and MinHash-LSH near deduplication with explanations."""

from pipelines.dedup.stage import Dedup, DedupConfig
from pipelines.dedup.transforms import Analyse, FindDuplicates, SimilarPairs

__all__ = ["Analyse", "Dedup", "DedupConfig", "FindDuplicates", "SimilarPairs"]
