"""The leaderboard: results.json of ours and of the published layout (no intervals, no `correct`, benchmark
spellings, parse-failure keys) in one set of tables with exact cells, and the HTML page as headless Chromium
shows it, cell for cell the Markdown's."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audit.agreement import wilson_interval
from pipelines.eval import BenchPair, results, scores_table, write_results
from pipelines.eval.leaderboard import (
    LeaderboardError,
    leaderboard,
    read_result,
    write_leaderboard,
)
from tests.audit.test_audit import chromium, run_chromium  # noqa: F401 (the audit's browser fixture and runner)

FC, RE, SH, ME = "Functional Correctness", "Runtime Efficiency", "Security Hardness", "Memory Efficiency"


def cell(correct: int, count: int, accuracy: float | None = None, estimated: bool = False) -> dict:
    low, high = wilson_interval(correct, count)
    return {"accuracy": correct / count if accuracy is None else accuracy, "low": low, "high": high, "count": count,
            "correct": correct, "estimated": estimated}


def ours(folder: Path, model: str = "codepref-rm") -> Path:
    """Our results: six pairs, three correct (one tie), canonical spellings and an unknown language."""
    rows = [  # id, chosen, rejected, language, aspect, subset
        ("1", 2.0, 1.0, "C++", FC, "hep"),
        ("2", 1.0, 2.0, "C++", FC, "hep"),
        ("3", 3.0, 0.0, "Python", RE, "hep"),
        ("4", 1.0, 1.0, "Python", RE, "mbpp"),
        ("5", 5.0, 0.0, "Rust", SH, "mbpp"),
        ("6", 0.0, 1.0, "Python", FC, "mbpp"),
    ]
    pairs = [BenchPair(i, "", "", "", language, aspect, subset) for i, _, _, language, aspect, subset in rows]
    table = scores_table(pairs, [r[1] for r in rows], [r[2] for r in rows], run={"model": model, "benchmark": "tiny"})
    folder.mkdir(parents=True)
    write_results(results(table), folder / "results.json")
    return folder


def published(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def themis_rm(root: Path) -> Path:
    """A published reward model's results (no run, no intervals, no `correct`; Cpp / Functional_Correctness)."""
    return published(root / "Themis-RM-8B", {
        "overall": {"accuracy": 0.75, "total_examples": 8, "correct_predictions": 6, "mean_score_difference": 1.5,
                    "median_score_difference": 1.0, "std_score_difference": 2.0},
        "by_aspect": {"Functional_Correctness": {"accuracy": 0.5, "count": 4}, "Memory_Efficiency": {"accuracy": 1.0, "count": 4}},
        "by_language": {"Cpp": {"accuracy": 0.75, "count": 4}, "Python": {"accuracy": 0.75, "count": 4}},
        "by_subset": {"hep": {"accuracy": 1.0, "count": 4}, "mbpp": {"accuracy": 0.5, "count": 4}},
    })


def gen_judge(root: Path) -> Path:
    """A published generative judge's results, with the parse-failure keys."""
    return published(root / "GenJudge-7B", {
        "overall": {"accuracy": 0.3, "total_examples": 10, "correct_predictions": 3, "mean_score_difference": 0.1,
                    "median_score_difference": 0.0, "std_score_difference": 1.0, "accuracy_valid_only": 0.375,
                    "valid_pairs": 8, "total_parse_failures": 2, "parse_failure_rate": 0.2},
        "by_aspect": {"Functional_Correctness": {"accuracy": 0.3, "count": 10}},
        "by_language": {"Cpp": {"accuracy": 0.2, "count": 5}, "Go": {"accuracy": 0.4, "count": 5}},
        "by_subset": {"hep": {"accuracy": 0.3, "count": 10}},
    })


@pytest.fixture
def three_runs(tmp_path) -> list[Path]:
    return [gen_judge(tmp_path / "published"), ours(tmp_path / "ours" / "run-1"), themis_rm(tmp_path / "published")]


