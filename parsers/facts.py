"""Code facts from one tree-sitter parse: errors, depth, size, functions, classes, tokens.

Definitions:
- `error_share`: bytes under outermost ERROR nodes / all bytes (MISSING nodes are zero-width;
  they are counted in `missing_nodes` and make `has_error` true).
- `depth`: the most named nodes on one path from the root, the root included (an empty
  Python module has depth 1; `x = 1` has 4: module, expression_statement, assignment, identifier).
- `tokens`: the source with comment nodes cut out, split into words and single punctuation marks;
  computed on first use (only dedup needs it, and only for records the filters kept).
- `parse_ok`: the bytes are valid UTF-8 and the parser produced a tree. Invalid UTF-8 is reported
  in `decode_error` (byte offset and bytes), never dropped: the rest of the facts still come from
  the raw bytes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import tree_sitter

from parsers.registry import LanguageRegistry, LanguageSpec, languages
from schemas import CodeSummary

_TOKEN = re.compile(r"\w+|[^\w\s]")
COMMENT, FUNCTION, CLASS, NAMED, ANONYMOUS = 0, 1, 2, 3, 4  # what a node kind means to the facts
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
    comments: tuple[tuple[int, int], ...]  # byte ranges of comment nodes, in order
    source: bytes = field(repr=False, compare=False)

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        """The comment-free token stream (words and single punctuation marks)."""
        return comment_free_tokens(self.source, self.comments)

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
            comment_spans=[offset for span in self.comments for offset in span],
        )

    def to_json(self, *, with_tokens: bool = True) -> dict[str, Any]:
        data = asdict(self)
        del data["source"]
        data["comments"] = [list(r) for r in self.comments]
        if with_tokens:
            data["tokens"] = list(self.tokens)
        return data


class _Tools:
    """A process-local (and thread-local) parser for one language, and what each node kind means."""

    def __init__(self, spec: LanguageSpec):
        language = spec.language
        self.parser = tree_sitter.Parser(language)
        # Kind id -> ANONYMOUS, NAMED or a category; a grammar may give one node type several ids (aliases).
        wanted = {COMMENT: spec.comment_nodes, FUNCTION: spec.function_nodes, CLASS: spec.class_nodes}
        self.kinds: dict[int, int] = {}
        for kind_id in range(language.node_kind_count):
            if not language.node_kind_is_named(kind_id):
                self.kinds[kind_id] = ANONYMOUS
                continue
            name = language.node_kind_for_id(kind_id)
            self.kinds[kind_id] = next((c for c, kinds in wanted.items() if name in kinds), NAMED)


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
    depth, named, found = _walk(tree, tools.kinds)

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
        functions=_spans(found[FUNCTION]),
        classes=_spans(found[CLASS]),
        comments=tuple(sorted((n.start_byte, n.end_byte) for n in found[COMMENT])),
        source=source,
    )


def code_tokens(text: str) -> list[str]:
    """Words and single punctuation marks of `text` (no comment removal: for code that was not parsed)."""
    return _TOKEN.findall(text)


def strip_comments(source: bytes | str, comments: Any) -> bytes:
    """`source` as UTF-8 bytes with the comment byte ranges replaced by a space.

    `comments` is a sequence of (start, end) pairs or a flat [start, end, ...] list (as stored in
    CodeSummary.comment_spans), so stored facts give comment-free code without a second parse.
    """
    data = source.encode("utf-8", errors="surrogatepass") if isinstance(source, str) else source
    ranges = list(comments)
    if ranges and not isinstance(ranges[0], (tuple, list)):
        ranges = list(zip(ranges[0::2], ranges[1::2]))
    return _without(data, ranges)


def comment_free_tokens(source: bytes | str, comments: Any) -> tuple[str, ...]:
    """Words and single punctuation marks of `source` with the comment byte ranges cut out."""
    return tuple(_TOKEN.findall(strip_comments(source, comments).decode("utf-8", errors="replace")))


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


def _walk(tree: tree_sitter.Tree, kinds: dict[int, int]) -> tuple[int, int, list[list[tree_sitter.Node]]]:
    """One cursor walk: named-node depth (root = 1), named-node count, and the nodes per category."""
    cursor = tree.walk()
    first_child, next_sibling, parent = cursor.goto_first_child, cursor.goto_next_sibling, cursor.goto_parent
    found: list[list[tree_sitter.Node]] = [[], [], [], [], []]
    meaning = kinds.get
    ancestors: list[int] = []  # named depth of each ancestor's parent, for climbing back up
    parent_depth, current, deepest, named = 0, 1, 1, 1
    root = tree.root_node
    if meaning(root.kind_id, NAMED) < NAMED:
        found[meaning(root.kind_id, NAMED)].append(root)
    while True:
        if first_child():
            ancestors.append(parent_depth)
            parent_depth = current
        else:
            while not next_sibling():
                if not parent():
                    return deepest, named, found
                current = parent_depth
                parent_depth = ancestors.pop()
        node = cursor.node
        kind = meaning(node.kind_id, NAMED)  # ERROR has no kind id in the table; it is named
        if kind == ANONYMOUS:
            current = parent_depth
            continue
        current = parent_depth + 1
        named += 1
        if current > deepest:
            deepest = current
        if kind < NAMED:
            found[kind].append(node)


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


def _without(source: bytes, ranges: Any) -> bytes:
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
