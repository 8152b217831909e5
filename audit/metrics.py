"""Label-quality metrics of a run: DuckDB aggregates over the judged pairs, finished into estimates.

Every metric is computed overall, per criterion, per language, per source and per criterion x
language x source (one GROUPING SETS query), and per judge. DEFINITIONS says exactly what each one
is; `metrics(run_dir)` returns them all as one JSON-ready dict (no NaN: an undefined value is None
with a reason).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from audit.agreement import cohen_kappa, fleiss_kappa, mean, proportion
from audit.judged import OUTCOMES, fetch_dicts, label_parts, open_judged
from audit.sources import (
    calibration,
    corpus_label_sources,
    label_sources,
    qualification,
)

METRICS_VERSION = 1
GROUPINGS: dict[str, tuple[str, ...]] = {
    "overall": (),
    "by_criterion": ("criterion",),
    "by_language": ("language",),
    "by_source": ("source",),
    "by_criterion_language_source": ("criterion", "language", "source"),
}
GROUP_COLUMNS = ("criterion", "language", "source")
VOTE_OUTCOMES = (*OUTCOMES, "error")
GROUND_TRUTHS = {
    "verified": "execution-verified pairs (candidate.verified true: the chosen side passed, the rejected failed)",
    "commit": "commit pairs (source 'commit': chosen is the file after the commit)",
}

DEFINITIONS: dict[str, str] = {
    "judged pair": "a pair of the label output that a judge voted on, or that the judges were to label (label_source "
                   "'judges'; one without votes counts as a pair with no rating). Every judge metric (vote shares, parse errors, "
                   "agreement, kappas, position and length bias, ground truth, keep yield, margins, by_judge) is over judged "
                   "pairs and judge votes only: a vote whose judge is 'execution' is the pair's tests, not a rater, and is left "
                   "out, and a pair execution labelled that no judge voted on is not a judged pair",
    "valid vote": "a vote whose verdict parsed (outcome match, contradiction or tie); error votes are no rating and are left out of "
                  "every agreement metric, and counted in parse_error_rate",
    "side": "a set of votes picks 'chosen' when it has more matches than contradictions, 'rejected' when fewer, and no side when "
            "they are equal (ties never pick a side)",
    "vote_shares": "votes of each outcome / all votes (errors included)",
    "parse_error_rate": "error votes (verdict did not parse) / all votes",
    "unanimity_rate": "pairs whose valid votes all have one outcome / pairs with at least two valid votes",
    "mean_margin": "mean over judged pairs of (matches - contradictions) / judge votes (0 for a pair without votes): the label "
                   "stage's margin without execution's vote",
    "vote_entropy": "mean over pairs with a valid vote of H = -sum_k p_k log2 p_k, p_k the share of the pair's valid votes with "
                    "outcome k in {match, contradiction, tie}; in bits, 0 (unanimous) to log2 3 = 1.585. Outcomes, not the letters "
                    "A/B: the letters name opposite sides in the two orders",
    "keep_yield": "judged pairs the judges' keep rule keeps / judged pairs; for a pair execution labelled that the judges also "
                  "voted on (verified: both), the rule's decision is its keep_reason: 'execution_verified' (kept) or "
                  "'execution_verified; judges disagree (...)' (not kept)",
    "margins": "judged pairs per judge margin, (matches - contradictions) / judge votes rounded to 6 places, kept or not by the "
               "judges' keep rule (as in keep_yield)",
    "fleiss_kappa": "Fleiss' kappa with pairs as subjects, valid votes (all judges pooled) as raters, categories match / "
                    "contradiction / tie; pairs with fewer than two valid votes are left out; unequal rater counts by "
                    "P_i = sum_j n_ij(n_ij - 1) / (n_i(n_i - 1)), P = mean P_i, p_j = pooled share of category j, "
                    "Pe = sum p_j^2, kappa = (P - Pe) / (1 - Pe); null (with the reason) when no pair has two valid votes "
                    "or every valid vote has one outcome (0/0)",
    "cohen_kappa": "Cohen's kappa for each two judges over the pairs both voted on validly; a judge's rating of a pair is the "
                   "outcome with strictly most of its valid votes, 'tie' when no outcome has a strict majority; null when fewer "
                   "than two judges voted, no pair has valid votes from both, or both rate every pair alike (0/0)",
    "a_share": "verdicts A / verdicts A or B (ties carry no position); 0.5 without position bias, since every pair is shown in "
               "both orders equally often",
    "a_share_parseable": "verdicts A / all parsed verdicts (A, B, TIE)",
    "flip_rate": "pairs whose chosen_first votes and chosen_second votes both pick a side and pick different ones / pairs whose "
                 "votes pick a side in both orders (all judges pooled)",
    "longer_wins": "pairs whose votes pick the longer side (more characters of code) / pairs with sides of unequal length whose "
                   "votes pick a side",
    "longer_is_chosen": "of the same pairs, those whose longer side is the chosen one: the rate longer_wins would have if the "
                        "votes always agreed with the expected direction",
    "length_bias": "longer_wins - longer_is_chosen: > 0 when votes favour longer code beyond what the expected direction explains",
    "ground_truth": "per kind (verified, commit): judged pairs of that kind whose judge votes pick the chosen side / judged "
                    "pairs of that kind (pairs with no side count as not picking it); verified pairs execution labelled without "
                    "a judge vote are not in it",
    "label_sources": "pairs of the label output per label_source ('execution': the pair's tests decided the label; 'judges': "
                     "the judges' votes): pairs, share = pairs / all pairs, kept, kept_share = kept / all kept pairs, and "
                     "judge_voted = those pairs with at least one judge vote; all pairs, judged or not (a census: no interval)",
    "corpus_label_sources": "rows of the assembled corpus (RUN_DIR/assemble) per label_source, 'unjudged' for rows of stages "
                            "without judges (label_source None); share = rows / all rows; null rows and a reason when there "
                            "is no assemble output or its files have no label_source column (CorpusRow before v3)",
    "qualification": "what the label stage measured of each judge on calibration pairs before it labelled, copied from the "
                     "label manifest's report.qualification: status off, skipped (why) or measured with the thresholds and, "
                     "per judge, pairs, agreement with the truth, position consistency, tie and parse-error rates (Wilson 95 % "
                     "intervals), weight, qualified and shortfalls; label_notes are the manifest's notes as written",
    "calibration": "per judge, over pairs of known truth (the chosen side): the calibration table's pairs (RUN_DIR/label/"
                   "calibration) and the label output's execution-verified pairs (candidate.verified true) that carry that "
                   "judge's votes, a pair in both counted once, from the calibration table. Each (pair, judge) is bucketed by "
                   "the strength of the judge's margin, |matches - contradictions| / the judge's votes on the pair (errors "
                   "included), rounded to 6 places: how decidedly its votes lean, whichever side. The signed margin is not the "
                   "key since the truth is always the chosen side: its sign alone says whether the votes agree. Per bucket: "
                   "pairs, picks_chosen (more matches than contradictions), picks_rejected, and agreement = picks_chosen / "
                   "pairs with its Wilson 95 % interval; a calibrated judge agrees more often where its votes lean harder",

    "ci95": "Wilson score interval, 95 %",
}


def _aggregates(subjects: str) -> str:
    """Sums one GROUP BY needs over a subjects table (`pair_subjects` or `judge_subjects`). Sums of floats run in
    pair order, so the same run gives the same last digits whatever DuckDB's threads do."""
    return"""
        count(*) AS subjects, coalesce(sum(n_votes), 0) AS votes,
        coalesce(sum(m), 0) AS m, coalesce(sum(c), 0) AS c, coalesce(sum(t), 0) AS t, coalesce(sum(e), 0) AS e,
        coalesce(sum(a), 0) AS a, coalesce(sum(b), 0) AS b, coalesce(sum(tie_verdicts), 0) AS tie_verdicts,
        count_if(valid >= 2) AS unanimity_n, count_if(unanimous) AS unanimity_k,
        sum(judge_margin ORDER BY pair_key) AS margin_sum,
        count(entropy) AS entropy_n, sum(entropy ORDER BY pair_key) AS entropy_sum,
        count_if(judge_kept) AS kept,
        count(agreement) AS fleiss_subjects, sum(agreement ORDER BY pair_key) AS fleiss_sum,
        coalesce(sum(m) FILTER (WHERE valid >= 2), 0) AS fleiss_m,
        coalesce(sum(c) FILTER (WHERE valid >= 2), 0) AS fleiss_c,
        coalesce(sum(t) FILTER (WHERE valid >= 2), 0) AS fleiss_t,
        count_if(side_cf IS NOT NULL AND side_cs IS NOT NULL) AS flip_n, count_if(side_cf <> side_cs) AS flip_k,
        count_if(longer IS NOT NULL AND side IS NOT NULL) AS length_n, count_if(longer = side) AS longer_wins,
        count_if(longer = 'chosen' AND side IS NOT NULL) AS longer_chosen,
        count_if(verified) AS verified_n, count_if(verified AND side = 'chosen') AS verified_k,
        count_if(verified AND side = 'rejected') AS verified_against,
        count_if(commit_direction) AS commit_n, count_if(commit_direction AND side = 'chosen') AS commit_k,
        count_if(commit_direction AND side = 'rejected') AS commit_against
    """


