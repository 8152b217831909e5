"""The language registry: languages are data (parsers/languages.yaml plus user files), not code.

`languages()` returns the registry in force: the packaged entries, then the files named in
`CODEPREF_LANGUAGES` (os.pathsep-separated), then the user file
(`$XDG_CONFIG_HOME/codepref/languages.yaml`); a later entry with the same name replaces an earlier one.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import tree_sitter
import yaml

DEFAULT_REGISTRY = files("parsers") / "languages.yaml"
REGISTRY_ENV = "CODEPREF_LANGUAGES"


class RegistryError(ValueError):
    """A registry file or entry is malformed."""


class GrammarError(RuntimeError):
    """A language's grammar cannot be loaded (missing package, wrong ABI, unknown node type)."""


def _fold(name: str) -> str:
    return name.strip().casefold()


def user_registry_path() -> Path:
    """Where `codepref languages add` writes and the registry reads user entries."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "codepref" / "languages.yaml"


@dataclass(frozen=True)
class GrammarRef:
    """Where a grammar comes from: a PyPI package, its import name, and the function returning it."""

    package: str
    module: str
    entry: str = "language"


MUTATION_OPERATORS: tuple[str, ...] = (
    "comparison_flip", "off_by_one", "boolean_swap", "arithmetic_swap",
    "negated_condition", "removed_guard", "changed_return", "swapped_arguments",
)
"""The eight bug-injection operators (pipelines.synthesize.mutation), in their canonical order."""

DEFAULT_SWAPS: dict[str, dict[str, str]] = {
    "comparison_flip": {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">", "===": "!==", "!==": "==="},
    "off_by_one": {"<": "<=", "<=": "<", ">": ">=", ">=": ">"},
    "boolean_swap": {"&&": "||", "||": "&&", "and": "or", "or": "and"},
    "arithmetic_swap": {"+": "-", "-": "+", "*": "/", "/": "*"},
}
"""The replacement tables of the token-swap operators, used unless a mutation block's `swaps` replaces one."""

OPERATOR_NEEDS: dict[str, tuple[str, ...]] = {
    "comparison_flip": ("binary",), "off_by_one": ("binary",), "boolean_swap": ("binary",), "arithmetic_swap": ("binary",),
    "negated_condition": ("conditionals",), "removed_guard": ("conditionals", "exits"),
    "changed_return": ("returns",), "swapped_arguments": ("arguments",),
}
"""The mutation keys (node types) each operator needs; an operator is enabled by default when they are all declared."""

_NODE_LIST_KEYS = ("binary", "conditionals", "parenthesized", "arguments", "returns", "integers", "exits", "blocks")


