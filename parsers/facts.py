"""Code facts from one tree-sitter parse: errors, depth, size, functions, classes, tokens.

Definitions:
- `error_share`: bytes under outermost ERROR nodes / all bytes (MISSING nodes are zero-width;
  they are counted in `missing_nodes` and make `has_error` true).
- `depth`: the most named nodes on one path from the root, the root included (an empty
  Python module has depth 1; `x = 1` has 4: module, expression_statement, assignment, identifier).
- `tokens`: the source with comment nodes cut out, split into words and single punctuation marks.
- `parse_ok`: the bytes are valid UTF-8 and the parser produced a tree. Invalid UTF-8 is reported
  in `decode_error` (byte offset and bytes), never dropped: the rest of the facts still come from
  the raw bytes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from typing import Any

import tree_sitter

from parsers.registry import LanguageRegistry, LanguageSpec, languages
from schemas import CodeSummary

_TOKEN = re.compile(r"\w+|[^\w\s]")
_local = threading.local()


@dataclass(frozen=True)
class Span:
    """A function or class: its node type, name (when it has one) and where it is."""

    node_type: str
    name: str | None
    start_line: int  # 1-based, inclusive
    end_line: int
    start_byte: int
    end_byte: int


@dataclass(frozen=True)
class CodeFacts:
    """Everything one parse tells about a piece of code (see the module docstring)."""

    language: str
    parse_ok: bool
    decode_error: str | None
    has_error: bool
    error_bytes: int
    error_share: float
    missing_nodes: int
    depth: int
    named_nodes: int
    bytes: int
    lines: int
    functions: tuple[Span, ...]
    classes: tuple[Span, ...]
    tokens: tuple[str, ...]

    def summary(self) -> CodeSummary:
        """The scalar facts that travel with a candidate pair."""
        return CodeSummary(
            parse_ok=self.parse_ok,
            error_share=self.error_share,
            has_error=self.has_error,
            depth=self.depth,
            named_nodes=self.named_nodes,
            lines=self.lines,
            functions=len(self.functions),
            classes=len(self.classes),
        )

    def to_json(self, *, with_tokens: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_tokens:
            data.pop("tokens")
        return data


class _Tools:
    """A process-local (and thread-local) parser and query for one language."""

    def __init__(self, spec: LanguageSpec):
        self.parser = tree_sitter.Parser(spec.language)
        patterns = []
        for capture, kinds in (("comment", spec.comment_nodes), ("function", spec.function_nodes), ("class", spec.class_nodes)):
            if kinds:
                patterns.append("[" + " ".join(f"({kind})" for kind in kinds) + f"] @{capture}")
        self.query = tree_sitter.Query(spec.language, "\n".join(patterns)) if patterns else None


def _tools(spec: LanguageSpec) -> _Tools:
    cache = getattr(_local, "tools", None)
    if cache is None:
        cache = _local.tools = {}
    key = (spec.name, spec.grammar)
    if key not in cache:
        cache[key] = _Tools(spec)
    return cache[key]


def _resolve(language: str | LanguageSpec, registry: LanguageRegistry | None) -> LanguageSpec:
    if isinstance(language, LanguageSpec):
        return language
    return (registry or languages())[language]


def parse(code: str | bytes, language: str | LanguageSpec, *, registry: LanguageRegistry | None = None) -> CodeFacts:
    """Parse `code` as `language` (a name, alias or registry entry) and return its facts."""
    spec = _resolve(language, registry)
    source = code.encode("utf-8", errors="surrogatepass") if isinstance(code, str) else bytes(code)
    decode_error = _utf8_error(source)
    tools = _tools(spec)
    tree = tools.parser.parse(source)
    root = tree.root_node

    error_bytes, missing = _errors(root) if root.has_error else (0, 0)
    depth, named = _depth_and_named_count(tree)
    captures = tree_sitter.QueryCursor(tools.query).captures(root) if tools.query else {}
    comments = sorted((n.start_byte, n.end_byte) for n in captures.get("comment", ()))

    return CodeFacts(
        language=spec.name,
        parse_ok=decode_error is None,
        decode_error=decode_error,
        has_error=root.has_error,
        error_bytes=error_bytes,
        error_share=error_bytes / len(source) if source else 0.0,
        missing_nodes=missing,
        depth=depth,
        named_nodes=named,
        bytes=len(source),
        lines=source.count(b"\n") + (1 if source and not source.endswith(b"\n") else 0),
        functions=_spans(captures.get("function", ())),
        classes=_spans(captures.get("class", ())),
        tokens=tuple(_TOKEN.findall(_without(source, comments).decode("utf-8", errors="replace"))),
    )


def _utf8_error(source: bytes) -> str | None:
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"invalid UTF-8 at byte {error.start}: {source[error.start:error.end].hex()} ({error.reason})"
    return None


def _errors(root: tree_sitter.Node) -> tuple[int, int]:
    """(bytes under outermost ERROR nodes, MISSING node count), visiting only subtrees with errors."""
    error_bytes = missing = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error:
            error_bytes += node.end_byte - node.start_byte
        elif node.is_missing:
            missing += 1
        elif node.has_error:
            stack.extend(node.children)
    return error_bytes, missing


def _depth_and_named_count(tree: tree_sitter.Tree) -> tuple[int, int]:
    """Named-node depth (root = 1) and named-node count, in one cursor walk."""
    cursor = tree.walk()
    depths = [1]  # named depth of each node on the cursor's path
    deepest = named = 1
    while True:
        if not cursor.goto_first_child():
            while not cursor.goto_next_sibling():
                if not cursor.goto_parent():
                    return deepest, named
                depths.pop()
            depths.pop()
        is_named = cursor.node.is_named
        depth = depths[-1] + is_named
        depths.append(depth)
        named += is_named
        if depth > deepest:
            deepest = depth


def _spans(nodes: Any) -> tuple[Span, ...]:
    ordered = sorted(nodes, key=lambda n: (n.start_byte, -n.end_byte))
    return tuple(
        Span(
            node_type=n.type,
            name=_name_of(n),
            start_line=n.start_point.row + 1,
            end_line=n.end_point.row + 1,
            start_byte=n.start_byte,
            end_byte=n.end_byte,
        )
        for n in ordered
    )


def _name_of(node: tree_sitter.Node) -> str | None:
    """The `name` field, or the innermost `declarator` (C-family functions); None for anonymous ones."""
    named = node.child_by_field_name("name")
    if named is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        named = declarator
    if named is None or named.text is None:
        return None
    return named.text.decode("utf-8", errors="replace")


def _without(source: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """`source` with the byte ranges cut out (a space left in each place, so tokens do not fuse)."""
    if not ranges:
        return source
    pieces, position = [], 0
    for start, end in ranges:
        if start >= position:
            pieces.append(source[position:start])
            pieces.append(b" ")
        position = max(position, end)
    pieces.append(source[position:])
    return b"".join(pieces)


def detect_language(path: str, content: bytes | None = None, *, registry: LanguageRegistry | None = None) -> str | None:
    """The registry language of a file path (shared extensions decided by content), or None."""
    spec = (registry or languages()).for_path(path, content)
    return spec.name if spec else None
