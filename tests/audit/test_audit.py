"""The label-quality audit: metrics checked against hand computations, degenerate runs, the human review
round trip (through the review page's own script in headless Chromium), and the report as a browser shows it."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from fractions import Fraction as F
from pathlib import Path

import pytest

from audit import KEY_FILE, AuditError, audit, compute_metrics, import_verdicts, sample
from audit.agreement import wilson_interval
from audit.plots import FIGURES
from pipelines.label.voting import KeepRule, count, margin, outcome
from schemas import JudgedPair, Vote
from tests.support.stage_fixtures import candidate, write_stage

CF, CS = "chosen_first", "chosen_second"
FC, RM = "Functional Correctness", "Readability and Maintainability"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = "CODEPREF_REQUIRE_BROWSER"  # set by `make test`: a missing browser fails the run instead of skipping


@pytest.fixture
def chromium() -> str:
    """The headless Chromium the browser tests drive; missing, they fail under `make test` and skip elsewhere."""
    if CHROMIUM is None:
        why = "headless Chromium is not installed: apt-get install chromium (make setup does so as root)"
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{why}; {REQUIRE_BROWSER}=1 (make test) requires the audit's browser tests to run")
        pytest.skip(why)
    return CHROMIUM


def judge_votes(judge: str, verdicts: list[str | None]) -> list[Vote]:
    """Four votes of one judge: two in the chosen_first order, then two in chosen_second."""
    orders = [CF, CF, CS, CS]
    return [Vote(judge, "judge.v1", order, i % 2, 11, v, outcome(order, v), f"{judge}/{order}/{i % 2}",
                 None if v else "no [VERDICT] block") for i, (order, v) in enumerate(zip(orders, verdicts))]


def judged(pair, votes: list[Vote]) -> JudgedPair:
    kept, reason = KeepRule(min_matches=6, max_contradictions=1, consensus="pooled").decide(votes)
    return JudgedPair(pair.pair_id, pair, votes, count(votes, CF), count(votes, CS), margin(votes), kept, reason)


def hand_pairs() -> list[JudgedPair]:
    """Four pairs, two judges, four votes each; the comments give each pair's outcomes.

    P1 Python/FC/commit, chosen longer (10 > 4): alpha A A | B B, beta A A | B B -> 8 matches.
    P2 Python/FC/verified, chosen shorter (3 < 6): alpha A A | A A -> m m c c; beta A B | A TIE -> m c c t.
    P3 Go/RM/commit, chosen shorter (5 < 8): alpha B B | A A -> c c c c; beta None B | A B -> e c c m.
    P4 Go/RM/verified, equal lengths: alpha TIE x4; beta None x4.
    """
    return [
        judged(candidate("p1", "x" * 10, "y" * 4), judge_votes("alpha", ["A", "A", "B", "B"]) + judge_votes("beta", ["A", "A", "B", "B"])),
        judged(candidate("p2", "x" * 3, "y" * 6, source="bug_injection", verified=True),
               judge_votes("alpha", ["A", "A", "A", "A"]) + judge_votes("beta", ["A", "B", "A", "TIE"])),
        judged(candidate("p3", "x" * 5, "y" * 8, language="Go", criterion=RM),
               judge_votes("alpha", ["B", "B", "A", "A"]) + judge_votes("beta", [None, "B", "A", "B"])),
        judged(candidate("p4", "x" * 5, "y" * 5, language="Go", criterion=RM, source="bug_injection", verified=True),
               judge_votes("alpha", ["TIE"] * 4) + judge_votes("beta", [None] * 4)),
    ]


def entropy(*counts: int) -> float:
    total = sum(counts)
    return -sum(n / total * math.log2(n / total) for n in counts if n)


def fleiss(observed: F, expected: F) -> float:
    return float((observed - expected) / (1 - expected))


def no_nan(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"metrics.json holds {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("hand-run")
    write_stage(run_dir, "label", hand_pairs(), JudgedPair, shards=2)
    out = run_dir / "audit"
    return run_dir, out, audit(run_dir, out)


def test_overall_metrics_match_hand_computation(hand_run):
    _, out, metrics = hand_run
    assert no_nan((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    overall = metrics["overall"]
    assert (metrics["pairs"], metrics["votes"], metrics["judges"]) == (4, 32, ["alpha", "beta"])
    # Outcomes: matches 8+3+1+0, contradictions 0+4+6+0, ties 0+1+0+4, errors 0+0+1+4.
    assert overall["vote_counts"] == {"match": 12, "contradiction": 10, "tie": 5, "error": 5}
    assert overall["parse_error_rate"]["value"] == 5 / 32
    # P1 (all matches) and P4 (all ties) are unanimous; every pair has at least two valid votes.
    assert (overall["unanimity_rate"]["k"], overall["unanimity_rate"]["n"]) == (2, 4)
    assert overall["mean_margin"]["value"] == pytest.approx((8 / 8 - 1 / 8 - 5 / 8 + 0) / 4)
    assert overall["vote_entropy"]["value"] == pytest.approx((0 + entropy(3, 4, 1) + entropy(1, 6) + 0) / 4)
    assert overall["keep_yield"]["value"] == 1 / 4  # pooled rule: only P1 has 6 matches and at most 1 contradiction

    # Fleiss: P_i = 56/56, (3*2 + 4*3)/56, (1*0 + 6*5)/42, 12/12; pooled shares 12/27, 10/27, 5/27.
    observed = (1 + F(18, 56) + F(30, 42) + 1) / 4
    expected = F(12, 27) ** 2 + F(10, 27) ** 2 + F(5, 27) ** 2
    kappa = overall["fleiss_kappa"]
    assert kappa["value"] == pytest.approx(fleiss(observed, expected)) and kappa["subjects"] == 4 and kappa["ratings"] == 27

    # Cohen (each judge's strict-majority outcome): P1 match/match, P2 tie (2-2)/contradiction, P3
    # contradiction/contradiction, P4 beta has no valid vote. p_o = 2/3; alpha 1/3 each, beta match 1/3,
    # contradiction 2/3: p_e = 1/9 + 2/9 = 1/3, kappa = (2/3 - 1/3) / (2/3) = 1/2.
    (pair,) = overall["cohen_kappa"]["judge_pairs"]
    assert pair["judges"] == ["alpha", "beta"] and pair["subjects"] == 3 and pair["value"] == pytest.approx(0.5)

    # Verdict letters: A 4+6+3+0, B 4+1+4+0, TIE 5.
    position = overall["position"]
    assert (position["a_share"]["k"], position["a_share"]["n"]) == (13, 22)
    assert (position["a_share_parseable"]["k"], position["a_share_parseable"]["n"]) == (13, 27)
    # Sides per order: P1 chosen/chosen, P2 chosen (3-1) / rejected (0-3), P3 rejected/rejected, P4 none.
    assert (position["flip_rate"]["k"], position["flip_rate"]["n"]) == (1, 3)

    # Longer side: P1 chosen (wins), P2 rejected (votes pick rejected: wins), P3 rejected (wins), P4 equal.
    length = overall["length"]
    assert (length["longer_wins"]["k"], length["longer_wins"]["n"]) == (3, 3)
    assert (length["longer_is_chosen"]["k"], length["longer_is_chosen"]["n"]) == (1, 3)
    assert length["length_bias"] == pytest.approx(2 / 3)

    # Ground truth: verified P2 (picks rejected) and P4 (no side); commit P1 (chosen) and P3 (rejected).
    verified, commit = overall["ground_truth"]["verified"], overall["ground_truth"]["commit"]
    assert (verified["k"], verified["n"], verified["picks_rejected"]) == (0, 2, 1)
    assert (commit["k"], commit["n"], commit["picks_rejected"]) == (1, 2, 1)
    assert commit["ci95"] == pytest.approx(list(wilson_interval(1, 2)))


def test_wilson_interval_by_hand():
    # p = 1/2, n = 2, z = 1.96: centre 0.5, half = z*sqrt(0.125 + z^2/16) / (1 + z^2/2).
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 2 + z * z / 16) / (1 + z * z / 2)
    assert wilson_interval(1, 2) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(0, 0) is None and wilson_interval(3, 3)[1] == 1.0


def test_groups_and_judges(hand_run):
    _, _, metrics = hand_run
    languages = {g["language"]: g for g in metrics["by_language"]}
    assert sorted(languages) == ["Go", "Python"] and languages["Go"]["pairs"] == 2
    # Go = P3 + P4: P_i 30/42 and 1; valid votes m 1, c 6, t 4 of 11.
    go_expected = F(1, 121) + F(36, 121) + F(16, 121)
    assert languages["Go"]["fleiss_kappa"]["value"] == pytest.approx(fleiss((F(30, 42) + 1) / 2, go_expected))
    # Python = P1 + P2: Cohen over P1 (match, match) and P2 (tie, contradiction): p_o 1/2, p_e 1/4 -> 1/3.
    assert languages["Python"]["cohen_kappa"]["judge_pairs"][0]["value"] == pytest.approx(1 / 3)
    # Go: only P3 is rated by both (contradiction, contradiction): chance agreement 1, kappa undefined.
    go_cohen = languages["Go"]["cohen_kappa"]["judge_pairs"][0]
    assert go_cohen["value"] is None and "0/0" in go_cohen["reason"]
    triples = {(g["criterion"], g["language"], g["source"]): g["pairs"] for g in metrics["by_criterion_language_source"]}
    assert triples == {(FC, "Python", "commit"): 1, (FC, "Python", "bug_injection"): 1, (RM, "Go", "commit"): 1,
                       (RM, "Go", "bug_injection"): 1}
    assert {g["source"]: g["pairs"] for g in metrics["by_source"]} == {"bug_injection": 2, "commit": 2}
    judges = {j["judge"]: j for j in metrics["by_judge"]}
    # alpha's letters: A 2+4+2+0, B 2+0+2+0; beta's flip: P2 orders m-c vs c-t -> chosen/rejected.
    assert (judges["alpha"]["position"]["a_share"]["k"], judges["alpha"]["position"]["a_share"]["n"]) == (8, 12)
    assert judges["beta"]["parse_error_rate"]["value"] == 5 / 16 and "keep_yield" not in judges["beta"]
    assert {r["reason"]: r["pairs"] for r in metrics["keep_reasons"]} == {"kept": 1, "too_few_matches": 3}
    assert metrics["error_reasons"] == [{"reason": "no [VERDICT] block", "votes": 5}]


def degenerate_run(tmp_path: Path, pairs: list[JudgedPair]) -> tuple[dict, dict]:
    write_stage(tmp_path, "label", pairs, JudgedPair)
    metrics = audit(tmp_path, tmp_path / "audit")
    return metrics, no_nan((tmp_path / "audit" / "metrics.json").read_text())


def test_all_votes_equal_and_one_judge(tmp_path):
    pairs = [judged(candidate(f"q{i}", "x" * (i + 2), "y"), judge_votes("solo", ["A", "A", "B", "B"])) for i in range(3)]
    metrics, _ = degenerate_run(tmp_path, pairs)
    overall = metrics["overall"]
    assert overall["fleiss_kappa"]["value"] is None and "'match'" in overall["fleiss_kappa"]["reason"]
    assert overall["fleiss_kappa"]["observed"] == 1.0 and overall["unanimity_rate"]["value"] == 1.0
    assert overall["vote_entropy"]["value"] == 0.0 and overall["position"]["a_share"]["value"] == 0.5
    assert overall["position"]["flip_rate"]["value"] == 0.0 and overall["mean_margin"]["value"] == 1.0
    assert overall["cohen_kappa"] == {"judge_pairs": [], "reason": "one judge voted (solo): Cohen's kappa compares two judges"}
    assert (tmp_path / "audit" / "report.html").exists()


def test_all_votes_errors(tmp_path):
    pairs = [judged(candidate(f"e{i}", "x" * (i + 2), "y", source="bug_injection", verified=True),
                    judge_votes("alpha", [None] * 4) + judge_votes("beta", [None] * 4)) for i in range(2)]
    metrics, _ = degenerate_run(tmp_path, pairs)
    overall = metrics["overall"]
    assert overall["vote_shares"] == {"match": 0.0, "contradiction": 0.0, "tie": 0.0, "error": 1.0}
    assert overall["parse_error_rate"]["value"] == 1.0
    for estimate, reason in [(overall["unanimity_rate"], "no pair has two valid votes"), (overall["vote_entropy"], "no pair has a valid vote"),
                             (overall["fleiss_kappa"], "no pair has two non-error votes"),
                             (overall["position"]["a_share"], "no verdict picked A or B"),
                             (overall["length"]["longer_wins"], "no pair with sides of unequal length whose votes pick a side")]:
        assert estimate["value"] is None and estimate["reason"] == reason
    assert overall["length"]["length_bias"] is None
    (pair,) = overall["cohen_kappa"]["judge_pairs"]
    assert pair["value"] is None and pair["reason"] == "no pair has a non-error vote from both"
    # Pairs whose votes pick no side count as not agreeing with the ground truth.
    assert (overall["ground_truth"]["verified"]["k"], overall["ground_truth"]["verified"]["n"]) == (0, 2)


def test_a_run_without_label_output_is_refused(tmp_path):
    with pytest.raises(AuditError, match="run the label stage first"):
        compute_metrics(tmp_path)


def review_pairs() -> list[JudgedPair]:
    """24 pairs over 2 criteria x 2 languages x 3 margin buckets; every third pair is execution-verified."""
    patterns = {"unanimous": (["A", "A", "B", "B"], ["A", "A", "B", "B"]), "weak": (["A", "B", "B", "A"], ["A", "A", "B", "TIE"]),
                "negative": (["B", "B", "A", "A"], ["B", "A", "A", "B"])}
    pairs = []
    for i in range(24):
        criterion, language = (FC, RM)[i % 2], ("Python", "Ruby")[(i // 2) % 2]
        alpha, beta = patterns[("unanimous", "weak", "negative")[(i // 4) % 3]]
        pair = candidate(f"r{i:02d}", f"def good_{i}():\n    return {i}\n", f"def bad_{i}():\n    return -{i}\n",
                         language=language, criterion=criterion, source="bug_injection" if i % 3 == 0 else "commit",
                         verified=True if i % 3 == 0 else None, prompt=f"Task {i}: return the number.")
        pairs.append(judged(pair, judge_votes("alpha", alpha) + judge_votes("beta", beta)))
    return pairs


@pytest.fixture
def review_sample(tmp_path):
    run_dir = tmp_path / "run"
    write_stage(run_dir, "label", review_pairs(), JudgedPair, shards=3)
    summary = sample(run_dir, tmp_path / "review", size=13, seed=7)
    key = json.loads((tmp_path / "review" / KEY_FILE).read_text())
    return run_dir, tmp_path / "review", summary, key


def test_sample_is_stratified_blind_and_seeded(review_sample, tmp_path):
    run_dir, folder, summary, key = review_sample
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    assert summary["items"] == len(items) == len(key["items"]) == 13
    assert all(set(item) == {"item_id", "criterion", "language", "prompt", "response_a", "response_b"} for item in items)
    for name in ("items.jsonl", "items.csv", "review.html"):  # blind: no pair id, no side, no judge or source
        text = (folder / name).read_text()
        assert not re.search(r"\br\d\d\b|chosen|rejected|a_side|alpha|beta|bug_injection|commit", text), name
    # 12 strata (2 criteria x 2 languages x 3 buckets) of 2 pairs: each gives one, one gives a second.
    assert len(key["strata"]) == 12 and sorted(s["sampled"] for s in key["strata"]) == [1] * 11 + [2]
    pairs = {p.pair_id: p for p in review_pairs()}
    for item, entry in zip(items, key["items"]):
        pair = pairs[entry["pair_id"]].candidate
        shown_a = pair.chosen if entry["a_side"] == "chosen" else pair.rejected
        assert item["response_a"] == shown_a and item["prompt"] == pair.prompt and item["item_id"] == entry["item_id"]
    assert {entry["a_side"] for entry in key["items"]} == {"chosen", "rejected"}
    with (folder / "items.csv").open(newline="") as handle:
        assert [row["item_id"] for row in csv.DictReader(handle)] == [item["item_id"] for item in items]
    again = sample(run_dir, tmp_path / "again", size=13, seed=7)
    assert again["sample"] == summary["sample"] and (tmp_path / "again" / KEY_FILE).read_text() == (folder / KEY_FILE).read_text()
    assert sample(run_dir, tmp_path / "other", size=13, seed=8)["sample"] != summary["sample"]


def test_fake_reviewer_round_trip_reports_agreement_and_bad_lines(review_sample):
    _, folder, _, key = review_sample
    entries = key["items"]
    lines = []
    human_sides = {}
    for index, entry in enumerate(entries):
        # The reviewer picks the chosen side, except TIE on the first item and the wrong side on the second.
        side = "neither" if index == 0 else ("rejected" if index == 1 else "chosen")
        letter = "TIE" if side == "neither" else ("A" if entry["a_side"] == side else "B")
        human_sides[entry["item_id"]] = side
        lines.append(json.dumps({"sample": key["sample"], "item_id": entry["item_id"], "verdict": letter}))
    lines[4:4] = ["{not json", json.dumps({"item_id": "item-9999", "verdict": "A"}), "",
                  json.dumps({"item_id": entries[0]["item_id"], "verdict": "maybe"}), json.dumps({"item_id": entries[2]["item_id"], "verdict": "B"})]
    verdicts = folder / "verdicts.jsonl"
    verdicts.write_text("\n".join(lines) + "\n")
    report = import_verdicts(folder, verdicts, out=folder)
    assert json.loads((folder / "import_report.json").read_text()) == report
    assert [(m["line"], m["error"].split(" ")[0]) for m in report["malformed"]] == [
        (5, "not"), (6, "unknown"), (8, "verdict"), (9, "second")]
    assert report["answered"] == 13 and report["unanswered"] == 0
    agree = sum(entry["judge_side"] == human_sides[entry["item_id"]] for entry in entries)
    assert (report["judge_vs_human"]["k"], report["judge_vs_human"]["n"]) == (agree, 13)
    assert report["judge_vs_human"]["ci95"] == pytest.approx(list(wilson_interval(agree, 13)))
    verified = [e for e in entries if "verified" in e["ground_truth"]]
    picks_chosen = sum(human_sides[e["item_id"]] == "chosen" for e in verified)
    assert (report["human_vs_ground_truth"]["verified"]["k"], report["human_vs_ground_truth"]["verified"]["n"]) == (picks_chosen, len(verified))
    assert report["human_neither_rate"]["k"] == 1


def test_csv_verdicts_report_the_physical_line(review_sample):
    _, folder, _, key = review_sample
    with (folder / "items.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["verdict"], rows[1]["verdict"], rows[2]["verdict"] = "a", "Z", ""
    filled = folder / "filled.csv"
    with filled.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Code cells span several lines: the bad row starts where its item id does.
    start = next(number for number, line in enumerate(filled.read_text().splitlines(), 1) if line.startswith(rows[1]["item_id"]))
    report = import_verdicts(folder / KEY_FILE, filled)
    assert report["answered"] == 1 and [m["line"] for m in report["malformed"]] == [start] and start > 3


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre><iframe id="page" src="review.html"></iframe><script>
document.getElementById("page").addEventListener("load", function () {
  var page = document.getElementById("page").contentWindow, doc = page.document, out = document.getElementById("out");
  try {
    doc.getElementById("reviewer").value = "tester";
    CLICKS.forEach(function (click) { doc.querySelector('input[name="verdict-' + click[0] + '"][value="' + click[1] + '"]').click(); });
    // The Blob is read where the page makes its URL; the click that would start a download only records the file name.
    var original = page.URL.createObjectURL;
    page.URL.createObjectURL = function (blob) { blob.text().then(function (text) { out.textContent = text; }); return original.call(page.URL, blob); };
    page.HTMLAnchorElement.prototype.click = function () { document.body.dataset.download = this.download; };
    page.save();
    document.body.dataset.progress = doc.getElementById("progress").dataset.answered;
  } catch (error) { out.textContent = "error: " + error; }
}, { once: true });
</script></body></html>"""


