"""`codepref languages`: the language registry, and tree-sitter facts of source files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from parsers import GrammarError, RegistryError, detect_language, languages, parse
from parsers.registry import MUTATION_OPERATORS, MutationSpec
from pipelines.cli.console import fail, stderr, stdout

app = typer.Typer(help="The language registry.", no_args_is_help=True)
MUTATION = "Bug injection (the mutation block)"


@app.command("list")
def languages_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of a table.")] = False) -> None:
    """The registered languages, their extensions and grammar versions."""
    try:
        registry = languages()
    except RegistryError as error:
        fail(str(error))
    entries = [
        {
            "name": spec.name,
            "aliases": list(spec.aliases),
            "extensions": list(spec.extensions),
            "grammar": spec.grammar.package,
            "grammar_version": spec.grammar_version,
            "fence": spec.fence,
            "mutation_operators": list(spec.mutation.enabled_operators) if spec.mutation else None,
            "registry": spec.source,
        }
        for spec in registry
    ]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("language", "extensions", "grammar", "version", "aliases")
    for entry in entries:
        table.add_row(
            entry["name"],
            " ".join(entry["extensions"]),
            entry["grammar"],
            entry["grammar_version"] or "[red]not installed[/]",
            ", ".join(entry["aliases"]),
        )
    stdout.print(table)


SAMPLES = {
    "C": "int add(int a, int b) { return a + b; }\n",
    "C#": "class A { int Add(int a, int b) { return a + b; } }\n",
    "C++": "template <typename T> T add(T a, T b) { return a + b; }\n",
    "Go": "package main\nfunc add(a, b int) int { return a + b }\n",
    "Java": "class A { int add(int a, int b) { return a + b; } }\n",
    "JavaScript": "function add(a, b) { return a + b; }\n",
    "Python": "def add(a, b):\n    return a + b\n",
    "Ruby": "def add(a, b)\n  a + b\nend\n",
}


def _mutation_block(
    like: str | None, keys: dict[str, list[str] | None], negate: str | None, booleans: list[str] | None,
    null: str | None, operators: list[str] | None, swaps: list[str] | None,
) -> dict[str, Any] | None:
    """The `mutation:` block the options describe: `--mutation-like`'s block, with every key given on the
    command line replacing that key; None when no mutation option was given."""
    given = any(keys.values()) or negate or booleans or null or operators or swaps
    if like is None and not given:
        return None
    block: dict[str, Any] = {}
    if like is not None:
        try:
            source = languages()[like]
        except KeyError as error:
            fail(f"--mutation-like: {error.args[0]}")
        except RegistryError as error:
            fail(str(error))
        if source.mutation is None:
            fail(f"--mutation-like {like}: the registry entry of {source.name} has no mutation block to copy")
        block = source.mutation.to_entry()
    for key, values in keys.items():
        if values:
            block[key] = list(dict.fromkeys(values))
    if negate is not None:
        block["negate"] = negate
    if booleans:
        table: dict[str, str] = {}
        for item in booleans:
            literal, sep, flipped = item.partition("=")
            if not sep or not literal or not flipped:
                fail(f"--boolean {item!r}: expected LITERAL=FLIPPED, e.g. --boolean true=false --boolean false=true")
            table[literal] = flipped
        block["booleans"] = table
    if null is not None:
        block["null_literal"] = null
    if operators:
        block["operators"] = list(dict.fromkeys(operators))
    if swaps:
        tables: dict[str, dict[str, str]] = {}
        for item in swaps:
            parts = item.split()
            if len(parts) != 3:
                fail(f"--swap {item!r}: expected 'OPERATOR FROM TO' in one argument, e.g. --swap 'comparison_flip == !='")
            tables.setdefault(parts[0], {})[parts[1]] = parts[2]
        block["swaps"] = {**block.get("swaps", {}), **tables}
    return block


@app.command("add")
def languages_add(
    name: Annotated[str, typer.Argument(help="Canonical name, e.g. Rust.")],
    grammar: Annotated[str, typer.Option(help="The grammar's PyPI package, e.g. tree-sitter-rust (install it first).")],
    ext: Annotated[list[str], typer.Option("--ext", help="File extension, e.g. .rs; repeatable.")],
    module: Annotated[str | None, typer.Option(help="Import name (default: the package name with _ for -).")] = None,
    entry: Annotated[str, typer.Option(help="Function of the module that returns the grammar.")] = "language",
    alias: Annotated[list[str] | None, typer.Option("--alias", help="Another spelling; repeatable.")] = None,
    comment: Annotated[list[str] | None, typer.Option("--comment", help="Node type of comments (default: comment); repeatable.")] = None,
    function: Annotated[list[str] | None, typer.Option("--function", help="Node type of functions; repeatable.")] = None,
    class_: Annotated[list[str] | None, typer.Option("--class", help="Node type of classes/types; repeatable.")] = None,
    fence: Annotated[str | None, typer.Option(help="Markdown code-fence tag (default: the name, lower-case).")] = None,
    mutation_like: Annotated[str | None, typer.Option(
        "--mutation-like", help="Copy this registered language's mutation block (bug injection) as a starting point; "
                                "the options below replace its keys.", rich_help_panel=MUTATION)] = None,
    binary: Annotated[list[str] | None, typer.Option(
        "--binary", help="Node type of binary expressions (token swaps); repeatable.", rich_help_panel=MUTATION)] = None,
    conditional: Annotated[list[str] | None, typer.Option(
        "--conditional", help="Node type of conditionals (negated_condition, removed_guard); repeatable.", rich_help_panel=MUTATION)] = None,
    parenthesized: Annotated[list[str] | None, typer.Option(
        "--parenthesized", help="Node type of a condition's required parentheses; repeatable.", rich_help_panel=MUTATION)] = None,
    negate: Annotated[str | None, typer.Option(
        "--negate", help="How to negate a condition, {} for it (default: '!({})').", rich_help_panel=MUTATION)] = None,
    call_arguments: Annotated[list[str] | None, typer.Option(
        "--call-arguments", help="Node type of call argument lists (swapped_arguments); repeatable.", rich_help_panel=MUTATION)] = None,
    return_: Annotated[list[str] | None, typer.Option(
        "--return", help="Node type of returns (changed_return); repeatable.", rich_help_panel=MUTATION)] = None,
    integer: Annotated[list[str] | None, typer.Option(
        "--integer", help="Node type of integer literals; repeatable.", rich_help_panel=MUTATION)] = None,
    boolean: Annotated[list[str] | None, typer.Option(
        "--boolean", help="LITERAL=FLIPPED, e.g. true=false; repeatable (give both directions).", rich_help_panel=MUTATION)] = None,
    null: Annotated[str | None, typer.Option(
        "--null", help="The null literal a changed return writes, e.g. null.", rich_help_panel=MUTATION)] = None,
    exit_: Annotated[list[str] | None, typer.Option(
        "--exit", help="Node type of statements that leave a block (removed_guard); repeatable.", rich_help_panel=MUTATION)] = None,
    block: Annotated[list[str] | None, typer.Option(
        "--block", help="Node type of blocks around a guard's body; repeatable.", rich_help_panel=MUTATION)] = None,
    operator: Annotated[list[str] | None, typer.Option(
        "--operator", help=f"An operator bug injection may use (default: all whose node types are given); repeatable. "
                           f"One of: {', '.join(MUTATION_OPERATORS)}.", rich_help_panel=MUTATION)] = None,
    swap: Annotated[list[str] | None, typer.Option(
        "--swap", help="'OPERATOR FROM TO' (one argument): a replacement of a token-swap operator; the pairs given for an "
                       "operator replace its default table; repeatable.", rich_help_panel=MUTATION)] = None,
) -> None:
    """Add a language to the user registry ($XDG_CONFIG_HOME/codepref/languages.yaml), checked before it is written.

    With mutation options (or --mutation-like), the entry gets a `mutation:` block, so bug injection
    makes pairs for the language; its node types and swap tokens are checked against the grammar too.
    """
    from parsers.registry import add_user_language

    record: dict[str, Any] = {
        "name": name, "aliases": alias or [], "extensions": [e if e.startswith(".") else f".{e}" for e in ext],
        "grammar": {"package": grammar, "module": module or grammar.replace("-", "_"), "entry": entry},
        "nodes": {"comment": comment or ["comment"], "function": function or [], "class": class_ or []},
        "fence": fence or name.lower(),
    }
    mutation = _mutation_block(
        mutation_like,
        {"binary": binary, "conditionals": conditional, "parenthesized": parenthesized, "arguments": call_arguments,
         "returns": return_, "integers": integer, "exits": exit_, "blocks": block},
        negate, boolean, null, operator, swap,
    )
    if mutation is not None:
        record["mutation"] = mutation
    try:
        path = add_user_language(record)
    except (RegistryError, GrammarError) as error:
        fail(str(error))
    if mutation is None:
        stdout.print(f"{name} added to {path}; no mutation block yet, so bug injection skips it (counted as "
                     f"no_mutation_operators). `codepref languages check` loads it.", highlight=False)
        return
    enabled = MutationSpec.from_entry(mutation, str(path)).enabled_operators
    stdout.print(f"{name} added to {path}; bug injection may use {', '.join(enabled) or 'no operator'}. "
                 f"`codepref languages check` loads it.", highlight=False)


def _bug_injection(spec: Any) -> str:
    if spec.mutation is None:
        return "no mutation block (no bug injection)"
    return f"bug injection: {', '.join(spec.mutation.enabled_operators) or 'no operator'}"


@app.command("check")
def languages_check() -> None:
    """Load every grammar (ABI and node types checked) and parse a sample."""
    try:
        registry = languages()
    except RegistryError as error:
        fail(str(error))
    failures = 0
    for spec in registry:
        try:
            sample = SAMPLES.get(spec.name)
            if sample is None:
                _ = spec.language  # loads and checks the grammar; there is no sample for user languages
                stdout.print(f"[green]ok[/]   {spec.name}: grammar {spec.grammar.package} {spec.grammar_version} loads; "
                             f"{_bug_injection(spec)}", highlight=False)
                continue
            facts = parse(sample, spec)
            if facts.has_error or not facts.functions:
                raise GrammarError(f"{spec.name}: the sample did not parse cleanly (errors or no function found)")
            stdout.print(f"[green]ok[/]   {spec.name}: {spec.grammar.package} {spec.grammar_version}, ABI {spec.language.abi_version}")
        except GrammarError as error:
            failures += 1
            stderr.print(f"[red]fail[/] {error}", highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command("parse")
def parse_files(
    files: Annotated[list[Path], typer.Argument(help="Source files to parse.")],
    language: Annotated[str | None, typer.Option(help="Language for every file (default: from the path).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    tokens: Annotated[bool, typer.Option(help="Include the comment-free token stream.")] = False,
) -> None:
    """Tree-sitter facts of source files."""
    failures = 0
    for path in files:
        try:
            content = path.read_bytes()
        except OSError as error:
            stderr.print(f"{path}: cannot read: {error.strerror}", highlight=False)
            failures += 1
            continue
        try:
            name = language or detect_language(str(path), content)
            if name is None:
                known = ", ".join(sorted(languages().extensions))
                raise KeyError(f"no registered language has the extension of {path.name!r}; known: {known}")
            facts = parse(content, name)
        except (KeyError, GrammarError, RegistryError) as error:
            stderr.print(f"{path}: {error.args[0] if isinstance(error, KeyError) else error}", highlight=False)
            failures += 1
            continue
        data = {"path": str(path), **facts.to_json(with_tokens=tokens)}
        if as_json:
            print(json.dumps(data))
        else:
            state = "ok" if facts.parse_ok and not facts.has_error else "errors"
            stdout.print(
                f"{path}: {facts.language}, {state}, error share {facts.error_share:.3f}, depth {facts.depth}, "
                f"{facts.named_nodes} named nodes, {facts.lines} lines, {len(facts.functions)} functions, "
                f"{len(facts.classes)} classes" + (f", {facts.decode_error}" if facts.decode_error else ""),
                highlight=False,
            )
    if failures:
        raise typer.Exit(1)
