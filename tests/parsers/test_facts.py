"""Code facts on real grammars: every default language, hand-checked depth and error share."""

from __future__ import annotations

import pytest

from parsers import languages, parse

# One valid and one broken snippet per language; each valid one holds one function and one class-like type.
SNIPPETS = {
    "C": (
        "struct point { int x; int y; };\n/* sum */\nint add(int a, int b) { return a + b; }\n",
        "int add(int a, int b) { return a + ; }}\n",
    ),
    "C#": (
        "class Calc {\n  // sum\n  int add(int a, int b) { return a + b; }\n}\n",
        "class Calc { int Add(int a, int b) { return a + ; }\n",
    ),
    "C++": (
        "class Calc {\n public:\n  // sum\n  int add(int a, int b) { return a + b; }\n};\n",
        "class Calc { public: int add(int a, int b) { return a + ; } \n",
    ),
    "Go": (
        "package main\n\ntype Calc struct{}\n\n// sum\nfunc add(a, b int) int { return a + b }\n",
        "package main\nfunc add(a, b int) int { return a + }\n",
    ),
    "Java": (
        "class Calc {\n  /* sum */\n  int add(int a, int b) { return a + b; }\n}\n",
        "class Calc { int add(int a, int b) { return a + ; }\n",
    ),
    "JavaScript": (
        "class Calc {}\n// sum\nfunction add(a, b) { return a + b; }\n",
        "function add(a, b) { return a + ; \n",
    ),
    "Python": (
        "class Calc:\n    pass\n\n# sum\ndef add(a, b):\n    return a + b\n",
        "def add(a, b:\n    return a +\n",
    ),
    "Ruby": (
        "class Calc\nend\n\n# sum\ndef add(a, b)\n  a + b\nend\n",
        "def add(a, b\n  a + \n",
    ),
}


def test_every_default_language_has_snippets():
    assert sorted(SNIPPETS) == sorted(spec.name for spec in languages())


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_valid_snippet_parses_clean_with_functions_and_classes(language):
    facts = parse(SNIPPETS[language][0], language)
    assert facts.parse_ok and not facts.has_error
    assert facts.error_bytes == 0 and facts.error_share == 0.0 and facts.missing_nodes == 0
    assert [f.name for f in facts.functions] == ["add"]
    assert len(facts.classes) == 1
    assert facts.depth >= 3


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_broken_snippet_reports_errors(language):
    facts = parse(SNIPPETS[language][1], language)
    assert facts.has_error
    assert facts.error_bytes > 0 or facts.missing_nodes > 0
    assert 0.0 < facts.error_share <= 1.0 or facts.missing_nodes > 0


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_comment_stripping_keeps_code_tokens(language):
    facts = parse(SNIPPETS[language][0], language)
    assert "sum" not in facts.tokens  # the only place "sum" occurs is a comment
    for token in ("add", "a", "b", "+"):
        assert token in facts.tokens
    # Cutting comments must not fuse neighbouring tokens.
    assert all("add" not in t or t == "add" for t in facts.tokens)


def test_depth_and_node_count_hand_checked():
    # module > expression_statement > assignment > identifier | integer
    facts = parse("x = 1\n", "python")
    assert (facts.depth, facts.named_nodes) == (4, 5)
    # translation_unit > declaration > primitive_type | identifier
    facts = parse("int x;\n", "c")
    assert (facts.depth, facts.named_nodes) == (3, 4)
    # translation_unit > function_definition > compound_statement > return_statement > number_literal
    assert parse("int main() { return 0; }\n", "c").depth == 5
    assert parse("", "python").depth == 1


def test_error_share_hand_checked():
    # The stray ")" (1 byte of 8) is the only ERROR node.
    facts = parse("x = 1\n)\n", "python")
    assert facts.error_bytes == 1 and facts.error_share == pytest.approx(1 / 8)
    # A missing ";" is a zero-width MISSING node: an error, but no error bytes.
    facts = parse("int main() { return 0 }\n", "c")
    assert facts.has_error and facts.missing_nodes == 1 and facts.error_share == 0.0


def test_spans_and_lines():
    code = "class A:\n    def m(self):\n        return 1\n\n\ndef g():\n    pass\n"
    facts = parse(code, "python")
    assert [(f.name, f.start_line, f.end_line) for f in facts.functions] == [("m", 2, 3), ("g", 6, 7)]
    assert [(c.name, c.start_line, c.end_line) for c in facts.classes] == [("A", 1, 3)]
    assert facts.lines == 7
    assert parse("a = 1", "python").lines == 1


def test_c_function_name_comes_from_the_declarator():
    facts = parse("static int *make(void) { return 0; }\n", "c")
    assert [f.name for f in facts.functions] == ["make"]


def test_invalid_utf8_is_reported_not_dropped():
    facts = parse(b"x = 1\ny = '\xff'\n", "python")
    assert not facts.parse_ok
    assert facts.decode_error is not None and "byte 11" in facts.decode_error and "ff" in facts.decode_error
    assert "x" in facts.tokens and "y" in facts.tokens
    assert facts.bytes == 14


def test_aliases_and_spec_are_accepted():
    spec = languages()["C++"]
    assert parse("int x;", "cpp").language == "C++"
    assert parse("int x;", spec).language == "C++"
    assert parse("var x = 1;", "JS").language == "JavaScript"


def test_unknown_language_lists_known_ones():
    with pytest.raises(KeyError, match=r"unknown language 'cobol'; known: C, C#, C\+\+, Go, Java, JavaScript, Python, Ruby"):
        parse("x", "cobol")
