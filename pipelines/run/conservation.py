"""Counts that add up, or the stage fails before its manifest is written.

Checked for every Beam stage, on every runner:
- **inputs**: each upstream directory holds exactly the shards its manifest lists (a missing or an extra
  shard is named), their rows add up to the manifest's records_out, and the pipeline read that many;
- **outputs**: the rows in the written shards equal the rows the pipeline produced, and the drop
  records written equal those produced;
- **balance**, by the stage's `accounting`: `conserving` stages account for every record they take in
  (in = out + dropped + held out); `fan_out` stages for every input (in = inputs that gave output +
  dropped inputs), and for every output they made (made = out + dropped outputs); `per_source` stages (external)
  at each level for each source: rows = keyed + dropped rows, keyed = rows in groups that gave pairs + rows in
  groups that gave none, pairs made = kept + dropped pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from storage import PART_GLOB, StageManifest, list_parts

CONSERVING = "conserving"
FAN_OUT = "fan_out"
PER_SOURCE = "per_source"  # external: rows -> keyed rows -> groups -> candidates, balanced for each source

RECORDS_READ = "records_read"  # rows the pipeline read from the upstream shards (counted by the run)
RECORDS_IN = "records_in"  # what the stage accounts for: rows read, plus what it reads from outside the run
RECORDS_OUT = "records_out"
DROP_RECORDS = "drop_records"  # drop rows produced (one may stand for several dropped records)
INPUTS_EXPANDED = "inputs_expanded"  # fan-out stages: inputs that gave at least one output
OUTPUTS_MADE = "outputs_made"  # fan-out stages: outputs those inputs gave
OUTPUTS_DROPPED = "outputs_dropped"  # fan-out stages: outputs dropped later (each also counts a drop reason)
HELD_OUT = "held_out"


class ConservationError(RuntimeError):
    """Counts that should agree do not: the stage's output is not trusted and no manifest is written."""


def parquet_rows(paths: Iterable[str]) -> int:
    """Rows in Parquet files, from their footers (no data is read)."""
    total = 0
    for path in paths:
        try:
            with FileSystems.open(path) as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        except Exception as error:  # noqa: BLE001 - any unreadable shard is named, whatever the library raised
            raise ConservationError(f"{path}: cannot be read as Parquet ({type(error).__name__}: {error})") from None
    return total


@dataclass(frozen=True)
class CheckedInput:
    """An upstream dataset as its manifest describes it, checked against the directory."""

    name: str
    directory: str
    files: list[str]  # full paths of the record shards the manifest lists
    records: int


def check_input(name: str, directory: str, manifest: StageManifest) -> CheckedInput:
    """The upstream's shards are exactly those its manifest lists, and hold its records_out rows."""
    listed = sorted(FileSystems.join(directory, f) for f in manifest.files if "/" not in f and _is_part(f))
    present = list_parts(directory)
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"not in its manifest: {', '.join(extra)}"] if extra else [])
        raise ConservationError(f"input {name!r} ({directory}) does not hold the shards its manifest lists: {'; '.join(parts)}; "
                                f"rerun stage {manifest.stage!r} (--force) to rewrite it")
    rows = parquet_rows(listed)
    if rows != manifest.records_out:
        raise ConservationError(f"input {name!r} ({directory}): its shards hold {rows:,} rows, its manifest says records_out "
                                f"{manifest.records_out:,}; rerun stage {manifest.stage!r} (--force) to rewrite it")
    return CheckedInput(name, directory, listed, rows)


def _is_part(name: str) -> bool:
    prefix, suffix = PART_GLOB.split("*")
    return name.startswith(prefix) and name.endswith(suffix)