def test_review_page_saves_verdicts_that_import_reads(review_sample, tmp_path, chromium):
    _, folder, _, key = review_sample
    clicks = [[key["items"][0]["item_id"], "B"], [key["items"][3]["item_id"], "TIE"], [key["items"][5]["item_id"], "A"]]
    (folder / "harness.html").write_text(HARNESS.replace("CLICKS", json.dumps(clicks)))
    dom = run_chromium(chromium, tmp_path, "--allow-file-access-from-files", "--dump-dom", (folder / "harness.html").as_uri()).stdout
    assert 'data-progress="3"' in dom and f'data-download="verdicts-{key["sample"]}.jsonl"' in dom
    saved = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"')
    verdicts = folder / "from-page.jsonl"
    verdicts.write_text(saved)
    records = [json.loads(line) for line in saved.splitlines()]
    assert [(r["item_id"], r["verdict"], r["reviewer"], r["sample"]) for r in records] == [
        (item, verdict, "tester", key["sample"]) for item, verdict in clicks]
    report = import_verdicts(folder, verdicts)
    assert report["answered"] == 3 and report["malformed"] == [] and report["human_neither_rate"]["k"] == 1


def test_report_renders_tables_and_figures_in_chromium(hand_run, tmp_path, chromium):
    _, out, metrics = hand_run
    page = (out / "report.html").as_uri()
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page).stdout
    # Four figures since the calibration figure (agreement with truth by vote-margin strength) joined the three of before.
    assert len(FIGURES) == 4 and 'data-images-loaded="4/4"' in dom
    for table in ("overall-agreement", "overall-bias", "ground-truth", "judges-agreement", "cohen", "by_criterion-agreement",
                  "by_language-agreement", "by_language-bias", "by_source-bias", "by_criterion_language_source-agreement"):
        assert f'data-table="{table}"' in dom, table
    language_table = dom.split('data-table="by_language-agreement"')[1].split("</table>")[0]
    assert language_table.count("<tr>") == 3 and ">Go<" in language_table and ">Python<" in language_table
    assert f'{metrics["overall"]["fleiss_kappa"]["value"]:.3f}' in dom.split('data-table="overall-agreement"')[1].split("</table>")[0]

    screenshot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path, f"--screenshot={screenshot}", "--window-size=1400,2400", page)
    from PIL import Image

    with Image.open(screenshot) as image:
        pixels = image.convert("RGB").resize((140, 240))
        colours = pixels.getcolors(maxcolors=140 * 240)
        white = sum(n for n, colour in colours if min(colour) > 245)
    assert len(colours) > 50 and white < 0.97 * 140 * 240, "the screenshot is blank"

    # The marker is not vacuous: without the figures folder the page says which figures are missing.
    moved = shutil.move(str(out / "figures"), str(tmp_path / "figures"))
    try:
        dom = run_chromium(chromium, tmp_path, "--dump-dom", page).stdout
    finally:
        shutil.move(moved, str(out / "figures"))
    assert 'data-images-loaded="0/4"' in dom and "Missing figures" in dom


