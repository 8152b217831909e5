"""The drop reasons of deduplication (the dedup stage, and the assemble stage's final near-dedup)."""

from __future__ import annotations

from pipelines.core import DropReasons

DUPLICATES = DropReasons("dedup", {
    "exact_duplicate": "the same token sequence (comments and white space ignored) as a better-ranked record",
    "near_duplicate": "estimated Jaccard similarity at least `threshold` with its cluster's representative",
})
