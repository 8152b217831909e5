"""Bug injection: every operator on every language gives valid code that differs exactly in its span."""

from __future__ import annotations

import pytest

from parsers import languages, parse
from pipelines.synthesize.mutation import (
    OPERATORS,
    MutationError,
    mutate,
    mutation_sites,
)

SNIPPETS = {
    "C": """int clamp(int lo, int hi, int x) {
    if (x < lo) return lo;
    if (x > hi && hi >= 0) { return hi; }
    return max(x + 1, lo) * 2;
}
int ok(void) { return 1; }
""",
    "C#": """class M {
    int Clamp(int lo, int hi, int x) {
        if (x < lo) return lo;
        if (x > hi && hi >= 0) { return hi; }
        return Math.Max(x + 1, lo) * 2;
    }
    bool Ok() { return true; }
}
""",
    "C++": """int clamp(int lo, int hi, int x) {
    if (x < lo) return lo;
    if (x > hi && hi >= 0) { return hi; }
    return std::max(x + 1, lo) * 2;
}
bool ok() { return true; }
""",
    "Go": """package m

func clamp(lo, hi, x int) int {
\tif x < lo {
\t\treturn lo
\t}
\tif x > hi && hi >= 0 {
\t\treturn hi
\t}
\treturn max(x+1, lo) * 2
}

func ok() bool { return true }
""",
    "Java": """class M {
    int clamp(int lo, int hi, int x) {
        if (x < lo) return lo;
        if (x > hi && hi >= 0) { return hi; }
        return Math.max(x + 1, lo) * 2;
    }
    boolean ok() { return true; }
}
""",
    "JavaScript": """function clamp(lo, hi, x) {
  if (x < lo) return lo;
  if (x > hi && hi >= 0) { return hi; }
  return Math.max(x + 1, lo) * 2;
}
function ok() { return true; }
""",
    "Python": """def clamp(lo, hi, x):
    if x < lo:
        return lo
    if x > hi and hi >= 0:
        return hi
    return max(x + 1, lo) * 2


def ok():
    return True
""",
    "Ruby": """def clamp(lo, hi, x)
  return lo if x < lo
  if x > hi && hi >= 0
    return hi
  end
  [x + 1, lo].max * 2
  helper(x, lo)
end

def ok
  return true
end
""",
}


def test_every_default_language_has_a_snippet():
    assert sorted(SNIPPETS) == sorted(languages().names)


@pytest.mark.parametrize("language", sorted(SNIPPETS))
@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_gives_valid_different_code(language, operator):
    spec = languages()[language]
    code = SNIPPETS[language]
    assert not parse(code, spec).has_error
    mutation = mutate(code, spec, key=f"{language}-{operator}", operators=(operator,))
    assert mutation.operator == operator
    assert mutation.mutant != code
    source, mutant = code.encode(), mutation.mutant.encode()
    start, end = mutation.start_byte, mutation.end_byte
    # Exactly the recorded span changed.
    assert source[start:end].decode() == mutation.original
    assert mutant == source[:start] + mutation.replacement.encode() + source[end:]
    assert mutation.original != mutation.replacement
    facts = parse(mutation.mutant, spec)
    assert not facts.has_error, mutation


def test_choice_is_deterministic_and_depends_on_the_key():
    spec = languages()["python"]
    code = SNIPPETS["Python"]
    first = mutate(code, spec, key="pair-1")
    assert mutate(code, spec, key="pair-1") == first
    chosen = {mutate(code, spec, key=f"pair-{i}").operator for i in range(40)}
    assert len(chosen) >= 5  # operators are drawn first, so all kinds appear


def test_no_site_and_unknown_languages_fail_with_a_reason(tmp_path):
    spec = languages()["python"]
    with pytest.raises(MutationError, match="no_mutation_site"):
        mutate("import os\n", spec, key="k")
    from parsers import LanguageRegistry
    from parsers.registry import DEFAULT_REGISTRY
    from tests.support.inputs import RUST_ENTRY

    extra = tmp_path / "rust.yaml"
    extra.write_text(RUST_ENTRY)
    rust = LanguageRegistry.from_files([DEFAULT_REGISTRY, extra])["rust"]
    with pytest.raises(MutationError, match="no_mutation_operators"):
        mutation_sites("fn main() { let x = 1 + 2; }", rust)
