"""The label stage's judged pairs in DuckDB: one row per pair, one per vote, and per-subject vote counts.

`open_judged(run_dir)` reads RUN_DIR/label/part-*.parquet (schema checked first) into temporary
tables of an in-memory DuckDB connection:

- `raw`: a view of the shards as written, with `pair_key` (shard and row) beside every pair;
- `judged`: one row per pair of the label output, its criterion, language,
  source, ground truth flags, code lengths, margin, keep decision and label source;
- `votes`: the UNNESTed judge votes, one row per vote. Votes execution cast (judge
  schemas.EXECUTION) are no judge's and are left out: execution is the truth judges are measured
  against, not a rater;
- `pair_subjects` / `judge_subjects`: vote counts and the derived per-pair facts every metric is
  built from, for each judged pair (all judges pooled) and for each pair and judge. A pair that
  execution labelled and no judge voted on is not a judged pair and is not in them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from apache_beam.io.filesystems import FileSystems

from schemas import EXECUTION, JudgedPair
from storage import SchemaMismatch, check_schema, list_parts

if TYPE_CHECKING:
    import duckdb

LABEL_STAGE = "label"
OUTCOMES = ("match", "contradiction", "tie")  # the categories raters choose from; "error" is no rating
SIDES = ("chosen", "rejected")


class AuditError(ValueError):
    """The run cannot be audited as asked (no label output, a bad key or verdict file)."""


def label_parts(run_dir: str | Path) -> list[str]:
    """The label stage's shards of a run, schema checked; fails with what to do when there are none."""
    directory = FileSystems.join(str(run_dir), LABEL_STAGE)  # a local folder or an object store
    parts = list_parts(directory)
    if not parts:
        raise AuditError(f"{directory}: no part-*.parquet files; run the label stage first (codepref run CONFIG --stages label)")
    for part in parts:
        try:
            check_schema(part, JudgedPair)
        except SchemaMismatch as error:
            raise AuditError(f"{error}; audit reads the label stage's output") from None
    return parts


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


# Counts of one subject's votes and what follows from them. Sides: the majority of matches against
# contradictions (ties do not pick a side); no strict majority leaves the side NULL.
_SUBJECT_COUNTS = """
    count(v.outcome) AS n_votes,
    count_if(v.outcome = 'match') AS m,
    count_if(v.outcome = 'contradiction') AS c,
    count_if(v.outcome = 'tie') AS t,
    count_if(v.outcome = 'error') AS e,
    count_if(v.outcome = 'match' AND v.vote_order = 'chosen_first') AS m_cf,
    count_if(v.outcome = 'contradiction' AND v.vote_order = 'chosen_first') AS c_cf,
    count_if(v.outcome = 'match' AND v.vote_order = 'chosen_second') AS m_cs,
    count_if(v.outcome = 'contradiction' AND v.vote_order = 'chosen_second') AS c_cs,
    count_if(v.verdict = 'A') AS a,
    count_if(v.verdict = 'B') AS b,
    count_if(v.verdict = 'TIE') AS tie_verdicts
"""

_SUBJECT_FACTS = """
    SELECT *,
        m + c + t AS valid,
        CASE WHEN n_votes > 0 THEN (m - c) / n_votes ELSE 0.0 END AS judge_margin,
        CASE WHEN m > c THEN 'chosen' WHEN c > m THEN 'rejected' END AS side,
        CASE WHEN m_cf > c_cf THEN 'chosen' WHEN c_cf > m_cf THEN 'rejected' END AS side_cf,
        CASE WHEN m_cs > c_cs THEN 'chosen' WHEN c_cs > m_cs THEN 'rejected' END AS side_cs,
        CASE WHEN m + c + t = 0 THEN NULL
             WHEN m > c AND m > t THEN 'match' WHEN c > m AND c > t THEN 'contradiction' ELSE 'tie' END AS majority,
        CASE WHEN chosen_chars > rejected_chars THEN 'chosen' WHEN rejected_chars > chosen_chars THEN 'rejected' END AS longer,
        m + c + t >= 2 AND greatest(m, c, t) = m + c + t AS unanimous,
        CASE WHEN m + c + t > 0 THEN -(
            CASE WHEN m > 0 THEN m / (m + c + t) * log2(m / (m + c + t)) ELSE 0 END +
            CASE WHEN c > 0 THEN c / (m + c + t) * log2(c / (m + c + t)) ELSE 0 END +
            CASE WHEN t > 0 THEN t / (m + c + t) * log2(t / (m + c + t)) ELSE 0 END) END AS entropy,
        CASE WHEN m + c + t >= 2 THEN (m * (m - 1) + c * (c - 1) + t * (t - 1)) / ((m + c + t) * (m + c + t - 1)) END AS agreement
    FROM counted
"""


