"""README "Adding a language, all the way to the corpus": for a language that is not built in (Rust, and TypeScript
beside it so that nothing in the path is special-cased for one), from the grammar wheel to rows of the corpus:
`languages add` with a mutation block, a repository created here, mine -> synthesize -> parse -> dedup -> label ->
assemble through `codepref run`, and the corpus loaded with `datasets`, the new name in its `language` ClassLabel."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.git_fixtures import MIT, GitRepo

# The README's commands, as the test runs them (keep the two in step).
ADD = {
    "Rust": ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--alias", "rs",
             "--comment", "line_comment", "--comment", "block_comment", "--function", "function_item", "--class", "struct_item",
             "--binary", "binary_expression", "--conditional", "if_expression", "--call-arguments", "arguments",
             "--return", "return_expression", "--integer", "integer_literal", "--boolean", "true=false", "--boolean", "false=true",
             "--exit", "return_expression", "--exit", "break_expression", "--exit", "continue_expression",
             "--block", "block", "--block", "expression_statement"],
    "TypeScript": ["languages", "add", "TypeScript", "--grammar", "tree-sitter-typescript", "--entry", "language_typescript",
                   "--ext", ".ts", "--alias", "ts", "--function", "function_declaration", "--function", "method_definition",
                   "--class", "class_declaration", "--mutation-like", "JavaScript"],
}
EXTENSION = {"Rust": "rs", "TypeScript": "ts"}
# One file per function: the edge-case fix and the speed-up touch different files, so dedup keeps both pairs.
CODE = {
    "Rust": {
        "total": ("pub fn total(values: &[i32]) -> i32 {\n    let mut sum = 0;\n    for i in 0..values.len() - 1 {\n"
                  "        if values[i] > 0 {\n            sum += values[i];\n        }\n    }\n    sum\n}\n"),
        "scale": ("pub fn scale(values: &[i32], factor: i32) -> Vec<i32> {\n    let mut out = Vec::new();\n    for v in values.iter() {\n"
                  "        out.push(v.clone() * factor);\n    }\n    out\n}\n"),
        "clamp": ("pub fn clamp(lo: i32, hi: i32, x: i32) -> i32 {\n    if x < lo {\n        return lo;\n    }\n    if x > hi {\n"
                  "        return hi;\n    }\n    x\n}\n"),
    },
    "TypeScript": {
        "total": ("export function total(values: number[]): number {\n  let sum = 0;\n  for (let i = 0; i < values.length - 1; i++) {\n"
                  "    if (values[i] > 0) {\n      sum += values[i];\n    }\n  }\n  return sum;\n}\n"),
        "scale": ("export function scale(values: number[], factor: number): number[] {\n  const out: number[] = [];\n"
                  "  for (const v of values) {\n    out.push(Number(String(v)) * factor);\n  }\n  return out;\n}\n"),
        "clamp": ("export function clamp(lo: number, hi: number, x: number): number {\n  if (x < lo) {\n    return lo;\n  }\n"
                  "  if (x > hi) {\n    return hi;\n  }\n  return x;\n}\n"),
    },
}
FIXED = {"Rust": ("0..values.len() - 1", "0..values.len()"), "TypeScript": ("i < values.length - 1", "i < values.length")}
FASTER = {"Rust": ("v.clone() * factor", "v * factor"), "TypeScript": ("Number(String(v)) * factor", "v * factor")}


def readme_walk_through() -> tuple[list[str], dict]:
    """The README's walk-through: the arguments of its `codepref languages add` command and its run config."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Adding a language**"):readme.index("Registry files merge in this order")]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    (add,) = [line for line in block.replace("\\\n", " ").splitlines() if line.startswith("codepref languages add")]
    config = yaml.safe_load(block[block.index("<<'YAML'\n") + len("<<'YAML'\n"):block.index("\nYAML\n")])
    return shlex.split(add)[1:], config