def per_source_problems(counters: dict[str, int], produced: int, total_dropped: int) -> list[str]:
    """The balance of each source `S` from its counters `S.rows`, `S.keyed`, `S.rows_dropped`, `S.rows_paired`,
    `S.rows_unpaired`, `S.group_drops`, `S.candidates`, `S.kept`, `S.candidate_drops`."""
    sources = sorted({key.rsplit(".", 1)[0] for key in counters if key.endswith(".rows")})
    count = lambda source, name: counters.get(f"{source}.{name}", 0)  # noqa: E731
    problems = []
    for s in sources:
        checks = [
            ("rows", count(s, "rows"), ("keyed", "rows_dropped")),
            ("keyed rows", count(s, "keyed"), ("rows_paired", "rows_unpaired")),
            ("pairs made", count(s, "candidates"), ("kept", "candidate_drops")),
        ]
        for label, total, parts in checks:
            if total != sum(count(s, part) for part in parts):
                figures = " + ".join(f"{part} {count(s, part):,}" for part in parts)
                problems.append(f"source {s}: {label} {total:,} != {figures}")
    kept = sum(count(s, "kept") for s in sources)
    if kept != produced:
        problems.append(f"the sources kept {kept:,} pairs but {produced:,} rows were produced")
    source_drops = sum(count(s, "rows_dropped") + count(s, "group_drops") + count(s, "candidate_drops") for s in sources)
    if source_drops != total_dropped:
        problems.append(f"the sources dropped {source_drops:,} but the stage counted {total_dropped:,} drops")
    return problems


def check_counts(stage: str, accounting: str, counters: dict[str, int], dropped: dict[str, int], inputs: list[CheckedInput],
                 rows_written: int, drop_rows_written: int | None) -> None:
    """Fail with the figures when the pipeline's counts and the files disagree, or the balance does not hold."""
    problems = []
    expected_read = sum(item.records for item in inputs)
    read = counters.get(RECORDS_READ, 0)
    if read != expected_read:
        problems.append(f"read {read:,} rows of the upstream shards, which hold {expected_read:,}")
    produced = counters.get(RECORDS_OUT, 0)
    if rows_written != produced:
        unseen = (" (written where this process cannot see them? every worker must see the run directory at the same path: a "
                  "file system all of them mount, or an object store)") if produced and not rows_written else ""
        problems.append(f"produced {produced:,} rows but its shards hold {rows_written:,}{unseen}")
    if drop_rows_written is not None and drop_rows_written != counters.get(DROP_RECORDS, 0):
        problems.append(f"produced {counters.get(DROP_RECORDS, 0):,} drop records but its _dropped shards hold {drop_rows_written:,}")
    records_in, total_dropped, held_out = counters.get(RECORDS_IN, 0), sum(dropped.values()), counters.get(HELD_OUT, 0)
    if accounting == CONSERVING and records_in != produced + total_dropped + held_out:
        problems.append(f"records in {records_in:,} != out {produced:,} + dropped {total_dropped:,}"
                        + (f" + held out {held_out:,}" if held_out else "")
                        + f" (off by {records_in - produced - total_dropped - held_out:+,})")
    if accounting == FAN_OUT:
        expanded, made, outputs_dropped = (counters.get(key, 0) for key in (INPUTS_EXPANDED, OUTPUTS_MADE, OUTPUTS_DROPPED))
        inputs_dropped = total_dropped - outputs_dropped
        if records_in != expanded + inputs_dropped:
            problems.append(f"records in {records_in:,} != inputs that gave output {expanded:,} + inputs dropped {inputs_dropped:,} "
                            f"(off by {records_in - expanded - inputs_dropped:+,})")
        if made != produced + outputs_dropped:
            problems.append(f"outputs made {made:,} != out {produced:,} + outputs dropped {outputs_dropped:,} "
                            f"(off by {made - produced - outputs_dropped:+,})")
    if accounting == PER_SOURCE:
        problems += per_source_problems(counters, produced, total_dropped)
    if problems:
        raise ConservationError(f"stage {stage!r}: counts do not add up: {'; '.join(problems)}. No manifest was written; "
                                "rerun the same command to redo the stage")