def test_tables_have_exact_cells_grouped_spellings_order_and_empty_cells(three_runs):
    tables = leaderboard(three_runs)["tables"]
    assert list(tables) == ["overall", "by_aspect", "by_language", "by_subset"]
    # Ordered by overall accuracy: 0.75, 0.5, 0.3; our model is named by run.model, published ones by their folder.
    for table in tables.values():
        assert [row["model"] for row in table["rows"]] == ["Themis-RM-8B", "codepref-rm", "GenJudge-7B"]
        assert [row["source"] for row in table["rows"]] == [str(three_runs[2]), str(three_runs[1]), str(three_runs[0])]
    overall = tables["overall"]
    assert overall["columns"] == ["overall"]
    # The overall counts are in every layout: no estimate.
    assert [row["cells"] for row in overall["rows"]] == [[cell(6, 8)], [cell(3, 6)], [cell(3, 10)]]
    assert [row["parse_failure_rate"] for row in overall["rows"]] == [None, None, 0.2]

    # Cpp and C++, Functional_Correctness and Functional Correctness: one column each, canonical names; Rust as spelled.
    est = {"estimated": True}
    assert tables["by_language"]["columns"] == ["C++", "Go", "Python", "Rust"]
    assert [row["cells"] for row in tables["by_language"]["rows"]] == [
        [cell(3, 4, 0.75, **est), None, cell(3, 4, 0.75, **est), None],
        [cell(1, 2), None, cell(1, 3), cell(1, 1)],
        [cell(1, 5, 0.2, **est), cell(2, 5, 0.4, **est), None, None],
    ]
    assert tables["by_aspect"]["columns"] == [FC, ME, RE, SH]
    assert [row["cells"] for row in tables["by_aspect"]["rows"]] == [
        [cell(2, 4, 0.5, **est), cell(4, 4, 1.0, **est), None, None],
        [cell(1, 3), None, cell(1, 2), cell(1, 1)],
        [cell(3, 10, 0.3, **est), None, None, None],
    ]
    assert tables["by_subset"]["columns"] == ["hep", "mbpp"]
    assert [row["cells"] for row in tables["by_subset"]["rows"]] == [
        [cell(4, 4, 1.0, **est), cell(2, 4, 0.5, **est)],
        [cell(2, 3), cell(1, 3)],
        [cell(3, 10, 0.3, **est), None],
    ]
    # Ours carries its own interval: the leaderboard's is the same.
    ours_results = json.loads((three_runs[1] / "results.json").read_text())
    assert [overall["rows"][1]["cells"][0][k] for k in ("low", "high")] == pytest.approx(ours_results["overall"]["accuracy_ci95"])


def test_markdown_cells_counts_and_footnote(three_runs, tmp_path):
    markdown, html = write_leaderboard(three_runs, tmp_path / "board")
    assert (markdown, html) == (tmp_path / "board" / "leaderboard.md", tmp_path / "board" / "leaderboard.html")
    text = markdown.read_text()

    def interval(k: int, n: int) -> str:
        low, high = wilson_interval(k, n)
        return f"{k / n:.3f} [{low:.2f}, {high:.2f}]"

    overall = section(text, "Overall")
    assert overall[0] == "| model | overall (n=6–10) | parse failures |"
    assert overall[2:] == [f"| Themis-RM-8B | {interval(6, 8)} n=8 | — |", f"| codepref-rm | {interval(3, 6)} n=6 | — |",
                           f"| GenJudge-7B | {interval(3, 10)} n=10 | 0.200 |"]
    language = section(text, "By language")
    # n in the header where every model has the same count (Go, Rust); else a range there and n in each cell.
    assert language[0] == "| model | C++ (n=2–5) | Go (n=5) | Python (n=3–4) | Rust (n=1) |"
    assert language[2:] == [
        f"| Themis-RM-8B | {interval(3, 4)} n=4† | — | {interval(3, 4)} n=4† | — |",
        f"| codepref-rm | {interval(1, 2)} n=2 | — | {interval(1, 3)} n=3 | {interval(1, 1)} |",
        f"| GenJudge-7B | {interval(1, 5)} n=5† | {interval(2, 5)}† | — | — |",
    ]
    assert "| codepref-rm | 0.500 [0.09, 0.91] n=2 |" in text  # wilson_interval(1, 2) by hand: 0.0945, 0.9055
    assert "round(accuracy × count)" in text.split("## By language")[1].split("## By subset")[0]
    assert "round(accuracy × count)" not in text.split("## Overall")[1].split("## By aspect")[0]  # overall counts are given


def section(markdown: str, title: str) -> list[str]:
    """The table lines of a Markdown section."""
    body = markdown.split(f"## {title}\n")[1].split("\n## ")[0]
    return [line for line in body.splitlines() if line.startswith("|")]


def test_same_model_names_get_their_folder(tmp_path):
    dirs = [ours(tmp_path / "a" / "seed-1"), ours(tmp_path / "b" / "seed-2"), ours(tmp_path / "c" / "other", model="other-rm")]
    rows = leaderboard(dirs)["tables"]["overall"]["rows"]
    assert [row["model"] for row in rows] == ["codepref-rm (seed-1)", "codepref-rm (seed-2)", "other-rm"]  # a tie: by name
    # The same folder name too: the path tells them apart.
    same = [ours(tmp_path / "d" / "run"), ours(tmp_path / "e" / "run")]
    assert [row["model"] for row in leaderboard(same)["tables"]["overall"]["rows"]] == [
        f"codepref-rm ({same[0]})", f"codepref-rm ({same[1]})"]