def walk_through_repository(path, language: str) -> GitRepo:
    """A repository of three files in `language`, then an edge-case fix and a speed-up, one commit each."""
    code, ext = CODE[language], EXTENSION[language]
    repo = GitRepo(path)
    repo.write("LICENSE", MIT)
    for name, text in code.items():
        repo.write(f"src/{name}.{ext}", text)
    repo.commit("Initial import of the numeric helpers")
    repo.write(f"src/total.{ext}", code["total"].replace(*FIXED[language]))
    repo.commit("Handle the edge case where the last value was skipped")
    repo.write(f"src/scale.{ext}", code["scale"].replace(*FASTER[language]))
    repo.commit("Speed up scale by dropping a needless conversion")
    return repo


@pytest.mark.parametrize("language", ["Rust", "TypeScript"])
def test_a_language_that_is_not_built_in_reaches_the_corpus(language, tmp_path, smollm2, vllm_engine):
    import datasets
    from typer.testing import CliRunner

    from pipelines.cli import app
    from schemas import JudgedPair
    from storage import StageManifest, read_rows

    pytest.importorskip({"Rust": "tree_sitter_rust", "TypeScript": "tree_sitter_typescript"}[language])
    runner = CliRunner()
    added = runner.invoke(app, ADD[language])
    assert added.exit_code == 0, added.output
    repo = walk_through_repository(tmp_path / "repo", language)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "clamp", "instruction": "Clamp x to the range from lo to hi.",
                                 "solution": CODE[language]["clamp"]}) + "\n")
    # The README's run config, its paths and the judge's model replaced by this test's (the shared CPU engine's folder).
    # No pair of this language can be execution-verified (the sandbox runs Python), so the judge labels them all;
    # nothing here can qualify it (no verified pair): qualify is off, and the manifest and the card say so.
    walk = readme_walk_through()[1]
    walk.update(run_dir=str(tmp_path / "run"), num_shards=1, runner={"running_mode": "in_memory", "workers": 1})
    walk["stages"]["mine"]["repos"] = [str(repo.path)]
    walk["stages"]["synthesize"]["instruct"][0].update(path=str(tasks), language=language)
    walk["stages"]["label"]["judges"][0]["model"] = smollm2
    config = tmp_path / "walk.yaml"
    config.write_text(yaml.safe_dump(walk))
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"

    judged = {row["pair_id"]: row for row in read_rows(str(run_dir / "label"), JudgedPair)}
    sources = sorted((row["candidate"]["source"], row["candidate"]["criterion"]) for row in judged.values())
    assert sources == [("bug_injection", "Functional Correctness"), ("commit", "Functional Correctness"),
                       ("commit", "Runtime Efficiency")]
    assert {row["candidate"]["language"] for row in judged.values()} == {language}
    bug = next(row for row in judged.values() if row["candidate"]["source"] == "bug_injection")
    assert bug["candidate"]["verification"] == "unverified: the source has no tests"
    kept = sorted(pair_id for pair_id, row in judged.items() if row["kept"])

    files = sorted(str(p) for p in (run_dir / "assemble").glob("part-*.parquet"))
    corpus = datasets.load_dataset("parquet", data_files=files, split="train")
    names = corpus.features["language"].names
    assert names[:9] == ["JavaScript", "Python", "Ruby", "C++", "C", "Go", "Java", "C#", "NL"] and language in names[9:]
    assert sorted(corpus["idx"]) == kept and kept  # every pair the judge kept is a row
    assert {names[index] for index in corpus["language"]} == {language}
    assert language in (run_dir / "assemble" / "README.md").read_text()
    assert StageManifest.read(str(run_dir / "assemble")).dropped.get("language_not_in_corpus_labels", 0) == 0


def test_the_readme_walk_through_is_the_one_this_test_runs():
    """The walk-through test runs the README's run config (paths and the judge's model folder replaced) and its
    `languages add` command for Rust, so the two cannot drift apart."""
    add, config = readme_walk_through()
    assert add == ADD["Rust"]
    stages = config["stages"]
    assert list(stages) == ["mine", "synthesize", "parse", "dedup", "label", "assemble"]
    assert stages["synthesize"]["instruct"][0]["language"] == "Rust" and stages["assemble"] == {"inputs": ["label"]}
    assert stages["label"]["judges"] == [{"backend": "vllm", "model": "smollm2"}] and stages["label"]["qualify"] is None