def _estimates(row: dict[str, Any], per_pair: bool = True) -> dict[str, Any]:
    """The metrics of one group from its aggregate row."""
    votes = row["votes"]
    counts = {"match": row["m"], "contradiction": row["c"], "tie": row["t"], "error": row["e"]}
    bias = {
        "longer_wins": proportion(row["longer_wins"], row["length_n"], "no pair with sides of unequal length whose votes pick a side"),
        "longer_is_chosen": proportion(row["longer_chosen"], row["length_n"], "no pair with sides of unequal length whose votes pick a side"),
    }
    wins, chosen = bias["longer_wins"]["value"], bias["longer_is_chosen"]["value"]
    bias["length_bias"] = None if wins is None else wins - chosen
    result: dict[str, Any] = {
        "pairs": row["subjects"],
        "votes": votes,
        "vote_counts": counts,
        "vote_shares": {k: (n / votes if votes else None) for k, n in counts.items()},
        "parse_error_rate": proportion(row["e"], votes, "no votes"),
        "unanimity_rate": proportion(row["unanimity_k"], row["unanimity_n"], "no pair has two valid votes"),
        "mean_margin": mean(row["margin_sum"], row["subjects"], "no pairs"),
        "vote_entropy": mean(row["entropy_sum"], row["entropy_n"], "no pair has a valid vote"),
        "fleiss_kappa": fleiss_kappa(row["fleiss_sum"] or 0.0, row["fleiss_subjects"],
                                     {"match": row["fleiss_m"], "contradiction": row["fleiss_c"], "tie": row["fleiss_t"]}),
        "position": {
            "a_share": proportion(row["a"], row["a"] + row["b"], "no verdict picked A or B"),
            "a_share_parseable": proportion(row["a"], row["a"] + row["b"] + row["tie_verdicts"], "no verdict parsed"),
            "flip_rate": proportion(row["flip_k"], row["flip_n"], "no pair whose votes pick a side in both orders"),
        },
        "length": bias,
        "ground_truth": {
            kind: {**proportion(row[f"{kind}_k"], row[f"{kind}_n"], f"no {kind} pairs"), "picks_rejected": row[f"{kind}_against"]}
            for kind in GROUND_TRUTHS
        },
    }
    if per_pair:
        result["keep_yield"] = proportion(row["kept"], row["subjects"], "no pairs")
    return result


