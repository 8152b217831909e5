"""Parse throughput per language: `parsers.parse()` with its facts against a bare `Parser.parse`.

All run on the same bytes in the same process, alternating, best of several repeats; the figures
that matter are the ratios to the bare parse (target: facts at most 2x). "facts" is `parse()`
as the parse stage calls it; "+tokens" also builds the comment-free token stream, which
`parse()` computes on first use (dedup needs it, for the records the filters kept).

Sources: benchmarks.corpus.source_files (installed files, or generated ones where too few are installed).

    .venv/bin/python -m benchmarks.parse_throughput [--mb 2] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tree_sitter
from rich.console import Console
from rich.table import Table

from benchmarks.corpus import source_files
from parsers import LanguageRegistry, languages, parse


def best_of(repeats: int, work: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(registry: LanguageRegistry, language: str, max_bytes: int, repeats: int) -> dict[str, Any]:
    spec = registry[language]
    files, origin = source_files(language, max_bytes, registry)
    total = sum(map(len, files))
    parser = tree_sitter.Parser(spec.language)
    parse(files[0], spec)  # warm caches (grammar load, query compile)

    def bare() -> None:
        for data in files:
            parser.parse(data)

    def with_facts() -> None:
        for data in files:
            parse(data, spec)

    def with_tokens() -> None:
        for data in files:
            _ = parse(data, spec).tokens  # computed on first use

    bare_s = facts_s = tokens_s = float("inf")
    for _ in range(repeats):  # alternate so that machine noise hits all alike
        bare_s = min(bare_s, best_of(1, bare))
        facts_s = min(facts_s, best_of(1, with_facts))
        tokens_s = min(tokens_s, best_of(1, with_tokens))
    return {
        "language": language,
        "corpus": origin,
        "files": len(files),
        "mb": round(total / 1e6, 2),
        "bare_mb_s": round(total / 1e6 / bare_s, 2),
        "facts_mb_s": round(total / 1e6 / facts_s, 2),
        "ratio": round(facts_s / bare_s, 2),
        "tokens_mb_s": round(total / 1e6 / tokens_s, 2),
        "tokens_ratio": round(tokens_s / bare_s, 2),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=2.0, help="Megabytes of source per language.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)

    registry = languages()
    results = [measure(registry, spec.name, int(args.mb * 1e6), args.repeats) for spec in registry]
    table = Table("language", "corpus", "files", "MB", "bare MB/s", "facts MB/s", "facts/bare",
                  "+tokens MB/s", "+tokens/bare")
    for r in results:
        table.add_row(r["language"], r["corpus"], str(r["files"]), str(r["mb"]), str(r["bare_mb_s"]),
                      str(r["facts_mb_s"]), f"{r['ratio']}x", str(r["tokens_mb_s"]), f"{r['tokens_ratio']}x")
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