def _shards_table(parts: list[str]) -> Any:
    """The shards read through FileSystems into one Arrow table, with read_parquet's `filename` and
    `file_row_number` columns."""
    import pyarrow as pa

    from storage import read_table

    tables = []
    for part in parts:
        table = read_table([part])
        tables.append(table.append_column("filename", pa.array([part] * table.num_rows, pa.string()))
                      .append_column("file_row_number", pa.array(range(table.num_rows), pa.int64())))
    return pa.concat_tables(tables)


def open_judged(run_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection holding the tables described in the module docstring."""
    import duckdb

    from storage.staging import is_object_store

    parts = label_parts(run_dir)
    db = duckdb.connect()
    # A view, not a table: the code texts stay in the files and are read only where a query needs them.
    # pair_key = (shard's position in `parts`) << 32 | row in the shard: stable, and needs no window over all rows.
    files = _sql_list(parts)
    source = f"read_parquet({files}, filename = true, file_row_number = true)"
    if is_object_store(str(run_dir)):  # DuckDB reads local files: the shards come through FileSystems as Arrow
        db.register("label_shards", _shards_table(parts))
        source = "label_shards"
    db.execute(f"""
        CREATE TEMP VIEW raw AS
        SELECT (list_position({files}, filename)::BIGINT << 32) + file_row_number AS pair_key, *
        FROM {source}
    """)
    db.execute(f"""
        CREATE TEMP TABLE judged AS
        SELECT pair_key, pair_id,
            candidate.criterion AS criterion, candidate.language AS language, candidate.source AS source,
            coalesce(candidate.verified, false) AS verified, candidate.source = 'commit' AS commit_direction,
            length(candidate.chosen) AS chosen_chars, length(candidate.rejected) AS rejected_chars,
            margin, kept, keep_reason, label_source,
            -- the judges' keep decision: a pair execution labelled carries the keep rule's verdict in its reason
            CASE WHEN label_source = '{EXECUTION}' THEN keep_reason = 'execution_verified' ELSE kept END AS judge_kept
        FROM raw
    """)
    (unkeyed,) = db.execute("SELECT count(*) FROM judged WHERE pair_key IS NULL").fetchone()
    if unkeyed:
        raise AuditError(f"{unkeyed} rows of {parts[0]} ... could not be told apart (DuckDB renamed the shard paths)")
    db.execute("""
        CREATE TEMP TABLE votes AS
        SELECT pair_key, v.judge AS judge, v."order" AS vote_order, v.verdict AS verdict, v.outcome AS outcome, v.error AS error
        FROM (SELECT pair_key, UNNEST(votes) AS v FROM raw)
        WHERE v.judge IS DISTINCT FROM ?
    """, [EXECUTION])
    # Pairs the judges were to label but that have no votes stay (LEFT JOIN): they count as pairs with no rating.
    # Pairs execution labelled without a judge vote are no judge's work and are left out.
    db.execute(f"""
        CREATE TEMP TABLE pair_subjects AS
        WITH counted AS (
            SELECT j.*, {_SUBJECT_COUNTS} FROM judged j LEFT JOIN votes v USING (pair_key)
            WHERE j.label_source IS DISTINCT FROM '{EXECUTION}' OR j.pair_key IN (SELECT pair_key FROM votes)
            GROUP BY ALL
        ) {_SUBJECT_FACTS}
    """)
    db.execute(f"""
        CREATE TEMP TABLE judge_subjects AS
        WITH counted AS (
            SELECT j.*, v.judge, {_SUBJECT_COUNTS} FROM judged j JOIN votes v USING (pair_key) GROUP BY ALL
        ) {_SUBJECT_FACTS}
    """)
    return db


def fetch_dicts(db: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[dict[str, Any]]:
    """Rows of a query as dicts keyed by column name."""
    cursor = db.execute(sql, parameters or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
