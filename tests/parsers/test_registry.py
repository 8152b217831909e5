"""The language registry: names, aliases, extensions, the .h rule, grammar checks, user entries."""

from __future__ import annotations

import sys

import pytest
import tree_sitter

from parsers import (
    GrammarError,
    LanguageRegistry,
    RegistryError,
    detect_language,
    languages,
    parse,
)
from parsers.registry import DEFAULT_REGISTRY, _error_bytes, decide_by_content
from tests.support.inputs import RUST_CODE, RUST_ENTRY


def registry_with(tmp_path, text: str) -> LanguageRegistry:
    extra = tmp_path / "extra.yaml"
    extra.write_text(text)
    return LanguageRegistry.from_files([DEFAULT_REGISTRY, extra])


def test_eight_default_languages_in_order():
    assert languages().names == ["C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby"]


@pytest.mark.parametrize(
    ("alias", "name"),
    [("cpp", "C++"), ("Cpp", "C++"), ("CSharp", "C#"), ("c-sharp", "C#"), ("js", "JavaScript"), ("golang", "Go"),
     ("PY", "Python"), ("rb", "Ruby"), ("c", "C"), ("Java", "Java")],
)
def test_aliases_map_to_canonical_names(alias, name):
    assert languages()[alias].name == name


def test_unknown_language_fails_with_the_known_list():
    with pytest.raises(KeyError) as error:
        languages()["fortran"]
    assert "unknown language 'fortran'" in str(error.value)
    assert "C#" in str(error.value) and "Ruby" in str(error.value)


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/a.c", "C"), ("a.cs", "C#"), ("x/y.go", "Go"), ("A.java", "Java"), ("b.py", "Python"),
        ("c.pyi", "Python"), ("d.rb", "Ruby"), ("Rakefile.rake", "Ruby"),
        ("a.js", "JavaScript"), ("a.mjs", "JavaScript"), ("a.cjs", "JavaScript"), ("a.jsx", "JavaScript"),
        ("a.cpp", "C++"), ("a.cc", "C++"), ("a.cxx", "C++"), ("a.c++", "C++"),
        ("a.hpp", "C++"), ("a.hh", "C++"), ("a.hxx", "C++"), ("a.h++", "C++"),
        ("UPPER.CPP", "C++"), ("win\\path\\x.go", "Go"),
        ("README.md", None), ("Makefile", None), ("a.rs", None),
    ],
)
def test_extensions(path, language):
    assert detect_language(path) == language


@pytest.mark.parametrize(
    ("content", "language"),
    [
        (b"#include <stdio.h>\nint add(int a, int b);\nstruct p { int x; };\n", "C"),
        (b"typedef struct { int x; } point;\n#define MAX 3\n", "C"),
        (b"#pragma once\nnamespace geo {\nint area();\n}\n", "C++"),
        (b"template <typename T> T twice(T x) { return x + x; }\n", "C++"),
        (b"class Shape {\npublic:\n  virtual double area() const = 0;\n};\n", "C++"),
        (b"#include <vector>\nint f(std::vector<int>& v);\n", "C++"),
        # No marker, but only the C++ grammar parses it cleanly.
        (b"int f(int& x) { return x; }\n", "C++"),
    ],
)
def test_dot_h_is_decided_by_content(content, language):
    assert detect_language("include/x.h", content) == language


HEADERS_OF_EVERY_KIND = [
    b"int add(int a, int b);\n",  # both grammars parse it: C, the first entry, wins without a tie-break parse
    b"int f(int& x) { return x; }\n",  # only C++ parses it
    b"#define WRAP(x) do { x } while (0\nint g(;\n",  # neither does: the fewest error bytes win
    b"class A { int x; };\nclass B { int y; };\n",  # two languages' markers? C++ alone
    b"struct s { int new; int class_; };\nint (*fp)(int) = 0;\n",
]


@pytest.mark.parametrize("content", HEADERS_OF_EVERY_KIND)
def test_the_dot_h_decision_is_the_fewest_error_bytes_then_the_registry_order(content):
    """The decision stops parsing at the first contender without errors; it equals ranking every parse."""
    candidates = languages().candidates_for_path("x.h")
    marked = [spec for spec in candidates if spec.marker_pattern is not None and spec.marker_pattern.search(content)]
    contenders = marked if len(marked) > 1 else candidates if not marked else None
    expected = marked[0] if contenders is None else min(
        ((_error_bytes(tree_sitter.Parser(spec.language).parse(content).root_node), rank, spec)
         for rank, spec in enumerate(contenders)), key=lambda item: item[:2])[2]
    assert decide_by_content(candidates, content) is expected


