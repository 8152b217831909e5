"""Parse throughput per language: `parsers.parse()` with its facts against a bare `Parser.parse`.

All run on the same bytes in the same process, alternating, best of several repeats; the figures
that matter are the ratios to the bare parse (target: facts at most 2x). "facts" is `parse()`
as the parse stage calls it; "+tokens" also builds the comment-free token stream, which
`parse()` computes on first use (dedup needs it, for the records the filters kept).

    .venv/bin/python benchmarks/parse_throughput.py [--mb 2] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tree_sitter  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.corpus import sources  # noqa: E402
from parsers import languages, parse  # noqa: E402


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(language: str, max_bytes: int, repeats: int) -> dict:
    spec = languages()[language]
    files, origin = sources(language, max_bytes)
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
            parse(data, spec).tokens

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=2.0, help="Megabytes of source per language.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    results = [measure(spec.name, int(args.mb * 1e6), args.repeats) for spec in languages()]
    table = Table("language", "corpus", "files", "MB", "bare MB/s", "facts MB/s", "facts/bare",
                  "+tokens MB/s", "+tokens/bare")
    for r in results:
        table.add_row(r["language"], r["corpus"], str(r["files"]), str(r["mb"]), str(r["bare_mb_s"]),
                      str(r["facts_mb_s"]), f"{r['ratio']}x", str(r["tokens_mb_s"]), f"{r['tokens_ratio']}x")
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