def test_two_spellings_in_one_file_are_one_group(tmp_path):
    folder = published(tmp_path / "mixed", {
        "overall": {"accuracy": 0.5, "total_examples": 4, "correct_predictions": 2},
        "by_language": {"Cpp": {"accuracy": 1.0, "count": 1}, "C++": {"accuracy": 1 / 3, "count": 3, "correct": 1},
                        "Kotlin": {"accuracy": 0.0, "count": 1}},
    })
    entry = read_result(folder)
    assert entry.model == "mixed" and set(entry.groups["by_language"]) == {"C++", "Kotlin"}
    assert entry.groups["by_language"]["C++"].cell() == cell(2, 4, 0.5, estimated=True)
    assert entry.groups["by_aspect"] == {} and entry.groups["by_subset"] == {}


@pytest.mark.parametrize("setup, expected", [
    (lambda d: None, "no such file (no such folder)"),
    (lambda d: d.mkdir(), "no such file (the folder has no results)"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text("{not json")), "cannot be read as JSON"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text('{"overall": {"total_examples": 3}}')), "no overall.accuracy"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text('[1, 2]')), "no overall.accuracy"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text('{"overall": {"accuracy": 0.5}}')), "'total_examples' must be"),
    (lambda d: (d.mkdir(), (d / "results.json").write_text(
        '{"overall": {"accuracy": 0.5, "total_examples": 2}, "by_subset": {"x": {"accuracy": 0.5}}}')), "by_subset.x: 'count' must be"),
])
def test_a_bad_result_dir_is_an_error_naming_the_file(tmp_path, setup, expected):
    folder = tmp_path / "bad"
    setup(folder)
    with pytest.raises(LeaderboardError, match="results.json") as error:
        write_leaderboard([themis_rm(tmp_path), folder], tmp_path / "out")
    assert str(error.value).startswith(str(folder / "results.json")) and expected in str(error.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(LeaderboardError, match="no result dirs"):
        leaderboard([])


class Tables(HTMLParser):
    """Texts of the header and body cells of every table with a data-table attribute, and each cell's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.attributes: dict[str, list[list[dict]]] = {}
        self.table = self.text = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "data-table" in attrs:
            self.table = attrs["data-table"]
            self.tables[self.table], self.attributes[self.table] = [], []
        elif self.table and tag == "tr":
            self.tables[self.table].append([])
            self.attributes[self.table].append([])
        elif self.table and tag in ("td", "th"):
            self.text = ""
            self.attributes[self.table][-1].append(attrs)

    def handle_data(self, data):
        if self.text is not None:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.text is not None:
            self.tables[self.table][-1].append(self.text.strip())
            self.text = None


def test_html_in_chromium_shows_the_markdown_cells(three_runs, tmp_path, chromium):  # noqa: F811 (the imported fixture)
    markdown, html = write_leaderboard(three_runs, tmp_path / "board")
    dom = run_chromium(chromium, tmp_path, "--dump-dom", html.as_uri()).stdout
    parsed = Tables()
    parsed.feed(dom)
    assert list(parsed.tables) == ["overall", "by_aspect", "by_language", "by_subset"]
    text = markdown.read_text()
    for name, title in zip(parsed.tables, ("Overall", "By aspect", "By language", "By subset")):
        lines = section(text, title)
        expected = [[c.strip() for c in line.strip("|").split(" | ")] for line in [lines[0], *lines[2:]]]
        assert parsed.tables[name] == expected, name
    # The data attributes hold the unrounded figures of the leaderboard's cells.
    board = leaderboard(three_runs)["tables"]
    row = parsed.attributes["by_language"][2]  # codepref-rm: model, C++, Go, Python, Rust
    expected = board["by_language"]["rows"][1]["cells"][0]
    assert {k: float(row[1][f"data-{k}"]) for k in ("accuracy", "low", "high", "count")} == pytest.approx(
        {k: expected[k] for k in ("accuracy", "low", "high", "count")})
    assert row[1]["data-column"] == "C++" and row[1]["data-estimated"] == "false" and row[2]["class"] == "missing"
    assert parsed.attributes["by_language"][1][1]["data-estimated"] == "true"
    assert "round(accuracy × count)" in dom and "GenJudge-7B" in dom



def test_cli_eval_report_writes_both_tables_and_names_a_bad_folder(three_runs, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "board"
    result = CliRunner().invoke(app, ["eval", "report", *map(str, three_runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"leaderboard of 3 results: {out / 'leaderboard.md'}, {out / 'leaderboard.html'}" in result.output.replace("\n", "")
    assert "## By language" in (out / "leaderboard.md").read_text() and (out / "leaderboard.html").is_file()
    missing = CliRunner().invoke(app, ["eval", "report", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 2 and "nowhere" in missing.output and "results.json" in missing.output