@dataclass(frozen=True)
class MutationSpec:
    """What the bug-injection operators need to know of a grammar (see pipelines.synthesize.mutation).

    Node types (checked against the grammar when it loads): `binary`, `conditionals`, `parenthesized`,
    `arguments`, `returns`, `integers`, `exits`, `blocks`; spellings: `negate` (a template with `{}`),
    `booleans` (literal -> its flip), `null_literal`. `operators` lists the operators bug injection may
    use (default: every operator whose node types are declared, see OPERATOR_NEEDS); `swaps` replaces
    the replacement table of a token-swap operator (default: DEFAULT_SWAPS).
    """

    binary: tuple[str, ...] = ()
    conditionals: tuple[str, ...] = ()
    parenthesized: tuple[str, ...] = ()
    negate: str = "!({})"
    arguments: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    booleans: tuple[tuple[str, str], ...] = ()
    null_literal: str | None = None
    exits: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    operators: tuple[str, ...] | None = None
    swaps: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @classmethod
    def from_entry(cls, entry: dict[str, Any], where: str) -> MutationSpec:
        """The `mutation:` block of a registry entry; errors name `where` (the file and the entry)."""
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: 'mutation' must be a mapping of keys to node types, got {type(entry).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(entry) - known
        if unknown:
            raise RegistryError(f"{where}: unknown mutation keys {sorted(unknown)}; known: {sorted(known)}")
        if "{}" not in str(entry.get("negate", "{}")):
            raise RegistryError(f"{where}: mutation.negate must contain '{{}}' where the condition goes")
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key in _NODE_LIST_KEYS:
                values[key] = _names(value, f"{where}: mutation.{key}")
            elif key == "booleans":
                if value is None:
                    value = {}
                if not isinstance(value, dict):
                    raise RegistryError(f"{where}: mutation.booleans must map each literal to its flip, e.g. {{true: false, false: true}}")
                values[key] = tuple((_spelling(a, f"{where}: mutation.booleans"), _spelling(b, f"{where}: mutation.booleans"))
                                    for a, b in value.items())
            elif key == "operators":
                values[key] = _operators(value, where)
            elif key == "swaps":
                values[key] = _swaps(value, where)
            elif isinstance(value, (list, dict)):
                raise RegistryError(f"{where}: mutation.{key} must be a single text, got {type(value).__name__}")
            else:
                values[key] = None if value is None else str(value)
        spec = cls(**values)
        for operator in spec.operators or ():
            missing = [need for need in OPERATOR_NEEDS[operator] if not getattr(spec, need)]
            if missing:
                raise RegistryError(f"{where}: mutation.operators names {operator!r}, which needs node types in "
                                    + " and ".join(f"mutation.{m}" for m in missing))
        return spec

    @property
    def node_types(self) -> tuple[str, ...]:
        return tuple(kind for key in _NODE_LIST_KEYS for kind in getattr(self, key))

    def node_types_by_key(self) -> Iterator[tuple[str, str]]:
        """(key, node type) for every node type the block names, to report which key names a missing one."""
        for key in _NODE_LIST_KEYS:
            for kind in getattr(self, key):
                yield key, kind

    @property
    def enabled_operators(self) -> tuple[str, ...]:
        """The operators bug injection may use, in canonical order."""
        if self.operators is not None:
            return tuple(o for o in MUTATION_OPERATORS if o in self.operators)
        return tuple(o for o in MUTATION_OPERATORS if all(getattr(self, need) for need in OPERATOR_NEEDS[o]))

    @property
    def swap_tables(self) -> dict[str, dict[str, str]]:
        """Replacement table of each token-swap operator: the block's own, else the default."""
        custom = {operator: dict(pairs) for operator, pairs in self.swaps}
        return {operator: custom.get(operator, table) for operator, table in DEFAULT_SWAPS.items()}

    def to_entry(self) -> dict[str, Any]:
        """The block as registry YAML data (what `from_entry` reads back to an equal spec)."""
        entry: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "booleans":
                if value:
                    entry["booleans"] = dict(value)
            elif f.name == "swaps":
                if value:
                    entry["swaps"] = {operator: dict(pairs) for operator, pairs in value}
            elif f.name == "operators":
                if value is not None:
                    entry["operators"] = list(value)
            elif f.name in _NODE_LIST_KEYS:
                if value:
                    entry[f.name] = list(value)
            elif value is not None:
                entry[f.name] = value
        return entry


def _spelling(value: Any, where: str) -> str:
    """A literal or token spelling; YAML reads unquoted true/false/null/numbers as values, so those must be quoted."""
    if not isinstance(value, str):
        raise RegistryError(f"{where}: {value!r} must be quoted text (YAML reads unquoted true, false, null and "
                            f"numbers as values, not as spellings), e.g. \"true\": \"false\"")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistryError(f"{where} must be a list of node types, got {value!r}")
    return tuple(value)


def _operators(value: Any, where: str) -> tuple[str, ...]:
    names = _names(value, f"{where}: mutation.operators")
    unknown = [name for name in names if name not in MUTATION_OPERATORS]
    if unknown:
        raise RegistryError(f"{where}: mutation.operators names unknown operators {unknown}; known: {', '.join(MUTATION_OPERATORS)}")
    return tuple(dict.fromkeys(names))


def _swaps(value: Any, where: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if not isinstance(value, dict):
        raise RegistryError(f"{where}: mutation.swaps must map a token-swap operator to its table, e.g. "
                            f"{{comparison_flip: {{'==': '!='}}}}")
    unknown = [name for name in value if name not in DEFAULT_SWAPS]
    if unknown:
        raise RegistryError(f"{where}: mutation.swaps names {unknown}, which are not token-swap operators; "
                            f"known: {', '.join(DEFAULT_SWAPS)}")
    tables = []
    for operator in DEFAULT_SWAPS:  # canonical order, so equal blocks compare equal
        if operator not in value:
            continue
        table = value[operator]
        if not isinstance(table, dict) or not table:
            raise RegistryError(f"{where}: mutation.swaps.{operator} must be a non-empty mapping of token to replacement")
        pairs = tuple((_spelling(a, f"{where}: mutation.swaps.{operator}"), _spelling(b, f"{where}: mutation.swaps.{operator}"))
                      for a, b in table.items())
        same = [a for a, b in pairs if a == b]
        if same:
            raise RegistryError(f"{where}: mutation.swaps.{operator} replaces {same} by themselves")
        tables.append((operator, pairs))
    return tuple(tables)


@dataclass(frozen=True)
class LanguageSpec:
    """One registry entry. Picklable: the loaded grammar is rebuilt in each process."""

    name: str
    grammar: GrammarRef
    extensions: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    comment_nodes: tuple[str, ...] = ("comment",)
    function_nodes: tuple[str, ...] = ()
    class_nodes: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    fence: str = ""
    mutation: MutationSpec | None = None
    source: str = field(default="", compare=False)  # the registry file that declared it

    @classmethod
    def from_entry(cls, entry: dict[str, Any], source: str) -> LanguageSpec:
        """Build a spec from one YAML entry, with errors that name the file and the entry."""
        where = f"{source}: entry {entry.get('name', '?')!r}"
        known = {"name", "aliases", "extensions", "markers", "grammar", "nodes", "fence", "mutation"}
        unknown = set(entry) - known
        if unknown:
            raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        for required in ("name", "extensions", "grammar"):
            if not entry.get(required):
                raise RegistryError(f"{where}: missing {required!r}")
        grammar = entry["grammar"]
        if not isinstance(grammar, dict) or not {"package", "module"} <= set(grammar):
            raise RegistryError(f"{where}: grammar needs 'package' and 'module' (and optionally 'entry')")
        extensions = tuple(str(e).lower() for e in entry["extensions"])
        bad = [e for e in extensions if not e.startswith(".")]
        if bad:
            raise RegistryError(f"{where}: extensions must start with '.', got {bad}")
        nodes = entry.get("nodes") or {}
        for pattern in entry.get("markers") or ():
            try:
                re.compile(pattern)
            except re.error as error:
                raise RegistryError(f"{where}: marker {pattern!r} is not a valid regular expression: {error}") from None
        return cls(
            name=str(entry["name"]),
            grammar=GrammarRef(str(grammar["package"]), str(grammar["module"]), str(grammar.get("entry", "language"))),
            extensions=extensions,
            aliases=tuple(str(a) for a in entry.get("aliases") or ()),
            comment_nodes=tuple(nodes.get("comment") or ("comment",)),
            function_nodes=tuple(nodes.get("function") or ()),
            class_nodes=tuple(nodes.get("class") or ()),
            markers=tuple(entry.get("markers") or ()),
            fence=str(entry.get("fence") or entry["name"]).lower(),
            mutation=MutationSpec.from_entry(entry["mutation"], where) if entry.get("mutation") else None,
            source=source,
        )

    @cached_property
    def language(self) -> tree_sitter.Language:
        """The loaded grammar, ABI- and node-type-checked once per process."""
        return _load_grammar(self)

    @cached_property
    def grammar_version(self) -> str | None:
        """Installed version of the grammar package, or None when it is not installed."""
        try:
            return importlib.metadata.version(self.grammar.package)
        except importlib.metadata.PackageNotFoundError:
            return None

    @cached_property
    def marker_pattern(self) -> re.Pattern[bytes] | None:
        if not self.markers:
            return None
        return re.compile("|".join(f"(?:{m})" for m in self.markers).encode(), re.MULTILINE)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for cached in ("language", "marker_pattern"):
            state.pop(cached, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _load_grammar(spec: LanguageSpec) -> tree_sitter.Language:
    ref = spec.grammar
    install = f"pip install {ref.package}"
    try:
        module = importlib.import_module(ref.module)
    except ImportError as error:
        raise GrammarError(f"{spec.name}: grammar module {ref.module!r} is not installed ({error}); run `{install}`") from None
    entry = getattr(module, ref.entry, None)
    if entry is None:
        raise GrammarError(f"{spec.name}: module {ref.module!r} has no function {ref.entry!r}; check 'grammar.entry'")
    lowest, highest = tree_sitter.MIN_COMPATIBLE_LANGUAGE_VERSION, tree_sitter.LANGUAGE_VERSION
    bindings = importlib.metadata.version("tree-sitter")
    try:
        language = tree_sitter.Language(entry())
    except ValueError as error:
        raise GrammarError(
            f"{spec.name}: grammar {ref.package} {spec.grammar_version} does not load in tree-sitter {bindings}, "
            f"which reads grammar ABI {lowest}..{highest} ({error}); install a {ref.package} release built for "
            f"that ABI range, or a tree-sitter release that reads this grammar"
        ) from None
    if not lowest <= language.abi_version <= highest:
        raise GrammarError(
            f"{spec.name}: grammar {ref.package} {spec.grammar_version} has ABI {language.abi_version}, "
            f"tree-sitter {bindings} reads {lowest}..{highest}; `{install}` a release in that range"
        )
    for kind in (*spec.comment_nodes, *spec.function_nodes, *spec.class_nodes):
        if language.id_for_node_kind(kind, True) is None:
            raise GrammarError(
                f"{spec.name}: node type {kind!r} (from {spec.source or 'the registry'}) does not exist in "
                f"{ref.package} {spec.grammar_version}; fix the 'nodes' entry"
            )
    if spec.mutation is not None:
        _check_mutation(spec, spec.mutation, language)
    return language


def _check_mutation(spec: LanguageSpec, rules: MutationSpec, language: tree_sitter.Language) -> None:
    """The mutation block against the grammar: its node types exist (named), its own swap tokens exist (anonymous)."""
    ref, origin = spec.grammar, spec.source or "the registry"
    for key, kind in rules.node_types_by_key():
        if language.id_for_node_kind(kind, True) is None:
            raise GrammarError(
                f"{spec.name}: node type {kind!r} of mutation.{key} (from {origin}) does not exist in "
                f"{ref.package} {spec.grammar_version}; fix the 'mutation' block"
            )
    for operator, pairs in rules.swaps:
        for token in dict.fromkeys(t for pair in pairs for t in pair):
            if language.id_for_node_kind(token, False) is None:
                raise GrammarError(
                    f"{spec.name}: token {token!r} of mutation.swaps.{operator} (from {origin}) is not a token of "
                    f"{ref.package} {spec.grammar_version}; fix the 'mutation' block"
                )


class LanguageRegistry:
    """Languages by name or alias, and by file extension."""

    def __init__(self, specs: list[LanguageSpec]):
        by_name: dict[str, LanguageSpec] = {}
        for spec in specs:  # later entries replace earlier ones of the same name
            by_name[_fold(spec.name)] = spec
        self._specs = list(by_name.values())
        self._lookup: dict[str, LanguageSpec] = {}
        for spec in self._specs:
            for alias in (*spec.aliases, spec.name):
                self._lookup[_fold(alias)] = spec
        self._by_extension: dict[str, list[LanguageSpec]] = {}
        for spec in self._specs:
            for ext in spec.extensions:
                self._by_extension.setdefault(ext, []).append(spec)

    @classmethod
    def from_files(cls, paths: list[Path | Any]) -> LanguageRegistry:
        """A registry from YAML files in order; each file has a `languages:` list."""
        specs: list[LanguageSpec] = []
        for path in paths:
            text = path.read_text(encoding="utf-8")
            try:
                document = yaml.safe_load(text) or {}
            except yaml.YAMLError as error:
                raise RegistryError(f"{path}: not valid YAML: {error}") from None
            entries = document.get("languages") if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise RegistryError(f"{path}: expected a top-level 'languages:' list")
            specs.extend(LanguageSpec.from_entry(entry, str(path)) for entry in entries)
        return cls(specs)

    def __getitem__(self, name: str) -> LanguageSpec:
        try:
            return self._lookup[_fold(name)]
        except KeyError:
            raise KeyError(f"unknown language {name!r}; known: {', '.join(self.names)}") from None

    def get(self, name: str) -> LanguageSpec:
        return self[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _fold(name) in self._lookup

    def __iter__(self) -> Iterator[LanguageSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self._specs]

    @property
    def extensions(self) -> dict[str, list[str]]:
        """Extension -> names of the languages that claim it."""
        return {ext: [s.name for s in specs] for ext, specs in sorted(self._by_extension.items())}

    def candidates_for_path(self, path: str) -> list[LanguageSpec]:
        """Languages whose extensions match `path` (several for a shared extension such as .h)."""
        suffix = path_suffix(path)
        return list(self._by_extension.get(suffix, ())) if suffix else []

    def for_path(self, path: str, content: bytes | None = None) -> LanguageSpec | None:
        """The language of a file, deciding shared extensions by content; None when unknown."""
        candidates = self.candidates_for_path(path)
        if len(candidates) <= 1 or content is None:
            return candidates[0] if candidates else None
        return decide_by_content(candidates, content)


def path_suffix(path: str) -> str:
    """The lower-cased extension of a file path's last part, as `PurePosixPath(path).suffix` reads it ('' for
    `.bashrc` or `name.`), without building a path object (mining asks this for every commit)."""
    name = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def decide_by_content(candidates: list[LanguageSpec], content: bytes) -> LanguageSpec:
    """Pick among languages sharing an extension: a unique marker match wins, else the fewest error bytes."""
    marked = [spec for spec in candidates if spec.marker_pattern is not None and spec.marker_pattern.search(content)]
    if len(marked) == 1:
        return marked[0]
    parsed = []
    for rank, spec in enumerate(marked or candidates):
        errors = _error_bytes(tree_sitter.Parser(spec.language).parse(content).root_node)
        if errors == 0:  # no later contender can rank before it: the others are not parsed
            return spec
        parsed.append((errors, rank, spec))
    return min(parsed, key=lambda item: item[:2])[2]


def _error_bytes(root: tree_sitter.Node) -> int:
    """Bytes under top-level ERROR nodes, plus one per MISSING node (cheap, for ranking parses)."""
    if not root.has_error:
        return 0
    total, stack = 0, [root]
    while stack:
        node = stack.pop()
        if node.is_error:
            total += node.end_byte - node.start_byte
        elif node.is_missing:
            total += 1
        elif node.has_error:
            stack.extend(node.children)
    return total


_REGISTRY_CACHE: dict[tuple[str, ...], LanguageRegistry] = {}


def registry_files() -> list[Path | Any]:
    """The registry files in force, in merge order."""
    paths: list[Path | Any] = [DEFAULT_REGISTRY]
    for extra in filter(None, os.environ.get(REGISTRY_ENV, "").split(os.pathsep)):
        path = Path(extra)
        if not path.is_file():
            raise RegistryError(f"{REGISTRY_ENV} names {extra!r}, which is not a file")
        paths.append(path)
    user = user_registry_path()
    if user.is_file():
        paths.append(user)
    return paths


def languages() -> LanguageRegistry:
    """The registry in force (packaged entries merged with user files), cached per set of files."""
    paths = registry_files()
    key = tuple(f"{p}:{Path(str(p)).stat().st_mtime_ns if Path(str(p)).exists() else 0}" for p in paths)
    if key not in _REGISTRY_CACHE:
        _REGISTRY_CACHE[key] = LanguageRegistry.from_files(paths)
    return _REGISTRY_CACHE[key]


def add_user_language(entry: dict[str, Any], path: Path | None = None) -> Path:
    """Write (or replace, by name) `entry` in the user registry file, after checking that it loads:
    the entry parses, its grammar imports, its ABI fits and its node types exist in the grammar."""
    target = path or user_registry_path()
    spec = LanguageSpec.from_entry(entry, str(target))
    spec.language  # loads the grammar and checks the node types; raises GrammarError naming the package
    document: dict[str, Any] = {"languages": []}
    if target.is_file():
        loaded = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict) or not isinstance(loaded.get("languages"), list):
            raise RegistryError(f"{target}: expected a top-level 'languages:' list")
        document = loaded
    document["languages"] = [e for e in document["languages"] if _fold(str(e.get("name", ""))) != _fold(spec.name)] + [entry]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    partial.replace(target)
    _REGISTRY_CACHE.clear()
    return target
