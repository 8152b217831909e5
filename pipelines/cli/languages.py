"""`codepref languages`: the language registry, and tree-sitter facts of source files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from parsers import GrammarError, RegistryError, detect_language, languages, parse
from pipelines.cli.console import fail, stderr, stdout

app = typer.Typer(help="The language registry.", no_args_is_help=True)


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
) -> None:
    """Add a language to the user registry ($XDG_CONFIG_HOME/codepref/languages.yaml), checked before it is written."""
    from parsers.registry import add_user_language

    record = {
        "name": name, "aliases": alias or [], "extensions": [e if e.startswith(".") else f".{e}" for e in ext],
        "grammar": {"package": grammar, "module": module or grammar.replace("-", "_"), "entry": entry},
        "nodes": {"comment": comment or ["comment"], "function": function or [], "class": class_ or []},
        "fence": fence or name.lower(),
    }
    try:
        path = add_user_language(record)
    except (RegistryError, GrammarError) as error:
        fail(str(error))
    stdout.print(f"{name} added to {path}; no mutation block yet, so bug injection skips it (counted as "
                 f"no_mutation_operators). `codepref languages check` loads it.", highlight=False)


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
                stdout.print(f"[green]ok[/]   {spec.name}: grammar {spec.grammar.package} {spec.grammar_version} loads")
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
