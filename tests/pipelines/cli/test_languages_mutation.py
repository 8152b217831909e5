"""Mutation operators by configuration: `codepref languages add` writes a checked `mutation:` block, and
bug injection mutates real code of two languages that are not built in (Rust and TypeScript) from it,
so nothing on the path is special-cased for one language."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from parsers import languages, parse
from parsers.registry import MUTATION_OPERATORS, user_registry_path
from pipelines.cli import app
from pipelines.synthesize.mutation import MutationError, mutate, mutation_sites

pytest.importorskip("tree_sitter_rust")
pytest.importorskip("tree_sitter_typescript")

RUST_CODE = """pub fn clamp(lo: i32, hi: i32, x: i32) -> i32 {
    if x < lo {
        return lo;
    }
    if x > hi && hi >= 0 {
        return hi;
    }
    max(x + 1, lo) * 2
}

pub fn ok() -> bool {
    return true;
}
"""
TYPESCRIPT_CODE = """export function clamp(lo: number, hi: number, x: number): number {
  if (x < lo) return lo;
  if (x > hi && hi >= 0) { return hi; }
  return Math.max(x + 1, lo) * 2;
}

export function same(a: string, b: string): boolean {
  if (a === b) { return true; }
  return false;
}
"""
CODE = {"Rust": RUST_CODE, "TypeScript": TYPESCRIPT_CODE}

# Rust's mutation block spelled key by key; TypeScript's copied from JavaScript's built-in block.
RUST_BASE = ["languages", "add", "Rust", "--grammar", "tree-sitter-rust", "--ext", ".rs", "--comment", "line_comment",
             "--comment", "block_comment", "--function", "function_item", "--class", "struct_item"]
RUST_ADD = [*RUST_BASE,
            "--binary", "binary_expression", "--conditional", "if_expression", "--call-arguments", "arguments",
            "--return", "return_expression", "--integer", "integer_literal", "--boolean", "true=false", "--boolean", "false=true",
            "--exit", "return_expression", "--exit", "break_expression", "--exit", "continue_expression",
            "--block", "block", "--block", "expression_statement"]
TYPESCRIPT_BASE = ["languages", "add", "TypeScript", "--grammar", "tree-sitter-typescript", "--entry", "language_typescript",
                   "--ext", ".ts", "--alias", "ts", "--function", "function_declaration", "--function", "method_definition",
                   "--function", "arrow_function", "--class", "class_declaration"]
TYPESCRIPT_ADD = [*TYPESCRIPT_BASE, "--mutation-like", "JavaScript"]
ADD = {"Rust": RUST_ADD, "TypeScript": TYPESCRIPT_ADD}


def add(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    return result


@pytest.fixture
def both():
    """Rust and TypeScript added through `codepref languages add` into the (per-test) user registry."""
    for command in ADD.values():
        result = add(*command)
        assert result.exit_code == 0, result.output
        assert "bug injection may use" in result.output
    return languages()


def test_languages_add_writes_a_mutation_block_for_each_language(both):
    entries = {e["name"]: e for e in yaml.safe_load(user_registry_path().read_text())["languages"]}
    assert entries["Rust"]["mutation"]["conditionals"] == ["if_expression"]
    assert entries["Rust"]["mutation"]["booleans"] == {"true": "false", "false": "true"}
    assert entries["TypeScript"]["mutation"] == languages()["JavaScript"].mutation.to_entry()  # copied, not special-cased
    for name in ("Rust", "TypeScript"):
        assert both[name].mutation.enabled_operators == MUTATION_OPERATORS
    listed = CliRunner().invoke(app, ["languages", "list", "--json"])
    assert {e["name"]: e["mutation_operators"] for e in json.loads(listed.output)}["Rust"] == list(MUTATION_OPERATORS)
    checked = CliRunner().invoke(app, ["languages", "check"])
    assert checked.exit_code == 0 and "Rust: grammar tree-sitter-rust" in checked.output and "bug injection:" in checked.output


@pytest.mark.parametrize("language", ["Rust", "TypeScript"])
@pytest.mark.parametrize("operator", MUTATION_OPERATORS)
def test_every_operator_mutates_real_code_into_code_that_reparses(both, language, operator):
    spec, code = both[language], CODE[language]
    assert not parse(code, spec).has_error and len(parse(code, spec).functions) == 2
    assert any(site.operator == operator for site in mutation_sites(code, spec))
    mutation = mutate(code, spec, key=f"{language}-{operator}", operators=(operator,))
    assert mutation.operator == operator and mutation.mutant != code
    source, start, end = code.encode(), mutation.start_byte, mutation.end_byte
    assert source[start:end].decode() == mutation.original != mutation.replacement
    assert mutation.mutant.encode() == source[:start] + mutation.replacement.encode() + source[end:]
    facts = parse(mutation.mutant, spec)
    assert not facts.has_error and len(facts.functions) == 2, mutation


@pytest.mark.parametrize("language", ["Rust", "TypeScript"])
def test_operators_restricted_by_the_block_are_honoured(language):
    result = add(*ADD[language], "--operator", "comparison_flip", "--operator", "removed_guard")
    assert result.exit_code == 0, result.output
    assert "bug injection may use comparison_flip, removed_guard." in result.output
    spec, code = languages()[language], CODE[language]
    assert spec.mutation.enabled_operators == ("comparison_flip", "removed_guard")
    assert {site.operator for site in mutation_sites(code, spec)} == {"comparison_flip", "removed_guard"}
    assert {mutate(code, spec, key=f"k{i}").operator for i in range(20)} == {"comparison_flip", "removed_guard"}
    with pytest.raises(MutationError, match="no_mutation_site") as error:
        mutate(code, spec, key="k", operators=("arithmetic_swap", "swapped_arguments"))
    assert "allows comparison_flip, removed_guard" in str(error.value)


def test_custom_swaps_replace_the_default_table_of_their_operator():
    rust = add(*RUST_ADD, "--swap", "arithmetic_swap + *", "--swap", "arithmetic_swap * +")
    typescript = add(*TYPESCRIPT_ADD, "--swap", "comparison_flip === !==", "--swap", "comparison_flip < >")
    assert rust.exit_code == 0 and typescript.exit_code == 0, rust.output + typescript.output
    entries = {e["name"]: e for e in yaml.safe_load(user_registry_path().read_text())["languages"]}
    assert entries["Rust"]["mutation"]["swaps"] == {"arithmetic_swap": {"+": "*", "*": "+"}}

    spec = languages()["Rust"]
    swaps = {(site.start, site.replacement) for site in mutation_sites(RUST_CODE, spec, ("arithmetic_swap",))}
    assert {replacement for _, replacement in swaps} == {b"*", b"+"}  # `x + 1` -> `x * 1`, `... * 2` -> `... + 2`
    mutation = mutate(RUST_CODE, spec, key="k", operators=("arithmetic_swap",))
    assert (mutation.original, mutation.replacement) in {("+", "*"), ("*", "+")}
    assert not parse(mutation.mutant, spec).has_error
    # Operators without a table of the block's own keep the defaults.
    assert {site.replacement for site in mutation_sites(RUST_CODE, spec, ("off_by_one",))} == {b"<=", b">=", b">"}

    spec = languages()["TypeScript"]
    flips = {(site.replacement, TYPESCRIPT_CODE.encode()[site.start:site.end]) for site in mutation_sites(TYPESCRIPT_CODE, spec, ("comparison_flip",))}
    assert flips == {(b"!==", b"==="), (b">", b"<")}  # `>` and `>=` are not in the block's table: not flipped
    for key in ("a", "b", "c", "d"):
        mutation = mutate(TYPESCRIPT_CODE, spec, key=key, operators=("comparison_flip",))
        assert (mutation.original, mutation.replacement) in {("===", "!=="), ("<", ">")}
        assert not parse(mutation.mutant, spec).has_error


@pytest.mark.parametrize("language", ["Rust", "TypeScript"])
@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--binary", "no_such_binary"], "'no_such_binary' of mutation.binary"),
        (["--exit", "goto_statement"], "'goto_statement' of mutation.exits"),
        (["--swap", "comparison_flip <=> >="], "token '<=>' of mutation.swaps.comparison_flip"),
        (["--operator", "flip_everything"], "unknown operators ['flip_everything']"),
        (["--swap", "changed_return 1 2"], "['changed_return'], which are not token-swap operators"),
    ],
)
def test_a_bad_mutation_block_is_refused_before_anything_is_written(language, options, named):
    result = add(*ADD[language], *options)
    assert result.exit_code != 0 and named in result.output, result.output
    assert not user_registry_path().exists()


def test_a_bad_block_does_not_replace_a_good_entry():
    assert add(*RUST_ADD).exit_code == 0
    before = user_registry_path().read_text()
    refused = add(*RUST_ADD, "--conditional", "if_statement")  # C's node type, not Rust's
    assert refused.exit_code != 0 and "'if_statement' of mutation.conditionals" in refused.output
    assert "tree-sitter-rust" in refused.output and user_registry_path().read_text() == before


def test_mutation_like_needs_a_language_with_a_block():
    assert add(*RUST_BASE).exit_code == 0  # Rust without a mutation block
    assert languages()["Rust"].mutation is None
    result = add(*TYPESCRIPT_BASE, "--mutation-like", "Rust")
    assert result.exit_code != 0 and "Rust has no mutation block" in result.output
    result = add(*TYPESCRIPT_BASE, "--mutation-like", "Klingon")
    assert result.exit_code != 0 and "unknown language 'Klingon'" in result.output


def test_both_languages_get_bug_pairs_from_synthesize_unverified_without_tests(both, tmp_path, run_stage):
    """The synthesize stage makes bug pairs for both added languages like the built-in ones; with no
    tests to run they are written unverified, with the reason in `verification`."""
    sources = []
    for language, code in CODE.items():
        rows = tmp_path / f"{language}.jsonl"
        rows.write_text(json.dumps({"id": "r1", "instruction": f"Clamp a value ({language}).", "solution": code}) + "\n")
        sources.append({"name": language.lower(), "path": str(rows), "language": language})
    pairs, drops, _ = run_stage("synthesize", {"inputs": [], "instruct": sources})
    assert drops == {}
    assert set(pairs) == {"instruct/rust/r1", "instruct/typescript/r1"}
    for pair_id, language in (("instruct/rust/r1", "Rust"), ("instruct/typescript/r1", "TypeScript")):
        pair = pairs[pair_id]
        assert pair["language"] == language and pair["source"] == "bug_injection"
        assert pair["chosen"] == CODE[language] and pair["rejected"] != pair["chosen"]
        assert pair["verified"] is None and pair["verification"].startswith("unverified")
        assert not parse(pair["rejected"], language).has_error


def test_tests_in_a_language_the_sandbox_does_not_run_leave_the_pair_unverified_not_dropped(both, tmp_path, run_stage):
    """A Rust row with a tests column: the sandbox runs Python only, so the pair is written unverified and says why,
    instead of the Rust solution "failing" as Python and the row being dropped."""
    rows = tmp_path / "rust.jsonl"
    rows.write_text(json.dumps({"id": "r1", "instruction": "Clamp a value.", "solution": RUST_CODE,
                                "tests": "#[test]\nfn low() { assert_eq!(clamp(0, 9, -1), 0); }\n"}) + "\n")
    pairs, drops, manifest = run_stage("synthesize", {"inputs": [], "instruct": [
        {"name": "rust", "path": str(rows), "language": "Rust", "tests_column": "tests"}]})
    assert drops == {}
    pair = pairs["instruct/rust/r1"]
    assert (pair["verified"], pair["verification"]) == (None, "unverified: the sandbox runs Python tests, not Rust")
    assert manifest.counters["tests_not_run"] == 1
