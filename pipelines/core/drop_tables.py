"""The README's drop-reason tables, generated from what each stage declares (`Stage.drop_reasons`).

A table sits between `<!-- drop-reasons: STAGE -->` and `<!-- /drop-reasons -->`. Regenerate them with
`python -m pipelines.core.drop_tables` (the README at the repository root, or a path given); `--check` only
says whether they are up to date (exit status 1 when not).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_SECTION = re.compile(r"(<!-- drop-reasons: (?P<stage>[a-z_]+) -->\n)(?P<table>.*?)(<!-- /drop-reasons -->)", re.DOTALL)


def reasons_table(reasons: dict[str, tuple[str, str]]) -> str:
    """A Markdown table of reason -> (declared by, meaning), in declaration order."""
    lines = ["| reason | declared by | meaning |", "|---|---|---|"]
    for reason, (by, meaning) in reasons.items():
        escaped = meaning.replace("|", "\\|")
        lines.append(f"| `{reason}` | {by} | {escaped} |")
    return "\n".join(lines) + "\n"


def stage_reasons(stage: str) -> dict[str, tuple[str, str]]:
    """The declared drop reasons of a registered stage (every built-in stage is imported first)."""
    from pipelines.core.stage import STAGES
    from pipelines.run.config import import_builtin_stages

    import_builtin_stages()
    return STAGES[stage].drop_reasons()


def render(text: str) -> str:
    """`text` with every drop-reason section's table generated anew."""
    return _SECTION.sub(lambda m: m.group(1) + reasons_table(stage_reasons(m.group("stage"))) + m.group(4), text)


def sections(text: str) -> list[str]:
    """The stages whose tables `text` has, in order."""
    return [m.group("stage") for m in _SECTION.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.core.drop_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("readme", nargs="?", type=Path, default=README, help="the README to update (default: the repository's)")
    parser.add_argument("--check", action="store_true", help="only check that the tables are up to date")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    generated = render(text)
    if args.check:
        if generated != text:
            print(f"{args.readme}: the drop-reason tables differ from the declared reasons; run python -m pipelines.core.drop_tables",
                  file=sys.stderr)
            return 1
        return 0
    if generated != text:
        args.readme.write_text(generated, encoding="utf-8")
        print(f"{args.readme}: drop-reason tables of {', '.join(sections(text))} regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