def test_dot_h_without_content_defaults_to_the_first_entry():
    assert detect_language("x.h") == "C"


def test_a_ninth_language_by_registry_entry_alone(tmp_path):
    registry = registry_with(tmp_path, RUST_ENTRY)
    assert registry.names[-1] == "Rust" and len(registry) == 9
    assert registry["rs"].name == "Rust"
    assert detect_language("src/main.rs", registry=registry) == "Rust"
    facts = parse(RUST_CODE, "rust", registry=registry)
    assert facts.parse_ok and not facts.has_error
    assert [f.name for f in facts.functions] == ["add"]
    assert [c.name for c in facts.classes] == ["P"]
    assert "sum" not in facts.tokens and "add" in facts.tokens


def test_user_entries_come_from_the_environment_and_the_user_file(tmp_path, monkeypatch, isolated_user_config):
    assert "Rust" not in languages()
    extra = tmp_path / "rust.yaml"
    extra.write_text(RUST_ENTRY)
    monkeypatch.setenv("CODEPREF_LANGUAGES", str(extra))
    assert "Rust" in languages()
    monkeypatch.delenv("CODEPREF_LANGUAGES")
    user_file = isolated_user_config / "codepref" / "languages.yaml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(RUST_ENTRY)
    assert languages()["Rust"].source == str(user_file)


def test_a_later_entry_replaces_an_earlier_one(tmp_path):
    registry = registry_with(
        tmp_path,
        "languages:\n  - name: Python\n    extensions: [.py, .pyw]\n"
        "    grammar: {package: tree-sitter-python, module: tree_sitter_python}\n",
    )
    assert len(registry) == 8
    assert registry["python"].extensions == (".py", ".pyw")


def test_missing_grammar_package_says_what_to_install(tmp_path):
    registry = registry_with(
        tmp_path,
        "languages:\n  - name: Zig\n    extensions: [.zig]\n"
        "    grammar: {package: tree-sitter-zig, module: tree_sitter_zig_not_installed}\n",
    )
    with pytest.raises(GrammarError, match=r"Zig: .*pip install tree-sitter-zig"):
        parse("const x = 1;", "zig", registry=registry)


def test_incompatible_grammar_abi_is_explained(tmp_path, monkeypatch):
    # A grammar module whose entry point hands tree-sitter something it refuses to load.
    (tmp_path / "tree_sitter_broken.py").write_text("def language():\n    return 12345\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = registry_with(
        tmp_path,
        "languages:\n  - name: Broken\n    extensions: [.brk]\n"
        "    grammar: {package: tree-sitter-broken, module: tree_sitter_broken}\n",
    )
    with pytest.raises(GrammarError, match=r"Broken: grammar tree-sitter-broken .* reads grammar ABI 13\.\.15"):
        registry["broken"].language
    sys.modules.pop("tree_sitter_broken", None)


def test_unknown_node_type_names_the_entry(tmp_path):
    registry = registry_with(
        tmp_path,
        "languages:\n  - name: Python\n    extensions: [.py]\n"
        "    grammar: {package: tree-sitter-python, module: tree_sitter_python}\n"
        "    nodes: {comment: [comment], function: [function_defintion]}\n",
    )
    with pytest.raises(GrammarError, match=r"node type 'function_defintion' .* does not exist in tree-sitter-python"):
        registry["python"].language


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("languages: {}\n", "expected a top-level 'languages:' list"),
        ("languages:\n  - name: X\n    extensions: [.x]\n", "missing 'grammar'"),
        ("languages:\n  - name: X\n    extensions: [x]\n    grammar: {package: p, module: m}\n", "must start with '.'"),
        ("languages:\n  - name: X\n    extension: [.x]\n    grammar: {package: p, module: m}\n", "unknown keys"),
        ("languages:\n  - name: X\n    extensions: [.x]\n    markers: ['(']\n    grammar: {package: p, module: m}\n",
         "not a valid regular expression"),
        ("languages: [\n", "not valid YAML"),
    ],
)
def test_malformed_registry_files_name_the_file(tmp_path, text, message):
    with pytest.raises(RegistryError, match=message) as error:
        registry_with(tmp_path, text)
    assert "extra.yaml" in str(error.value)


