"""Upstream stage outputs written for tests: real shards and a real manifest, as a finished stage leaves them."""

from __future__ import annotations

from pathlib import Path

from schemas import Candidate, Origin, to_row
from storage import StageManifest, shard_name, write_rows


def write_stage(run_dir: Path, name: str, records: list, record_type: type, config_hash: str = "fixture", shards: int = 1) -> Path:
    """A finished stage directory holding `records` in `shards` shards (round robin)."""
    directory = run_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    parts = [shard_name(i, shards) for i in range(shards)]
    for index, part in enumerate(parts):
        write_rows(str(directory / part), [to_row(r) for r in records[index::shards]], record_type)
    StageManifest(
        stage=name, config_hash=config_hash, schema=f"{record_type.SCHEMA} v{record_type.VERSION}",
        records_in=len(records), records_out=len(records), dropped={}, started="", finished="", seconds=0.0,
        files=parts, versions={}, config={},
    ).write(str(directory))
    return directory


def candidate(pair_id: str, chosen: str, rejected: str, language: str = "Python", committed_at: int | None = 1_600_000_000,
              **fields) -> Candidate:
    values = {"source": "commit", "criterion": "Functional Correctness", "prompt": "Fix the function.",
              "prompt_origin": "subject_fallback", "origin": Origin(repo="octo/demo", commit=pair_id), **fields}
    return Candidate(pair_id=pair_id, language=language, chosen=chosen, rejected=rejected, committed_at=committed_at, **values)
