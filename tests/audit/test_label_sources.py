"""The audit after execution became a label source and judges are qualified before they label (issue 20):
execution's votes are no judge's, label sources of the label output and of the corpus, the label manifest's
qualification in metrics.json and the report, and agreement with the truth by vote-margin strength."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit import audit, compute_metrics
from audit.agreement import wilson_interval
from audit.plots import FIGURES
from pipelines.label.qualify import QualifyConfig, Tally, qualify
from pipelines.label.voting import count, margin
from schemas import EXECUTION, CorpusRow, JudgedPair, Origin, Vote, arrow_schema, to_row
from storage import StageManifest
from tests.audit.test_audit import hand_pairs, judge_votes, judged, no_nan
from tests.support.stage_fixtures import candidate, write_stage

EXECUTION_VOTE = Vote(EXECUTION, EXECUTION, "chosen_first", 0, 0, "A", "match", "", None)
# What the judges' votes say; everything else in metrics.json is about the label output, the corpus or the manifest.
JUDGE_KEYS = ("judges", "pairs", "votes", "overall", "by_criterion", "by_language", "by_source", "by_criterion_language_source",
              "by_judge", "error_reasons", "margins")


def by_execution(pair, judge_votes_: list[Vote] = (), reason: str = "execution_verified") -> JudgedPair:
    """A pair execution labelled, as the label stage writes it: the judges' votes (verified: both) then execution's."""
    votes = [*judge_votes_, EXECUTION_VOTE]
    return JudgedPair(pair.pair_id, pair, votes, count(votes, "chosen_first"), count(votes, "chosen_second"), margin(votes),
                      True, reason, label_source=EXECUTION)


def verified(pair_id: str, **fields) -> object:
    return candidate(pair_id, "x" * 7, "y" * 3, source="bug_injection", verified=True, **fields)


def judge_keys(metrics: dict) -> dict:
    return {key: metrics[key] for key in JUDGE_KEYS}


def test_execution_votes_change_no_judge_metric(tmp_path):
    # P5 and P6 were labelled by execution and judged as well (verified: both): the judges keep P5 (8 matches) and
    # disagree on P6 (8 contradictions). Three further verified pairs carry execution's vote alone.
    p5, p6 = verified("p5"), verified("p6", language="Go")
    agree = judge_votes("alpha", ["A", "A", "B", "B"]) + judge_votes("beta", ["A", "A", "B", "B"])
    disagree = judge_votes("alpha", ["B", "B", "A", "A"]) + judge_votes("beta", ["B", "B", "A", "A"])
    both = [by_execution(p5, agree),
            by_execution(p6, disagree, "execution_verified; judges disagree (too_few_matches: 0 < 6)")]
    only_execution = [by_execution(verified(f"x{i}", language=("Python", "Rust")[i % 2])) for i in range(3)]
    # The same judge votes on the same pairs, as the judges alone would have labelled them; same order, so the same
    # pair keys (float sums run in pair order).
    alone = [judged(p5, agree), judged(p6, disagree)]
    assert [p.kept for p in alone] == [True, False]

    write_stage(tmp_path / "mixed", "label", [*hand_pairs(), *both, *only_execution], JudgedPair)
    write_stage(tmp_path / "judges", "label", [*hand_pairs(), *alone], JudgedPair)
    mixed, judges_only = compute_metrics(tmp_path / "mixed"), compute_metrics(tmp_path / "judges")

    assert judge_keys(mixed) == judge_keys(judges_only)
    # Not equal by being empty: six judged pairs of 48 votes, and execution is no judge.
    assert (mixed["pairs"], mixed["votes"], mixed["judges"]) == (6, 48, ["alpha", "beta"])
    assert [j["judge"] for j in mixed["by_judge"]] == ["alpha", "beta"]
    assert {g["language"] for g in mixed["by_language"]} == {"Python", "Go"}  # the Rust pair had execution's vote only
    # Judges measured on the verified pairs they voted on: P2, P4 (hand pairs), P5 picks chosen, P6 picks rejected.
    truth = mixed["overall"]["ground_truth"]["verified"]
    assert (truth["k"], truth["n"], truth["picks_rejected"]) == (1, 4, 2)
    # The keep rule's decision, not execution's: P1 and P5 of six.
    assert (mixed["overall"]["keep_yield"]["k"], mixed["overall"]["keep_yield"]["n"]) == (2, 6)

    sources = mixed["label_sources"]
    assert (sources["pairs"], sources["kept"]) == (9, 6)
    assert sources["sources"] == [
        {"label_source": "execution", "pairs": 5, "share": 5 / 9, "kept": 5, "kept_share": 5 / 6, "judge_voted": 2},
        {"label_source": "judges", "pairs": 4, "share": 4 / 9, "kept": 1, "kept_share": 1 / 6, "judge_voted": 4},
    ]
    # keep_reasons stay those of the whole label output.
    assert {r["reason"]: r["pairs"] for r in mixed["keep_reasons"]} == {
        "execution_verified": 4, "execution_verified; judges disagree": 1, "kept": 1, "too_few_matches": 3}


def test_a_run_labelled_by_execution_alone_has_no_judged_pair(tmp_path):
    pairs = [by_execution(verified(f"x{i}")) for i in range(4)]
    write_stage(tmp_path, "label", pairs, JudgedPair)
    metrics = audit(tmp_path, tmp_path / "audit")
    assert (metrics["pairs"], metrics["votes"], metrics["judges"], metrics["by_judge"], metrics["margins"]) == (0, 0, [], [], [])
    assert metrics["overall"]["keep_yield"] == {"value": None, "k": 0, "n": 0, "ci95": None, "reason": "no pairs"}
    assert metrics["label_sources"]["sources"] == [
        {"label_source": "execution", "pairs": 4, "share": 1.0, "kept": 4, "kept_share": 1.0, "judge_voted": 0}]
    assert metrics["calibration"]["by_judge"] == [] and "no judge voted" in metrics["calibration"]["reason"]
    assert (tmp_path / "audit" / "report.html").is_file()


# --- qualification ---------------------------------------------------------------------------------

THRESHOLDS = QualifyConfig(pairs=64, min_pairs=20, min_agreement=0.7, min_consistency=0.6, on_unqualified="drop_judge")


def with_label_report(run_dir: Path, report: dict, notes: list[str]) -> None:
    """The label manifest of a test run, with what the stage measured (report) and told the user (notes)."""
    directory = str(run_dir / "label")
    manifest = StageManifest.read(directory)
    manifest.report, manifest.notes = report, notes
    manifest.write(directory)


@pytest.fixture(scope="module")
def qualified_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("qualified-run")
    write_stage(run_dir, "label", [*hand_pairs(), by_execution(verified("x1"))], JudgedPair)
    alpha = qualify("alpha", Tally(pairs=30, agree=27, against=2, consistent=25, votes=120, ties=6, errors=3), THRESHOLDS)
    beta = qualify("beta", Tally(pairs=30, agree=12, against=15, consistent=9, votes=120, ties=2, errors=40), THRESHOLDS)
    assert (alpha.qualified, beta.qualified) == (True, False)
    report = {"qualification": {"status": "measured", "calibration_pairs": 30, "thresholds": THRESHOLDS.model_dump(mode="json"),
                                "judges": [alpha.as_dict(), beta.as_dict()]}}
    notes = [alpha.summary(), beta.summary()]
    with_label_report(run_dir, report, notes)
    metrics = audit(run_dir, run_dir / "audit")
    return run_dir, report, notes, metrics


def test_qualification_is_copied_into_metrics(qualified_run):
    run_dir, report, notes, _ = qualified_run
    stored = no_nan((run_dir / "audit" / "metrics.json").read_text())
    assert stored["qualification"] == json.loads(json.dumps(report["qualification"]))
    assert stored["label_notes"] == notes and notes[1].startswith("judge beta: NOT qualified (agreement 0.40 < min_agreement 0.70")
    beta = stored["qualification"]["judges"][1]
    assert (beta["agreement"]["k"], beta["agreement"]["n"], beta["qualified"]) == (12, 30, False)
    assert beta["agreement"]["ci95"] == pytest.approx(list(wilson_interval(12, 30)))


def test_report_shows_the_qualification_table_refusal_and_figures(qualified_run):
    run_dir = qualified_run[0]
    html = (run_dir / "audit" / "report.html").read_text()
    assert ("beta was NOT qualified to label: agreement 0.40 &lt; min_agreement 0.70; consistency 0.30 &lt; min_consistency "
            "0.60; pairs that needed a judge were not labelled by it") in html
    assert "alpha was NOT qualified" not in html
    table = html.split('data-table="qualification"')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].count("<tr>")
    assert rows == 2 and ">0.900<" in table and ">0.400<" in table  # agreement 27/30 and 12/30
    assert "[0.74, 0.97] 27/30" in table  # alpha's Wilson interval in small print
    assert ">no<" in table and ">yes<" in table and "at least 20 pairs" in html and "on_unqualified drop_judge" in html
    assert "judge beta: NOT qualified" in html.split('id="label-notes"')[1]
    for name in FIGURES:
        figure = run_dir / "audit" / "figures" / name
        assert f'src="figures/{name}"' in html and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000
    assert "calibration_by_strength.png" in FIGURES


@pytest.mark.parametrize(("report", "text"), [
    ({"qualification": {"status": "off"}}, "Judges labelled without qualification (label.qualify is null)"),
    ({"qualification": {"status": "skipped", "why": "no pair needed a judge"}}, "Qualification was skipped: no pair needed a judge."),
    ({}, "No qualification recorded: the label manifest records no qualification"),
])
def test_qualification_off_skipped_or_not_recorded(tmp_path, report, text):
    write_stage(tmp_path, "label", hand_pairs(), JudgedPair)
    with_label_report(tmp_path, report, [])
    metrics = audit(tmp_path, tmp_path / "audit")
    assert metrics["qualification"] == (report.get("qualification") or {
        "status": "not recorded", "why": "the label manifest records no qualification (written before judges were qualified)"})
    html = (tmp_path / "audit" / "report.html").read_text()
    assert text in html and 'data-table="qualification"' not in html and "was NOT qualified" not in html


# --- calibration by vote-margin strength -----------------------------------------------------------

def calibration_pair(pair_id: str, votes: list[Vote]) -> JudgedPair:
    pair = candidate(pair_id, "x" * 5, "y" * 5, source="bug_injection", verified=True)
    return JudgedPair(pair_id, pair, votes, count(votes, "chosen_first"), count(votes, "chosen_second"), margin(votes), False,
                      "calibration")


def calibration_run(run_dir: Path) -> Path:
    """Four calibration pairs and four label pairs; the comments give each (pair, judge)'s strength and side.

    c1: alpha m m m m -> 1, chosen;        beta c c c c -> 1, rejected (execution's vote on c1 is left out).
    c2: alpha m m m c -> 0.5, chosen;      beta m t e m -> 0.5, chosen.
    c3: alpha c m m m -> 0.5, chosen;      beta m c c m -> 0, none.
    c4: alpha c c c m -> 0.5, rejected;    beta e e e e -> 0, none.
    v1 (verified, judges): alpha m m c c -> 0, none; beta m m m m -> 1, chosen.
    v2 (verified, both; pair c2 again): alpha's votes counted once, from the calibration table.
    v3 (commit pair): not of known truth. v4: execution's vote alone.
    """
    write_stage(run_dir, "label", [
        judged(verified("v1"), judge_votes("alpha", ["A", "A", "A", "A"]) + judge_votes("beta", ["A", "A", "B", "B"])),
        by_execution(verified("c2"), judge_votes("alpha", ["A", "A", "A", "A"])),
        judged(candidate("v3", "x", "yy"), judge_votes("alpha", ["A", "A", "B", "B"])),
        by_execution(verified("v4")),
    ], JudgedPair, shards=2)
    write_stage(run_dir, "label/calibration", [
        calibration_pair("c1", judge_votes("alpha", ["A", "A", "B", "B"]) + judge_votes("beta", ["B", "B", "A", "A"]) + [EXECUTION_VOTE]),
        calibration_pair("c2", judge_votes("alpha", ["A", "A", "B", "A"]) + judge_votes("beta", ["A", "TIE", None, "B"])),
        calibration_pair("c3", judge_votes("alpha", ["B", "A", "B", "B"]) + judge_votes("beta", ["A", "B", "A", "B"])),
        calibration_pair("c4", judge_votes("alpha", ["B", "B", "A", "B"]) + judge_votes("beta", [None] * 4)),
    ], JudgedPair, shards=2)
    return run_dir


def bucket(strength: float, pairs: int, chosen: int, rejected: int) -> dict:
    low, high = wilson_interval(chosen, pairs)
    return {"strength": strength, "pairs": pairs, "picks_chosen": chosen, "picks_rejected": rejected,
            "agreement": {"value": chosen / pairs, "k": chosen, "n": pairs, "ci95": [low, high], "reason": None}}


def expected_calibration() -> list[dict]:
    return [
        {"judge": "alpha", "pairs": 5, "from_calibration": 4, "from_label": 1,
         "agreement": {"value": 3 / 5, "k": 3, "n": 5, "ci95": list(wilson_interval(3, 5)), "reason": None},
         "buckets": [bucket(0.0, 1, 0, 0), bucket(0.5, 3, 2, 1), bucket(1.0, 1, 1, 0)]},
        {"judge": "beta", "pairs": 5, "from_calibration": 4, "from_label": 1,
         "agreement": {"value": 2 / 5, "k": 2, "n": 5, "ci95": list(wilson_interval(2, 5)), "reason": None},
         "buckets": [bucket(0.0, 2, 0, 0), bucket(0.5, 1, 1, 0), bucket(1.0, 2, 1, 1)]},
    ]


def test_calibration_by_margin_strength(tmp_path):
    run_dir = calibration_run(tmp_path)
    metrics = audit(run_dir, run_dir / "audit")
    calibration = no_nan((run_dir / "audit" / "metrics.json").read_text())["calibration"]
    assert calibration["by_judge"] == expected_calibration()
    assert calibration["calibration_table"]["pairs"] == 4 and len(calibration["calibration_table"]["files"]) == 2
    assert calibration["calibration_table"]["reason"] is None and calibration["reason"] is None
    assert calibration["verified_label_pairs"] == 2  # v1 and c2; v4 has no judge vote
    assert metrics["judges"] == ["alpha", "beta"]  # the calibration table is no part of the judge metrics
    table = (run_dir / "audit" / "report.html").read_text().split('data-table="calibration"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 2 * (1 + 3) and "[0.21, 0.94] 2/3" in table


def test_calibration_without_a_calibration_table(tmp_path):
    run_dir = calibration_run(tmp_path)
    for part in (run_dir / "label" / "calibration").iterdir():
        part.unlink()
    calibration = compute_metrics(run_dir)["calibration"]
    assert calibration["calibration_table"]["pairs"] == 0 and "no part-*.parquet" in calibration["calibration_table"]["reason"]
    # v1 (alpha 0 none, beta 1 chosen) and c2 from the label output (alpha m m c c: 0, none).
    assert [(j["judge"], [(b["strength"], b["pairs"], b["picks_chosen"]) for b in j["buckets"]]) for j in calibration["by_judge"]] == [
        ("alpha", [(0.0, 2, 0)]), ("beta", [(1.0, 1, 1)])]


# --- label sources of the corpus -------------------------------------------------------------------

def corpus_row(index: int, label_source: str | None) -> CorpusRow:
    return CorpusRow(system="", input=f"task {index}", chosen="good", rejected="bad", language=0, aspect=0, source="commit",
                     idx=f"row-{index}", origin=Origin(repo="octo/demo"), license=None, prompt_origin="subject_fallback",
                     verified=label_source == EXECUTION, verification=None, votes_matches=0, votes_contradictions=0,
                     votes_ties=0, votes_errors=0, label_source=label_source)


def corpus_run(run_dir: Path) -> Path:
    """RUN_DIR/assemble: 5 rows labelled by execution, 3 by judges, 2 of stages without judges, in 3 shards."""
    sources = [EXECUTION] * 5 + ["judges"] * 3 + [None] * 2
    write_stage(run_dir, "assemble", [corpus_row(i, s) for i, s in enumerate(sources)], CorpusRow, shards=3)
    return run_dir


EXPECTED_CORPUS = [{"label_source": "execution", "rows": 5, "share": 0.5}, {"label_source": "judges", "rows": 3, "share": 0.3},
                   {"label_source": "unjudged", "rows": 2, "share": 0.2}]


def test_corpus_label_sources(tmp_path):
    write_stage(tmp_path, "label", hand_pairs(), JudgedPair)
    run_dir = corpus_run(tmp_path)
    metrics = audit(run_dir, run_dir / "audit")
    corpus = metrics["corpus_label_sources"]
    assert (corpus["rows"], corpus["sources"], corpus["reason"], len(corpus["files"])) == (10, EXPECTED_CORPUS, None, 3)
    table = (run_dir / "audit" / "report.html").read_text().split('data-table="corpus-label-sources"')[1].split("</table>")[0]
    assert table.count("<tr>") == 4 and ">unjudged<" in table and "50.0%" in table


def test_corpus_label_sources_without_assemble_or_from_an_older_corpus(tmp_path):
    write_stage(tmp_path, "label", hand_pairs(), JudgedPair)
    missing = compute_metrics(tmp_path)["corpus_label_sources"]
    assert missing["rows"] is None and missing["sources"] == [] and "the assemble stage has not run" in missing["reason"]
    # A CorpusRow v2 shard, written before label_source existed.
    schema = arrow_schema(CorpusRow)
    old = schema.remove(schema.get_field_index("label_source")).with_metadata(
        {**schema.metadata, b"codepref.schema_version": b"2"})
    rows = [{k: v for k, v in to_row(corpus_row(0, None)).items() if k != "label_source"}]
    (tmp_path / "assemble").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=old), tmp_path / "assemble" / "part-00000-of-00001.parquet")
    older = audit(tmp_path, tmp_path / "audit")["corpus_label_sources"]
    assert older["rows"] is None and older["sources"] == [] and "CorpusRow v2 has no label_source column" in older["reason"]
    assert "CorpusRow v2 has no label_source column (written before CorpusRow v3); rerun assemble (--force)" in \
        (tmp_path / "audit" / "report.html").read_text().split('<h3 id="corpus-label-sources">')[1].split("<h")[0]


def test_sources_and_calibration_on_an_object_store(tmp_path):
    """RUN_DIR on memfs://: the calibration table and the assemble output are read through FileSystems."""
    from tests.support.memory_fs import SCHEME, copy_into

    run_dir = corpus_run(calibration_run(tmp_path / "local"))  # label, label/calibration and assemble
    local = compute_metrics(run_dir)
    store = copy_into(run_dir, f"{SCHEME}://{tmp_path.name}/run")
    remote = compute_metrics(store)
    assert remote["calibration"]["by_judge"] == local["calibration"]["by_judge"] == expected_calibration()
    assert remote["corpus_label_sources"]["sources"] == EXPECTED_CORPUS
    assert all(f.startswith(f"{store}/assemble/") for f in remote["corpus_label_sources"]["files"])
    assert remote["calibration"]["calibration_table"]["files"][0].startswith(f"{store}/label/calibration/")

