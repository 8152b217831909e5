"""Where the labels came from, and what the label stage measured of its judges before they labelled.

- `label_sources(db)`: the label output's pairs per label source (execution or judges), kept or not;
- `corpus_label_sources(run_dir)`: RUN_DIR/assemble's rows per label source (None: a pair of an unjudged stage);
- `qualification(run_dir)`: the label manifest's report.qualification and notes, as the stage wrote them;
- `calibration(db, run_dir)`: each judge's agreement with the truth by the strength of its vote margin, over
  the calibration table (RUN_DIR/label/calibration) and the label output's execution-verified pairs.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from apache_beam.io.filesystems import FileSystems

from audit.agreement import proportion
from audit.judged import LABEL_STAGE, fetch_dicts
from schemas import EXECUTION, LABEL_SOURCES, CorpusRow, JudgedPair

if TYPE_CHECKING:
    import duckdb

ASSEMBLE_STAGE = "assemble"
CALIBRATION_TABLE = "calibration"  # pipelines.label.stage.CALIBRATION_TABLE: the side table beside the label shards
UNJUDGED = "unjudged"  # a corpus row whose label_source is None: its stage has no judges


def _ordered(names: list[str], first: tuple[str, ...]) -> list[str]:
    return [n for n in first if n in names] + sorted(n for n in names if n not in first)


def label_sources(db: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Pairs of the label output per label source: {pairs, kept, sources: [{label_source, pairs, share, kept,
    kept_share, judge_voted}]}; shares are of all pairs and of all kept pairs (a census: no interval)."""
    rows = {r["label_source"]: r for r in fetch_dicts(db, """
        SELECT coalesce(label_source, '(none)') AS label_source, count(*) AS pairs, count_if(kept) AS kept,
            count_if(pair_key IN (SELECT pair_key FROM votes)) AS judge_voted
        FROM judged GROUP BY ALL
    """)}
    pairs, kept = sum(r["pairs"] for r in rows.values()), sum(r["kept"] for r in rows.values())
    return {
        "pairs": pairs, "kept": kept,
        "sources": [{"label_source": name, "pairs": rows[name]["pairs"], "share": rows[name]["pairs"] / pairs,
                     "kept": rows[name]["kept"], "kept_share": rows[name]["kept"] / kept if kept else None,
                     "judge_voted": rows[name]["judge_voted"]}
                    for name in _ordered(list(rows), LABEL_SOURCES)],
    }


def corpus_label_sources(run_dir: str) -> dict[str, Any]:
    """RUN_DIR/assemble's rows per label source: {files, rows, sources: [{label_source, rows, share}], reason}; rows None
    and a reason when there is no assemble output or its files say nothing of label sources."""
    import pyarrow.parquet as pq

    from schemas import schema_of
    from storage import list_parts, read_table

    directory = FileSystems.join(str(run_dir), ASSEMBLE_STAGE)
    parts = list_parts(directory)
    result: dict[str, Any] = {"files": parts, "rows": None, "sources": [], "reason": None}
    if not parts:
        result["reason"] = f"RUN_DIR/{ASSEMBLE_STAGE}: no part-*.parquet files (the assemble stage has not run)"
        return result
    for part in parts:
        try:
            with FileSystems.open(part) as handle:
                schema = pq.read_schema(handle)
        except Exception as error:  # noqa: BLE001 - any unreadable file is reported, not raised
            result["reason"] = f"{part}: not a readable Parquet file ({error})"
            return result
        found = schema_of(schema.metadata)
        if found is None or found[0] != CorpusRow.SCHEMA:
            result["reason"] = f"{part}: holds {found or 'no codepref schema'}, not {CorpusRow.SCHEMA} rows"
            return result
        if "label_source" not in schema.names:
            result["reason"] = (f"{part}: {found[0]} v{found[1]} has no label_source column (written before {CorpusRow.SCHEMA} "
                                f"v{CorpusRow.VERSION}); rerun assemble (--force) to see where the corpus's labels came from")
            return result
    counts = Counter(read_table(parts, columns=["label_source"]).column("label_source").to_pylist())
    named = Counter({(UNJUDGED if name is None else name): n for name, n in counts.items()})
    total = sum(named.values())
    result["rows"] = total
    result["sources"] = [{"label_source": name, "rows": named[name], "share": named[name] / total if total else None}
                         for name in _ordered(list(named), (*LABEL_SOURCES, UNJUDGED))]
    if not total:
        result["reason"] = "the assemble output has no rows"
    return result


