"""`codepref languages`, `codepref parse`, `codepref config check` and the one-stage commands as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.inputs import RUST_CODE, RUST_ENTRY

REPO = Path(__file__).resolve().parents[3]


def codepref(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, **(env or {})},
    )


def test_languages_list_json():
    result = codepref("languages", "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == ["C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby"]
    cpp = entries[2]
    assert {".hpp", ".hh", ".hxx", ".h++", ".cc", ".cpp", ".cxx", ".c++", ".h"} == set(cpp["extensions"])
    assert cpp["grammar"] == "tree-sitter-cpp" and cpp["grammar_version"].startswith("0.23")
    assert all(e["grammar_version"] for e in entries)


def test_languages_check_loads_every_grammar():
    result = codepref("languages", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 8


def test_languages_check_fails_on_a_broken_user_entry(tmp_path):
    extra = tmp_path / "zig.yaml"
    extra.write_text("languages:\n  - name: Zig\n    extensions: [.zig]\n    grammar: {package: tree-sitter-zig, module: tree_sitter_zig}\n")
    result = codepref("languages", "check", env={"CODEPREF_LANGUAGES": str(extra)})
    assert result.returncode == 1
    assert "pip install tree-sitter-zig" in result.stderr


def test_parse_files_as_json_lines(tmp_path):
    good = tmp_path / "ok.go"
    good.write_text("package main\n\n// add\nfunc add(a, b int) int { return a + b }\n")
    header = tmp_path / "shape.h"
    header.write_text("namespace geo { class Shape { public: virtual ~Shape(); }; }\n")
    broken = tmp_path / "bad.py"
    broken.write_bytes(b"def f(:\n    return '\xff'\n")
    result = codepref("parse", str(good), str(header), str(broken), "--json", "--tokens")
    assert result.returncode == 0, result.stderr
    facts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["language"] for f in facts] == ["Go", "C++", "Python"]
    assert facts[0]["functions"][0]["name"] == "add" and "add" in facts[0]["tokens"] and facts[0]["depth"] >= 3
    assert not facts[0]["has_error"] and facts[0]["parse_ok"]
    assert facts[2]["has_error"] and not facts[2]["parse_ok"] and "invalid UTF-8 at byte" in facts[2]["decode_error"]


def test_parse_unknown_extension_and_missing_file_fail_with_the_name(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    result = codepref("parse", str(notes), str(tmp_path / "gone.py"))
    assert result.returncode == 1
    assert "notes.txt" in result.stderr and "no registered language" in result.stderr
    assert "gone.py: cannot read" in result.stderr


def test_languages_parse_is_the_same_command_as_parse_with_files(tmp_path):
    source = tmp_path / "ok.go"
    source.write_text("package main\n\nfunc add(a, b int) int { return a + b }\n")
    old = codepref("parse", str(source), "--json", "--tokens")
    new = codepref("languages", "parse", str(source), "--json", "--tokens")
    assert new.returncode == old.returncode == 0, new.stderr
    assert new.stdout == old.stdout and json.loads(new.stdout)["functions"][0]["name"] == "add"


def test_parse_takes_files_or_a_stage_folder_not_both(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    source = tmp_path / "ok.py"
    source.write_text("def f():\n    return 1\n")
    both = CliRunner().invoke(app, ["parse", str(source), "--in", str(tmp_path), "--out", str(tmp_path / "out")])
    assert both.exit_code == 2 and "not both" in both.output
    neither = CliRunner().invoke(app, ["parse"])
    assert neither.exit_code == 2 and "give --in DIR and --out DIR" in neither.output
    misplaced = CliRunner().invoke(app, ["parse", "--in", str(tmp_path), "--out", str(tmp_path / "out"), "--json"])
    assert misplaced.exit_code == 2 and "go with source files" in misplaced.output


def test_parse_a_ninth_language_from_a_user_registry(tmp_path):
    extra = tmp_path / "rust.yaml"
    extra.write_text(RUST_ENTRY)
    source = tmp_path / "lib.rs"
    source.write_text(RUST_CODE)
    result = codepref("parse", str(source), "--json", env={"CODEPREF_LANGUAGES": str(extra)})
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["language"] == "Rust" and facts["functions"][0]["name"] == "add"


def test_languages_add_writes_a_checked_user_entry_and_rust_code_parses(tmp_path):
    from typer.testing import CliRunner

    from parsers import languages, parse
    from parsers.registry import user_registry_path
    from pipelines.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--comment", "line_comment",
                              "--function", "no_such_node"])
    assert bad.exit_code != 0 and "no_such_node" in bad.output and not user_registry_path().exists()
    result = runner.invoke(app, ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--alias", "rs",
                                 "--comment", "line_comment", "--comment", "block_comment", "--function", "function_item",
                                 "--class", "struct_item"])
    assert result.exit_code == 0, result.output
    assert "Rust" in languages() and languages()["rs"].name == "Rust"
    facts = parse("// sum\nstruct P { x: i32 }\nfn add(a: i32, b: i32) -> i32 { a + b }\n", "Rust")
    assert [f.name for f in facts.functions] == ["add"] and len(facts.classes) == 1 and len(facts.comments) == 1
    again = runner.invoke(app, ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--comment", "line_comment",
                                "--function", "function_item"])
    assert again.exit_code == 0 and user_registry_path().read_text().count("name: Rust") == 1  # replaced, not doubled


RUST_V1 = ("pub fn total(values: &[i32]) -> i32 {\n    let mut sum = 0;\n    for i in 0..values.len() - 1 {\n"
           "        if values[i] > 0 {\n            sum += values[i].clone();\n        }\n    }\n    sum\n}\n")
RUST_V2 = RUST_V1.replace("0..values.len() - 1", "0..values.len()")  # the edge case: the last value was skipped
RUST_V3 = RUST_V2.replace("values[i].clone()", "values[i]")


def test_rust_added_without_a_mutation_block_gets_commit_pairs_and_no_bug_pairs(tmp_path):
    """Rust added with no mutation block (the README's walk-through adds one: tests/pipelines/cli/test_walkthrough.py):
    mined .rs commits become Rust pairs; bug injection, with no operators for Rust, drops its rows with a reason."""
    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app
    from schemas import Candidate, Drop
    from storage import StageManifest, read_rows
    from tests.support.git_fixtures import MIT, GitRepo

    repo = GitRepo(tmp_path / "rust-demo")
    repo.write("LICENSE", MIT)
    repo.write("src/lib.rs", RUST_V1)
    repo.commit("Initial import of the totals crate")
    repo.write("src/lib.rs", RUST_V2)
    repo.commit("Handle the edge case where the last value was skipped")
    repo.write("src/lib.rs", RUST_V3)
    repo.commit("Speed up the total by dropping a needless clone")
    instruct = tmp_path / "rust-tasks.jsonl"
    instruct.write_text(json.dumps({"id": "r1", "instruction": "Sum the positive values.", "solution": RUST_V3}) + "\n")

    runner = CliRunner()
    added = runner.invoke(app, ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--comment",
                                "line_comment", "--comment", "block_comment", "--function", "function_item", "--class", "struct_item"])
    assert added.exit_code == 0, added.output
    config = tmp_path / "rust.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"), "num_shards": 1, "runner": {"running_mode": "in_memory", "workers": 1},
        "stages": {"mine": {"repos": [str(repo.path)]},
                   "synthesize": {"instruct": [{"name": "rust-tasks", "path": str(instruct), "language": "Rust"}]},
                   "parse": {}},
    }))
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output

    run_dir = tmp_path / "run"
    pairs = list(read_rows(str(run_dir / "parse"), Candidate))  # a list: the checks below read it twice
    assert {(pair["language"], pair["criterion"]) for pair in pairs} == {("Rust", "Functional Correctness"), ("Rust", "Runtime Efficiency")}
    # The added grammar's `function_item` is what the facts count: `total`, the one function on each side.
    assert [(pair["chosen_facts"]["parse_ok"], pair["chosen_facts"]["functions"], pair["rejected_facts"]["functions"])
            for pair in pairs] == [(True, 1, 1)] * 2
    drops = {drop["key"]: drop["reason"] for drop in read_rows(str(run_dir / "synthesize" / "_dropped"), Drop)}
    assert drops == {"instruct/rust-tasks/r1": "no_mutation_operators"} and StageManifest.read(str(run_dir / "synthesize")).dropped == {"no_mutation_operators": 1}


# --- codepref config check: every check the run runs, in one line per problem -----------------------------------------


def test_a_config_that_cannot_be_read_is_one_line_naming_the_file(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("run_dir: runs/x\n# Müller's run\n".encode("latin-1"))
    for path, why in ((latin1, "line 2 is not UTF-8 text (byte 0xfc); save the config as UTF-8"),
                      (tmp_path, "is a folder; give the config file (YAML) itself")):
        for command in (("config", "check"), ("run",)):
            result = codepref(*command, str(path))
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip() == f"error: {path}: {why}" and result.stdout == ""


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ({"parse": {"inputs": ["a_stage_that_does_not_exist"]}},
         "stages.parse.inputs: unknown stages ['a_stage_that_does_not_exist']; known: assemble, "),
        ({"label": {"votes": 7}}, "stages.label.votes: 7 is odd; votes are split evenly over both orders"),
        ({"eval": {"model": "m", "benchmark": "b", "system_mode": "bogus"}},
         "stages.eval.system_mode: Input should be 'none', 'full' or 'per-criterion'"),
        ({"synthesize": {"inputs": [], "instruct": [{"name": "human-eval", "bug_injection": "llm"}]}},
         "stages.synthesize: instruct[0] (human-eval): bug_injection 'llm' needs `stages.synthesize.llm`"),
        ({"parse": {"max_error_share": {"Klingon": 0.1}}},
         "stages.parse.max_error_share: unknown languages ['Klingon']; known: C, C#, C++, Go, Java, JavaScript, Python, Ruby"),
        ({"mine": {"tables": ["no-such-table.parquet"]}}, "stages.mine: 'no-such-table.parquet' is not a file"),
    ],
)
def test_config_check_rejects_what_the_run_would_reject(tmp_path, stages, message):
    from typer.testing import CliRunner

    from pipelines.cli import app

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "stages": stages}))
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}: {message}" in result.output and "valid" not in result.output


def test_config_check_says_which_inputs_are_read_from_the_run_directory(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "stages": {"dedup": {}, "label": {"inputs": ["dedup"]},
                                                                                  "assemble": {"inputs": ["label"]}}}))
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"valid; stages in run order: dedup, label, assemble; run directory {tmp_path / 'run'}" in result.output
    assert result.output.count("from the run directory") == 1
    assert f"dedup reads parse from the run directory ({tmp_path / 'run'}/parse): not configured here" in result.output


# --- one-stage commands: the summary line says what the manifest says -------------------------------------------------


def test_the_judge_summary_counts_kept_pairs_as_the_manifest_does(tmp_path, faulty_judge):
    """The label stage writes every pair it judged, kept or not: 'N kept' would contradict the manifest."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.config import import_builtin_stages
    from schemas import Candidate
    from storage import StageManifest
    from tests.support.stage_fixtures import candidate, write_stage

    import_builtin_stages()
    pairs = [candidate(f"p{i}", f"def f{i}(xs):\n    return sorted(xs)[{i}]\n", f"def f{i}(xs):\n    return xs[{i}]\n",
                       prompt=f"Task p{i}. Return the item of rank {i}.") for i in range(3)]
    source = write_stage(tmp_path / "run", "dedup", pairs, Candidate)
    config = tmp_path / "judge.yaml"
    # The scripted judge answers A in both orders: one vote for the chosen side, one against; a vote of 1 keeps the pair.
    rule = {"min_matches": 1, "max_contradictions": 1, "max_tokens": 16, "qualify": None}
    config.write_text(yaml.safe_dump({"runner": {"running_mode": "in_memory", "workers": 1}, "stages": {"label": rule}}))
    out = tmp_path / "judged" / "label"
    label = ["label", "--in", str(source), "--out", str(out), "--backend", "openai", "--model", "judge", "--base-url", faulty_judge,
             "--votes", "2", "--config", str(config)]
    result = CliRunner().invoke(app, label)
    assert result.exit_code == 0, result.output
    manifest = StageManifest.read(str(out))
    assert (manifest.records_out, manifest.counters["pairs_kept"]) == (3, 3)
    assert "label: 3 in, 3 judged: 3 kept, 0 not kept (" in result.output
    assert "note: judges labelled without qualification (label.qualify is null)" in result.output

    config.write_text(yaml.safe_dump({"runner": {"running_mode": "in_memory", "workers": 1},
                                      "stages": {"label": {**rule, "min_matches": 2}}}))  # now no pair passes
    result = CliRunner().invoke(app, ["judge", *label[1:]])  # the command's older name
    assert result.exit_code == 0, result.output
    manifest = StageManifest.read(str(out))
    assert (manifest.records_out, manifest.counters["pairs_not_kept"]) == (3, 3)
    assert "label: 3 in, 3 judged: 0 kept, 3 not kept (" in result.output and "3 kept" not in result.output


def test_cli_label_qualifies_its_judge_on_a_calibration_file(tmp_path, faulty_judge):
    """Without calibration pairs the judge cannot qualify and the command says what to do; with --calibration it is
    measured (the scripted judge answers A whatever it is shown: it flips with the order) and --on-unqualified
    truth_only drops the pairs that need it."""
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.config import import_builtin_stages
    from schemas import Candidate
    from storage import StageManifest
    from tests.support.stage_fixtures import candidate, write_stage

    import_builtin_stages()
    pairs = [candidate(f"p{i}", f"def f{i}(xs):\n    return sorted(xs)[{i}]\n", f"def f{i}(xs):\n    return xs[{i}]\n",
                       prompt=f"Task p{i}. Return the item of rank {i}.") for i in range(3)]
    source = write_stage(tmp_path / "run", "dedup", pairs, Candidate)
    config = tmp_path / "judge.yaml"
    config.write_text(yaml.safe_dump({"runner": {"running_mode": "in_memory", "workers": 1},
                                      "stages": {"label": {"max_tokens": 16, "qualify": {"min_pairs": 20}}}}))
    out = tmp_path / "judged" / "label"
    label = ["label", "--in", str(source), "--out", str(out), "--backend", "openai", "--model", "judge", "--base-url", faulty_judge,
             "--votes", "2", "--config", str(config)]
    refused = CliRunner().invoke(app, label)
    assert refused.exit_code == 1 and "NOT qualified (0 calibration pairs < min_pairs 20)" in refused.output
    assert StageManifest.read(str(out)) is None
    bench = tmp_path / "calibration.jsonl"
    bench.write_text("".join(json.dumps({"id": f"b{i}", "prompt": f"Task b{i}. Sort.", "chosen": "sorted(xs)", "rejected": "xs",
                                         "language": "Python", "aspect": "Functional_Correctness", "subset": "s"}) + "\n"
                             for i in range(20)))
    result = CliRunner().invoke(app, [*label, "--calibration", str(bench), "--on-unqualified", "truth_only"])
    assert result.exit_code == 0, result.output
    assert "note: judge judge: NOT qualified (agreement 0.00 < min_agreement 0.70; consistency 0.00 < min_consistency 0.60)" in result.output
    assert "dropped: no_qualified_judge 3" in result.output
    assert StageManifest.read(str(out)).report["qualification"]["calibration_pairs"] == 20



def test_the_parse_stage_command_parses_a_candidate_folder(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.run.config import import_builtin_stages
    from schemas import Candidate
    from storage import StageManifest, read_rows
    from tests.support.stage_fixtures import candidate, write_stage

    import_builtin_stages()
    pairs = [candidate("ok", "def f(xs):\n    return sorted(xs)\n", "def f(xs):\n    return xs\n"),
             candidate("same", "def g():\n    return 1\n", "def g():\n    return 1\n")]
    source = write_stage(tmp_path / "run", "synthesize", pairs, Candidate)
    config = tmp_path / "parse.yaml"
    config.write_text(yaml.safe_dump({"runner": {"running_mode": "in_memory", "workers": 1}}))
    out = tmp_path / "parsed" / "parse"
    result = CliRunner().invoke(app, ["parse", "--in", str(source), "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "parse: 2 in, 1 kept (" in result.output and "dropped: identical_sides 1" in result.output
    (kept,) = read_rows(str(out), Candidate)
    assert kept["pair_id"] == "ok" and kept["chosen_facts"]["functions"] == 1 and kept["chosen_facts"]["parse_ok"]
    assert StageManifest.read(str(out)).dropped == {"identical_sides": 1}
    again = CliRunner().invoke(app, ["parse", "--in", str(source), "--out", str(out), "--config", str(config)])
    assert again.exit_code == 0 and "(already done)" in again.output


def test_judge_is_a_hidden_name_of_the_label_command():
    from typer.testing import CliRunner

    from pipelines.cli import app

    listing = CliRunner().invoke(app, ["--help"])
    assert " label " in listing.output and " judge " not in listing.output
    label, judge = (CliRunner().invoke(app, [name, "--help"]) for name in ("label", "judge"))
    assert label.exit_code == judge.exit_code == 0
    assert label.output.replace("label", "judge") == judge.output.replace("label", "judge")
