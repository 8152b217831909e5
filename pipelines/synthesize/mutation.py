"""Bug injection by tree-sitter mutation: one small, syntactically valid change at a known span.

Operators (what each language's registry entry needs is its `mutation` block; the replacement
tables below are the defaults, which a block's `swaps` may replace per operator, and a block's
`operators` restricts which operators apply, see parsers.registry.MutationSpec):
- `comparison_flip`: `==`↔`!=`, `<`↔`>=`, `>`↔`<=` (and `===`↔`!==`);
- `off_by_one`: `<`↔`<=`, `>`↔`>=` in a bound;
- `boolean_swap`: `&&`↔`||`, `and`↔`or`;
- `arithmetic_swap`: `+`↔`-`, `*`↔`/`;
- `negated_condition`: a conditional's condition `c` becomes `!(c)` (`not (c)` in Python);
- `removed_guard`: an `if` without `else` whose body only leaves the block (return, raise, break ...) is deleted;
- `changed_return`: a returned boolean is flipped, an integer incremented, anything else becomes null;
- `swapped_arguments`: the first two arguments of a call change places.
A mutant is kept only if it re-parses with no more errors than the original; the choice among the
possible mutations is seeded from a key (the pair id), so it is the same on every run and worker.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter

from parsers.facts import _errors, _tools
from parsers.registry import (
    DEFAULT_SWAPS,
    MUTATION_OPERATORS,
    LanguageSpec,
    MutationSpec,
)

OPERATORS: tuple[str, ...] = MUTATION_OPERATORS
TOKEN_SWAPS: dict[str, dict[str, str]] = DEFAULT_SWAPS


class MutationError(ValueError):
    """No valid mutation exists for this code: `reason` (a drop reason of the synthesize stage) and `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class Mutation:
    """A mutant and exactly what changed: the operator and the byte span of the original it replaced."""

    operator: str
    start_byte: int
    end_byte: int
    original: str
    replacement: str
    mutant: str


@dataclass(frozen=True)
class _Site:
    operator: str
    start: int
    end: int
    replacement: bytes


def _text(node: tree_sitter.Node) -> bytes:
    return node.text or b""


def _named_children(node: tree_sitter.Node, comment_types: tuple[str, ...]) -> list[tree_sitter.Node]:
    return [c for c in node.named_children if c.type not in comment_types]


def _sites(root: tree_sitter.Node, spec: LanguageSpec, rules: MutationSpec) -> Iterator[_Site]:
    booleans = {a.encode(): b.encode() for a, b in rules.booleans}
    swap_tables = rules.swap_tables
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        kind = node.type
        if kind in rules.binary:
            for child in node.children:
                if child.is_named:
                    continue
                token = _text(child).decode("utf-8", "replace")
                for operator, swaps in swap_tables.items():
                    if token in swaps:
                        yield _Site(operator, child.start_byte, child.end_byte, swaps[token].encode())
        if kind in rules.conditionals:
            yield from _conditional_sites(node, spec, rules)
        if kind in rules.returns:
            values = _named_children(node, spec.comment_nodes)
            if values:
                value = values[0]
                text = _text(value)
                if text in booleans:
                    yield _Site("changed_return", value.start_byte, value.end_byte, booleans[text])
                elif value.type in rules.integers and text.isdigit():
                    yield _Site("changed_return", value.start_byte, value.end_byte, str(int(text) + 1).encode())
                elif rules.null_literal and text != rules.null_literal.encode():
                    yield _Site("changed_return", value.start_byte, value.end_byte, rules.null_literal.encode())
        if kind in rules.arguments:
            arguments = _named_children(node, spec.comment_nodes)
            if len(arguments) >= 2 and _text(arguments[0]) != _text(arguments[1]):
                first, second = arguments[0], arguments[1]
                between = (root.text or b"")[first.end_byte : second.start_byte]
                yield _Site("swapped_arguments", first.start_byte, second.end_byte, _text(second) + between + _text(first))


def _conditional_sites(node: tree_sitter.Node, spec: LanguageSpec, rules: MutationSpec) -> Iterator[_Site]:
    condition = node.child_by_field_name("condition")
    if condition is not None:
        target = condition
        inner = _named_children(condition, spec.comment_nodes)
        if condition.type in rules.parenthesized and len(inner) == 1:
            target = inner[0]  # negate inside the parentheses the syntax requires
        yield _Site("negated_condition", target.start_byte, target.end_byte, rules.negate.format(_text(target).decode()).encode())
    if node.child_by_field_name("alternative") is not None:
        return
    body = node.child_by_field_name("consequence") or node.child_by_field_name("body")
    if body is None:
        return
    statements = [body]
    while len(statements) == 1 and statements[0].type in rules.blocks:  # blocks may nest (Go: block > statement_list)
        statements = _named_children(statements[0], spec.comment_nodes)
    if len(statements) == 1 and statements[0].type in rules.exits:
        yield _Site("removed_guard", node.start_byte, node.end_byte, b"")


def mutation_sites(
    code: str, spec: LanguageSpec, operators: tuple[str, ...] = OPERATORS, region: tuple[int, int] | None = None
) -> list[_Site]:
    """Every place where one of `operators` that the language's mutation block allows applies (inside the
    byte `region`, if given), in source order."""
    if spec.mutation is None:
        raise MutationError("no_mutation_operators", f"the registry entry of {spec.name} has no 'mutation' block")
    enabled = spec.mutation.enabled_operators
    if not enabled:
        raise MutationError("no_mutation_operators", f"the mutation block of {spec.name} allows no operator")
    allowed = set(operators) & set(enabled)
    if not allowed:
        raise MutationError("no_mutation_site", f"the mutation block of {spec.name} allows {', '.join(enabled)}, "
                                                f"none of {', '.join(operators)}")
    tree = _tools(spec).parser.parse(code.encode("utf-8"))
    low, high = region if region is not None else (0, len(code.encode("utf-8")))
    found = [
        site for site in _sites(tree.root_node, spec, spec.mutation)
        if site.operator in allowed and low <= site.start and site.end <= high
    ]
    return sorted(found, key=lambda s: (s.start, s.end, s.operator, s.replacement))


def mutate(
    code: str,
    spec: LanguageSpec,
    key: str,
    operators: tuple[str, ...] = OPERATORS,
    region: tuple[int, int] | None = None,
    skip: int = 0,
) -> Mutation:
    """A valid mutant of `code`, chosen deterministically from `key`; MutationError when there is none.

    The operator is drawn first (among those that apply), then the site, so that frequent
    operators (arithmetic, say) do not crowd out the others. `region` limits the mutation to a
    byte range (e.g. a function body); `skip` passes over that many valid mutants in the same
    deterministic order (to try the next one when a mutant turns out not to change behaviour).
    """
    sites = mutation_sites(code, spec, operators, region)
    if not sites:
        raise MutationError("no_mutation_site", "none of the operators applies to this code")
    source = code.encode("utf-8")
    baseline = _errors(_tools(spec).parser.parse(source).root_node)
    rng = random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big"))
    by_operator: dict[str, list[_Site]] = {}
    for site in sites:
        by_operator.setdefault(site.operator, []).append(site)
    order = sorted(by_operator)
    rng.shuffle(order)
    for candidates in by_operator.values():
        rng.shuffle(candidates)
    # Round-robin over operators in their drawn order, so that successive picks vary the operator.
    queue = [site for round_ in itertools.zip_longest(*(by_operator[o] for o in order)) for site in round_ if site is not None]
    for site in queue:
        mutant = source[: site.start] + site.replacement + source[site.end :]
        if mutant == source:
            continue
        tree = _tools(spec).parser.parse(mutant)
        errors = _errors(tree.root_node) if tree.root_node.has_error else (0, 0)
        if errors[0] > baseline[0] or errors[1] > baseline[1]:
            continue  # the mutant must parse no worse than the original
        if skip > 0:
            skip -= 1
            continue
        return Mutation(
            operator=site.operator,
            start_byte=site.start,
            end_byte=site.end,
            original=source[site.start : site.end].decode("utf-8"),
            replacement=site.replacement.decode("utf-8"),
            mutant=mutant.decode("utf-8"),
        )
    raise MutationError("no_valid_mutant", "every candidate mutant parsed worse than the original")
