"""Upstream stage outputs written for tests: real shards and a real manifest, as a finished stage leaves them
(the same builders the benchmarks use)."""

from __future__ import annotations

from benchmarks.corpus import candidate, write_stage

__all__ = ["candidate", "write_stage"]