def qualification(run_dir: str) -> tuple[dict[str, Any], list[str]]:
    """The label manifest's report["qualification"] (as written) and its notes; a status saying why when the
    manifest is missing or predates qualification."""
    from storage import StageManifest

    directory = FileSystems.join(str(run_dir), LABEL_STAGE)
    manifest = StageManifest.read(directory)
    if manifest is None:
        return {"status": "unknown", "why": f"RUN_DIR/{LABEL_STAGE}: no readable _manifest.json"}, []
    report = (manifest.report or {}).get("qualification")
    if not report:
        return ({"status": "not recorded", "why": "the label manifest records no qualification (written before judges were "
                 "qualified)"}, list(manifest.notes or []))
    return report, list(manifest.notes or [])


def _calibration_table(db: duckdb.DuckDBPyConnection, run_dir: str) -> dict[str, Any]:
    """Registers the calibration table's (pair_id, votes) as `calibration_shards` when there is one; says what it read."""
    from storage import SchemaMismatch, check_schema, list_parts, read_table

    directory = FileSystems.join(str(run_dir), LABEL_STAGE, CALIBRATION_TABLE)
    parts = list_parts(directory)
    info: dict[str, Any] = {"files": parts, "pairs": 0, "reason": None}
    if not parts:
        info["reason"] = (f"RUN_DIR/{LABEL_STAGE}/{CALIBRATION_TABLE}: no part-*.parquet files (qualification was off or skipped, or the run predates it); "
                          "only the label output's execution-verified pairs are used")
        return info
    for part in parts:
        try:
            check_schema(part, JudgedPair)
        except SchemaMismatch as error:
            info.update(files=[], reason=f"{error}; the calibration table is left out")
            return info
    table = read_table(parts, columns=["pair_id", "votes"])
    db.register("calibration_shards", table)
    info["pairs"] = table.num_rows
    return info


def calibration(db: duckdb.DuckDBPyConnection, run_dir: str) -> dict[str, Any]:
    """Each judge's agreement with the truth by vote-margin strength (see DEFINITIONS["calibration"])."""
    table = _calibration_table(db, run_dir)
    calibration_subjects = "SELECT NULL::VARCHAR AS pair_id, NULL::VARCHAR AS judge, 0 AS n, 0 AS m, 0 AS c WHERE false"
    if table["files"]:
        calibration_subjects = f"""
            SELECT pair_id, v.judge AS judge, count(*) AS n, count_if(v.outcome = 'match') AS m,
                count_if(v.outcome = 'contradiction') AS c
            FROM (SELECT pair_id, UNNEST(votes) AS v FROM calibration_shards)
            WHERE v.judge IS DISTINCT FROM '{EXECUTION}' GROUP BY ALL
        """
    rows = fetch_dicts(db, f"""
        WITH from_calibration AS ({calibration_subjects}),
        from_label AS (
            SELECT j.pair_id, v.judge, count(*) AS n, count_if(v.outcome = 'match') AS m, count_if(v.outcome = 'contradiction') AS c
            FROM judged j JOIN votes v USING (pair_key) WHERE j.verified GROUP BY j.pair_key, j.pair_id, v.judge
        ),
        subjects AS (
            SELECT 'calibration' AS origin, * FROM from_calibration
            UNION ALL
            SELECT 'label' AS origin, * FROM from_label l
            WHERE NOT EXISTS (SELECT 1 FROM from_calibration k WHERE k.pair_id = l.pair_id AND k.judge = l.judge)
        )
        SELECT judge, round(abs(m - c) / n, 6) AS strength, count(*) AS pairs, count_if(m > c) AS picks_chosen,
            count_if(c > m) AS picks_rejected, count_if(origin = 'calibration') AS from_calibration,
            count_if(origin = 'label') AS from_label
        FROM subjects GROUP BY ALL ORDER BY judge, strength
    """)
    judges: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        judges.setdefault(row["judge"], []).append(row)
    by_judge = []
    for judge, buckets in judges.items():
        total = {key: sum(b[key] for b in buckets) for key in ("pairs", "picks_chosen", "from_calibration", "from_label")}
        by_judge.append({
            "judge": judge, "pairs": total["pairs"], "from_calibration": total["from_calibration"], "from_label": total["from_label"],
            "agreement": proportion(total["picks_chosen"], total["pairs"], "no pair of known truth"),
            "buckets": [{"strength": b["strength"], "pairs": b["pairs"], "picks_chosen": b["picks_chosen"],
                         "picks_rejected": b["picks_rejected"],
                         "agreement": proportion(b["picks_chosen"], b["pairs"], "no pairs in this bucket")} for b in buckets],
        })
    (label_pairs,) = db.execute(
        "SELECT count(*) FROM judged WHERE verified AND pair_key IN (SELECT pair_key FROM votes)").fetchone()
    return {
        "calibration_table": table,
        "verified_label_pairs": label_pairs,
        "by_judge": by_judge,
        "reason": None if by_judge else "no judge voted on a pair of known truth (a calibration pair or an execution-verified pair)",
    }
