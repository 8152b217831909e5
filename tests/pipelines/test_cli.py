"""`codepref languages` and `codepref parse` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.parsers.test_registry import RUST_CODE, RUST_ENTRY

REPO = Path(__file__).resolve().parents[2]


def codepref(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, **(env or {})},
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


def test_the_rust_walk_through_of_the_readme(tmp_path):
    """README "Adding a language": install the grammar (a dependency here), add Rust, mine a Rust
    repository, see Rust pairs; bug injection, which has no Rust operators yet, drops its rows with a reason."""
    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app
    from schemas import Candidate, Drop
    from storage import StageManifest, read_rows
    from tests.git_fixtures import MIT, GitRepo

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
    pairs = read_rows(str(run_dir / "parse"), Candidate)
    assert {(pair["language"], pair["criterion"]) for pair in pairs} == {("Rust", "Functional Correctness"), ("Rust", "Runtime Efficiency")}
    assert all(pair["chosen_facts"]["functions"][0]["name"] == "total" for pair in pairs)
    drops = {drop["key"]: drop["reason"] for drop in read_rows(str(run_dir / "synthesize" / "_dropped"), Drop)}
    assert drops == {"instruct/rust-tasks/r1": "no_mutation_operators"} and StageManifest.read(str(run_dir / "synthesize")).dropped == {"no_mutation_operators": 1}