def test_cli_audit_run_sample_and_import(hand_run, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    hand_run = hand_run[0]
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "run", str(hand_run), "--out", str(tmp_path / "audit")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "audit" / "report.html").is_file() and json.loads((tmp_path / "audit" / "metrics.json").read_text())["pairs"] == 4
    result = runner.invoke(app, ["audit", "sample", str(hand_run), "--out", str(tmp_path / "sample"), "--size", "4"])
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in (tmp_path / "sample" / "items.jsonl").read_text().splitlines()]
    verdicts = tmp_path / "verdicts.jsonl"
    sample_id = json.loads((tmp_path / "sample" / "review_key.json").read_text())["sample"]
    verdicts.write_text("\n".join(json.dumps({"sample": sample_id, "item_id": i["item_id"], "verdict": "A"}) for i in items)
                        + "\nnot json\n")
    result = runner.invoke(app, ["audit", "import", str(tmp_path / "sample"), str(verdicts)])
    assert result.exit_code == 1 and f"line {len(items) + 1}" in result.output  # the bad line is named, and fails the command


def test_cli_audit_run_reads_and_writes_a_run_on_an_object_store(hand_run, tmp_path, monkeypatch):
    """RUN_DIR on memfs:// (an object store only Beam's FileSystems reach): the label shards are read through them
    and metrics.json, the figures and report.html written under RUN_DIR/audit; the metrics equal the local run's."""
    from apache_beam.io.filesystems import FileSystems
    from typer.testing import CliRunner

    from pipelines.cli import app
    from tests.support.memory_fs import SCHEME, copy_into

    local_run, _, local_metrics = hand_run
    monkeypatch.chdir(tmp_path)  # a store path taken for a local one would land here, as memfs:/...
    store = copy_into(local_run / "label", f"{SCHEME}://{tmp_path.name}/run/label").rsplit("/", 1)[0]
    result = CliRunner().invoke(app, ["audit", "run", store])
    assert result.exit_code == 0, result.output
    with FileSystems.open(f"{store}/audit/metrics.json") as handle:
        metrics = json.loads(handle.read())
    assert FileSystems.exists(f"{store}/audit/report.html") and FileSystems.exists(f"{store}/audit/figures")
    assert metrics["run_dir"] == store and all(path.startswith(f"{store}/label/") for path in metrics["label_files"])
    ignored = ("run_dir", "label_files", "created")
    assert {k: v for k, v in metrics.items() if k not in ignored} == \
        {k: v for k, v in json.loads(json.dumps(local_metrics)).items() if k not in ignored}
    assert not Path(f"{SCHEME}:").exists()