def _grouping_sets() -> tuple[str, dict[int, str]]:
    """GROUPING SETS clause of GROUPINGS and the GROUPING() bit mask of each (a bit set = column rolled up)."""
    sets, masks = [], {}
    for name, columns in GROUPINGS.items():
        sets.append("(" + ", ".join(columns) + ")")
        mask = sum(1 << (len(GROUP_COLUMNS) - 1 - i) for i, column in enumerate(GROUP_COLUMNS) if column not in columns)
        masks[mask] = name
    return "GROUPING SETS (" + ", ".join(sets) + ")", masks


def _cohen_by_group(db, judges: list[str], sets: str, masks: dict[int, str]) -> dict[tuple[str, tuple], dict[str, Any]]:
    """Cohen's κ of every two judges, per group: {(grouping, key): {"judge_pairs": [...], "reason": ...}}."""
    if len(judges) < 2:
        reason = (f"one judge voted ({judges[0]}): Cohen's kappa compares two judges" if judges
                  else "no votes: Cohen's kappa compares two judges")
        return defaultdict(lambda: {"judge_pairs": [], "reason": reason})
    rows = fetch_dicts(db, f"""
        WITH rated AS (
            SELECT {", ".join(f"x.{c}" for c in GROUP_COLUMNS)}, x.judge AS judge_a, y.judge AS judge_b,
                x.majority AS rating_a, y.majority AS rating_b
            FROM judge_subjects x JOIN judge_subjects y ON x.pair_key = y.pair_key AND x.judge < y.judge
            WHERE x.majority IS NOT NULL AND y.majority IS NOT NULL
        )
        SELECT {", ".join(GROUP_COLUMNS)}, GROUPING({", ".join(GROUP_COLUMNS)}) AS grouping_mask,
            judge_a, judge_b, rating_a, rating_b, count(*) AS n
        FROM rated GROUP BY judge_a, judge_b, rating_a, rating_b, {sets}
    """)
    cells: dict[tuple[str, tuple], dict[tuple[str, str], dict[tuple[str, str], int]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        name = masks[row["grouping_mask"]]
        key = tuple(row[c] for c in GROUPINGS[name])
        cells[(name, key)][(row["judge_a"], row["judge_b"])][(row["rating_a"], row["rating_b"])] = row["n"]
    pairs = [(a, b) for i, a in enumerate(judges) for b in judges[i + 1 :]]
    result: dict[tuple[str, tuple], dict[str, Any]] = defaultdict(
        lambda: {"judge_pairs": [{"judges": [a, b], **cohen_kappa({}, OUTCOMES)} for a, b in pairs], "reason": None})
    for group, by_judges in cells.items():
        result[group] = {"judge_pairs": [{"judges": [a, b], **cohen_kappa(by_judges.get((a, b), {}), OUTCOMES)} for a, b in pairs],
                         "reason": None}
    return result


def compute_metrics(run_dir: str | Path) -> dict[str, Any]:
    """Every label-quality metric of a run's label stage (see DEFINITIONS), as one JSON-ready dict."""
    parts = label_parts(run_dir)
    with open_judged(run_dir) as db:
        judges = [j for (j,) in db.execute("SELECT DISTINCT judge FROM votes WHERE judge IS NOT NULL ORDER BY judge").fetchall()]
        sets, masks = _grouping_sets()
        rows = fetch_dicts(db, f"""
            SELECT {", ".join(GROUP_COLUMNS)}, GROUPING({", ".join(GROUP_COLUMNS)}) AS grouping_mask, {_aggregates("pair_subjects")}
            FROM pair_subjects GROUP BY {sets} ORDER BY grouping_mask DESC, {", ".join(GROUP_COLUMNS)}
        """)
        cohen = _cohen_by_group(db, judges, sets, masks)
        result: dict[str, Any] = {"metrics_version": METRICS_VERSION, "run_dir": str(run_dir), "label_files": parts, "judges": judges}
        for name in GROUPINGS:
            result[name] = [] if GROUPINGS[name] else None
        for row in rows:
            name = masks[row["grouping_mask"]]
            key = tuple(row[c] for c in GROUPINGS[name])
            group = {**{c: row[c] for c in GROUPINGS[name]}, **_estimates(row), "cohen_kappa": cohen[(name, key)]}
            if GROUPINGS[name]:
                result[name].append(group)
            else:
                result[name] = group
        result["by_judge"] = [
            {"judge": row["judge"], **_estimates(row, per_pair=False)}
            for row in fetch_dicts(db, f"SELECT judge, {_aggregates('judge_subjects')} FROM judge_subjects GROUP BY judge ORDER BY judge")
        ]
        result["error_reasons"] = fetch_dicts(db, """
            SELECT coalesce(error, '(no reason given)') AS reason, count(*) AS votes FROM votes WHERE outcome = 'error'
            GROUP BY ALL ORDER BY votes DESC, reason LIMIT 10
        """)
        result["keep_reasons"] = fetch_dicts(db, """
            SELECT split_part(split_part(keep_reason, ':', 1), ' (', 1) AS reason, count(*) AS pairs
            FROM judged GROUP BY ALL ORDER BY pairs DESC, reason
        """)
        result["label_sources"] = label_sources(db)
        result["calibration"] = calibration(db, str(run_dir))
        result["margins"] = fetch_dicts(db, """
            SELECT round(judge_margin, 6) AS margin, count_if(judge_kept) AS kept, count_if(NOT judge_kept) AS not_kept
            FROM pair_subjects GROUP BY ALL ORDER BY margin
        """)
    result["corpus_label_sources"] = corpus_label_sources(str(run_dir))
    result["qualification"], result["label_notes"] = qualification(str(run_dir))
    result["pairs"] = result["overall"]["pairs"]
    result["votes"] = result["overall"]["votes"]
    result["definitions"] = DEFINITIONS
    return result