def test_registry_entries_pickle_without_the_loaded_grammar():
    import pickle

    spec = languages()["go"]
    assert spec.language is not None  # loaded in this process
    clone = pickle.loads(pickle.dumps(spec))
    assert "language" not in clone.__dict__
    assert clone == spec and parse("package main\n", clone).parse_ok


# --- mutation blocks ---------------------------------------------------------------------------------

RUST_HEAD = ("languages:\n  - name: Rust\n    extensions: [.rs]\n"
             "    grammar: {package: tree-sitter-rust, module: tree_sitter_rust}\n"
             "    nodes: {comment: [line_comment]}\n")


def test_built_in_mutation_blocks_allow_every_operator_with_the_default_tables():
    from parsers.registry import DEFAULT_SWAPS, MUTATION_OPERATORS, MutationSpec

    for spec in languages():
        assert spec.mutation is not None and spec.mutation.enabled_operators == MUTATION_OPERATORS
        assert spec.mutation.swaps == () and spec.mutation.swap_tables == DEFAULT_SWAPS
        assert MutationSpec.from_entry(spec.mutation.to_entry(), "x") == spec.mutation  # the block round-trips


def test_a_mutation_block_allows_the_operators_whose_node_types_it_declares(tmp_path):
    pytest.importorskip("tree_sitter_rust")
    registry = registry_with(tmp_path, RUST_HEAD + "    mutation: {binary: [binary_expression], conditionals: [if_expression],\n"
                                                  "               swaps: {boolean_swap: {'&&': '||'}}}\n")
    rules = registry["rust"].mutation
    assert rules.enabled_operators == ("comparison_flip", "off_by_one", "boolean_swap", "arithmetic_swap", "negated_condition")
    assert rules.swap_tables["boolean_swap"] == {"&&": "||"} and rules.swap_tables["off_by_one"]["<"] == "<="
    assert registry["rust"].language is not None  # node types and swap tokens exist in the grammar


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{binary: [binary_expression], operators: [flip]}", r"mutation.operators names unknown operators \['flip'\]"),
        ("{binary: [binary_expression], operator: [comparison_flip]}", r"unknown mutation keys \['operator'\]"),
        ("{binary: [binary_expression], operators: [removed_guard]}", r"'removed_guard', which needs .*conditionals and mutation.exits"),
        ("{binary: [binary_expression], swaps: {changed_return: {'1': '2'}}}", r"\['changed_return'\], which are not token-swap"),
        ("{binary: [binary_expression], swaps: {comparison_flip: {'==': '=='}}}", r"replaces \['=='\] by themselves"),
        ("{binary: [binary_expression], swaps: {comparison_flip: []}}", "must be a non-empty mapping"),
        ("{booleans: {true: false}}", "must be quoted text"),
        ("{binary: {x: y}}", "mutation.binary must be a list of node types"),
        ("{negate: 'not'}", "must contain '{}'"),
        ("[binary_expression]", "'mutation' must be a mapping"),
    ],
)
def test_a_malformed_mutation_block_names_the_file_and_the_entry(tmp_path, block, message):
    with pytest.raises(RegistryError, match=message) as error:
        registry_with(tmp_path, RUST_HEAD + f"    mutation: {block}\n")
    assert "extra.yaml: entry 'Rust'" in str(error.value)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{binary: [binary_expression], exits: [goto_statement]}", "node type 'goto_statement' of mutation.exits"),
        ("{binary: [binary_expression], swaps: {comparison_flip: {'===': '!=='}}}", "token '===' of mutation.swaps.comparison_flip"),
    ],
)
def test_mutation_node_types_and_swap_tokens_are_checked_against_the_grammar(tmp_path, block, message):
    pytest.importorskip("tree_sitter_rust")
    registry = registry_with(tmp_path, RUST_HEAD + f"    mutation: {block}\n")
    with pytest.raises(GrammarError, match=message) as error:
        _ = registry["rust"].language
    assert "extra.yaml" in str(error.value) and "tree-sitter-rust" in str(error.value)


@pytest.mark.parametrize("path", ["a/b.PY", ".bashrc", "a/.bashrc", "b.", "a/b.tar.gz", "a\\b.c", "x", "a.b/c", "a/b..",
                                  "dir/.x.y", "a//b.go", "src/h.H"])
def test_path_suffix_reads_a_path_as_pure_posix_path_does(path):
    from pathlib import PurePosixPath

    from parsers.registry import path_suffix

    assert path_suffix(path) == PurePosixPath(path.replace("\\", "/")).suffix.lower()
